#!/usr/bin/env bash
# Times several versions of kernels/Cuda/flash_decode.cu side by side on a GPU machine (nvcc there, no .NET needed):
# every *.cu in DIR is built with bench/gpu/decode_ab.cu for fp16 and bf16, then each decode shape (H32 Hkv8 D128, batch
# 1 and 16, caches of 1k-32k keys: bench cuda's decode grid) runs every version in turn, twice.
# Usage: bash bench/gpu/decode_ab.sh DIR [arch, default: the GPU's]   (prints one line per run; $OUT/decode-ab.txt)
set -uo pipefail
source "$(dirname "$0")/ab_common.sh"
ab_begin decode-ab "$1" "${2:-}"
for src in "$dir"/*.cu; do
  for dtype in f16 bf16; do
    ab_compile bench/gpu/decode_ab.cu "$src" "$build/$(basename "$src" .cu)-$dtype" -DAE_BF16=$([ $dtype = bf16 ] && echo 1 || echo 0)
  done
done
ab_report merge 40
for round in 1 2; do
  for shape in "1 32 8 1024 128" "1 32 8 4096 128" "1 32 8 16384 128" "1 32 8 32768 128" "16 32 8 1024 128" "16 32 8 4096 128" \
               "16 32 8 16384 128" "16 32 8 32768 128"; do
    for dtype in f16 bf16; do ab_time $round $dtype "$dtype" $shape 0.2; done
  done
done
