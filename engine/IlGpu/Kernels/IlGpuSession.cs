using System.Collections.Concurrent;
using AttentionEngine.Bindings.Cuda;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace AttentionEngine.Kernels.IlGpu;

/// <summary>
/// One ILGPU context and accelerator, and the kernels loaded on it (each specialisation compiled once). Disposing it
/// releases the accelerator and every buffer still on it.
/// </summary>
internal sealed class IlGpuSession : IDisposable
{
    // GPU-like shape for the CPU accelerator: 32-lane warps and 2 warps per group exercise the same warp reductions
    // and shared-memory sharing across warps as a GPU (each simulated thread is an OS thread, so groups stay small).
    private const int CpuWarpSize = 32, CpuWarpsPerGroup = 2;

    private readonly Context _context;
    private readonly ConcurrentDictionary<(Type Kernel, Type Storage, Type Codec, Type Mask, Type Score), Delegate> _kernels = new();

    private IlGpuSession(Context context, Accelerator accelerator)
    {
        _context = context;
        Accelerator = accelerator;
    }

    public Accelerator Accelerator { get; }

    public IlGpuDeviceKind Kind => Accelerator.AcceleratorType switch
    {
        AcceleratorType.Cuda => IlGpuDeviceKind.Cuda,
        AcceleratorType.OpenCL => IlGpuDeviceKind.OpenCL,
        _ => IlGpuDeviceKind.Cpu,
    };

    /// <summary>Serialises calls: one problem's buffers and launches at a time on the default stream.</summary>
    public object Gate { get; } = new();

    /// <summary>Opens the accelerator <paramref name="kind"/> asks for; throws with the devices seen when there is none.</summary>
    public static IlGpuSession Open(IlGpuDeviceKind kind)
    {
        NativeLibraries.InstallDriverFallback();
        var context = Context.Create(builder =>
        {
            if (kind is IlGpuDeviceKind.Auto or IlGpuDeviceKind.Cuda) builder.Cuda();
            if (kind is IlGpuDeviceKind.Auto or IlGpuDeviceKind.OpenCL) builder.OpenCL();
            if (kind is IlGpuDeviceKind.Auto or IlGpuDeviceKind.Cpu) builder.CPU(new CPUDevice(CpuWarpSize, CpuWarpsPerGroup, 1));
            builder.EnableAlgorithms();
        });
        try
        {
            // A context always lists a CPU device, so a forced kind picks only its own type.
            var device = kind switch
            {
                IlGpuDeviceKind.Cuda => Pick(context, AcceleratorType.Cuda),
                IlGpuDeviceKind.OpenCL => Pick(context, AcceleratorType.OpenCL),
                IlGpuDeviceKind.Cpu => Pick(context, AcceleratorType.CPU),
                _ => Pick(context, AcceleratorType.Cuda) ?? Pick(context, AcceleratorType.OpenCL) ?? Pick(context, AcceleratorType.CPU),
            } ?? throw new InvalidOperationException($"No ILGPU {kind} accelerator on this machine (devices seen: " +
                    $"{(context.Devices.Length == 0 ? "none" : string.Join(", ", context.Devices.Select(d => $"{d.AcceleratorType} {d.Name}")))}).");
            // Parallel mode explicitly: the sequential mode (Auto's choice under a debugger) measured 250x slower here.
            var accelerator = device is CPUDevice cpu ? cpu.CreateCPUAccelerator(context, CPUAcceleratorMode.Parallel) : device.CreateAccelerator(context);
            return new IlGpuSession(context, accelerator);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    private static Device? Pick(Context context, AcceleratorType type) => context.Devices.FirstOrDefault(d => d.AcceleratorType == type);

    /// <summary>Warps per group for a launch: up to 4, within the accelerator's group size.</summary>
    public int WarpsPerGroup => Math.Max(1, Math.Min(4, Accelerator.MaxNumThreadsPerGroup / Accelerator.WarpSize));

    /// <summary>The loaded kernel for one specialisation, compiled on first use.</summary>
    public TDelegate Kernel<TDelegate>(Type kernel, Type storage, Type codec, Type mask, Type score, Func<Accelerator, TDelegate> load)
        where TDelegate : Delegate =>
        (TDelegate)_kernels.GetOrAdd((kernel, storage, codec, mask, score), _ => load(Accelerator));

    public override string ToString() => $"{Accelerator.AcceleratorType} {Accelerator.Name}";

    public void Dispose()
    {
        Accelerator.Dispose();
        _context.Dispose();
    }
}
