using AttentionEngine;

// The README example on the package, then what the package gives a user who referenced nothing else.
var (output, lse) = AttentionEngine.Tests.ReadmeExample.Run();
if (output.Length != 8 * 128 * 64 || !output.All(float.IsFinite) || !lse.All(float.IsFinite) || output.All(x => x == 0))
{
    Console.Error.WriteLine("package consumer: the README example gave an unexpected result");
    return 1;
}
string backends = string.Join(", ", Attention.Backends.Select(b => b.Kind));
if (backends != "Cpu, Reference, Cuda")
{
    Console.Error.WriteLine($"package consumer: the core package alone should offer Cpu, Reference, Cuda; it offers {backends}");
    return 1;
}
Console.WriteLine($"package consumer: the README example ran on the AttentionEngine package; backends {backends}");
return 0;
