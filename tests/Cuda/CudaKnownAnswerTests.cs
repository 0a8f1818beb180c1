using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using AttentionEngine.Bindings.Cuda;

namespace AttentionEngine.Tests;

/// <summary>
/// The warp operations our CUDA kernels use (mma.m16n8k16 f16 and bf16, mma.m16n8k8 tf32, ldmatrix x4 and x4.trans,
/// the cvt packs and roundings, cp.async with zero-fill, shuffles), run by tests/Cuda/known_answers.cu in one warp on
/// small exact inputs. Every lane's result bits must equal known_answers.expected, which is the emulator's answer: so on
/// the first GPU this suite says, operation by operation and lane by lane, where the emulator and the hardware part.
/// Independently of that file, the answers are checked against the PTX ISA's definitions (fragment layouts, products,
/// pack order, rounding) wherever the ISA fixes them; NaN bits, which it leaves to the hardware, only by the file.
/// Write the file afresh with AE_KNOWN_ANSWERS_WRITE=&lt;path&gt; (on the emulator only).
/// </summary>
[Collection(nameof(CudaTests))]
public class CudaKnownAnswerTests
{
    private const int Probes = 8, Lanes = 32, Words = 8;
    private static readonly string[] ProbeNames =
        ["mma.m16n8k16.f16", "mma.m16n8k16.bf16", "mma.m16n8k8.tf32", "ldmatrix.x4", "ldmatrix.x4.trans", "cvt", "cp.async", "shfl"];

    private static uint SourceWord(int i) => (uint)(0x01020304u * (i + 1));

    private static readonly Lazy<uint[,,]> Answers = new(RunProbes);

    /// <summary>The probes' answers on device 0, run once for both tests (skips as the CUDA suites do).</summary>
    private static uint[,,] Run()
    {
        CudaBackendTests.Gpu();
        if (NvrtcCompiler.UnavailableReason is { } reason) Assert.Skip(reason);
        return Answers.Value;
    }

