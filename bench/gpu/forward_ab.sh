#!/usr/bin/env bash
# Times several versions of kernels/Cuda/flash_forward.cu side by side on a GPU machine (nvcc there, no .NET needed):
# every *.cu in DIR is built with bench/gpu/forward_ab.cu for fp16 and bf16 at D = 64 and 128, then each shape runs
# every version in turn, twice, so drifting clocks hit all versions alike.
# Usage: bash bench/gpu/forward_ab.sh DIR [arch, default: the GPU's]   (prints one line per run; $OUT/forward-ab.txt)
set -uo pipefail
source "$(dirname "$0")/ab_common.sh"
ab_begin forward-ab "$1" "${2:-}"
for src in "$dir"/*.cu; do
  for dtype in f16 bf16; do
    for d in 64 128; do
      ab_compile bench/gpu/forward_ab.cu "$src" "$build/$(basename "$src" .cu)-$dtype-d$d" -DAE_HEAD_DIM=$d \
        -DAE_BF16=$([ $dtype = bf16 ] && echo 1 || echo 0)
    done
  done
done
ab_report "cmem\[0\], [0-9]* bytes cmem\[2\]$" 60
for round in 1 2; do
  for shape in "4 32 4096 64" "4 32 4096 64 causal" "4 16 4096 128" "4 16 4096 128 causal"; do
    set -- $shape
    for dtype in f16 bf16; do ab_time $round $dtype "$dtype-d$4" "$1" "$2" "$3" "${5:-plain}" 0.2; done
  done
done
