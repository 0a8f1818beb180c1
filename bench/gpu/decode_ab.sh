#!/usr/bin/env bash
# Times several versions of kernels/Cuda/flash_decode.cu side by side on a GPU machine (nvcc there, no .NET needed):
# every *.cu in DIR is built with bench/gpu/decode_ab.cu for fp16 and bf16, then each decode shape (H32 Hkv8 D128, batch
# 1 and 16, caches of 1k-32k keys: bench cuda's decode grid) runs every version in turn, twice.
# Usage: bash bench/gpu/decode_ab.sh DIR [arch, default: the GPU's]   (prints one line per run; $OUT/decode-ab.txt)
set -uo pipefail
cd "$(dirname "$0")/../.."
dir=$1
arch=${2:-sm_$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.[:space:]')}
build=build/decode-ab
mkdir -p "$build"
log=${OUT:-.}/decode-ab.txt
: >"$log"
for src in "$dir"/*.cu; do
  name=$(basename "$src" .cu)
  for dtype in f16 bf16; do
    define=$([ $dtype = bf16 ] && echo -DAE_BF16=1 || echo -DAE_BF16=0)
    nvcc -O3 -std=c++17 -arch="$arch" -DKERNEL_SOURCE="\"$PWD/$src\"" $define -Xptxas -v \
      bench/gpu/decode_ab.cu -o "$build/$name-$dtype" >"$build/$name-$dtype.log" 2>&1 &
  done
done
wait
grep -H -E "error|Used|spill" "$build"/*.log | grep -v merge | sed 's/ptxas info    : //' | tee -a "$log" | head -40
for round in 1 2; do
  for shape in "1 32 8 1024 128" "1 32 8 4096 128" "1 32 8 16384 128" "1 32 8 32768 128" "16 32 8 1024 128" "16 32 8 4096 128" \
               "16 32 8 16384 128" "16 32 8 32768 128"; do
    for dtype in f16 bf16; do
      for src in "$dir"/*.cu; do
        exe="$build/$(basename "$src" .cu)-$dtype"
        [ -x "$exe" ] || continue
        echo "round $round $dtype $(timeout 30 "$exe" $shape 0.2 2>&1 | tail -1)" | tee -a "$log"
      done
    done
  done
done
