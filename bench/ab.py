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
from collections.abc import Callable

import numpy as np
from onnxc.backends.cpu import epilogue, gemm_packed, team

import onnxc

from .__main__ import (DEFAULT_MODELS, SETTLE_S, WARMUP_RUNS, _ort_runner, model_path,
                       random_feeds)

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


def compare_switch(name: str, threads: int, runs: int,
                   switch: Callable[[bool], contextlib.AbstractContextManager]) -> dict:
    """Median ms of onnxc compiled with ``switch(False)`` ("before") and ``switch(True)``
    ("after") and of onnxruntime, timed interleaved in blocks (each after a pause and an
    untimed run, as in ``python -m bench``), and the larger max relative error of the two."""
    with tempfile.TemporaryDirectory() as tmp:
        path = model_path(name, tmp)
        with switch(False):
            before = onnxc.compile(path, num_threads=threads)
        with switch(True):
            after = onnxc.compile(path, num_threads=threads)
        ort = _ort_runner(path, threads)
    feeds = random_feeds(after)
    engines = {"before": lambda: before.run(None, feeds), "after": lambda: after.run(None, feeds),
               "ort": lambda: ort(feeds)}
    want = engines["ort"]()[0]
    scale = max(float(np.abs(want).max()), 1e-12)
    err = max(float(np.abs(engines[k]()[0] - want).max()) / scale for k in ("before", "after"))
    for run in reversed(engines.values()):  # each alone, onnxc last, as python -m bench does
        time.sleep(SETTLE_S)
        for _ in range(WARMUP_RUNS):
            run()
    times: dict[str, list[float]] = {k: [] for k in engines}
    while len(times["ort"]) < runs:
        for key, run in engines.items():
            time.sleep(SETTLE_S)
            run()
            for _ in range(BLOCK):
                t0 = time.perf_counter()
                run()
                times[key].append(time.perf_counter() - t0)
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    return {"model": name, "threads": threads, **ms, "err": err}


def main_for(switch: Callable[[bool], contextlib.AbstractContextManager], doc: str,
             argv=None) -> None:
    """The command line of an A/B script: a table of ``compare_switch`` per model and thread
    count."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
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
            r = compare_switch(name, threads, args.runs, switch)
            print(f"| {name} | {threads} | {r['before']:.2f} | {r['after']:.2f} | "
                  f"{r['ort']:.2f} | {r['before'] / r['ort']:.2f} | {r['after'] / r['ort']:.2f} "
                  f"| {r['err']:.1e} |", flush=True)


def main(argv=None) -> None:
    main_for(packed, __doc__, argv)


if __name__ == "__main__":
    main()
