"""Before/after in one process: onnxc with and without a schedule switch, and onnxruntime.

    env -u OPENBLAS_CORETYPE python -m bench.ab [--models ...] [--threads 1 2] [--runs 20]

Compiles each model twice — once with this branch's schedules off (the register-blocked GEMM
reading its operands in place, scalar epilogues, a fork-join per parallel stage: the state
before them) and once on (packed GEMM, vector epilogues, one thread team per run) — and times both
with onnxruntime, interleaved in blocks (first run of each block untimed), so machine load hits
all three alike. Prints median latencies and the ratios to onnxruntime.
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
from onnxc.backends.cpu import epilogue, gemm_packed, team

from .__main__ import DEFAULT_MODELS, _ort_runner, model_path

BLOCK = 5


@contextlib.contextmanager
def packed(enabled: bool):
    modules = (gemm_packed, epilogue, team)
    saved = [m.ENABLED for m in modules]
    for m in modules:
        m.ENABLED = enabled
    try:
        yield
    finally:
        for m, value in zip(modules, saved):
            m.ENABLED = value


def compare(name: str, threads: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = model_path(name, tmp)
        return _compare(path, name, threads, runs)


def _compare(path: str, name: str, threads: int, runs: int) -> dict:
    with packed(False):
        before = onnxc.compile(path, num_threads=threads)
    with packed(True):
        after = onnxc.compile(path, num_threads=threads)
    ort = _ort_runner(path, threads)
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal(i.shape).astype(np.float32)
             for i in after.get_inputs()}
    engines = {"before": lambda: before.run(None, feeds), "after": lambda: after.run(None, feeds),
               "ort": lambda: ort(feeds)}
    want = engines["ort"]()[0]
    scale = max(float(np.abs(want).max()), 1e-12)
    err = {k: float(np.abs(engines[k]()[0] - want).max()) / scale for k in ("before", "after")}
    times: dict[str, list[float]] = {k: [] for k in engines}
    while len(times["ort"]) < runs:
        for key, run in engines.items():
            run()
            for _ in range(BLOCK):
                t0 = time.perf_counter()
                run()
                times[key].append(time.perf_counter() - t0)
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    return {"model": name, "threads": threads, **ms, "err": max(err.values())}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    print(f"# load average {os.getloadavg()[0]:.2f}")
    print("| model | threads | before ms | after ms | ort ms | before / ort | after / ort | "
          "max rel err |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        for threads in args.threads:
            r = compare(name, threads, args.runs)
            print(f"| {name} | {threads} | {r['before']:.1f} | {r['after']:.1f} | "
                  f"{r['ort']:.1f} | {r['before'] / r['ort']:.2f} | {r['after'] / r['ort']:.2f} "
                  f"| {r['err']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
