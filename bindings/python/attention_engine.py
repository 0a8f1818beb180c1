"""AttentionEngine from Python through its C ABI, with ctypes and NumPy only.

Arrays cross as DLPack DLTensors over their own memory (no copy): built here from a NumPy array's pointer, shape and
strides, or taken from the array's own ``__dlpack__()`` capsule. ``forward`` and ``backward`` write into arrays the
caller owns; ``attention`` allocates the output for you. Errors raise ``AttentionEngineError`` with the status name and
the library's message.

The library is found from ATTENTION_ENGINE_LIBRARY, else the folder `dotnet publish bindings/Native -c Release -o
out/native` writes (out/native beside the repository root), else the system's search path.
"""
import ctypes
import os
import sys

import numpy as np

# ---- DLPack 1.x (the layout attention_engine.h declares) ----
kDLCPU, kDLCUDA = 1, 2
kDLInt, kDLUInt, kDLFloat, kDLBfloat, kDLBool = 0, 1, 2, 4, 6


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class DLManagedTensor(ctypes.Structure):
    # Only the leading DLTensor is read; the producer's context and deleter stay the producer's.
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


# ---- ae_options and the statuses ----
AE_MASK_NONE, AE_MASK_CAUSAL, AE_MASK_WINDOW = 0, 1, 2
AE_ALIGN_TOP_LEFT, AE_ALIGN_BOTTOM_RIGHT = 0, 1
AE_BACKEND_AUTO, AE_BACKEND_CPU, AE_BACKEND_REFERENCE, AE_BACKEND_CUDA = 0, 1, 2, 3
AE_ABI_VERSION = 1


class Options(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("mask", ctypes.c_uint32),
        ("alignment", ctypes.c_int32),
        ("has_scale", ctypes.c_int32),
        ("scale", ctypes.c_float),
        ("max_threads", ctypes.c_int32),
        ("window_left", ctypes.c_int64),
        ("window_right", ctypes.c_int64),
        ("bias", ctypes.POINTER(DLTensor)),
        ("keep_mask", ctypes.POINTER(DLTensor)),
        ("lse", ctypes.POINTER(DLTensor)),
        ("weights", ctypes.POINTER(DLTensor)),
        ("backend", ctypes.c_int32),
        ("reserved", ctypes.c_int32),
        ("dropout", ctypes.c_double),
        ("dropout_seed", ctypes.c_uint64),
        ("dropout_offset", ctypes.c_uint64),
        ("dropout_in_weights", ctypes.c_int32),
        ("reserved2", ctypes.c_int32),
    ]


class AttentionEngineError(RuntimeError):
    """A call the library refused or could not run: status is the ae_status name, the message says why."""

    def __init__(self, status, message):
        super().__init__(f"{status}: {message}")
        self.status = status


def _library_path():
    if os.environ.get("ATTENTION_ENGINE_LIBRARY"):
        return os.environ["ATTENTION_ENGINE_LIBRARY"]
    name = {"win32": "attention_engine.dll", "darwin": "libattention_engine.dylib"}.get(sys.platform, "libattention_engine.so")
    beside_repository = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "out", "native", name)
    return beside_repository if os.path.exists(beside_repository) else name


_lib = ctypes.CDLL(_library_path())
_P = ctypes.POINTER
_lib.ae_version.restype = ctypes.c_char_p
_lib.ae_abi_version.restype = ctypes.c_uint32
_lib.ae_last_error.restype = ctypes.c_char_p
_lib.ae_status_name.restype = ctypes.c_char_p
_lib.ae_status_name.argtypes = [ctypes.c_int]
_lib.ae_check_abi.argtypes = [ctypes.c_uint32, ctypes.c_size_t, ctypes.c_size_t]
_lib.ae_backend_available.argtypes = [ctypes.c_int]
_lib.ae_forward.argtypes = [_P(DLTensor)] * 4 + [_P(Options)]
_lib.ae_backward.argtypes = [_P(DLTensor)] * 9 + [_P(Options), _P(DLTensor)]


def _check(status):
    if status != 0:
        raise AttentionEngineError(_lib.ae_status_name(status).decode(), _lib.ae_last_error().decode())


_check(_lib.ae_check_abi(AE_ABI_VERSION, ctypes.sizeof(Options), ctypes.sizeof(DLTensor)))
version = _lib.ae_version().decode()


def backend_available(backend):
    """True when the backend can run here; otherwise False (the reason is in last_error())."""
    return _lib.ae_backend_available(backend) == 0


def last_error():
    return _lib.ae_last_error().decode()


# ---- NumPy arrays as DLTensors ----
_DTYPES = {
    np.dtype(np.float32): (kDLFloat, 32),
    np.dtype(np.float16): (kDLFloat, 16),
    np.dtype(np.float64): (kDLFloat, 64),
    np.dtype(np.bool_): (kDLBool, 8),
    np.dtype(np.int32): (kDLInt, 32),
}


