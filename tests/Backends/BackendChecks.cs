using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// The checks every backend's suite runs on a drawn problem, in one place: the CPU paths, ILGPU, CUDA (GPU or
/// emulator) and the dropout suites call these, so a backend is held to exactly what the others are.
/// </summary>
internal static class BackendChecks
{
    /// <summary>One drawn problem on <paramref name="backend"/>: the tolerance rule against the oracle and every invariant.</summary>
    public static void CheckDrawnProblem<T>(AttentionBackend backend, ProblemSpec spec) where T : unmanaged
    {
        using var problem = AttentionProblem<T>.Create(spec);
        var verdict = CaseVerifier.VerifyBackend(backend, problem, spec.DataSeed);
        Assert.True(verdict.Passed, $"{backend.Name} {ElementTypes.ShortName<T>()} {spec}: {string.Join("; ", verdict.Failures)}");
    }
}
