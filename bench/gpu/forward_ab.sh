#!/usr/bin/env bash
# Times several versions of kernels/Cuda/flash_forward.cu side by side on a GPU machine (nvcc there, no .NET needed):
# every *.cu in DIR is built with bench/gpu/forward_ab.cu for fp16 and bf16 at D = 64 and 128, then each shape runs
# every version in turn, twice, so drifting clocks hit all versions alike.
# Usage: bash bench/gpu/forward_ab.sh DIR [arch, default: the GPU's]   (prints one line per run; $OUT/forward-ab.txt)
set -uo pipefail
cd "$(dirname "$0")/../.."
dir=$1
arch=${2:-sm_$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.[:space:]')}
build=build/forward-ab
mkdir -p "$build"
log=${OUT:-.}/forward-ab.txt
: >"$log"
for src in "$dir"/*.cu; do
  name=$(basename "$src" .cu)
  for dtype in f16 bf16; do
    for d in 64 128; do
      define=$([ $dtype = bf16 ] && echo -DAE_BF16=1 || echo -DAE_BF16=0)
      nvcc -O3 -std=c++17 -arch="$arch" -DKERNEL_SOURCE="\"$PWD/$src\"" -DAE_HEAD_DIM=$d $define -Xptxas -v \
        bench/gpu/forward_ab.cu -o "$build/$name-$dtype-d$d" >"$build/$name-$dtype-d$d.log" 2>&1 &
    done
  done
done
wait
grep -H -E "error|Used|spill" "$build"/*.log | grep -v "cmem\[0\], [0-9]* bytes cmem\[2\]$" | sed 's/ptxas info    : //' | tee -a "$log" | head -60
for round in 1 2; do
  for shape in "4 32 4096 64" "4 32 4096 64 causal" "4 16 4096 128" "4 16 4096 128 causal"; do
    set -- $shape
    for dtype in f16 bf16; do
      for src in "$dir"/*.cu; do
        exe="$build/$(basename "$src" .cu)-$dtype-d$4"
        [ -x "$exe" ] || continue
        echo "round $round $dtype $(timeout 30 "$exe" "$1" "$2" "$3" "${5:-plain}" 0.2 2>&1 | tail -1)" | tee -a "$log"
      done
    done
  done
done
