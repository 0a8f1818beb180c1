using System.Runtime.Intrinsics;
using AttentionEngine.Kernels.Dropout;

namespace AttentionEngine.Tests.Dropout;

/// <summary>Philox4x32-10 against Random123's published known-answer vectors, and the eight-lane version against the scalar one.</summary>
public class PhiloxTests
{
    // Random123 kat_vectors, the three "philox4x32 10" lines: counter (4 words), key (2 words), expected (4 words).
    public static TheoryData<uint[], uint[], uint[]> KnownAnswers => new()
    {
        { [0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8] },
        { [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd] },
        { [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1] },
    };

    [Theory, MemberData(nameof(KnownAnswers))]
    public void Scalar_generator_reproduces_the_published_vectors(uint[] counter, uint[] key, uint[] expected)
    {
        var (w0, w1, w2, w3) = Philox4x32.Generate(counter[0], counter[1], counter[2], counter[3], key[0], key[1]);
        Assert.Equal(expected, new[] { w0, w1, w2, w3 });
    }

    [Theory, MemberData(nameof(KnownAnswers))]
    public void Lane_generator_reproduces_the_published_vectors_in_every_lane(uint[] counter, uint[] key, uint[] expected)
    {
        if (!PhiloxLanes.IsSupported) Assert.Skip("AVX2 is not available: the scalar generator serves every call");
        PhiloxLanes.Generate(Vector256.Create(counter[0]), Vector256.Create(counter[1]), Vector256.Create(counter[2]), Vector256.Create(counter[3]),
            key[0], key[1], out var w0, out var w1, out var w2, out var w3);
        for (int lane = 0; lane < 8; lane++)
            Assert.Equal(expected, new[] { w0[lane], w1[lane], w2[lane], w3[lane] });
    }

    [Fact]
    public void Lane_generator_equals_the_scalar_one_on_random_counters_lane_by_lane()
    {
        if (!PhiloxLanes.IsSupported) Assert.Skip("AVX2 is not available: the scalar generator serves every call");
        var random = new Random(7);
        uint Next() => (uint)random.NextInt64(0, 1L << 32);
        for (int trial = 0; trial < 2000; trial++)
        {
            var c = new uint[4][];
            for (int w = 0; w < 4; w++) c[w] = Enumerable.Range(0, 8).Select(_ => Next()).ToArray();
            uint k0 = Next(), k1 = Next();
            PhiloxLanes.Generate(Vector256.Create(c[0]), Vector256.Create(c[1]), Vector256.Create(c[2]), Vector256.Create(c[3]), k0, k1,
                out var w0, out var w1, out var w2, out var w3);
            for (int lane = 0; lane < 8; lane++)
            {
                var expected = Philox4x32.Generate(c[0][lane], c[1][lane], c[2][lane], c[3][lane], k0, k1);
                Assert.Equal(expected, (w0[lane], w1[lane], w2[lane], w3[lane]));
            }
        }
    }
}
