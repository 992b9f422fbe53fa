"""Compare onnxc with onnxruntime on the same models, in one process, interleaved.

    python -m bench [--models light_resnet50 ...] [--threads 1 2] [--runs 20]

For each model and thread count it reports: compile time (onnxc cold compile, onnxc artifact
load, onnxruntime session creation), median run latency of each, and the ratio
onnxc / onnxruntime (below 1 means onnxc is faster). Runs alternate between the two engines so
machine noise hits both alike: in blocks of BLOCK runs, the first of each block discarded, so
one engine's spinning worker threads (onnxruntime's pool, libgomp's team) have gone quiet
before the other engine's timed runs.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time

import numpy as np
import onnx

import onnxc

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
BLOCK = 5
DEFAULT_MODELS = ["light_resnet50", "light_squeezenet", "light_inception_v1",
                  "light_densenet121"]


def _ort_session(path: str, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def bench_model(name: str, threads: int, runs: int) -> dict:
    path = name if os.path.exists(name) else os.path.join(LIGHT, name + ".onnx")
    t0 = time.perf_counter()
    session = onnxc.compile(path, num_threads=threads)
    compile_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        artifact = os.path.join(tmp, "model.onnxc")
        session.save(artifact)
        t0 = time.perf_counter()
        onnxc.load(artifact, num_threads=threads)
        load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ort_session = _ort_session(path, threads)
    ort_create_s = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal(i.shape).astype(np.float32)
             for i in session.get_inputs()}
    for _ in range(2):  # warm up both
        ours = session.run(None, feeds)
        theirs = ort_session.run(None, feeds)
    ours_t: list[float] = []
    theirs_t: list[float] = []
    while len(ours_t) < runs:
        for run, times in ((lambda: session.run(None, feeds), ours_t),
                           (lambda: ort_session.run(None, feeds), theirs_t)):
            run()  # settles the thread pools; not timed
            for _ in range(BLOCK):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
    scale = max(float(np.abs(theirs[0]).max()), 1e-12)
    return {"model": name, "threads": threads, "compile_s": compile_s, "load_s": load_s,
            "ort_create_s": ort_create_s, "onnxc_ms": 1e3 * statistics.median(ours_t),
            "ort_ms": 1e3 * statistics.median(theirs_t),
            "max_rel_err": float(np.abs(ours[0] - theirs[0]).max()) / scale}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    print("| model | threads | onnxc compile s | onnxc load s | ort create s | onnxc ms | "
          "ort ms | ratio | max rel err |")
    print("|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for name in args.models:
        for threads in args.threads:
            r = bench_model(name, threads, args.runs)
            ratio = r["onnxc_ms"] / r["ort_ms"]
            ratios.append(ratio)
            print(f"| {name} | {threads} | {r['compile_s']:.2f} | {r['load_s']:.2f} | "
                  f"{r['ort_create_s']:.2f} | {r['onnxc_ms']:.1f} | {r['ort_ms']:.1f} | "
                  f"{ratio:.2f} | {r['max_rel_err']:.1e} |", flush=True)
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"\ngeometric mean ratio onnxc/onnxruntime: {geo:.2f}")


if __name__ == "__main__":
    main()
