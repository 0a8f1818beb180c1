using System.Collections.Concurrent;
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

    // Compilations in flight in this process, so that two callers asking for one key at once (a test and the backend
    // it drives) share one NVRTC run; an entry leaves when its compile is done, and later callers read the disk.
    private readonly ConcurrentDictionary<string, Lazy<NvrtcOutput>> _inFlight = new();

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
        return Compile(source, name, options, out fromCache).Cubin!;
    }

    /// <summary>
    /// NVRTC's whole output for source + options (PTX, CUBIN, log: ptxas's report when the options ask for it), from
    /// the cache or compiled now and stored.
    /// </summary>
    public NvrtcOutput Compile(string source, string name, IReadOnlyList<string> options, out bool fromCache)
    {
        string key = Key(source, options), stem = Path.Combine(Directory, key);
        try
        {
            // The CUBIN is written last: with it, the PTX and the log are there too (unless an older entry holds only it).
            if (File.Exists(stem + ".cubin") && File.Exists(stem + ".ptx") && File.Exists(stem + ".log"))
            {
                fromCache = true;
                return new NvrtcOutput(File.ReadAllText(stem + ".ptx"), File.ReadAllBytes(stem + ".cubin"), File.ReadAllText(stem + ".log"));
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }

        fromCache = false;
        var compile = _inFlight.GetOrAdd(key, _ => new Lazy<NvrtcOutput>(() => CompileAndStore(source, name, options, stem)));
        try
        {
            return compile.Value;
        }
        finally
        {
            _inFlight.TryRemove(KeyValuePair.Create(key, compile));
        }
    }

    private NvrtcOutput CompileAndStore(string source, string name, IReadOnlyList<string> options, string stem)
    {
        var output = NvrtcCompiler.Compile(source, name, options);
        if (output.Cubin is null)
            throw new InvalidOperationException(
                $"NVRTC produced no CUBIN for {name} ({string.Join(' ', options)}); the options must name a real architecture (sm_XX).");
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            Store(stem + ".ptx", Encoding.UTF8.GetBytes(output.Ptx));
            Store(stem + ".log", Encoding.UTF8.GetBytes(output.Log));
            Store(stem + ".cubin", output.Cubin);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return output;
    }

    private static void Store(string path, byte[] bytes)
    {
        string temporary = path + $".{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        File.WriteAllBytes(temporary, bytes);
        File.Move(temporary, path, overwrite: true);
    }
}
