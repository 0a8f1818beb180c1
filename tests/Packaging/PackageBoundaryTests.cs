using System.Reflection;

namespace AttentionEngine.Tests;

/// <summary>What each package brings: the core (engine, kernels, bindings) only System.Numerics.Tensors; FsCheck comes
/// with AttentionEngine.Testing and ILGPU with AttentionEngine.IlGpu, whose backend registers itself when referenced.</summary>
public class PackageBoundaryTests
{
    [Fact]
    public void The_core_assemblies_reference_neither_FsCheck_nor_ILGPU()
    {
        Assembly[] core = [typeof(Attention).Assembly, typeof(BFloat16).Assembly, typeof(Bindings.Cuda.CudaDevice).Assembly];
        foreach (var assembly in core)
        foreach (var reference in assembly.GetReferencedAssemblies())
            Assert.False(reference.Name is "FsCheck" or "FSharp.Core" or "ILGPU" or "ILGPU.Algorithms",
                $"{assembly.GetName().Name} references {reference.Name}");
    }

    [Fact]
    public void The_testing_and_ilgpu_packages_carry_their_dependencies()
    {
        Assert.Contains(typeof(Testing.ToleranceRule).Assembly.GetReferencedAssemblies(), r => r.Name == "FsCheck");
        Assert.Contains(typeof(IlGpuBackend).Assembly.GetReferencedAssemblies(), r => r.Name == "ILGPU");
    }

    [Fact]
    public void A_referenced_IlGpu_package_registers_its_backend_before_Cuda()
    {
        // Custom backends another test registers for a moment are not this test's business.
        var kinds = Attention.Backends.Where(b => b.Kind != Backend.Custom).Select(b => b.Kind).ToList();
        Assert.Equal([Backend.Cpu, Backend.Reference, Backend.IlGpu, Backend.Cuda], kinds);
        Assert.Same(IlGpuBackend.Default, Attention.Using(Backend.IlGpu));
    }
}
