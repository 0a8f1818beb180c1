#!/usr/bin/env bash
# The checks and timings the CUDA backend owes a GPU, on a device machine (no .NET there: pack.sh carries a runtime).
# Prepare here:   bash bench/gpu/pack.sh         (packs the .NET runtime, tests and bench into .device)
# Run there (carry .device):  bash bench/gpu/session.sh checks    then    bash bench/gpu/session.sh bench
# (no argument: both). A device call runs at most 10 minutes and a session has about 15 minutes of device time, so
# each part is sized to a few minutes and every step has its own timeout.
# Logs are packed into $OUT/logs-<mode>.tgz (a device call returns at most 8 files), with the comparison tables beside
# it; without $OUT they stay in ./gpu-session-logs.
#   checks: nvidia-smi; `bench cuda-resources` for the device's architecture (every variant compiled by the machine's
#           NVRTC in parallel, which also fills the compile cache the tests and bench then load from); the CUDA test
#           suites against the GPU (CudaKnownAnswerTests compares every warp operation's bits with the emulator's
#           answers, lane by lane); compute-sanitizer memcheck and racecheck on one forward and one decode test; the
#           nvcc fatbin build through CMake, in the background.
#   bench:  Nsight Compute on one forward launch per element type and one fp16 decode launch (ncu.txt; NCU=0 skips it); `bench cuda` against PyTorch's SDPA on FlashAttention's grid and on the decode grid, same GPU, same run,
#           and the backward on FlashAttention's grid (compare.md, compare-decode.md and compare-backward.md are the
#           tables for bench/RESULTS.md).
set -uo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-all}
logs=$PWD/gpu-session-logs
mkdir -p "$logs"
if [ -n "${OUT:-}" ]; then
  trap 'tar czf "$OUT/logs-$mode.tgz" -C "$logs" . ; cp "$logs"/compare*.md "$OUT"/ 2>/dev/null' EXIT
fi
step() { echo "=== $* ($(date +%T))"; }

# NVRTC 13 sits beside the toolkit, which need not be on the loader's path.
for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -e "$dir/libnvrtc.so.13" ] && export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" && break
done
export device=/tmp/attention-engine-device
[ -x $device/dotnet/dotnet ] || { mkdir -p $device && tar xJf .device/payload.tar.xz -C $device; } || exit 2
export DOTNET_ROOT=$device/dotnet DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
bench() { (cd $device/apps/AttentionEngine.Bench && $DOTNET_ROOT/dotnet bench.dll "$@"); }
tests() { (cd $device/apps/AttentionEngine.Tests && $DOTNET_ROOT/dotnet AttentionEngine.Tests.dll "$@"); }
# Fatbins from an earlier call on this machine (the build below) are used when complete.
[ -f build/cuda/done ] && export ATTENTION_ENGINE_FATBIN_DIR=$PWD/build/cuda/cuda

if [ "$mode" != bench ]; then
  step "device"; nvidia-smi 2>&1 | tee "$logs/nvidia-smi.txt" | head -12
  arch=sm_$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.[:space:]')

  step "nvcc fatbins through CMake (background)"
  ( cmake -S . -B build/cuda >"$logs/cmake.log" 2>&1 && nice cmake --build build/cuda -j 8 >>"$logs/cmake.log" 2>&1 \
      && touch build/cuda/done && echo "fatbins built: $(ls build/cuda/cuda | wc -l)" >>"$logs/cmake.log" ) &
  build=$!

  step "ptxas resources on $arch (NVRTC of this machine)"
  timeout 120 bash -c "$(declare -f bench); bench cuda-resources --arch $arch" >"$logs/resources.txt" 2>&1
  echo "exit $?"; grep -iE "NVRTC|spill|error" "$logs/resources.txt" | head -5

  tests=(-class AttentionEngine.Tests.CudaKnownAnswerTests -class AttentionEngine.Tests.CudaRoundTripTests
         -class AttentionEngine.Tests.CudaBackendTests -class AttentionEngine.Tests.CudaDeviceTensorTests
         -class AttentionEngine.Tests.CudaDecodeKernelTests -class AttentionEngine.Tests.CudaPagedDecodeTests
         -class AttentionEngine.Tests.CudaDeviceFamilyTests -class AttentionEngine.Tests.CudaBackwardTests
         -class AttentionEngine.Tests.CudaDeviceBackwardTests)
  step "CUDA tests on the GPU"
  timeout 240 bash -c "$(declare -f tests); tests ${tests[*]}" >"$logs/tests.log" 2>&1
  echo "exit $?"; grep -E "\[FAIL\]|Total:|Finished" "$logs/tests.log" | head -30

  for tool in memcheck racecheck; do
    step "compute-sanitizer --tool $tool"
    timeout 60 compute-sanitizer --tool "$tool" --target-processes all --print-limit 20 \
      bash -c "$(declare -f tests); tests -method '*Every_head_dimension_runs_its_variant' -method '*Long_caches_split_across_blocks_and_merge_exactly'" \
      >"$logs/sanitizer-$tool.log" 2>&1
    echo "exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Total:" "$logs/sanitizer-$tool.log" | tail -3
  done

  step "waiting for the fatbin build"
  timeout 30 tail --pid=$build -f /dev/null; tail -3 "$logs/cmake.log"
