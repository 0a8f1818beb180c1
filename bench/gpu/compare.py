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
    print("| case | dtype | Cuda ms | Cuda TFLOP/s | SDPA ms | SDPA TFLOP/s | Cuda / SDPA |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in ours["rows"]:
        other = by_key.get((r["case"], r["dtype"]))
        if other is None:
            print(f"| {r['case']} | {r['dtype']} | {r['milliseconds']:.3f} | {r['tflops']:.1f} | - | - | - |")
            continue
        print(f"| {r['case']} | {r['dtype']} | {r['milliseconds']:.3f} | {r['tflops']:.1f} | {other['milliseconds']:.3f} | "
              f"{other['tflops']:.1f} | {r['tflops'] / other['tflops']:.2f} |")


if __name__ == "__main__":
    main()
