#!/usr/bin/env bash
# The checks the CUDA backend still owes a GPU, in one command on the device machine (bench/RESULTS.md, "GPU
# backends", lists what is owed). Prepare here:   ../shared/device/pack.sh      (packs the .NET runtime, tests and bench into .device)
# Run there (carry .device):        bash bench/gpu/session.sh
# Logs land in $OUT (or ./gpu-session-logs): nvidia-smi, the nvcc fatbin build, the CUDA test suites against the GPU
# (the emulator is not used where libcuda.so.1 loads; CudaKnownAnswerTests compares every warp operation's bits with
# the emulator's answers, so its log says lane by lane where the emulator and this GPU part), compute-sanitizer memcheck and racecheck on one suite, and
# `bench cuda` against PyTorch's SDPA on the same grid (compare.md is the table for bench/RESULTS.md).
# A device call runs at most 10 minutes, so run it as two calls: `session.sh checks` (build, tests, sanitizers) and
# `session.sh bench` (build, timings); with no argument it does both.
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

# The runtime run.sh unpacks, for the bench app (whose assembly is bench.dll, not <project>.dll).
export DOTNET_ROOT=/tmp/dotnet DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
[ -x /tmp/dotnet/dotnet ] || { mkdir -p /tmp/dotnet && tar xzf .device/dotnet.tgz -C /tmp/dotnet; }
bench() { (cd .device/apps/AttentionEngine.Bench && /tmp/dotnet/dotnet bench.dll "$@"); }

mode=${1:-all}
if [ "$mode" != bench ]; then
  tests=(-class AttentionEngine.Tests.CudaRoundTripTests -class AttentionEngine.Tests.CudaBackendTests
         -class AttentionEngine.Tests.CudaDeviceTensorTests -class AttentionEngine.Tests.CudaKernelCompileTests
         -class AttentionEngine.Tests.CudaKnownAnswerTests -class AttentionEngine.Tests.CudaDeviceFamilyTests
         -class AttentionEngine.Tests.CudaDecodeKernelTests -class AttentionEngine.Tests.CudaPagedDecodeTests)
  step "CUDA tests on the GPU"
  timeout 300 .device/run.sh AttentionEngine.Tests "${tests[@]}" 2>&1 | tee "$logs/tests.log" | grep -E "FAIL|SKIP|Total|passed" | head -40

  for tool in memcheck racecheck; do
    step "compute-sanitizer --tool $tool"
    timeout 240 compute-sanitizer --tool "$tool" --target-processes all --print-limit 20 \
      .device/run.sh AttentionEngine.Tests -method "*Every_head_dimension_runs_its_variant" >"$logs/sanitizer-$tool.log" 2>&1
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Total:" "$logs/sanitizer-$tool.log" | tail -3
  done
fi

[ "$mode" = checks ] && exit 0
step "bench cuda vs PyTorch SDPA (same GPU, same run)"
timeout 300 bash -c "$(declare -f bench); bench cuda --json" >"$logs/cuda.json" 2>"$logs/cuda.err" || tail -20 "$logs/cuda.err"
timeout 240 python3 bench/gpu/sdpa.py >"$logs/sdpa.json" 2>"$logs/sdpa.err" || tail -20 "$logs/sdpa.err"
python3 bench/gpu/compare.py "$logs/cuda.json" "$logs/sdpa.json" | tee "$logs/compare.md"
