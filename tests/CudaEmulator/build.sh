#!/usr/bin/env bash
# Builds the CUDA emulator, <out>/libcuda-emulator.so: a stand-in for libcuda.so.1 that runs our CUDA kernels on the
# CPU (fake_driver.cpp, cta_runtime.cpp), with every kernel variant compiled from kernels/Cuda as C++ (-DAE_EMULATE).
# The test project runs this before it builds; the CUDA backend's tests use the library where no GPU is present.
# Without g++ or off x86-64 Linux it builds nothing and says so; those tests then skip with the reason.
set -uo pipefail
out=${1:?usage: build.sh <output directory>}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if ! command -v g++ >/dev/null 2>&1; then
  echo "cuda emulator: g++ is not installed; the emulated CUDA tests will skip"
  exit 0
fi
if [ "$(uname -s)" != Linux ] || [ "$(uname -m)" != x86_64 ]; then
  echo "cuda emulator: its fibers switch with x86-64 ELF assembly; not built on $(uname -s) $(uname -m)"
  exit 0
fi

objects="$out/obj"
mkdir -p "$objects"
flags=(-std=c++17 -O2 -fPIC -fvisibility=hidden -I"$here" -Wall -Wno-unknown-pragmas -Werror)
jobs=()
compile() { g++ "${flags[@]}" "$@" & jobs+=($!); }

compile -c "$here/cta_runtime.cpp" -o "$objects/cta_runtime.o"
compile -c "$here/fake_driver.cpp" -o "$objects/fake_driver.o"
kernels=()
# head_dim:element:keys per tile (0: the kernel's default tile); the smaller tiles are what devices with 99 KiB of
# shared memory per block run (CudaFlashVariant.For; CudaKernelCompileTests checks this list against its variants).
variants=()
for head_dim in 32 64 96 128 256; do
  for element in f16 bf16 f32; do variants+=("$head_dim:$element:0"); done
done
variants+=(96:f32:32 128:f32:16 256:f32:8)
for variant in "${variants[@]}"; do
  IFS=: read -r head_dim element keys <<< "$variant"
  bf16=0; [ "$element" = bf16 ] && bf16=1
  f32=0; [ "$element" = f32 ] && f32=1
  name="d${head_dim}_${element}"
  tile=()
  if [ "$keys" != 0 ]; then name="${name}_k${keys}"; tile=(-DAE_KEYS_PER_TILE="$keys"); fi
  object="$objects/flash_forward_${name}.o"
  compile -x c++ -DAE_EMULATE -DAE_HEAD_DIM="$head_dim" -DAE_BF16="$bf16" -DAE_F32="$f32" "${tile[@]}" -Dflash="flash_${name}" \
    -c "$root/kernels/Cuda/flash_forward.cu" -o "$object"
  kernels+=("$object")
done

# The backward's variants, head_dim:element:keys per tile (always explicit); CudaBackwardVariant.All, checked by
# CudaBackwardTests against this list.
backward_variants=(32:f16:32 64:f16:32 96:f16:16 128:f16:16 256:f16:16
  32:bf16:32 64:bf16:32 96:bf16:16 128:bf16:16 256:bf16:16
  32:f32:16 64:f32:16 96:f32:16 128:f32:8 256:f32:8)
for variant in "${backward_variants[@]}"; do
  IFS=: read -r head_dim element keys <<< "$variant"
  bf16=0; [ "$element" = bf16 ] && bf16=1
  f32=0; [ "$element" = f32 ] && f32=1
  name="d${head_dim}_${element}_k${keys}"
  object="$objects/flash_backward_${name}.o"
  compile -x c++ -DAE_EMULATE -DAE_HEAD_DIM="$head_dim" -DAE_BF16="$bf16" -DAE_F32="$f32" -DAE_KEYS_PER_TILE="$keys" \
    -Dflash="flash_backward_${name}" -c "$root/kernels/Cuda/flash_backward.cu" -o "$object"
  kernels+=("$object")
done

for element in f16 bf16 f32; do
  bf16=0; [ "$element" = bf16 ] && bf16=1
  f32=0; [ "$element" = f32 ] && f32=1
  compile -x c++ -DAE_EMULATE -DAE_BF16="$bf16" -DAE_F32="$f32" -Ddecode="decode_${element}" \
    -c "$root/kernels/Cuda/flash_decode.cu" -o "$objects/flash_decode_${element}.o"
  kernels+=("$objects/flash_decode_${element}.o")
done

compile -x c++ -DAE_EMULATE -c "$root/kernels/Cuda/strided_copy.cu" -o "$objects/strided_copy.o"
kernels+=("$objects/strided_copy.o")
# Not a product kernel: the warp-operation probes whose answers the first GPU run compares with the emulator's.
compile -x c++ -DAE_EMULATE -c "$here/../Cuda/known_answers.cu" -o "$objects/known_answers.o"
kernels+=("$objects/known_answers.o")

failed=0
for job in "${jobs[@]}"; do wait "$job" || failed=1; done
if [ "$failed" -ne 0 ]; then
  echo "cuda emulator: compilation failed" >&2
  exit 1
fi
g++ -shared -pthread -o "$out/libcuda-emulator.so" "$objects/cta_runtime.o" "$objects/fake_driver.o" "${kernels[@]}" || exit 1
echo "cuda emulator: built $out/libcuda-emulator.so"
