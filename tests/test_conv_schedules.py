"""Convolutions and matrix products across the shapes that pick different CPU schedules
(register-blocked GEMM tiles: narrow 12x1, wide 6x2, flattened rows with a pitch, stride
phases; the generic row/point schedules for the rest), with random weights, vs onnxruntime."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc

CASES = [  # (N, C, M, H, W, K, stride, pad, dilation, group)
    (1, 3, 8, 7, 7, 3, 1, 1, 1, 1), (2, 16, 13, 14, 14, 1, 1, 0, 1, 1),
    (1, 8, 24, 17, 5, 3, 2, 1, 1, 1), (1, 5, 7, 9, 11, 5, 3, 2, 1, 1),
    (1, 16, 16, 12, 12, 3, 1, 2, 2, 1), (2, 12, 12, 10, 10, 3, 1, 1, 1, 12),
    (1, 8, 16, 6, 6, 3, 2, 0, 1, 4), (1, 4, 40, 1, 1, 1, 1, 0, 1, 1),
    (1, 32, 64, 56, 56, 1, 2, 0, 1, 1), (1, 6, 6, 33, 33, 7, 2, 3, 1, 1),
]


def _conv_model(n, c, m, h, w, k, stride, pad, dilation, group, seed=0):
    rng = np.random.default_rng(seed)
    wt = rng.standard_normal((m, c // group, k, k)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    res = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[stride, stride],
                              pads=[pad] * 4, dilations=[dilation, dilation], group=group),
             helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [n, c, h, w])], [res],
        [numpy_helper.from_array(wt, "w"), numpy_helper.from_array(bias, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _check(model, feeds):
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    for threads in (1, 2):
        got = onnxc.compile(model, num_threads=threads).run(None, feeds)[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_conv_matches_onnxruntime(case):
    n, c, _, h, w = case[:5]
    x = np.random.default_rng(1).standard_normal((n, c, h, w)).astype(np.float32)
    _check(_conv_model(*case), {"x": x})


@pytest.mark.parametrize("shape", [(1, 7, 5), (5, 33, 17), (64, 100, 129), (2, 3, 7, 16, 9)],
                         ids=str)
def test_matmul_add_matches_onnxruntime(shape):
    *batch, m, k, n = shape if len(shape) > 3 else (shape[0], shape[1], shape[2])
    rng = np.random.default_rng(2)
    x_shape = (*batch, m, k) if len(shape) > 3 else (m, k)
    wt = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["y"])]
    graph = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, list(x_shape))], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(wt, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    _check(model, {"x": rng.standard_normal(x_shape).astype(np.float32)})
