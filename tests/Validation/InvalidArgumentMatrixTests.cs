using System.Numerics.Tensors;

namespace AttentionEngine.Tests;

/// <summary>
/// Every public entry point against every class of invalid argument: each must be an <see cref="ArgumentException"/>
/// whose ParamName is the argument at fault, raised before any kernel runs (the outputs stay untouched). The count of
/// (entry point, class) pairs checked is written to the test output.
/// </summary>
[Collection(nameof(IlGpuCpuAccelerator))]
public class InvalidArgumentMatrixTests(IlGpuCpuAccelerator accelerator)
{
    /// <summary>The arrays and shapes of one call; each invalid class changes one thing.</summary>
    private sealed class Parts
    {
        public float[] Q = new float[2 * 4 * 5 * 8], K = new float[2 * 2 * 6 * 8], V = new float[2 * 2 * 6 * 8], Output = new float[2 * 4 * 5 * 8];
        public nint[] QLengths = [2, 4, 5, 8], KLengths = [2, 2, 6, 8], VLengths = [2, 2, 6, 8], OutputLengths = [2, 4, 5, 8];
        public nint[]? OutputStrides;
        public bool OutputAliasesQ;
        public float? Scale;
        public int? Threads;
        public ScorePrecision ScorePrecision;
        public float[]? Bias; public nint[]? BiasLengths;
        public bool[]? Keep; public nint[]? KeepLengths;
        public float[]? Lse; public nint[]? LseLengths; public bool LseAliasesOutput;
        public float[]? Weights; public nint[]? WeightsLengths;
        // Backward
        public float[] SavedLse = new float[2 * 4 * 5]; public nint[] SavedLseLengths = [2, 4, 5];
        public float[] DOutput = new float[2 * 4 * 5 * 8]; public nint[] DOutputLengths = [2, 4, 5, 8];
        public float[] DQ = new float[2 * 4 * 5 * 8], DK = new float[2 * 2 * 6 * 8], DV = new float[2 * 2 * 6 * 8];
        public nint[] DQLengths = [2, 4, 5, 8], DKLengths = [2, 2, 6, 8], DVLengths = [2, 2, 6, 8];
        public bool DQAliasesQ, DKAliasesDQ;
        public float[]? DBias; public nint[]? DBiasLengths;

        public ReadOnlyTensorSpan<float> QSpan => new(Q, QLengths, default);
        public ReadOnlyTensorSpan<float> KSpan => new(K, KLengths, default);
        public ReadOnlyTensorSpan<float> VSpan => new(V, VLengths, default);
        public TensorSpan<float> OutputSpan => OutputAliasesQ ? new(Q, QLengths, default) : new(Output, OutputLengths, OutputStrides ?? default);

        public AttentionOptions Options() => new()
        {
            Scale = Scale,
            MaxDegreeOfParallelism = Threads,
            ScorePrecision = ScorePrecision,
            Bias = Bias is null ? default : new ReadOnlyTensorSpan<float>(Bias, BiasLengths!, default),
            KeepMask = Keep is null ? default : new ReadOnlyTensorSpan<bool>(Keep, KeepLengths!, default),
            Lse = LseAliasesOutput ? new TensorSpan<float>(Output, [2, 4, 5], default) : Lse is null ? default : new TensorSpan<float>(Lse, LseLengths!, default),
            Weights = Weights is null ? default : new TensorSpan<float>(Weights, WeightsLengths!, default),
        };

        public void Backward(AttentionBackend backend) => backend.Backward<float>(QSpan, KSpan, VSpan, new ReadOnlyTensorSpan<float>(Output, OutputLengths, default),
            new ReadOnlyTensorSpan<float>(SavedLse, SavedLseLengths, default), new ReadOnlyTensorSpan<float>(DOutput, DOutputLengths, default),
            DQAliasesQ ? new TensorSpan<float>(Q, QLengths, default) : new TensorSpan<float>(DQ, DQLengths, default),
            DKAliasesDQ ? new TensorSpan<float>(DQ, DKLengths, default) : new TensorSpan<float>(DK, DKLengths, default),
            new TensorSpan<float>(DV, DVLengths, default), Options(), DBias is null ? default : new TensorSpan<float>(DBias, DBiasLengths!, default));
    }

