"""On a machine with an NVIDIA GPU and pycuda: run models through onnxc's ``target="cuda"``
session (pycuda loads the nvcc-built fatbin) and compare with the cpu target, and time them
next to PyTorch running the same graph on the same GPU (scripts/torch_ref.py).

    python scripts/gpu_pycuda_check.py [--runs 20] [--no-torch]

Prints one PASS/FAIL line per model, then a table of median latencies. The light models get
random weights (tests/models.py: their shipped weights are a constant 0.02).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import onnx

import onnxc

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "tests")]
MODELS = [(os.path.join(HERE, "..", "examples", "tiny_cnn.onnx"), {"image": (8, 3, 32, 32)}),
          (os.path.join(HERE, "..", "examples", "mlp.onnx"), {"x": (64, 64)}),
          (os.path.join(LIGHT, "light_squeezenet.onnx"), None),
          (os.path.join(LIGHT, "light_resnet50.onnx"), None)]


def load(path: str) -> onnx.ModelProto:
    if os.path.dirname(os.path.abspath(path)) == os.path.abspath(LIGHT):
        from models import randomize_light_model

        return randomize_light_model(path, seed=3)
    return onnx.load(path)


def median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch timings")
    args = ap.parse_args()
    failures, rows = 0, []
    for path, shapes in MODELS:
        name = os.path.basename(path)
        try:
            model = load(path)
            t0 = time.perf_counter()
            gpu = onnxc.compile(model, target="cuda", input_shapes=shapes)
            compile_s = time.perf_counter() - t0
            cpu = onnxc.compile(model, target="cpu", input_shapes=shapes)
            rng = np.random.default_rng(0)
            feeds = {i.name: rng.standard_normal(i.shape).astype(np.float32)
                     for i in cpu.get_inputs()}
            want = cpu.run(None, feeds)
            got = gpu.run(None, feeds)
            err = max(float(np.abs(a - b).max()) / max(float(np.abs(a).max()), 1e-6)
                      for a, b in zip(want, got))
            gpu_ms = median_ms(lambda: gpu.run(None, feeds), args.runs)
            cpu_ms = median_ms(lambda: cpu.run(None, feeds), args.runs)
            ok = err < 1e-3
            failures += not ok
            print(f"{'PASS' if ok else 'FAIL'} {name}: rel err {err:.1e}, cuda compile "
                  f"{compile_s:.1f}s, cuda run {gpu_ms:.2f} ms (copies included), cpu run "
                  f"{cpu_ms:.2f} ms, kernels {len(gpu.describe()['kernels'])}", flush=True)
            t_ms = float("nan")
            if not args.no_torch:
                try:
                    from torch_ref import torch_ms

                    t_ms = torch_ms(model, feeds, want, args.runs)
                except Exception as exc:  # no torch, or a graph it cannot run: n/a
                    print(f"  torch: {type(exc).__name__}: {exc}", flush=True)
            rows.append((name, gpu_ms, t_ms, cpu_ms))
        except Exception as exc:  # report and go on: one line per model
            failures += 1
            print(f"FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
    if rows:
        print(f"\n{'model (target cuda)':<24} {'onnxc ms':>9} {'torch ms':>9} {'ratio':>6} "
              f"{'onnxc cpu ms':>12}   (median of {args.runs}; onnxc includes copies)")
        for name, g_ms, t_ms, c_ms in rows:
            print(f"{name:<24} {g_ms:>9.3f} {t_ms:>9.3f} {g_ms / t_ms:>6.2f} {c_ms:>12.3f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
