#!/usr/bin/env bash
# The NVIDIA GPU check, in one go: configure and build the CUDA-only target set (kernels/cuda, its tests,
# gpu_bench — nothing but the CUDA toolkit and the C++ standard library), run the CUDA tests, then the
# cuBLAS / cuSPARSELt / sparse24 benchmark. Everything lands in $OUT: gpu_check.log, gpu_bench.json,
# ctest.log, versions.txt. Exit status: 0 when the build and every test passed (benchmark rows that failed are
# reported in the JSON, not in the status).
#
#   OUT=/tmp/out scripts/gpu_check.sh              # quick benchmark subset (estimated < 5 min in all)
#   GPU_CHECK_FULL=1 OUT=... scripts/gpu_check.sh  # all 11 shapes x 7 M x 3 dtypes (several minutes more)
# Other knobs: GPU_CHECK_BUILD (build dir), GPU_CHECK_JOBS (parallel jobs), GPU_CHECK_BENCH_SECONDS (time
# limit of the benchmark, default 210), GPU_CHECK_BUILD_ONLY=1 (stop after the build), GPU_CHECK_SKIP_BENCH=1
# (build and tests only, e.g. to rerun after a fix).
#
# cuSPARSELt is found in the Python environment (the nvidia-cusparselt wheel, as PyTorch installs it), or
# at $SPARSE24_CUSPARSELT_ROOT; see docs/gpu.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/build/gpu-check-out}"
mkdir -p "$OUT"
BUILD="${GPU_CHECK_BUILD:-build/gpu-check}"
BENCH_SECONDS="${GPU_CHECK_BENCH_SECONDS:-210}"
exec > >(tee "$OUT/gpu_check.log") 2>&1
start=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - start ))s] $*"; }

stamp "versions"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) $(git status --porcelain 2>/dev/null | wc -l) changed file(s)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 || echo "nvidia-smi: unavailable"
  nvcc --version 2>&1 | tail -1 || echo "nvcc: not found"
  cmake --version | head -1
  echo "host CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
} | tee "$OUT/versions.txt"

# cuSPARSELt: $SPARSE24_CUSPARSELT_ROOT, else the nvidia-cusparselt package of the first Python that has it.
if [ -z "${SPARSE24_CUSPARSELT_ROOT:-}" ]; then
  for py in python3 python .venv/bin/python; do
    command -v "$py" >/dev/null 2>&1 || continue
    root=$("$py" -c "import nvidia.cusparselt as m, os; print(os.path.dirname(m.__file__) if getattr(m, '__file__', None) else list(m.__path__)[0])" 2>/dev/null) || continue
    if [ -f "$root/lib/libcusparseLt.so.0" ]; then SPARSE24_CUSPARSELT_ROOT="$root"; break; fi
  done
fi
if [ -n "${SPARSE24_CUSPARSELT_ROOT:-}" ] && [ -f "$SPARSE24_CUSPARSELT_ROOT/lib/libcusparseLt.so.0" ]; then
  export SPARSE24_CUSPARSELT_ROOT
  export LD_LIBRARY_PATH="$SPARSE24_CUSPARSELT_ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export SPARSE24_REQUIRE_CUSPARSELT=1  # the tests fail, rather than skip, if it then does not load
  header="$SPARSE24_CUSPARSELT_ROOT/include/cusparseLt.h"
  if [ -f "$header" ]; then
    ver=$(awk '/define CUSPARSELT_VER_(MAJOR|MINOR|PATCH)/ {printf "%s%s", sep, $3; sep="."}' "$header")
  else
    ver="(no header there: the declaration check is not built)"
  fi
  echo "cuSPARSELt $ver at $SPARSE24_CUSPARSELT_ROOT" | tee -a "$OUT/versions.txt"
else
  echo "cuSPARSELt: not found (no nvidia-cusparselt in any Python here, SPARSE24_CUSPARSELT_ROOT unset): its tests and benchmark rows are skipped" | tee -a "$OUT/versions.txt"
fi

# Only the local GPU's architecture: the build is then one pass of nvcc per .cu file.
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .' || true)
case "$arch" in ''|*[!0-9]*) arch="80;90" ;; esac
stamp "configure (Release, SPARSE24_GPU_ONLY=ON, CUDA architectures $arch)"
generator=(-G Ninja)
command -v ninja >/dev/null 2>&1 || { generator=(); echo "ninja not found: CMake's default generator"; }
cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DSPARSE24_GPU_ONLY=ON "-DCMAKE_CUDA_ARCHITECTURES=$arch" \
  ${SPARSE24_CUSPARSELT_ROOT:+-DSPARSE24_CUSPARSELT_ROOT=$SPARSE24_CUSPARSELT_ROOT}
stamp "build"
cmake --build "$BUILD" -j "${GPU_CHECK_JOBS:-$(nproc)}"
stamp "build done"
[ "${GPU_CHECK_BUILD_ONLY:-0}" = 1 ] && { stamp "GPU_CHECK_BUILD_ONLY=1: stopping after the build"; exit 0; }

stamp "tests"
test_status=0
# The GPU tests on their own first, so that their full output (device, diagnostics, skipped parts) is kept:
# the mma.sp layout probe (which names any lane/register the model misplaces), then the GEMM tests.
for t in test_mma_sp_layout test_cuda_gemm; do
  set +e
  "$BUILD/tests/cuda/$t" 2>&1 | tee "$OUT/$t.txt"
  status=${PIPESTATUS[0]}
  set -e
  case "$status" in 0 | 77) ;; *) test_status=1 ;; esac  # 77: skipped, no CUDA device
  if nvidia-smi -L >/dev/null 2>&1 && grep -q "no CUDA device: skipped" "$OUT/$t.txt"; then
    echo "nvidia-smi sees a GPU but the CUDA runtime does not: $t did not run"
    test_status=1
  fi
done
(cd "$BUILD" && ctest --output-on-failure --timeout 300 -E '^(cuda_gemm|cuda_mma_sp_layout)$') 2>&1 | tee "$OUT/ctest.log" || test_status=1
grep -q "tests passed, 0 tests failed" "$OUT/ctest.log" || test_status=1

if [ "${GPU_CHECK_SKIP_BENCH:-0}" = 1 ]; then
  stamp "done (GPU_CHECK_SKIP_BENCH=1): tests $([ $test_status = 0 ] && echo passed || echo FAILED)"
  exit $test_status
fi
if [ "${GPU_CHECK_FULL:-0}" = 1 ]; then
  bench_args=()
  bench_what="full sweep"
else
  bench_what="quick subset"
  bench_args=(--shapes 768x768,3072x768,4096x4096,11008x4096,4096x11008,14336x4096 --m 1,16,128,1024,4096,16384)
fi
stamp "benchmark ($bench_what, at most ${BENCH_SECONDS}s) -> $OUT/gpu_bench.json"
bench_status=0
timeout "$BENCH_SECONDS" "$BUILD/gpu_bench" --json "$OUT/gpu_bench.json" "${bench_args[@]}" || bench_status=$?
case "$bench_status" in
  124) echo "gpu_bench: stopped after ${BENCH_SECONDS}s; the JSON holds the rows measured so far" ;;
  77) echo "gpu_bench: no CUDA device, nothing measured" ;;
esac

stamp "done: tests $([ $test_status = 0 ] && echo passed || echo FAILED), benchmark exit $bench_status"
exit $test_status