    /// <summary>Invalid classes a forward call can have, with the parameter each must name.</summary>
    private static IEnumerable<(string Class, string Param, Action<Parts> Break)> ForwardClasses() =>
    [
        ("q of rank 3", "q", p => { p.QLengths = [8, 5, 8]; }),
        ("k of length 0", "k", p => { p.KLengths = [2, 2, 0, 8]; p.K = []; }),
        ("v sequence unlike k's", "v", p => { p.VLengths = [2, 2, 5, 8]; }),
        ("output of the wrong shape", "output", p => { p.OutputLengths = [2, 4, 5, 7]; }),
        ("query heads not a multiple of KV heads", "q", p => { p.QLengths = [2, 3, 5, 8]; p.OutputLengths = [2, 3, 5, 8]; }),
        ("NaN scale", "options.Scale", p => p.Scale = float.NaN),
        ("infinite scale", "options.Scale", p => p.Scale = float.PositiveInfinity),
        ("zero threads", "options.MaxDegreeOfParallelism", p => p.Threads = 0),
        ("undefined score precision", "options.ScorePrecision", p => p.ScorePrecision = (ScorePrecision)7),
        ("bias that does not broadcast", "options.Bias", p => { p.Bias = new float[3 * 6]; p.BiasLengths = [3, 6]; }),
        ("zero-length bias", "options.Bias", p => { p.Bias = []; p.BiasLengths = [2, 4, 5, 0]; }),
        ("keep-mask that does not broadcast", "options.KeepMask", p => { p.Keep = new bool[7]; p.KeepLengths = [7]; }),
        ("zero-length keep-mask", "options.KeepMask", p => { p.Keep = []; p.KeepLengths = [0]; }),
        ("LSE of the wrong shape", "options.Lse", p => { p.Lse = new float[2 * 4 * 6]; p.LseLengths = [2, 4, 6]; }),
        ("weights of the wrong shape", "options.Weights", p => { p.Weights = new float[2 * 4 * 5 * 5]; p.WeightsLengths = [2, 4, 5, 5]; }),
        ("output that is q", "output", p => p.OutputAliasesQ = true),
        ("LSE inside the output", "options.Lse", p => p.LseAliasesOutput = true),
        ("output whose elements overlap", "output", p => { p.Output = new float[8]; p.OutputStrides = [0, 0, 0, 1]; }),
    ];

    /// <summary>Invalid classes only a backward call has.</summary>
    private static IEnumerable<(string Class, string Param, Action<Parts> Break)> BackwardClasses() =>
    [
        ("saved LSE of the wrong shape", "lse", p => { p.SavedLseLengths = [2, 4, 4]; }),
        ("dOutput of the wrong shape", "dOutput", p => { p.DOutputLengths = [2, 4, 5, 7]; }),
        ("dQ of the wrong shape", "dQ", p => { p.DQLengths = [2, 4, 4, 8]; }),
        ("dK of the wrong shape", "dK", p => { p.DKLengths = [2, 2, 5, 8]; }),
        ("dV of the wrong shape", "dV", p => { p.DVLengths = [2, 2, 6, 7]; }),
        ("dQ that is q", "dQ", p => p.DQAliasesQ = true),
        ("dK inside dQ", "dK", p => { p.DKAliasesDQ = true; }),
        ("dBias without a bias", "dBias", p => { p.DBias = new float[5 * 6]; p.DBiasLengths = [5, 6]; }),
        ("dBias broadcast unlike the bias", "dBias", p => { p.Bias = new float[5 * 6]; p.BiasLengths = [5, 6]; p.DBias = new float[2 * 5 * 6]; p.DBiasLengths = [2, 1, 5, 6]; }),
    ];

