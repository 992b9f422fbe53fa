"""The packed GEMM at the models' convolution shapes, one tile against another, in one process.

    env -u OPENBLAS_CORETYPE python -m bench.gemm_shapes [--threads 1 2] [--runs 20]
        [--shapes C,M,H,W[,K[,S]] ...] [--tiles 6x2-nt 6x2 12x1 auto]

Each shape is one Conv (+ bias + ReLU), C input channels, M output channels, H x W input, K x K
kernel (padding K // 2), stride S; each tile is compiled with ``gemm_shapes.FORCE`` pinned to it
("auto": the schedule's own choice; suffix "-nt": without the dot-product column tail,
"-rows": threads share row groups before column blocks, as before) and all of them are timed interleaved in blocks, with
onnxruntime on the same model; GFLOP/s of the medians are printed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import onnxc
from onnxc.backends.cpu import gemm_shapes, gemm_tail

BLOCK = 5
SHAPES = ["1024,1024,7,7", "512,512,14,14", "512,2048,7,7", "256,1024,14,14", "512,1000,13,13",
          "64,256,56,56", "3,64,224,224,3,2"]


def conv_model(c: int, m: int, h: int, w: int, k: int = 1, s: int = 1):
    rng = np.random.default_rng(0)
    wt = (rng.standard_normal((m, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[k // 2] * 4,
                              strides=[s, s]),
             helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, c, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(wt, "w"), numpy_helper.from_array(bias, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _tile(text: str):
    text = text.removesuffix("-rows").removesuffix("-nt")
    return None if text == "auto" else tuple(int(v) for v in text.split("x"))


def bench_shape(shape: str, tiles: list[str], threads: int, runs: int) -> dict:
    dims = [int(v) for v in shape.split(",")]
    c, m, h, w = dims[:4]
    k = dims[4] if len(dims) > 4 else 1
    s = dims[5] if len(dims) > 5 else 1
    model = conv_model(c, m, h, w, k, s)
    engines = {}
    for t in tiles:
        gemm_shapes.FORCE = _tile(t)
        tail = gemm_tail.TAIL_MAX
        gemm_tail.TAIL_MAX = 0 if "-nt" in t else tail  # "-nt": no dot-product tail
        gemm_shapes.SPLIT_COLUMNS = not t.endswith("-rows")  # "-rows": row groups first
        try:
            engines[t] = onnxc.compile(model, num_threads=threads)
        finally:
            gemm_shapes.FORCE, gemm_tail.TAIL_MAX, gemm_shapes.SPLIT_COLUMNS = None, tail, True
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    engines["ort"] = ort.InferenceSession(model.SerializeToString(), opts,
                                          providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((1, c, h, w)).astype(np.float32)
    want = engines["ort"].run(None, {"x": x})[0]
    y = want.shape
    flop = 2.0 * m * c * k * k * y[2] * y[3]
    err = max(float(np.abs(e.run(None, {"x": x})[0] - want).max()) for n, e in engines.items()
              if n != "ort") / max(float(np.abs(want).max()), 1e-12)
    times: dict[str, list[float]] = {n: [] for n in engines}
    while len(times["ort"]) < runs:
        for name, e in engines.items():
            e.run(None, {"x": x})
            for _ in range(BLOCK):
                t0 = time.perf_counter()
                e.run(None, {"x": x})
                times[name].append(time.perf_counter() - t0)
    return {"gflops": {n: flop / statistics.median(v) / 1e9 for n, v in times.items()},
            "best": {n: flop / min(v) / 1e9 for n, v in times.items()}, "err": err}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="+", default=SHAPES)
    ap.add_argument("--tiles", nargs="+", default=["6x2-nt", "6x2", "6x3", "12x1", "auto"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    print(f"# load average {os.getloadavg()[0]:.2f}; GFLOP/s of median / fastest run")
    print("| shape C,M,H,W,K,S | threads | " + " | ".join(args.tiles) + " | ort | err |")
    print("|---|---|" + "---|" * (len(args.tiles) + 2))
    for threads in args.threads:
        for shape in args.shapes:
            r = bench_shape(shape, args.tiles, threads, args.runs)
            g, best = r["gflops"], r["best"]
            print(f"| {shape} | {threads} | "
                  + " | ".join(f"{g[t]:.0f} / {best[t]:.0f}" for t in args.tiles)
                  + f" | {g['ort']:.0f} / {best['ort']:.0f} | {r['err']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
