using System.Text;

namespace AttentionEngine.Native;

/// <summary>
/// ae_last_error's thread-local message. The UTF-8 bytes live in an array on the pinned object heap: its address never
/// moves while this thread's static refers to it, and the GC reclaims it when the thread ends (nothing to free by hand).
/// </summary>
internal static unsafe class LastError
{
    [ThreadStatic] private static byte[]? _message;

    private static readonly byte[] Empty = GC.AllocateArray<byte>(1, pinned: true);

    public static void Set(string message)
    {
        int length = Encoding.UTF8.GetByteCount(message);
        var buffer = _message;
        if (buffer is null || buffer.Length < length + 1) buffer = _message = GC.AllocateArray<byte>(length + 1, pinned: true);
        Encoding.UTF8.GetBytes(message, buffer);
        buffer[length] = 0;
    }

    /// <summary>The message's address: valid until the next <see cref="Set"/> on this thread.</summary>
    public static byte* Pointer
    {
        get
        {
            var buffer = _message ?? Empty;
            return (byte*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref buffer[0]);
        }
    }
}