class ArrayTensor:
    """A DLTensor over a NumPy array's memory. Keeps the array (and the shape/stride arrays) alive while it lives."""

    def __init__(self, array):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"expected a numpy.ndarray, got {type(array).__name__}")
        if array.dtype not in _DTYPES:
            raise TypeError(f"dtype {array.dtype} has no DLPack code here")
        self.array = array
        code, bits = _DTYPES[array.dtype]
        self.shape = (ctypes.c_int64 * array.ndim)(*array.shape)
        # NumPy strides are in bytes, DLPack's in elements.
        if any(s % array.itemsize for s in array.strides):
            raise ValueError(f"strides {array.strides} are not whole elements of {array.itemsize} bytes")
        self.strides = (ctypes.c_int64 * array.ndim)(*(s // array.itemsize for s in array.strides))
        self.tensor = DLTensor(
            ctypes.c_void_p(array.ctypes.data), DLDevice(kDLCPU, 0), array.ndim, DLDataType(code, bits, 1),
            self.shape, self.strides, 0)

    @property
    def pointer(self):
        return ctypes.pointer(self.tensor)


class CapsuleTensor:
    """The DLTensor inside an array's own ``__dlpack__()`` capsule (the legacy "dltensor" DLManagedTensor), borrowed
    for the call: the capsule is not consumed, so its destructor still releases the producer's context."""

    _get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    _get_pointer.restype = ctypes.c_void_p
    _get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

    def __init__(self, array):
        self.array = array
        self.capsule = array.__dlpack__()
        managed = ctypes.cast(self._get_pointer(self.capsule, b"dltensor"), ctypes.POINTER(DLManagedTensor))
        self._managed = managed

    @property
    def pointer(self):
        return ctypes.pointer(self._managed.contents.dl_tensor)


def _tensor(array, via_dlpack):
    if array is None:
        return None
    # NumPy before 2.0 exports no bool through DLPack: a keep-mask is described directly (zero-copy either way).
    return CapsuleTensor(array) if via_dlpack and array.dtype != np.bool_ else ArrayTensor(array)


def _options(scale, causal, alignment, window, bias, keep_mask, lse, weights, max_threads, backend, dropout):
    options = Options()
    if dropout is not None:
        # (p, seed, offset) or (p, seed, offset, in_weights): the same tuple draws the same mask forward and backward.
        p, seed, offset, *in_weights = dropout
        options.dropout, options.dropout_seed, options.dropout_offset = p, seed, offset
        options.dropout_in_weights = 1 if in_weights and in_weights[0] else 0
    options.struct_size = ctypes.sizeof(Options)
    options.window_left = options.window_right = -1
    if scale is not None:
        options.has_scale, options.scale = 1, scale
    if causal:
        options.mask |= AE_MASK_CAUSAL
    if window is not None:
        options.mask |= AE_MASK_WINDOW
        left, right = window
        options.window_left = -1 if left is None else left
        options.window_right = -1 if right is None else right
    if options.mask:
        options.alignment = {"top-left": AE_ALIGN_TOP_LEFT, "bottom-right": AE_ALIGN_BOTTOM_RIGHT}[alignment]
    options.max_threads = max_threads
    options.backend = backend
    options.bias = bias.pointer if bias else None
    options.keep_mask = keep_mask.pointer if keep_mask else None
    options.lse = lse.pointer if lse else None
    options.weights = weights.pointer if weights else None
    return options


def forward(q, k, v, out, *, scale=None, causal=False, alignment="top-left", window=None, bias=None, keep_mask=None,
            lse=None, weights=None, max_threads=0, backend=AE_BACKEND_AUTO, via_dlpack=False, dropout=None):
    """out = attention(q, k, v) in place. q [B, H, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv], out [B, H, Lq, Dv]
    (any strides: pass np.transpose views of [B, S, H, D] arrays). bias float32 and keep_mask bool broadcast to
    [B, H, Lq, Lk]; lse (float32 [B, H, Lq]) and weights (float32 [B, H, Lq, Lk]) receive results when given.
    window = (left, right) with None for unbounded. via_dlpack passes every array through its __dlpack__ capsule.
    dropout = (p, seed, offset[, in_weights]): training dropout on the probabilities (see attention_engine.h)."""
    tensors = [_tensor(a, via_dlpack) for a in (q, k, v, out)]
    extras = [_tensor(a, via_dlpack) for a in (bias, keep_mask, lse, weights)]
    options = _options(scale, causal, alignment, window, *extras, max_threads, backend, dropout)
    _check(_lib.ae_forward(*(t.pointer for t in tensors), ctypes.byref(options)))


def backward(q, k, v, out, lse, d_out, d_q, d_k, d_v, *, d_bias=None, scale=None, causal=False, alignment="top-left",
             window=None, bias=None, keep_mask=None, max_threads=0, backend=AE_BACKEND_AUTO, dropout=None):
    """Gradients of a loss given d_out = dL/d(out) of a forward call with the same options, its out and float32 lse.
    d_q, d_k, d_v (and d_bias, float32 shaped like bias) are overwritten."""
    tensors = [ArrayTensor(a) for a in (q, k, v, out, lse, d_out, d_q, d_k, d_v)]
    extras = [_tensor(a, False) for a in (bias, keep_mask)]
    options = _options(scale, causal, alignment, window, *extras, None, None, max_threads, backend, dropout)
    grad_bias = _tensor(d_bias, False)
    _check(_lib.ae_backward(*(t.pointer for t in tensors), ctypes.byref(options), grad_bias.pointer if grad_bias else None))


def attention(q, k, v, **kwargs):
    """Allocating convenience: returns (out, lse) with out in q's dtype, [B, H, Lq, Dv]."""
    out = np.empty(q.shape[:3] + (v.shape[3],), dtype=q.dtype)
    lse = np.empty(q.shape[:3], dtype=np.float32)
    forward(q, k, v, out, lse=lse, **kwargs)
    return out, lse