fi

[ "$mode" = checks ] && exit 0
# One launch of the forward kernel (fp16 and bf16, B4 H32 N4096 D64) under Nsight Compute: throughput against the
# chip's peaks, occupancy and its limiters, warp stall reasons, memory traffic. The first H200 run (RESULTS.md) put the
# kernel at 0.11-0.19x SDPA; this says where the time goes. --clock-control none leaves the clocks as found.
if [ "$mode" != checks ] && [ "${NCU:-1}" != 0 ] && command -v ncu >/dev/null; then
  step "ncu: forward kernel, one launch each of fp16 and bf16"
  for dtype in f16 bf16; do
    timeout 90 ncu --clock-control none --kernel-name regex:flash_forward --launch-skip 3 --launch-count 1 \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section ComputeWorkloadAnalysis \
      --section MemoryWorkloadAnalysis --section SchedulerStats --section InstructionStats --section SourceCounters \
      bash -c "$(declare -f bench); bench cuda --shapes 'B4 H32 N4096 D64' --dtype $dtype --seconds 0.01" >>"$logs/ncu.txt" 2>&1
    echo "$dtype exit $?"
  done
  timeout 60 ncu --clock-control none --kernel-name regex:flash_decode_f16 --launch-skip 3 --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
    --section SchedulerStats --section InstructionStats \
    bash -c "$(declare -f bench); bench cuda --shapes 'B16 H32 Hkv8 Lq1 Lk16384 D128' --dtype f16 --seconds 0.01" >>"$logs/ncu.txt" 2>&1
  echo "decode f16 exit $?"
  grep -E "flash_forward|flash_decode|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Block Limit Reg" "$logs/ncu.txt" | head -36
fi
step "bench cuda vs PyTorch SDPA (same GPU, same run)"
for grid in preset decode; do
  suffix=${grid/preset/}; suffix=${suffix:+-$suffix}
  timeout 150 bash -c "$(declare -f bench); bench cuda --shapes $grid --seconds ${SECONDS_PER_CASE:-0.5} --json" >"$logs/cuda$suffix.json" 2>"$logs/cuda$suffix.err" \
    || tail -20 "$logs/cuda$suffix.err"
  timeout 120 python3 bench/gpu/sdpa.py --shapes $grid --seconds ${SECONDS_PER_CASE:-0.5} >"$logs/sdpa$suffix.json" 2>"$logs/sdpa$suffix.err" || tail -20 "$logs/sdpa$suffix.err"
  python3 bench/gpu/compare.py "$logs/cuda$suffix.json" "$logs/sdpa$suffix.json" | tee "$logs/compare$suffix.md"
done
# The backward on FlashAttention's grid (its own benchmark times the backward on the forward's grid), f16 and bf16.
step "bench cuda --pass backward vs PyTorch SDPA's backward (same GPU, same run)"
timeout 200 bash -c "$(declare -f bench); bench cuda --pass backward --shapes preset --seconds ${SECONDS_PER_CASE:-0.5} --json" >"$logs/cuda-backward.json" 2>"$logs/cuda-backward.err" \
  || tail -20 "$logs/cuda-backward.err"
timeout 150 python3 bench/gpu/sdpa.py --pass backward --shapes preset --seconds ${SECONDS_PER_CASE:-0.5} >"$logs/sdpa-backward.json" 2>"$logs/sdpa-backward.err" \
  || tail -20 "$logs/sdpa-backward.err"
python3 bench/gpu/compare.py "$logs/cuda-backward.json" "$logs/sdpa-backward.json" | tee "$logs/compare-backward.md"
# fp32 (3xTF32) has no SDPA peer worth the name (PyTorch runs fp32 attention in TF32 or fp32 math): its own figures,
# to track what the register pressure of its exact accumulation costs.
step "bench cuda fp32"
timeout 90 bash -c "$(declare -f bench); bench cuda --shapes 'B4 H32 N4096 D64;B4 H32 N4096 D64 causal;B4 H16 N4096 D128;B16 H32 Lq1 Lk4096 D128 Hkv8' --dtype f32 --seconds ${SECONDS_PER_CASE:-0.5}" 2>&1 | tee "$logs/cuda-f32.txt" | tail -12
