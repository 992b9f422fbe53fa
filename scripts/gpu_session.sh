#!/usr/bin/env bash
# Run on a lent GPU machine (no package registry there): build pycuda from the sdist carried
# in .whl/, install onnxc from this checkout, then run the pycuda-backed checks.
set -u
OUT=${OUT:-/tmp/onnxc-gpu}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -m pip install -q --no-index --no-deps .whl/*.whl > "$OUT/deps.log" 2>&1
export CUDA_ROOT=${CUDA_ROOT:-$(dirname "$(dirname "$(command -v nvcc)")")}
( time timeout 300 python3 -m pip install --no-index --no-deps --no-build-isolation \
    .whl/pycuda-*.tar.gz ) > "$OUT/pycuda_build.log" 2>&1
tail -3 "$OUT/pycuda_build.log"
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . > "$OUT/onnxc.log" 2>&1 \
  || tail -5 "$OUT/onnxc.log"
cd /tmp && python3 -c "import pycuda.driver as d; d.init(); print('pycuda', d.get_version(), d.Device(0).name())" \
  && python3 "$OLDPWD/scripts/gpu_pycuda_check.py" --runs 20 2>&1 | tee "$OUT/check.txt"
