"""Pipelining micro-batches through placed partitions vs running the partitions one after
another, on the same placed model, interleaved.

    python -m bench.pipeline [--model light_resnet50] [--devices 4] [--memory-mb 40]
                             [--micro-batches 8] [--threads 1 2] [--rounds 5]
                             [--objective throughput|time]

The model (random weights) is placed over ``--devices`` virtual CPU devices of ``--memory-mb``
each. For each per-partition thread count, a round times ``--micro-batches`` batch-1 requests
twice: sequentially (each request runs every partition in turn, then the next request starts)
and pipelined (``run_pipelined``: partition k works on request m while partition k+1 works on
m-1). Reported: median throughput of each (requests/s), their ratio, and each partition's
median latency (the slowest bounds a pipeline's throughput, so do the cores).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import onnxc

HERE = os.path.dirname(os.path.abspath(__file__))


def _model(name: str):
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from models import LIGHT_DIR, randomize_light_model

    return randomize_light_model(os.path.join(LIGHT_DIR, f"{name}.onnx"), seed=3)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="light_resnet50")
    ap.add_argument("--devices", type=int, default=4)
    ap.add_argument("--memory-mb", type=float, default=40)
    ap.add_argument("--micro-batches", type=int, default=8)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--objective", choices=["time", "throughput"], default="throughput",
                    help="placement objective (throughput balances the partitions)")
    args = ap.parse_args(argv)

    model = _model(args.model)
    devices = [onnxc.Device("cpu", k, memory_bytes=args.memory_mb * 1e6)
               for k in range(args.devices)]
    start = time.perf_counter()
    sess = onnxc.compile(model, devices=devices, objective=args.objective)
    compile_s = time.perf_counter() - start
    name = sess.get_inputs()[0].name
    rng = np.random.default_rng(0)
    feeds = [{name: rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}
             for _ in range(args.micro_batches)]
    parts = sess.describe()["partitions"]
    print(f"{args.model}: {len(parts)} partitions on {args.devices} x {args.memory_mb:g} MB CPU "
          f"devices, objective {args.objective} (compiled in {compile_s:.1f}s), "
          f"{args.micro_batches} requests of batch 1, {os.cpu_count()} CPUs")
    print("| threads/partition | sequential req/s | pipelined req/s | pipelined / sequential "
          "| partition medians ms |")
    print("|---|---|---|---|---|")
    for threads in args.threads:
        sess.num_threads = threads
        sess.close()  # the executor takes the new thread count
        sess.run_pipelined(feeds[:2])  # warm up both paths
        for f in feeds[:2]:
            sess.run(None, f)
        seq, pipe = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for f in feeds:
                sess.run(None, f)
            seq.append(len(feeds) / (time.perf_counter() - start))
            start = time.perf_counter()
            sess.run_pipelined(feeds)
            pipe.append(len(feeds) / (time.perf_counter() - start))
        stage_ms = []
        for stage in sess.stages:
            times = []
            for _ in range(args.rounds):
                inputs = [np.zeros(s.shape, s.dtype) for s in stage.executable.inputs]
                start = time.perf_counter()
                stage.executable.run(inputs, threads)
                times.append(time.perf_counter() - start)
            stage_ms.append(statistics.median(times) * 1e3)
        s, p = statistics.median(seq), statistics.median(pipe)
        print(f"| {threads} | {s:.2f} | {p:.2f} | {p / s:.2f} | "
              f"{', '.join(f'{t:.1f}' for t in stage_ms)} |")


if __name__ == "__main__":
    main()
