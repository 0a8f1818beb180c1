using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// The emulator's fragment layouts, frozen: for all 32 lanes and every register and half, the element the PTX ISA
/// says a lane holds ("Matrix Fragments for mma.m16n8k16 with floating point type", "... mma.m16n8k8" for .tf32, and
/// ldmatrix's "each thread in a warp holds ... row (laneid / 4), columns 2 · (laneid % 4) and + 1"), derived here from
/// groupID = laneid / 4 and threadID_in_group = laneid % 4 as the ISA writes them, must be where the emulator puts it.
/// An error in the emulator's maps would otherwise be shared by the kernels it checks.
/// </summary>
public class CudaFragmentLayoutTests
{
    private static void Check(int fragment, int registers, int halves, Func<int, int, (int Row, int Column)> isa, int rows, int columns)
    {
        if (!CudaEmulation.Active) Assert.Skip("the CUDA emulator is not in use here");
        var seen = new HashSet<(int, int)>();
        for (int lane = 0; lane < 32; lane++)
        for (int register = 0; register < registers; register++)
        for (int half = 0; half < halves; half++)
        {
            // The ISA numbers a lane's elements i = 0, 1, …: for 16-bit elements two per register (low half first).
            int i = register * halves + half;
            var (row, column) = isa(lane, i);
            Assert.InRange(row, 0, rows - 1);
            Assert.InRange(column, 0, columns - 1);
            Assert.True(seen.Add((row, column)), $"fragment {fragment}: ({row}, {column}) held twice by the ISA formulas");
            Assert.Equal((lane, register, halves == 2 ? half : 0), CudaEmulation.FragmentPlace(fragment, row, column));
        }
        Assert.Equal(rows * columns, seen.Count);
    }

    private static int Group(int lane) => lane >> 2;
    private static int InGroup(int lane) => lane % 4;

    [Fact]
    public void Mma_m16n8k16_a() => Check(0, 4, 2, (lane, i) => (
        i < 2 || (i >= 4 && i < 6) ? Group(lane) : Group(lane) + 8,
        i < 4 ? InGroup(lane) * 2 + (i & 1) : InGroup(lane) * 2 + (i & 1) + 8), 16, 16);

    [Fact]
    public void Mma_m16n8k16_b() => Check(1, 2, 2, (lane, i) => (
        i < 2 ? InGroup(lane) * 2 + (i & 1) : InGroup(lane) * 2 + (i & 1) + 8,
        Group(lane)), 16, 8);

    [Fact]
    public void Mma_f32_accumulator() => Check(2, 4, 1, (lane, i) => (
        i < 2 ? Group(lane) : Group(lane) + 8,
        InGroup(lane) * 2 + (i & 1)), 16, 8);

    [Fact]
    public void Mma_m16n8k8_tf32_a() => Check(3, 4, 1, (lane, i) => (
        i is 0 or 2 ? Group(lane) : Group(lane) + 8,
        i is 0 or 1 ? InGroup(lane) : InGroup(lane) + 4), 16, 8);

    [Fact]
    public void Mma_m16n8k8_tf32_b() => Check(4, 2, 1, (lane, i) => (
        i == 0 ? InGroup(lane) : InGroup(lane) + 4,
        Group(lane)), 8, 8);

    // ldmatrix .x4: register i holds matrix i (its rows' addresses from lanes 8i … 8i + 7); rows are numbered 8i + r.
    [Fact]
    public void Ldmatrix_x4() => Check(5, 4, 2, (lane, i) => (
        8 * (i / 2) + lane / 4,
        2 * (lane % 4) + i % 2), 32, 8);

    // .trans: lane L holds element (row L / 4, column 2 (L % 4) + half) of the transposed matrix, i.e. memory row
    // 2 (L % 4) + half, column L / 4.
    [Fact]
    public void Ldmatrix_x4_trans() => Check(6, 4, 2, (lane, i) => (
        8 * (i / 2) + 2 * (lane % 4) + i % 2,
        lane / 4), 32, 8);
}
