"""Where a model's time goes: onnxc's per-kernel latencies, averaged over runs, largest first.

    env -u OPENBLAS_CORETYPE python -m bench.profile MODEL [--threads N] [--runs 5] [--top 25]
        [--precision bf16]

MODEL is a light model name, a generated one (bench/models.py) or an .onnx path. Kernels are
timed one by one (``Session.profile``), so the total is a little above a whole-graph run.
"""
from __future__ import annotations

import argparse
import collections
import tempfile

import onnxc

from .__main__ import model_path, random_feeds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        session = onnxc.compile(model_path(args.model, tmp), num_threads=args.threads,
                                precision=args.precision)
    feeds = random_feeds(session)
    for _ in range(3):
        session.run(None, feeds)
    seconds: collections.Counter = collections.Counter()
    for _ in range(args.runs):
        for kernel, t in session.profile(feeds):
            seconds[kernel] += t / args.runs
    total = sum(seconds.values())
    print(f"{args.model} {args.precision}, {args.threads} thread(s): {total * 1e3:.2f} ms in "
          f"{len(seconds)} kernels")
    for kernel, t in seconds.most_common(args.top):
        print(f"  {t * 1e3:8.3f} ms {100 * t / total:5.1f}%  {kernel}")


if __name__ == "__main__":
    main()