    /// <summary>Runs the probes on device 0 (a GPU, or the emulator's sm_80) and returns out[probe, lane, word].</summary>
    private static unsafe uint[,,] RunProbes()
    {
        using var device = CudaDevice.Open(0);
        string source = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Cuda", "known_answers.cu"));
        var image = NvrtcCompiler.Compile(source, "known_answers.cu", [$"--gpu-architecture={device.Architecture}", "-std=c++17"]).Cubin!;
        using var module = CudaModule.Load(image);
        var function = module.Function("known_answers");
        using var output = DeviceMemory.Allocate(Probes * Lanes * Words * sizeof(uint));
        using var input = DeviceMemory.Allocate(16 * sizeof(uint));
        var words = new uint[16];
        for (int i = 0; i < words.Length; i++) words[i] = SourceWord(i);
        input.CopyFrom(MemoryMarshal.AsBytes(words.AsSpan()));
        var p = new Params { Out = output.Address, Source = input.Address };
        using var stream = CudaStream.Create();
        void* argument = &p;
        function.Launch((1, 1, 1), (Lanes, 1, 1), 1024, stream, &argument);
        stream.Synchronize();
        var result = new uint[Probes * Lanes * Words];
        output.CopyTo(MemoryMarshal.AsBytes(result.AsSpan()));
        var shaped = new uint[Probes, Lanes, Words];
        Buffer.BlockCopy(result, 0, shaped, 0, result.Length * sizeof(uint));
        return shaped;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Params
    {
        public ulong Out;
        public ulong Source;
    }

    private static string Format(uint[,,] answers)
    {
        var text = new StringBuilder("# tests/Cuda/known_answers.cu on the CUDA emulator: probe lane words (hex)\n");
        for (int probe = 0; probe < Probes; probe++)
        for (int lane = 0; lane < Lanes; lane++)
        {
            text.Append(ProbeNames[probe]).Append(' ').Append(lane.ToString(CultureInfo.InvariantCulture));
            for (int w = 0; w < Words; w++) text.Append(' ').Append(answers[probe, lane, w].ToString("x8", CultureInfo.InvariantCulture));
            text.Append('\n');
        }
        return text.ToString();
    }

    [Fact]
    public void Every_lane_gives_the_emulators_known_answer()
    {
        var answers = Run();
        string actual = Format(answers);
        if (Environment.GetEnvironmentVariable("AE_KNOWN_ANSWERS_WRITE") is { Length: > 0 } path)
        {
            Assert.True(CudaEmulation.Active, "known_answers.expected holds the emulator's answers: write it on the emulator");
            File.WriteAllText(path, actual);
        }
        var expected = File.ReadAllLines(Path.Combine(AppContext.BaseDirectory, "Cuda", "known_answers.expected"));
        var got = actual.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(expected.Length, got.Length);
        var mismatches = expected.Zip(got).Where(pair => pair.First != pair.Second)
            .Select(pair => $"emulator: {pair.First}\n  here:   {pair.Second}").ToList();
        Assert.True(mismatches.Count == 0,
            $"{mismatches.Count} lane(s) differ from the emulator's answers ({(CudaEmulation.Active ? "the emulator" : "a GPU")} here):\n" + string.Join("\n", mismatches.Take(24)));
    }

    // The inputs of known_answers.cu.
    private static int A(int row, int k) => (row * 3 + k * 5) % 7 - 3;
    private static int B(int k, int col) => (k * 2 + col * 7 + 1) % 5 - 2;
    private static int C(int row, int col) => (row + col) % 4;

    [Fact]
    public void The_answers_are_what_the_ptx_isa_defines()
    {
        var answers = Run();
        for (int lane = 0; lane < Lanes; lane++)
        {
            int g = lane / 4, t = lane % 4;
            // D = C + A B at the accumulator layout: d0 (g, 2t), d1 (g, 2t+1), d2 (g+8, 2t), d3 (g+8, 2t+1).
            for (int probe = 0; probe < 3; probe++)
            {
                int depth = probe == 2 ? 8 : 16;
                for (int r = 0; r < 4; r++)
                {
                    int row = g + r / 2 * 8, col = 2 * t + r % 2;
                    int sum = C(row, col);
                    for (int k = 0; k < depth; k++) sum += A(row, k) * B(k, col);
                    Assert.True(BitConverter.UInt32BitsToSingle(answers[probe, lane, r]) == sum, $"{ProbeNames[probe]} lane {lane} d{r}: expected {sum}");
                }
            }
            // ldmatrix: element (m, r, c) of the four stored matrices is m*64 + r*8 + c + 1; register m of lane (g, t)
            // holds (g, 2t) and (g, 2t+1) of matrix m, or with .trans (2t, g) and (2t+1, g).
            for (int m = 0; m < 4; m++)
            {
                uint Element(int r, int c) => (uint)(m * 64 + r * 8 + c + 1);
                Assert.Equal(Element(g, 2 * t) | Element(g, 2 * t + 1) << 16, answers[3, lane, m]);
                Assert.Equal(Element(2 * t, g) | Element(2 * t + 1, g) << 16, answers[4, lane, m]);
            }
            // cp.async: chunks 0 and 2 copied, 1 and 3 zero-filled; lane L reads word L % 16.
            int word = lane % 16, chunk = word / 4;
            Assert.Equal(chunk % 2 == 0 ? SourceWord(word) : 0u, answers[6, lane, 0]);
            // Shuffles.
            uint X(int l) => (uint)l * 0x01010101u + 0x100u;
            for (int m = 0; m < 5; m++) Assert.Equal(X(lane ^ (1 << m)), answers[7, lane, m]);
            Assert.Equal(X((7 * lane + 3) % 32), answers[7, lane, 5]);
        }
        // Conversions: lane L converts value L (lo) and value L + 1 (hi); pack puts lo in the low half. Finite values
        // round to nearest even (bf16, f16) or to nearest with ties away (tf32); NaN bits are the hardware's to choose.
        float[] values = ConversionInputs();
        for (int lane = 0; lane < Lanes; lane++)
        {
            float lo = values[lane], hi = values[(lane + 1) % 32];
            uint bf16x2 = answers[5, lane, 0], f16x2 = answers[5, lane, 1], tf32 = answers[5, lane, 2];
            CheckSixteen(lo, (ushort)bf16x2, Bf16, $"bf16x2 lo, lane {lane}");
            CheckSixteen(hi, (ushort)(bf16x2 >> 16), Bf16, $"bf16x2 hi, lane {lane}");
            CheckSixteen(lo, (ushort)f16x2, F16, $"f16x2 lo, lane {lane}");
            CheckSixteen(hi, (ushort)(f16x2 >> 16), F16, $"f16x2 hi, lane {lane}");
            CheckSixteen(lo, (ushort)answers[5, lane, 3], Bf16, $"bf16, lane {lane}");
            CheckSixteen(lo, (ushort)answers[5, lane, 4], F16, $"f16, lane {lane}");
            Assert.Equal(0u, answers[5, lane, 3] >> 16);
            if (float.IsNaN(lo)) Assert.True(float.IsNaN(BitConverter.UInt32BitsToSingle(tf32)) || float.IsInfinity(BitConverter.UInt32BitsToSingle(tf32)), $"tf32 of NaN, lane {lane}");
            else Assert.True(Tf32(lo) == tf32, $"tf32 of {lo:R} (lane {lane}): expected {Tf32(lo):x8}, got {tf32:x8}");
        }
    }

    private static float[] ConversionInputs()
    {
        // known_answers.cu's probe_value table, in order.
        uint[] bits =
        [
            0x3f800000, 0xc0200000, 0x3f808000, 0x3f818000, 0x3f801000, 0xbf801000, 0x3f803000, 0x477ff000,
            0x477fe000, 0x32abcc77, 0x7f7fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0x7fc01234, 0x7f800001,
            0xffc00001, 0x00000001, 0x80400000, 0x3effffff, 0x3f7fffff, 0xbf7fffff, 0x4b000001, 0x3e2aaaab,
            0x00000000, 0x80000000, 0x3fc00000, 0x40490fdb, 0xc2f6e979, 0x38800000, 0x33800000, 0x33000000,
        ];
        return bits.Select(BitConverter.UInt32BitsToSingle).ToArray();
    }

    // Round to nearest even: bf16 by adding just under half a unit (plus the kept bit: ties to even), f16 by .NET's conversion.
    private static ushort Bf16(float x)
    {
        uint b = BitConverter.SingleToUInt32Bits(x);
        return (ushort)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
    }
    private static ushort F16(float x) => BitConverter.HalfToUInt16Bits((Half)x);

    private static void CheckSixteen(float x, ushort got, Func<float, ushort> expected, string what)
    {
        bool nan = (got & 0x7FFF) > (what.StartsWith("bf16", StringComparison.Ordinal) ? 0x7F80 : 0x7C00);
        if (float.IsNaN(x)) Assert.True(nan, $"{what}: NaN became {got:x4}");
        else Assert.True(expected(x) == got, $"{what}: {x:R} gave {got:x4}, expected {expected(x):x4}");
    }

    // cvt.rna.tf32.f32 of a finite float: nearest, ties away from zero (add half a unit of bit 13 to the magnitude,
    // clear the low 13 bits); infinity stays.
    private static uint Tf32(float x)
    {
        uint b = BitConverter.SingleToUInt32Bits(x);
        return float.IsInfinity(x) ? b : (b + 0x1000u) & 0xFFFFE000u;
    }
}
