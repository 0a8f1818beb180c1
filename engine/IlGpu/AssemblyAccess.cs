using System.Runtime.CompilerServices;

// The kernel types are internal: ILGPU compiles them through a dynamic assembly of its own, which needs to see them.
[assembly: InternalsVisibleTo(ILGPU.Context.RuntimeAssemblyName)]
