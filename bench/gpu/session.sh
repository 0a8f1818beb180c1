#!/usr/bin/env bash
# The checks the CUDA backend still owes a GPU, in one command on the device machine (bench/RESULTS.md, "GPU
# backends", lists what is owed). Prepare here:   ../shared/device/pack.sh      (packs the .NET runtime, tests and bench into .device)
# Run there (carry .device):        bash bench/gpu/session.sh
# Logs land in $OUT (or ./gpu-session-logs): nvidia-smi, the nvcc fatbin build, the CUDA test suites against the GPU
# (the emulator is not used where libcuda.so.1 loads), and compute-sanitizer memcheck and racecheck on one suite.
set -uo pipefail
cd "$(dirname "$0")/../.."
logs=${OUT:-gpu-session-logs}
mkdir -p "$logs"
step() { echo "=== $*"; }

step "device"; nvidia-smi 2>&1 | tee "$logs/nvidia-smi.txt" | head -15

step "fatbins (nvcc via CMake)"
if cmake -S . -B build/cuda >"$logs/cmake.log" 2>&1 && cmake --build build/cuda -j 16 >>"$logs/cmake.log" 2>&1; then
  export ATTENTION_ENGINE_FATBIN_DIR=$PWD/build/cuda/cuda
  ls "$ATTENTION_ENGINE_FATBIN_DIR" | wc -l | xargs echo "fatbins:"
else
  echo "nvcc build failed (tail below); the tests fall back to NVRTC"; tail -30 "$logs/cmake.log"
fi

tests=(-class AttentionEngine.Tests.CudaRoundTripTests -class AttentionEngine.Tests.CudaBackendTests -class AttentionEngine.Tests.CudaKernelCompileTests)
step "CUDA tests on the GPU"
timeout 900 .device/run.sh AttentionEngine.Tests "${tests[@]}" 2>&1 | tee "$logs/tests.log" | grep -E "FAIL|SKIP|Total|passed" | head -40

for tool in memcheck racecheck; do
  step "compute-sanitizer --tool $tool"
  timeout 600 compute-sanitizer --tool "$tool" --target-processes all --print-limit 20 \
    .device/run.sh AttentionEngine.Tests -method "*Every_head_dimension_runs_its_variant" >"$logs/sanitizer-$tool.log" 2>&1
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Total:" "$logs/sanitizer-$tool.log" | tail -3
done
