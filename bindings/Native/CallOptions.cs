namespace AttentionEngine.Native;

/// <summary>
/// ae_options read and checked: every field either takes effect or, when it cannot, fails the call naming it. Nothing
/// the caller set is ignored (a window without AE_MASK_WINDOW, a scale without has_scale, an unknown trailing field).
/// </summary>
internal readonly unsafe struct CallOptions
{
    public float? Scale { get; private init; }
    public Mask? Mask { get; private init; }
    public int? MaxThreads { get; private init; }
    public NativeBackend Backend { get; private init; }
    public DLTensor* Bias { get; private init; }
    public DLTensor* KeepMask { get; private init; }
    public DLTensor* Lse { get; private init; }
    public DLTensor* Weights { get; private init; }
    public AttentionDropout Dropout { get; private init; }

    /// <summary>The largest ae_options this library reads, and the most trailing bytes it checks for zero.</summary>
    private const int MaxStructSize = 4096;

    private static readonly Mask CausalTopLeft = AttentionEngine.Mask.Causal(CausalAlignment.TopLeft);
    private static readonly Mask CausalBottomRight = AttentionEngine.Mask.Causal(CausalAlignment.BottomRight);

    public static CallOptions Read(NativeOptions* given)
    {
        if (given is null) return default;
        uint size = given->StructSize;
        if (size < NativeOptions.FirstSize || size > MaxStructSize)
            throw new NativeCallException(NativeStatus.AbiMismatch,
                $"options->struct_size is {size}; this library's ae_options (ABI version {Exports.AbiVersion}) is {NativeOptions.FirstSize} to {sizeof(NativeOptions)} bytes " +
                "(start from ae_options_default(), which sets it, and compile against this library's attention_engine.h).");
        // A newer header's fields this library does not know must be zero: a set one would otherwise be ignored.
        byte* trailing = (byte*)given + sizeof(NativeOptions);
        for (int i = 0; i < size - sizeof(NativeOptions); i++)
            if (trailing[i] != 0)
                throw new NativeCallException(NativeStatus.AbiMismatch,
                    $"options sets byte {sizeof(NativeOptions) + i} of {size}, a field this library (ABI version {Exports.AbiVersion}, {sizeof(NativeOptions)}-byte ae_options) does not know; use a newer library or leave it zero.");
        // An older header's smaller struct: the fields it does not have read as zero (their defaults).
        NativeOptions copy = default;
        Buffer.MemoryCopy(given, &copy, sizeof(NativeOptions), Math.Min(size, (uint)sizeof(NativeOptions)));
        var options = &copy;
        if (options->Reserved != 0)
            throw new ArgumentException($"options->reserved is {options->Reserved}; it must be 0.", "options->reserved");
        if (options->Reserved2 != 0)
            throw new ArgumentException($"options->reserved2 is {options->Reserved2}; it must be 0.", "options->reserved2");

        return new CallOptions
        {
            Scale = ReadScale(options),
            Mask = ReadMask(options),
            MaxThreads = options->MaxThreads switch
            {
                0 => null,
                > 0 and var t => t,
                var t => throw new ArgumentException($"options->max_threads is {t}; expected 0 (all cores) or a positive count.", "options->max_threads"),
            },
            Backend = Enum.IsDefined((NativeBackend)options->Backend)
                ? (NativeBackend)options->Backend
                : throw new ArgumentException($"options->backend is {options->Backend}; expected AE_BACKEND_AUTO (0), _CPU (1), _REFERENCE (2) or _CUDA (3).", "options->backend"),
            Bias = options->Bias,
            KeepMask = options->KeepMask,
            Lse = options->Lse,
            Weights = options->Weights,
            Dropout = ReadDropout(options),
        };
    }

    /// <summary>The dropout fields: seed, offset and in-weights only with a probability, so none is ignored.</summary>
    private static AttentionDropout ReadDropout(NativeOptions* options)
    {
        double p = options->Dropout;
        if (p == 0)
        {
            if (options->DropoutSeed != 0 || options->DropoutOffset != 0 || options->DropoutInWeights != 0)
                throw new ArgumentException("options->dropout_seed, dropout_offset or dropout_in_weights is set but options->dropout is 0, so it would be ignored.", "options->dropout");
            return default;
        }
        if (!(p > 0 && p < 1))
            throw new ArgumentException($"options->dropout is {p}; expected a probability in [0, 1).", "options->dropout");
        if (options->DropoutInWeights is not (0 or 1))
            throw new ArgumentException($"options->dropout_in_weights is {options->DropoutInWeights}; expected 0 or 1.", "options->dropout_in_weights");
        return new AttentionDropout(p, options->DropoutSeed, options->DropoutOffset) { InWeights = options->DropoutInWeights == 1 };
    }

    private static float? ReadScale(NativeOptions* options)
    {
        if (options->HasScale != 0) return options->Scale;
        if (BitConverter.SingleToInt32Bits(options->Scale) != 0)
            throw new ArgumentException(
                $"options->scale is {options->Scale} but options->has_scale is 0, so it would be ignored; set has_scale to use it, or leave scale 0 for 1/sqrt(D).", "options->scale");
        return null;
    }

    private static Mask? ReadMask(NativeOptions* options)
    {
        uint terms = options->Mask;
        if ((terms & ~(NativeOptions.MaskCausal | NativeOptions.MaskWindow)) != 0)
            throw new ArgumentException($"options->mask is 0x{terms:x}; expected AE_MASK_NONE or a combination of AE_MASK_CAUSAL (1) and AE_MASK_WINDOW (2).", "options->mask");
        var alignment = options->Alignment switch
        {
            0 => CausalAlignment.TopLeft,
            1 => CausalAlignment.BottomRight,
            var a => throw new ArgumentException($"options->alignment is {a}; expected AE_ALIGN_TOP_LEFT (0) or AE_ALIGN_BOTTOM_RIGHT (1).", "options->alignment"),
        };
        bool window = (terms & NativeOptions.MaskWindow) != 0;
        if (!window)
        {
            // 0 (a zeroed struct) and -1 (ae_options_default) both mean "not set" here; anything else was meant for a window.
            if (options->WindowLeft is not (0 or -1) || options->WindowRight is not (0 or -1))
                throw new ArgumentException(
                    $"options->window_left/right are {options->WindowLeft}/{options->WindowRight} but options->mask has no AE_MASK_WINDOW, so they would be ignored.", "options->mask");
        }
        if (terms == 0)
        {
            if (alignment != CausalAlignment.TopLeft)
                throw new ArgumentException("options->alignment is AE_ALIGN_BOTTOM_RIGHT but options->mask has no causal or window term, so it would be ignored.", "options->alignment");
            return null;
        }
        Mask? mask = (terms & NativeOptions.MaskCausal) == 0 ? null
            : alignment == CausalAlignment.TopLeft ? CausalTopLeft : CausalBottomRight;
        if (window)
        {
            var band = AttentionEngine.Mask.SlidingWindow(WindowExtent(options->WindowLeft, "options->window_left"),
                WindowExtent(options->WindowRight, "options->window_right"), alignment);
            mask = mask is null ? band : mask & band;
        }
        return mask;
    }

    private static int? WindowExtent(long value, string name) => value switch
    {
        -1 => null,
        >= 0 and <= int.MaxValue => (int)value,
        _ => throw new ArgumentException($"{name} is {value}; expected -1 (unbounded) or 0..{int.MaxValue}.", name),
    };

    /// <summary>The managed backend an ae_backend names (Auto: null, the automatic choice).</summary>
    public AttentionBackend? ManagedBackend => Backend switch
    {
        NativeBackend.Cpu => Attention.Using(AttentionEngine.Backend.Cpu),
        NativeBackend.Reference => Attention.Using(AttentionEngine.Backend.Reference),
        NativeBackend.Cuda => Attention.Using(AttentionEngine.Backend.Cuda),
        _ => null,
    };
}
