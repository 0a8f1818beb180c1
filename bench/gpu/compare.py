#!/usr/bin/env python3
"""Joins `bench cuda --json` and sdpa.py's JSON into one markdown table (ours vs PyTorch SDPA, same GPU, same run).

Usage: python3 bench/gpu/compare.py cuda.json sdpa.json
"""
import json
import sys


def main():
    ours, theirs = (json.load(open(path)) for path in sys.argv[1:3])
    by_key = {(r["case"], r["dtype"]): r for r in theirs["rows"]}
    print(f"Device: {ours['device']} ({ours['architecture']}); PyTorch {theirs['torch']} (CUDA {theirs['cuda']}).\n")
    # Decode rows (few queries) are judged by K/V bytes streamed, the rest by FLOPs.
    decode = all(" Lq" in r["case"] for r in ours["rows"])
    unit, key = ("K/V GB/s", "kvGigabytesPerSecond") if decode else ("TFLOP/s", "tflops")
    print(f"| case | dtype | Cuda ms | Cuda {unit} | SDPA ms | SDPA {unit} | SDPA time / Cuda time |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in ours["rows"]:
        other = by_key.get((r["case"], r["dtype"]))
        if other is None:
            print(f"| {r['case']} | {r['dtype']} | {r['milliseconds']:.3f} | {r[key]:.1f} | - | - | - |")
            continue
        print(f"| {r['case']} | {r['dtype']} | {r['milliseconds']:.3f} | {r[key]:.1f} | {other['milliseconds']:.3f} | "
              f"{other[key]:.1f} | {other['milliseconds'] / r['milliseconds']:.2f} |")


if __name__ == "__main__":
    main()