    private IEnumerable<(string Name, Action<Parts> Call)> ForwardEntryPoints()
    {
        yield return ("Attention.Forward", p => Attention.Forward<float>(p.QSpan, p.KSpan, p.VSpan, p.OutputSpan, p.Options()));
        yield return ("Reference", p => ReferenceBackend.Instance.Forward<float>(p.QSpan, p.KSpan, p.VSpan, p.OutputSpan, p.Options()));
        yield return ("Cpu", p => CpuBackend.Default.Forward<float>(p.QSpan, p.KSpan, p.VSpan, p.OutputSpan, p.Options()));
        yield return ("IlGpu", p => accelerator.Backend.Forward<float>(p.QSpan, p.KSpan, p.VSpan, p.OutputSpan, p.Options()));
        if (CudaBackend.Default.IsAvailable)
            yield return ("Cuda", p => CudaBackend.Default.Forward<float>(p.QSpan, p.KSpan, p.VSpan, p.OutputSpan, p.Options()));
        yield return ("FlexAttention (Cpu)", p => FlexAttention.WithScore(new TanhSoftcapScore(30), CpuBackend.Default).Forward<float>(p.QSpan, p.KSpan, p.VSpan, p.OutputSpan, p.Options()));
        yield return ("FlexAttention (Reference)", p => FlexAttention.WithScore(new TanhSoftcapScore(30), ReferenceBackend.Instance).Forward<float>(p.QSpan, p.KSpan, p.VSpan, p.OutputSpan, p.Options()));
    }

    private static IEnumerable<(string Name, Action<Parts> Call)> BackwardEntryPoints()
    {
        yield return ("Attention.Backward", p => p.Backward(CpuBackend.Default));
        yield return ("Reference backward", p => p.Backward(ReferenceBackend.Instance));
    }

    [Fact]
    public void Every_entry_point_names_every_invalid_argument()
    {
        int checkedPairs = 0;
        var failures = new List<string>();
        void Check(string entry, Action<Parts> call, string @class, string param, Action<Parts> breakIt)
        {
            var parts = new Parts();
            breakIt(parts);
            Array.Fill(parts.Output, 42f);
            try
            {
                call(parts);
                failures.Add($"{entry}, {@class}: no exception");
            }
            catch (ArgumentException e) when (e.ParamName == param)
            {
                if (!parts.OutputAliasesQ && !parts.LseAliasesOutput && parts.OutputStrides is null && parts.Output.Any(x => x != 42f))
                    failures.Add($"{entry}, {@class}: the output was written before the argument was refused");
            }
            catch (Exception e)
            {
                failures.Add($"{entry}, {@class}: {e.GetType().Name} (ParamName {(e as ArgumentException)?.ParamName ?? "-"}): {e.Message}");
            }
            checkedPairs++;
        }
        foreach (var (entry, call) in ForwardEntryPoints())
        foreach (var (@class, param, breakIt) in ForwardClasses())
            Check(entry, call, @class, param, breakIt);
        // The backward reads the saved output and takes no LSE or weights destination: the destination classes are its own.
        string[] forwardDestinations = ["LSE of the wrong shape", "weights of the wrong shape", "output that is q", "LSE inside the output", "output whose elements overlap"];
        foreach (var (entry, call) in BackwardEntryPoints())
        foreach (var (@class, param, breakIt) in ForwardClasses().Where(c => !forwardDestinations.Contains(c.Class)).Concat(BackwardClasses()))
            Check(entry, call, @class, param, breakIt);
        Assert.True(failures.Count == 0, string.Join(Environment.NewLine, failures));
        TestContext.Current.TestOutputHelper?.WriteLine($"invalid arguments: {checkedPairs} (entry point, class) pairs, each an ArgumentException naming its parameter");
        if (Environment.GetEnvironmentVariable("ATTENTION_ENGINE_HOSTILE_REPORT") is { Length: > 0 } path)
            lock (typeof(HostileInputSuite)) File.AppendAllText(path, $"invalid arguments: {checkedPairs} (entry point, class) pairs, 0 defects{Environment.NewLine}");
    }
}
