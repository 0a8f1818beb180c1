#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention on the grid `bench cuda` times, with the same FLOP count and timing method
(CUDA events around a batch of calls on one stream; median of three batches), printed as JSON for compare.py.

Usage: python3 bench/gpu/sdpa.py [--shapes preset|decode] [--dtype f16,bf16] [--seconds 1] [--pass forward|backward] > sdpa.json
With --pass backward it times the backward alone (autograd.grad of a saved forward, as FlashAttention's benchmark
does), FLOPs 2.5 times the forward's, as `bench cuda --pass backward`. The decode grid (one query against a long KV cache, 32 query heads over 8 KV heads) uses SDPA's enable_gqa, so
PyTorch reads each KV head once, as our decode kernel does.
"""
import argparse
import json

import torch
import torch.nn.functional as F


def preset():
    """(B, H, Hkv, Lq, Lk, D, causal), as CudaCommand.Preset."""
    for d in (64, 128):
        for causal in (False, True):
            for n in (1024, 2048, 4096, 8192, 16384):
                yield 16384 // n, 2048 // d, 2048 // d, n, n, d, causal


def decode_preset():
    """As CudaCommand.DecodePreset."""
    for b in (1, 16):
        for lk in (1024, 4096, 16384, 32768):
            yield b, 32, 8, 1, lk, 128, False


def visible_pairs(lq, lk, causal):
    return sum(min(i + 1, lk) for i in range(lq)) if causal else float(lq) * lk


def name(b, h, hkv, lq, lk, d, causal):
    heads = f"H{h}" + (f" Hkv{hkv}" if hkv != h else "")
    lengths = f"N{lq}" if lq == lk else f"Lq{lq} Lk{lk}"
    return f"B{b} {heads} {lengths} D{d}" + (" causal" if causal else "")


def time_case(b, h, hkv, lq, lk, d, causal, dtype, seconds, backward=False):
    generator = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(b, h, lq, d, device="cuda", dtype=dtype, generator=generator, requires_grad=backward)
    k, v = (torch.randn(b, hkv, lk, d, device="cuda", dtype=dtype, generator=generator, requires_grad=backward) for _ in range(2))
    gqa = {"enable_gqa": True} if hkv != h else {}
    if backward:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, **gqa)
        d_out = torch.randn(out.shape, device="cuda", dtype=dtype, generator=generator)

        def call():
            torch.autograd.grad(out, (q, k, v), d_out, retain_graph=True)
    else:
        def call():
            F.scaled_dot_product_attention(q, k, v, is_causal=causal, **gqa)

    def batch(launches):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(launches):
            call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    batch(3)
    once = max(batch(1), 1e-3)
    launches = int(min(max(-(-seconds * 1000 / 3 // once), 3), 10000))
    trials = sorted(batch(launches) for _ in range(3))
    ms = trials[1] / launches
    flops = 4.0 * b * h * visible_pairs(lq, lk, causal) * d * (2.5 if backward else 1.0)
    kv_bytes = 2.0 * b * hkv * lk * d * q.element_size()
    return {"case": name(b, h, hkv, lq, lk, d, causal), "dtype": None, "milliseconds": ms,
            "tflops": flops / (ms * 1e-3) / 1e12, "kvGigabytesPerSecond": kv_bytes / (ms * 1e-3) / 1e9, "launches": launches}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default="preset", choices=("preset", "decode"))
    parser.add_argument("--dtype", default="f16,bf16")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--pass", dest="pass_", default="forward", choices=("forward", "backward"))
    args = parser.parse_args()
    types = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}
    rows = []
    for label in args.dtype.split(","):
        for shape in (preset() if args.shapes == "preset" else decode_preset()):
            row = time_case(*shape, types[label], args.seconds, backward=args.pass_ == "backward")
            row["dtype"] = label
            rows.append(row)
    print(json.dumps({"command": "sdpa", "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                      "cuda": torch.version.cuda, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
