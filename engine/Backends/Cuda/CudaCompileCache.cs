using System.Security.Cryptography;
using System.Text;
using AttentionEngine.Bindings.Cuda;

namespace AttentionEngine.Kernels.Cuda;

/// <summary>
/// NVRTC output cached on disk, keyed by a hash of the source, the options (which name the GPU architecture) and the
/// NVRTC version, so each kernel variant compiles once per machine. The directory is ATTENTION_ENGINE_CACHE, else
/// ~/.cache/attention-engine/cuda. Files are written to a temporary name and renamed, so concurrent processes never
/// read a half-written image; an unreadable cache only costs a recompile.
/// </summary>
internal sealed class CudaCompileCache(string directory)
{
    public static CudaCompileCache Default { get; } = new(DefaultDirectory());

    public string Directory { get; } = directory;

    private static string DefaultDirectory() =>
        Environment.GetEnvironmentVariable("ATTENTION_ENGINE_CACHE") is { Length: > 0 } configured
            ? configured
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "attention-engine", "cuda");

    /// <summary>The cache key: hex SHA-256 of NVRTC's version, the options and the source.</summary>
    public static string Key(string source, IReadOnlyList<string> options)
    {
        var text = $"{NvrtcCompiler.Version}\n{string.Join('\n', options)}\n{source}";
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
    }

    /// <summary>The CUBIN for source + options, from the cache or compiled now (and stored).</summary>
    public byte[] Cubin(string source, string name, IReadOnlyList<string> options, out bool fromCache)
    {
        string path = Path.Combine(Directory, Key(source, options) + ".cubin");
        try
        {
            if (File.Exists(path))
            {
                fromCache = true;
                return File.ReadAllBytes(path);
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }

        var output = NvrtcCompiler.Compile(source, name, options);
        fromCache = false;
        var cubin = output.Cubin ?? throw new InvalidOperationException(
            $"NVRTC produced no CUBIN for {name} ({string.Join(' ', options)}); the options must name a real architecture (sm_XX).");
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            string temporary = path + $".{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
            File.WriteAllBytes(temporary, cubin);
            File.Move(temporary, path, overwrite: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return cubin;
    }
}
