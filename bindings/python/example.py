"""AttentionEngine from Python with ctypes and NumPy: forward calls checked against a NumPy float64 attention, a
[B, S, H, D] layout passed as a strided view, arrays passed through their own __dlpack__ capsules, a backward pass,
and an error. Exits nonzero when a check fails; prints "python example: N passed, M failed" last.

    dotnet publish bindings/Native -c Release -o out/native
    python3 bindings/python/example.py
"""
import numpy as np

import attention_engine as ae

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL", what)


def reference(q, k, v, scale=None, causal=False, alignment="top-left", bias=None, keep_mask=None):
    """softmax(scale q k^T + bias, masked) v in float64; rows that see no key give zeros and lse -inf."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    b, h, lq, d = q.shape
    lk, group = k.shape[2], h // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # GQA: each kv head serves `group` query heads
    s = (d ** -0.5 if scale is None else scale) * q @ k.transpose(0, 1, 3, 2)
    visible = np.ones((b, h, lq, lk), dtype=bool)
    if causal:
        offset = lk - lq if alignment == "bottom-right" else 0
        visible &= np.arange(lk)[None, :] <= np.arange(lq)[:, None] + offset
    if keep_mask is not None:
        visible &= np.broadcast_to(keep_mask, visible.shape)
    if bias is not None:
        s = s + bias
        visible &= np.broadcast_to(bias, visible.shape) != -np.inf
    s = np.where(visible, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    e = np.where(visible, np.exp(s - np.where(np.isfinite(m), m, 0)), 0.0)
    total = e.sum(axis=-1, keepdims=True)
    p = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    with np.errstate(divide="ignore"):
        lse = np.where(total[..., 0] > 0, m[..., 0] + np.log(np.where(total[..., 0] > 0, total[..., 0], 1)), -np.inf)
    # Sum over visible keys only: a hidden key's V may be NaN, and 0 * NaN would leak into the row.
    with np.errstate(invalid="ignore"):
        out = np.where(visible[..., None], p[..., None] * v[:, :, None, :, :], 0.0).sum(axis=3)
    return out, lse, p


def close(got, want, tolerance):
    return bool(np.all(np.abs(got.astype(np.float64) - want) <= tolerance * max(1.0, np.abs(want).max())))


rng = np.random.default_rng(7)
print(f"attention engine {ae.version} (CUDA backend available: {ae.backend_available(ae.AE_BACKEND_CUDA)})")

# 1. float32, GQA (8 query heads over 2 kv heads), causal aligned bottom-right: a chunk of 24 queries after 40 cached keys.
q = rng.standard_normal((2, 8, 24, 64), dtype=np.float32)
k = rng.standard_normal((2, 2, 64, 64), dtype=np.float32)
v = rng.standard_normal((2, 2, 64, 64), dtype=np.float32)
out, lse = ae.attention(q, k, v, causal=True, alignment="bottom-right")
want, want_lse, _ = reference(q, k, v, causal=True, alignment="bottom-right")
check(close(out, want, 1e-5) and close(lse, want_lse, 1e-5), "float32 GQA causal bottom-right")

# 2. float16 stored [B, S, H, D] (FlashAttention's layout), read through transposed views: no copy on either side.
qs = rng.standard_normal((1, 50, 4, 32)).astype(np.float16)
ks = rng.standard_normal((1, 70, 4, 32)).astype(np.float16)
vs = rng.standard_normal((1, 70, 4, 32)).astype(np.float16)
out_s = np.zeros((1, 50, 4, 32), dtype=np.float16)
to_bhsd = (0, 2, 1, 3)
ae.forward(qs.transpose(to_bhsd), ks.transpose(to_bhsd), vs.transpose(to_bhsd), out_s.transpose(to_bhsd))
want, _, _ = reference(qs.transpose(to_bhsd), ks.transpose(to_bhsd), vs.transpose(to_bhsd))
check(close(out_s.transpose(to_bhsd), want, 4 / 2048), "float16 [B, S, H, D] strided views")

# 3. A padding keep-mask [B, 1, 1, Lk] and an additive bias with -inf entries; padded keys hold NaN, which must not matter.
q = rng.standard_normal((2, 4, 16, 32), dtype=np.float32)
k = rng.standard_normal((2, 4, 48, 32), dtype=np.float32)
v = rng.standard_normal((2, 4, 48, 32), dtype=np.float32)
keep = np.ones((2, 1, 1, 48), dtype=bool)
keep[0, ..., 40:] = False
keep[1, ..., 30:] = False
k[0, :, 40:], v[0, :, 40:] = np.nan, np.inf  # padding
k[1, :, 30:], v[1, :, 30:] = np.nan, np.nan
bias = rng.standard_normal((16, 48)).astype(np.float32)
bias[3, :] = -np.inf  # row 3 sees nothing: zeros and lse -inf
out, lse = ae.attention(q, k, v, keep_mask=keep, bias=bias, scale=0.25)
want, want_lse, _ = reference(q, k, v, scale=0.25, keep_mask=keep, bias=bias)
check(np.isfinite(out).all() and close(out, want, 1e-5), "keep-mask and bias over NaN-padded keys")
check(bool(np.all(out[:, :, 3] == 0)) and bool(np.all(lse[:, :, 3] == -np.inf)), "a row with no visible key: zeros, lse -inf")

# 4. The same call with every array passed through its own __dlpack__ capsule.
out_dl = np.zeros_like(out)
lse_dl = np.zeros_like(lse)
ae.forward(q, k, v, out_dl, lse=lse_dl, keep_mask=keep, bias=bias, scale=0.25, via_dlpack=True)
check(np.array_equal(out_dl, out) and np.array_equal(lse_dl, lse), "__dlpack__ capsules give the same bits")

# 5. Attention weights, and a backward pass against NumPy's float64 gradients.
q = rng.standard_normal((1, 2, 8, 16), dtype=np.float32)
k = rng.standard_normal((1, 2, 12, 16), dtype=np.float32)
v = rng.standard_normal((1, 2, 12, 16), dtype=np.float32)
out = np.zeros_like(q)
lse = np.zeros((1, 2, 8), dtype=np.float32)
weights = np.zeros((1, 2, 8, 12), dtype=np.float32)
ae.forward(q, k, v, out, lse=lse, weights=weights, causal=True)
want, _, p = reference(q, k, v, causal=True)
check(close(weights, p, 1e-5), "attention weights")
d_out = rng.standard_normal(out.shape, dtype=np.float32)
d_q, d_k, d_v = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
ae.backward(q, k, v, out, lse, d_out, d_q, d_k, d_v, causal=True)
g = d_out.astype(np.float64)
d_p = g @ v.astype(np.float64).transpose(0, 1, 3, 2)
d_s = p * (d_p - (g * want).sum(axis=-1, keepdims=True))
scale = 16 ** -0.5
check(close(d_v, p.transpose(0, 1, 3, 2) @ g, 1e-4), "backward d_v")
check(close(d_q, scale * d_s @ k.astype(np.float64), 1e-4), "backward d_q")
check(close(d_k, scale * d_s.transpose(0, 1, 3, 2) @ q.astype(np.float64), 1e-4), "backward d_k")

# 6. Dropout: the mask is Philox4x32-10 of (key / 4, query, batch * H + head, offset) under the seed (and the offset's
# high word), kept where its word is at least floor(p * 2^32): drawn here in NumPy and compared with the weights.
def philox(c, key):
    m = np.uint64(0xFFFFFFFF)
    c = [x.astype(np.uint64) for x in c]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for r in range(10):
        if r:
            k0, k1 = (k0 + np.uint64(0x9E3779B9)) & m, (k1 + np.uint64(0xBB67AE85)) & m
        p0, p1 = np.uint64(0xD2511F53) * c[0], np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & m, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & m]
    return c


p_drop, seed, offset = 0.3, 0x0123456789ABCDEF, (7 << 32) | 5
weights_after = np.zeros((1, 2, 8, 12), dtype=np.float32)
ae.forward(q, k, v, out, weights=weights_after, causal=True, dropout=(p_drop, seed, offset, True))
h_, i_, j_ = np.meshgrid(np.arange(2), np.arange(8), np.arange(12), indexing="ij")
words = philox([(j_ >> 2).astype(np.uint32), i_.astype(np.uint32), h_.astype(np.uint32), np.full_like(i_, offset & 0xFFFFFFFF, dtype=np.uint32)],
               (seed & 0xFFFFFFFF, (seed >> 32) ^ (offset >> 32)))
word = np.choose(j_ & 3, words)
kept = word >= np.uint64(int(np.floor(p_drop * 2.0 ** 32)))
want_weights = np.where(kept, p[0] / (1 - p_drop), 0.0)
check(np.array_equal(weights_after[0] != 0, (p[0] != 0) & kept) and close(weights_after[0], want_weights, 1e-5),
      "dropout weights: the NumPy Philox mask, scaled by 1 / (1 - p)")
out_drop = np.zeros_like(out)
ae.forward(q, k, v, out_drop, causal=True, dropout=(p_drop, seed, offset))
check(close(out_drop[0], want_weights @ v[0].astype(np.float64), 1e-5), "dropout output = dropped weights @ v")
d_q_drop, d_k_drop, d_v_drop = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
ae.backward(q, k, v, out_drop, lse, d_out, d_q_drop, d_k_drop, d_v_drop, causal=True, dropout=(p_drop, seed, offset))
check(close(d_v_drop[0], want_weights.transpose(0, 2, 1) @ g[0], 1e-4), "dropout backward d_v with the same mask")

# 7. Errors come back as exceptions with the library's message, and nothing is written.
out = np.full((1, 2, 8, 16), 7, dtype=np.float32)
try:
    ae.forward(q, k[:, :, :, :8].copy(), v, out)
    check(False, "a k with the wrong head dimension was accepted")
except ae.AttentionEngineError as error:
    print(f"refused as expected: {error}")
    check(error.status == "AE_ERROR_INVALID_ARGUMENT" and "k" in str(error) and np.all(out == 7), "shape error")

print(f"python example: {passed} passed, {failed} failed")
raise SystemExit(1 if failed else 0)
