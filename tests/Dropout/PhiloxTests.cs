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

    /// <summary>Eight counters (c[word][lane]) through the lane generator; the words per lane, in lane order.</summary>
    private static unsafe uint[][] Lanes(uint[][] c, uint k0, uint k1)
    {
        var words = new Vector256<ulong>[8];
        fixed (uint* c0 = c[0]) fixed (uint* c1 = c[1]) fixed (uint* c2 = c[2]) fixed (uint* c3 = c[3])
        {
            PhiloxLanes.Schedule(k0, k1, out var keys0, out var keys1);
            PhiloxLanes.Generate(
                PhiloxLanes.CounterWords(c0, false), PhiloxLanes.CounterWords(c1, false), PhiloxLanes.CounterWords(c2, false), PhiloxLanes.CounterWords(c3, false),
                PhiloxLanes.CounterWords(c0, true), PhiloxLanes.CounterWords(c1, true), PhiloxLanes.CounterWords(c2, true), PhiloxLanes.CounterWords(c3, true),
                keys0, keys1, out words[0], out words[1], out words[2], out words[3], out words[4], out words[5], out words[6], out words[7]);
        }
        var result = new uint[4][];
        for (int w = 0; w < 4; w++)
        {
            var packed = PhiloxLanes.LowHalves(words[w], words[4 + w]);
            result[w] = Enumerable.Range(0, 8).Select(lane => packed[lane]).ToArray();
        }
        return result;
    }

    [Theory, MemberData(nameof(KnownAnswers))]
    public void Lane_generator_reproduces_the_published_vectors_in_every_lane(uint[] counter, uint[] key, uint[] expected)
    {
        if (!PhiloxLanes.IsSupported) Assert.Skip("AVX2 is not available: the scalar generator serves every call");
        var words = Lanes(counter.Select(w => Enumerable.Repeat(w, 8).ToArray()).ToArray(), key[0], key[1]);
        for (int lane = 0; lane < 8; lane++)
            Assert.Equal(expected, new[] { words[0][lane], words[1][lane], words[2][lane], words[3][lane] });
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
            var words = Lanes(c, k0, k1);
            for (int lane = 0; lane < 8; lane++)
            {
                var expected = Philox4x32.Generate(c[0][lane], c[1][lane], c[2][lane], c[3][lane], k0, k1);
                Assert.Equal(expected, (words[0][lane], words[1][lane], words[2][lane], words[3][lane]));
            }
        }
    }

    /// <summary>
    /// The tile generator against the scalar definition for blocks that start anywhere (the decode kernel's splits do)
    /// and rows that fill a vector or not: every multiplier is DropoutStream.Multiplier of its (row, key).
    /// </summary>
    [Theory]
    [InlineData(0, 64, 24)]
    [InlineData(5, 13, 10)]
    [InlineData(7, 1, 3)]
    [InlineData(62, 70, 16)]
    public unsafe void Tile_multipliers_equal_the_scalar_definition_wherever_the_block_starts(int firstKey, int keyCount, int rows)
    {
        var dropout = new DropoutStream(0.4, seed: 99, offset: (3UL << 32) | 8);
        var queries = Enumerable.Range(0, rows).Select(r => 1000 + 7 * r).ToArray();
        var streams = Enumerable.Range(0, rows).Select(r => (uint)(r % 3)).ToArray();
        var m = new float[keyCount * rows];
        fixed (int* q = queries) fixed (uint* st = streams) fixed (float* mp = m)
            DropoutTile.Multipliers(dropout, q, st, rows, firstKey, keyCount, mp, rows);
        for (int j = 0; j < keyCount; j++)
        for (int r = 0; r < rows; r++)
            Assert.Equal(dropout.Multiplier(streams[r], queries[r], firstKey + j), m[j * rows + r]);
    }
}
