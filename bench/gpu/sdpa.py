#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention on the grid `bench cuda` times, with the same FLOP count and timing method
(CUDA events around a batch of calls on one stream; median of three batches), printed as JSON for compare.py.

Usage: python3 bench/gpu/sdpa.py [--dtype f16,bf16] [--seconds 1] > sdpa.json
"""
import argparse
import json

import torch
import torch.nn.functional as F


def preset():
    for d in (64, 128):
        for causal in (False, True):
            for n in (1024, 2048, 4096, 8192, 16384):
                yield 16384 // n, 2048 // d, n, d, causal


def visible_pairs(n, causal):
    return n * (n + 1) / 2 if causal else float(n) * n


def name(b, h, n, d, causal):
    return f"B{b} H{h} N{n} D{d}" + (" causal" if causal else "")


def time_case(b, h, n, d, causal, dtype, seconds):
    generator = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=dtype, generator=generator) for _ in range(3))

    def batch(launches):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(launches):
            F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    batch(3)
    once = max(batch(1), 1e-3)
    launches = int(min(max(-(-seconds * 1000 / 3 // once), 3), 10000))
    trials = sorted(batch(launches) for _ in range(3))
    ms = trials[1] / launches
    flops = 4.0 * b * h * visible_pairs(n, causal) * d
    return {"case": name(b, h, n, d, causal), "dtype": None, "milliseconds": ms, "tflops": flops / (ms * 1e-3) / 1e12, "launches": launches}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="f16,bf16")
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    types = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}
    rows = []
    for label in args.dtype.split(","):
        for b, h, n, d, causal in preset():
            row = time_case(b, h, n, d, causal, types[label], args.seconds)
            row["dtype"] = label
            rows.append(row)
    print(json.dumps({"command": "sdpa", "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                      "cuda": torch.version.cuda, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
