"""Node counts after optimization: onnxc.optimize against onnxsim and onnxoptimizer.

    pip install onnxsim onnxoptimizer   # not dependencies of onnxc; only for this table
    python -m bench.node_counts

Each tool gets the light models as shipped (fixed input shapes) and its default passes;
onnxoptimizer runs its fusion passes too (fuse_bn_into_conv, fuse_matmul_add_bias_into_gemm,
...). Counts are ONNX nodes in the written model; "BN" counts BatchNormalization nodes left.
"""
from __future__ import annotations

import os
import sys
import time

import onnx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tests"))

import onnxc  # noqa: E402
from models import light_model_name, light_model_paths  # noqa: E402

ONNXOPT_PASSES = ["eliminate_deadend", "eliminate_identity", "eliminate_nop_dropout",
                  "eliminate_nop_transpose", "eliminate_unused_initializer",
                  "extract_constant_to_initializer", "fuse_add_bias_into_conv",
                  "fuse_bn_into_conv", "fuse_consecutive_transposes",
                  "fuse_matmul_add_bias_into_gemm", "fuse_transpose_into_gemm"]


def _count(model: onnx.ModelProto) -> str:
    bn = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    return f"{len(model.graph.node)} ({bn} BN)" if bn else str(len(model.graph.node))


def main() -> None:
    rows = []
    for path in light_model_paths():
        model = onnx.load(path)
        row = [light_model_name(path), _count(model)]
        start = time.perf_counter()
        row.append(_count(onnxc.optimize(model)))
        row.append(f"{time.perf_counter() - start:.1f}s")
        try:
            import onnxsim
            start = time.perf_counter()
            simplified, ok = onnxsim.simplify(model)
            row += [_count(simplified) if ok else "failed", f"{time.perf_counter() - start:.1f}s"]
        except ImportError:
            row += ["-", "-"]
        try:
            import onnxoptimizer
            row.append(_count(onnxoptimizer.optimize(model, ONNXOPT_PASSES)))
        except ImportError:
            row.append("-")
        rows.append(row)
        print(" | ".join(row), flush=True)
    head = ["model", "original", "onnxc -O2", "time", "onnxsim", "time", "onnxoptimizer"]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
