"""Single-kernel GEMM GFLOP/s: onnxc's generated MatMul against numpy's (OpenBLAS) matmul.

    env -u OPENBLAS_CORETYPE python -m bench.gemm [--sizes 256 512 1024 2048] [--threads 1 2]

Square float32 products ``x @ w`` (``w`` a constant weight, as in a model). Both engines run in
the same process, interleaved in blocks (first run of each block untimed, so one engine's
spinning threads have gone quiet before the other's timed runs); the median of each is reported
with the ratio onnxc / numpy of GFLOP/s (1.0: as fast as OpenBLAS); "best" columns use each
engine's fastest run, which on a shared machine is the run least disturbed by other processes.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import onnxc

BLOCK = 4


def matmul_model(m: int, k: int, n: int, seed: int = 0):
    w = np.random.default_rng(seed).standard_normal((k, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), w


def _set_blas_threads(threads: int) -> None:
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
    except ImportError:  # numpy then uses OPENBLAS_NUM_THREADS from the environment
        pass


def bench_size(size: int, threads: int, runs: int) -> dict:
    model, w = matmul_model(size, size, size)
    session = onnxc.compile(model, num_threads=threads)
    x = np.random.default_rng(1).standard_normal((size, size)).astype(np.float32)
    got = session.run(None, {"x": x})[0]
    want = x @ w
    err = float(np.abs(got - want).max() / np.abs(want).max())
    ours, theirs = [], []
    while len(ours) < runs:
        for fn, out in ((lambda: session.run(None, {"x": x}), ours), (lambda: x @ w, theirs)):
            for i in range(BLOCK):
                t0 = time.perf_counter()
                fn()
                if i:
                    out.append(time.perf_counter() - t0)
    flop = 2.0 * size ** 3
    g_ours, g_np = flop / statistics.median(ours) / 1e9, flop / statistics.median(theirs) / 1e9
    b_ours, b_np = flop / min(ours) / 1e9, flop / min(theirs) / 1e9
    return {"size": size, "threads": threads, "onnxc": g_ours, "numpy": g_np,
            "ratio": g_ours / g_np, "best_onnxc": b_ours, "best_numpy": b_np,
            "best_ratio": b_ours / b_np, "err": err}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--runs", type=int, default=12)
    args = ap.parse_args(argv)
    print(f"# load average {os.getloadavg()[0]:.2f}; OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print("| size | threads | onnxc GFLOP/s | numpy GFLOP/s | onnxc / numpy | best onnxc | "
          "best numpy | best ratio | max rel err |")
    print("|---|---|---|---|---|---|---|---|---|")
    for threads in args.threads:
        _set_blas_threads(threads)
        for size in args.sizes:
            runs = args.runs if size <= 1024 else max(4, args.runs // 3)
            r = bench_size(size, threads, runs)
            print(f"| {size} | {threads} | {r['onnxc']:.1f} | {r['numpy']:.1f} | "
                  f"{r['ratio']:.2f} | {r['best_onnxc']:.1f} | {r['best_numpy']:.1f} | "
                  f"{r['best_ratio']:.2f} | {r['err']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
