"""The ONNX backend node test cases that ship with the onnx package, for the supported ops.

Each case is a one-node model with reference inputs and outputs. Ops listed in SUPPORTED run;
KNOWN_FAILURES lists cases of those ops that do not pass yet, grouped with a reason. The list
may only shrink.
"""
from __future__ import annotations

import re

import onnx.backend.test

import onnxc.backend

SUPPORTED = [
    "abs", "add", "averagepool", "basic_conv", "batchnorm", "clip", "concat", "constant",
    "constantofshape", "conv", "div", "dropout", "exp", "flatten", "gemm", "globalaveragepool",
    "globalmaxpool", "identity", "leakyrelu", "log", "lrn", "matmul", "max", "maxpool", "mean",
    "min", "mul", "neg", "reciprocal", "relu", "reshape", "sigmoid", "softmax", "logsoftmax",
    "sqrt", "squeeze", "sub", "sum", "tanh", "transpose", "unsqueeze", "cast", "slice", "shape",
    "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "pow",
]

KNOWN_FAILURES: dict[str, list[str]] = {}

backend_test = onnx.backend.test.BackendTest(onnxc.backend, __name__)
backend_test.include(r"^test_(" + "|".join(SUPPORTED) + r")(_.*)?_cpu$")
for reason, patterns in KNOWN_FAILURES.items():
    for pattern in patterns:
        backend_test.exclude(pattern)

globals().update(backend_test.test_cases)
