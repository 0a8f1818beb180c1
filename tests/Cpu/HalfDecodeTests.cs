using System.Numerics.Tensors;
using AttentionEngine.Kernels.Cpu;

namespace AttentionEngine.Tests;

/// <summary>
/// The decode kernel reads fp16 K and V in place as 2^-112 times their value, the 2^112 moved onto the queries and the
/// probabilities, and checks each piece of work for infinities and NaN as it loads (<see
/// cref="AttentionEngine.Kernels.ScaledFiniteHalf"/>). Its results must be the bits of the float kernel on the widened
/// values: the same products, summed in the same order. Specials are planted one piece at a time (key groups, value
/// columns, leftover keys and rows), visible and hidden, at every vector width.
/// </summary>
public class HalfDecodeTests
{
    public static TheoryData<CpuIsa> Isas => new(CpuIsa.Avx512, CpuIsa.Avx2, CpuIsa.Vector128);

    // (query heads, KV heads, queries, keys, D, Dv): one row per KV head (MHA), four rows (GQA), five (a group of four
    // and one row alone), two queries of a group of two; keys not a multiple of four (single dot products); value widths
    // of 3 and 5 vectors at 16 lanes (pieces of four and two vectors and single ones); 16 rows per KV head; one row per
    // KV head at D = 128 and Dv = 160 (pieces of eight keys, and of eight, two and single value vectors).
    private static readonly (int H, int Hkv, int Lq, int Lk, int D, int Dv)[] Shapes =
    [
        (4, 4, 1, 131, 64, 64), (8, 2, 1, 70, 48, 80), (5, 1, 1, 67, 64, 48), (4, 2, 2, 90, 128, 128), (8, 2, 4, 75, 64, 64),
        (2, 2, 1, 83, 128, 160),
    ];

    [Theory]
    [MemberData(nameof(Isas))]
    public void Half_decode_gives_the_float_kernels_bits_on_the_widened_values_with_specials_in_any_piece(CpuIsa isa)
    {
        var backend = new CpuBackend(isa);
        if (!backend.IsAvailable) Assert.Skip($"{backend.Name}: {backend.UnavailableReason}");
        var random = new Random(17 + (int)isa);
        foreach (var shape in Shapes)
        {
            Compare(backend, shape, random, plant: Plant.None);
            for (int trial = 0; trial < 6; trial++)
            {
                Compare(backend, shape, random, Plant.Key);
                Compare(backend, shape, random, Plant.Value);
            }
            Compare(backend, shape, random, Plant.Query); // a query of 2^16 or more: no scaling, the full widening
        }
    }

    private enum Plant { None, Key, Value, Query }

    private static void Compare(CpuBackend backend, (int H, int Hkv, int Lq, int Lk, int D, int Dv) s, Random random, Plant plant)
    {
        Half Draw() => (Half)(random.NextDouble() * 4 - 2);
        var q = Enumerable.Range(0, s.H * s.Lq * s.D).Select(_ => Draw()).ToArray();
        var k = Enumerable.Range(0, s.Hkv * s.Lk * s.D).Select(_ => Draw()).ToArray();
        var v = Enumerable.Range(0, s.Hkv * s.Lk * s.Dv).Select(_ => Draw()).ToArray();
        ushort[] specials = [0x7C00, 0xFC00, 0x7E00, 0xFFFF, 0x7C01];
        Half Special() => BitConverter.UInt16BitsToHalf(specials[random.Next(specials.Length)]);
        switch (plant)
        {
            case Plant.Key: k[random.Next(k.Length)] = Special(); break;
            case Plant.Value: v[random.Next(v.Length)] = Special(); break;
            case Plant.Query: q[random.Next(q.Length)] = (Half)(random.Next(2) == 0 ? 65504 : -65536.0); break;
        }
        // A key-padding bias hides the last few keys (and, as drawn, a planted special or not).
        var bias = new float[s.H * s.Lq * s.Lk];
        int hidden = random.Next(0, 5);
        for (int row = 0; row < s.H * s.Lq; row++)
            for (int j = s.Lk - hidden; j < s.Lk; j++) bias[row * s.Lk + j] = float.NegativeInfinity;

        var (halfOutput, halfLse) = Run(backend, q, k, v, bias, s);
        var (floatOutput, floatLse) = Run(backend, Widen(q), Widen(k), Widen(v), bias, s);
        string what = $"{backend.Name} H{s.H} Hkv{s.Hkv} Lq{s.Lq} Lk{s.Lk} D{s.D} Dv{s.Dv}, planted {plant}";
        for (int n = 0; n < halfOutput.Length; n++)
        {
            Half expected = (Half)floatOutput[n];
            Assert.True(Half.IsNaN(expected) ? Half.IsNaN(halfOutput[n]) : expected.Equals(halfOutput[n]) && Half.IsNegative(expected) == Half.IsNegative(halfOutput[n]),
                $"output {n}: {halfOutput[n]} against {expected} ({what})");
        }
        Assert.True(halfLse.AsSpan().SequenceEqual(floatLse), $"LSE differs ({what})");
    }

    private static float[] Widen(Half[] values) => values.Select(x => (float)x).ToArray();

    private static (T[] Output, float[] Lse) Run<T>(CpuBackend backend, T[] q, T[] k, T[] v, float[] bias, (int H, int Hkv, int Lq, int Lk, int D, int Dv) s)
        where T : unmanaged
    {
        var output = new T[s.H * s.Lq * s.Dv];
        var lse = new float[s.H * s.Lq];
        backend.Forward(
            new ReadOnlyTensorSpan<T>(q, [1, s.H, s.Lq, s.D], []), new ReadOnlyTensorSpan<T>(k, [1, s.Hkv, s.Lk, s.D], []),
            new ReadOnlyTensorSpan<T>(v, [1, s.Hkv, s.Lk, s.Dv], []), new TensorSpan<T>(output, [1, s.H, s.Lq, s.Dv], []),
            new AttentionOptions
            {
                Bias = new ReadOnlyTensorSpan<float>(bias, [1, s.H, s.Lq, s.Lk], []),
                Lse = new TensorSpan<float>(lse, [1, s.H, s.Lq], []),
            });
        return (output, lse);
    }
}
