#!/usr/bin/env bash
# The GPU check, for a lent H100/H200 (nvcc, PyTorch and CuPy installed; no pycuda and no
# package registry). Run from the repository root:
#
#     scripts/gpu_check.sh            # everything below; the summary lands in $OUT/summary.txt
#     DRY_RUN=1 scripts/gpu_check.sh  # anywhere with nvcc: no GPU steps, pip only prints
#
# 1. pycuda from files we bring: the wheelhouse $WHEELHOUSE (default .whl/, carried along; it
#    holds pycuda's sdist and its pure-Python dependencies) -> pip --no-index builds pycuda
#    against this machine's CUDA ($CUDA_ROOT, from nvcc's location).
# 2. onnxc from this checkout (editable, no dependencies: onnx/numpy/llvmlite are there).
# 3. scripts/gpu_check.py: the check and bench models through CuPy, every ONNX node case that
#    passes on cpu through onnxc's pycuda driver (one nvcc module), PyTorch on the same graphs.
# 4. scripts/gpu_pycuda_check.py: the examples and the light models (SqueezeNet, ResNet-50)
#    through onnxc.compile(target="cuda"), against the cpu target, timed next to PyTorch.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/onnxc-gpu}; mkdir -p "$OUT"
WHEELHOUSE=${WHEELHOUSE:-.whl}
RUNS=${RUNS:-20}
PY=${PYTHON:-python3}
DRY=${DRY_RUN:-}
run() { if [ -n "$DRY" ]; then echo "+ $*"; else "$@"; fi; }
status=0

echo "== machine" | tee "$OUT/summary.txt"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$OUT/summary.txt"
else
  echo "no nvidia-smi" | tee -a "$OUT/summary.txt"
fi
# The toolkit root: the first candidate with include/cuda.h (nvcc may be a wrapper script).
NVCC=$(command -v nvcc || true)
for root in "${CUDA_ROOT:-}" "${CUDA_HOME:-}" "${CUDA_PATH:-}" \
            "$([ -n "$NVCC" ] && dirname "$(dirname "$(readlink -f "$NVCC")")")" \
            /usr/local/cuda $(ls -d /usr/local/cuda-* 2>/dev/null | sort -rV); do
  if [ -n "$root" ] && [ -f "$root/include/cuda.h" ] && [ -x "$root/bin/nvcc" ]; then
    export CUDA_ROOT="$root"; break
  fi
done
[ -n "${CUDA_ROOT:-}" ] && [ -f "$CUDA_ROOT/include/cuda.h" ] \
  || { echo "no CUDA toolkit found (set CUDA_ROOT)" >&2; exit 2; }
export PATH="$CUDA_ROOT/bin:$PATH"
NVCC="$CUDA_ROOT/bin/nvcc"
echo "CUDA_ROOT=$CUDA_ROOT" | tee -a "$OUT/summary.txt"
"$NVCC" --version | tail -1 | tee -a "$OUT/summary.txt"
$PY - <<'PYEOF' 2>&1 | tee -a "$OUT/summary.txt"
import importlib
for name in ("numpy", "onnx", "llvmlite", "onnxruntime", "torch", "cupy", "pycuda"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as exc:
        print(f"{name}: not available ({type(exc).__name__})")
PYEOF

echo "== pycuda from $WHEELHOUSE" | tee -a "$OUT/summary.txt"
if $PY -c "import pycuda" 2>/dev/null; then
  echo "pycuda already installed" | tee -a "$OUT/summary.txt"
else
  SDIST=$(ls "$WHEELHOUSE"/pycuda-*.tar.gz 2>/dev/null | sort | tail -1)
  if [ -z "$SDIST" ]; then
    echo "no pycuda sdist in $WHEELHOUSE: put pycuda-*.tar.gz and its dependency wheels" \
         "(pytools, platformdirs, mako, markupsafe, siphash24, setuptools) there" | tee -a "$OUT/summary.txt"
    status=1
  else
    # dependencies first, one wheel at a time (a wheel for another Python must not stop the
    # rest: setuptools >= 70.1 is what gives pip's build its bdist_wheel), then pycuda itself
    : > "$OUT/deps.log"
    for whl in "$WHEELHOUSE"/*.whl; do
      run $PY -m pip install -q --no-index --find-links "$WHEELHOUSE" --no-deps "$whl" \
        >> "$OUT/deps.log" 2>&1 || echo "skipped $(basename "$whl") (see deps.log)"
    done
    ( time run timeout 600 $PY -m pip install --no-index --find-links "$WHEELHOUSE" --no-deps \
        --no-build-isolation "$SDIST" ) > "$OUT/pycuda_build.log" 2>&1
    tail -3 "$OUT/pycuda_build.log" | tee -a "$OUT/summary.txt"
  fi
fi
run $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . > "$OUT/onnxc.log" 2>&1 \
  || { tail -5 "$OUT/onnxc.log"; echo "(onnxc runs from the checkout instead)"; }

HAVE_PYCUDA=
if [ -z "$DRY" ] && (cd /tmp && $PY -c "import pycuda.driver as d; d.init(); print('pycuda', d.get_version(), d.Device(0).name())") \
     2>&1 | tee -a "$OUT/summary.txt" | grep -q '^pycuda'; then
  HAVE_PYCUDA=1
fi

echo "== kernels, node cases, bench (scripts/gpu_check.py)" | tee -a "$OUT/summary.txt"
ARGS="--runs $RUNS --node-cases --keep $OUT/cuda"
[ -n "$HAVE_PYCUDA" ] && ARGS="$ARGS --pycuda"
[ -n "$DRY" ] && ARGS="--dry-run --models mlp,softmax"
timeout 420 $PY scripts/gpu_check.py $ARGS > "$OUT/gpu_check.txt" 2>&1 || status=1
grep -v '^PASS\|^FAIL node cases' "$OUT/gpu_check.txt" | grep -A20 '^model' | tee -a "$OUT/summary.txt"
grep '^FAIL\|node cases\|^PASS:' "$OUT/gpu_check.txt" | tail -40 | tee -a "$OUT/summary.txt"

echo "== target cuda through pycuda (scripts/gpu_pycuda_check.py)" | tee -a "$OUT/summary.txt"
if [ -n "$HAVE_PYCUDA" ]; then
  (cd /tmp && timeout 420 $PY "$OLDPWD/scripts/gpu_pycuda_check.py" --runs "$RUNS") \
    > "$OUT/pycuda_check.txt" 2>&1 || status=1
  cat "$OUT/pycuda_check.txt" | tee -a "$OUT/summary.txt"
else
  echo "skipped: pycuda is not usable here (see $OUT/pycuda_build.log)" | tee -a "$OUT/summary.txt"
  [ -z "$DRY" ] && status=1
fi
echo "== status $status (details in $OUT)" | tee -a "$OUT/summary.txt"
exit $status
