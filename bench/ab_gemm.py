"""Before/after of the packed GEMM's per-shape tiles and leftover-column dot products, in one
process: each model compiled with the old fixed 6x2 tile and no dot products ("before") and with
this branch's choices ("after"), timed interleaved in blocks with onnxruntime (first run of each
block untimed); medians.

    env -u OPENBLAS_CORETYPE python -m bench.ab_gemm [--models ...] [--threads 1 2] [--runs 20]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time

import numpy as np

import onnxc
from onnxc.backends.cpu import gemm_shapes, gemm_tail

from .__main__ import DEFAULT_MODELS, _ort_runner, model_path

BLOCK = 5


@contextlib.contextmanager
def fixed_tile(enabled: bool):
    """enabled=False: the schedule as before (6x2 everywhere, no dot-product columns, row
    groups before column blocks)."""
    saved = gemm_shapes.FORCE, gemm_tail.TAIL_MAX, gemm_shapes.SPLIT_COLUMNS
    if not enabled:
        gemm_shapes.FORCE, gemm_tail.TAIL_MAX, gemm_shapes.SPLIT_COLUMNS = (6, 2), 0, False
    try:
        yield
    finally:
        gemm_shapes.FORCE, gemm_tail.TAIL_MAX, gemm_shapes.SPLIT_COLUMNS = saved


def compare(name: str, threads: int, runs: int, tmp: str) -> dict:
    path = model_path(name, tmp)
    with fixed_tile(False):
        before = onnxc.compile(path, num_threads=threads)
    with fixed_tile(True):
        after = onnxc.compile(path, num_threads=threads)
    ort = _ort_runner(path, threads)
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal(i.shape).astype(np.float32)
             for i in after.get_inputs()}
    engines = {"before": lambda: before.run(None, feeds), "after": lambda: after.run(None, feeds),
               "ort": lambda: ort(feeds)}
    want = engines["ort"]()[0]
    scale = max(float(np.abs(want).max()), 1e-12)
    err = max(float(np.abs(engines[k]()[0] - want).max()) / scale for k in ("before", "after"))
    times: dict[str, list[float]] = {k: [] for k in engines}
    while len(times["ort"]) < runs:
        for key, run in engines.items():
            run()  # untimed: the other engine's threads go quiet
            for _ in range(BLOCK):
                t0 = time.perf_counter()
                run()
                times[key].append(time.perf_counter() - t0)
    return {**{k: 1e3 * statistics.median(v) for k, v in times.items()}, "err": err}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp()
    print(f"# load average {os.getloadavg()[0]:.2f}")
    print("| model | threads | before ms | after ms | ort ms | before / ort | after / ort | "
          "max rel err |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        for threads in args.threads:
            r = compare(name, threads, args.runs, tmp)
            print(f"| {name} | {threads} | {r['before']:.2f} | {r['after']:.2f} | "
                  f"{r['ort']:.2f} | {r['before'] / r['ort']:.2f} | {r['after'] / r['ort']:.2f} "
                  f"| {r['err']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
