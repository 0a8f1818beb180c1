# The shared half of the A/B harnesses (forward_ab.sh, decode_ab.sh), sourced by them: where the builds and the log go,
# one nvcc build per kernel version, the ptxas summary, and one timed line per version. Needs nvcc (a GPU machine).

# ab_begin NAME DIR [ARCH]: from the repository root, builds under build/NAME, log $OUT/NAME.txt (emptied), versions
# are DIR/*.cu, ARCH defaults to the GPU's.
ab_begin() {
  cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
  dir=$2
  arch=${3:-sm_$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.[:space:]')}
  build=build/$1
  mkdir -p "$build"
  log=${OUT:-.}/$1.txt
  : >"$log"
}

# ab_compile HARNESS SOURCE EXE [NVCC FLAGS...]: builds HARNESS around kernel SOURCE into EXE in the background,
# with its ptxas report in EXE.log.
ab_compile() {
  local harness=$1 source=$2 exe=$3
  shift 3
  nvcc -O3 -std=c++17 -arch="$arch" -DKERNEL_SOURCE="\"$PWD/$source\"" "$@" -Xptxas -v "$harness" -o "$exe" >"$exe.log" 2>&1 &
}

# ab_report SKIP LINES: waits for the builds, then logs their errors, registers and spills (lines matching SKIP left out).
ab_report() {
  wait
  grep -H -E "error|Used|spill" "$build"/*.log | grep -v -E "$1" | sed 's/ptxas info    : //' | tee -a "$log" | head -"$2"
}

# ab_time ROUND DTYPE SUFFIX ARGS...: runs every version's build named VERSION-SUFFIX on ARGS, one logged line each.
ab_time() {
  local round=$1 dtype=$2 suffix=$3 source exe
  shift 3
  for source in "$dir"/*.cu; do
    exe="$build/$(basename "$source" .cu)-$suffix"
    [ -x "$exe" ] || continue
    echo "round $round $dtype $(timeout 30 "$exe" "$@" 2>&1 | tail -1)" | tee -a "$log"
  done
}
