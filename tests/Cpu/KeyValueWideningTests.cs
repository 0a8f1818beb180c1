using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// The tile kernel's once-per-call float copies of K and V (<see cref="KeyValueWidening"/>) change no bit of any result
/// against staging every block per tile, over generated problems (Half, BFloat16, and float in strided layouts), hostile
/// values included. The property suites check the results themselves against the oracle with the copies on.
/// </summary>
public class KeyValueWideningTests
{
    private static readonly ProblemLimits Limits = new() { MaxLength = 300, MaxCost = 3e7 };

    [Fact] public void Copies_change_no_bit_f16() => Check<Half>(40, 21);
    [Fact] public void Copies_change_no_bit_bf16() => Check<BFloat16>(40, 22);
    [Fact] public void Copies_change_no_bit_f32() => Check<float>(40, 23);

    private static void Check<T>(int count, ulong seed) where T : unmanaged
    {
        int widened = 0;
        foreach (var spec in AttentionGen.Sample(count, seed, Limits))
        {
            using var problem = AttentionProblem<T>.Create(spec);
            AttentionResult with, without;
            lock (Toggle)
            {
                with = problem.Run(Attention.Using(Backend.Cpu));
                KeyValueWidening.Enabled = false;
                try { without = problem.Run(Attention.Using(Backend.Cpu)); }
                finally { KeyValueWidening.Enabled = true; }
            }
            SameBits.Equal(with, without, spec.ToString());
            if (problem.Shape.QueryLength > 8) widened++;
        }
        Assert.True(widened >= count / 4, $"only {widened} of {count} problems took the tile kernel");
    }

    private static readonly object Toggle = new();
}
