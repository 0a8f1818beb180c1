namespace AttentionEngine.Native;

/// <summary>ae_status of attention_engine.h.</summary>
internal enum NativeStatus
{
    Ok = 0,
    InvalidArgument = 1,
    NullPointer = 2,
    UnsupportedDtype = 3,
    UnsupportedDevice = 4,
    NotSupported = 5,
    BackendUnavailable = 6,
    AbiMismatch = 7,
    OutOfMemory = 8,
    Internal = 9,
}

/// <summary>
/// An error the C ABI detects itself (a NULL pointer, a dtype or device it cannot take), with the status it maps
/// to. The managed API's own exceptions map by type (<see cref="StatusMapping"/>).
/// </summary>
internal sealed class NativeCallException(NativeStatus status, string message) : Exception(message)
{
    public NativeStatus Status { get; } = status;
}

/// <summary>Exceptions to statuses: what an exported function returns instead of letting one cross the boundary.</summary>
internal static class StatusMapping
{
    public static NativeStatus Of(Exception exception) => exception switch
    {
        NativeCallException native => native.Status,
        ArgumentException => NativeStatus.InvalidArgument,
        NotSupportedException => NativeStatus.NotSupported,
        // The managed API says "backend X is not available: why" with InvalidOperationException.
        InvalidOperationException => NativeStatus.BackendUnavailable,
        OutOfMemoryException or InsufficientExecutionStackException => NativeStatus.OutOfMemory,
        _ => NativeStatus.Internal,
    };

    public static string Message(Exception exception) => exception switch
    {
        NativeCallException or ArgumentException or NotSupportedException or InvalidOperationException or OutOfMemoryException => exception.Message,
        // Anything else is a bug of ours: keep the type and where it happened for the report.
        _ => $"internal error ({exception.GetType().FullName}): {exception.Message}{Environment.NewLine}{exception.StackTrace}",
    };

    /// <summary>The enum name of a status as a NUL-terminated static string (no allocation, never moves).</summary>
    public static ReadOnlySpan<byte> Name(int status) => status switch
    {
        0 => "AE_OK\0"u8,
        1 => "AE_ERROR_INVALID_ARGUMENT\0"u8,
        2 => "AE_ERROR_NULL_POINTER\0"u8,
        3 => "AE_ERROR_UNSUPPORTED_DTYPE\0"u8,
        4 => "AE_ERROR_UNSUPPORTED_DEVICE\0"u8,
        5 => "AE_ERROR_NOT_SUPPORTED\0"u8,
        6 => "AE_ERROR_BACKEND_UNAVAILABLE\0"u8,
        7 => "AE_ERROR_ABI_MISMATCH\0"u8,
        8 => "AE_ERROR_OUT_OF_MEMORY\0"u8,
        9 => "AE_ERROR_INTERNAL\0"u8,
        _ => "AE_UNKNOWN_STATUS\0"u8,
    };
}
