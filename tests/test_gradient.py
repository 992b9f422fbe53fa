"""The Gradient op (ai.onnx.preview.training): derivatives written as ONNX nodes, compiled,
checked against central finite differences of the forward graph on random inputs."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxc


def _model(nodes, shapes: dict, y: str, xs: list[str], gradient_first: bool = False):
    grad = helper.make_node("Gradient", xs, [f"d{y}_d{x}" for x in xs], name="grad",
                            domain="ai.onnx.preview.training", xs=xs, y=y)
    graph = helper.make_graph(
        [grad] + nodes if gradient_first else nodes + [grad], "g",
        [helper.make_tensor_value_info(n, TensorProto.DOUBLE, s) for n, s in shapes.items()],
        [helper.make_tensor_value_info(y, TensorProto.DOUBLE, None)]
        + [helper.make_tensor_value_info(f"d{y}_d{x}", TensorProto.DOUBLE, None) for x in xs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("ai.onnx.preview.training", 1)])


def _numeric(session, feeds: dict, x: str, eps: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(feeds[x])
    for idx in np.ndindex(feeds[x].shape):
        hi, lo = {k: v.copy() for k, v in feeds.items()}, {k: v.copy() for k, v in feeds.items()}
        hi[x][idx] += eps
        lo[x][idx] -= eps
        grad[idx] = (session.run(None, hi)[0].sum() - session.run(None, lo)[0].sum()) / (2 * eps)
    return grad


@pytest.mark.parametrize("gradient_first", [False, True])
def test_gradient_matches_finite_differences(gradient_first: bool) -> None:
    nodes = [helper.make_node("MatMul", ["a", "w"], ["h"]),
             helper.make_node("Add", ["h", "bias"], ["hb"]),  # bias broadcast over rows
             helper.make_node("Tanh", ["hb"], ["t"]),
             helper.make_node("Mul", ["t", "t"], ["t2"]),
             helper.make_node("Div", ["t2", "w2"], ["q"]),
             helper.make_node("Sub", ["q", "a2"], ["r"]),
             helper.make_node("Relu", ["r"], ["y"])]
    shapes = {"a": [3, 4], "w": [4, 5], "bias": [5], "w2": [3, 5], "a2": [1, 5]}
    xs = list(shapes)
    model = _model(nodes, shapes, "y", xs, gradient_first)
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal(s) for n, s in shapes.items()}
    feeds["w2"] = rng.uniform(1, 2, shapes["w2"])
    session = onnxc.compile(model)
    outs = session.run(None, feeds)
    forward = onnxc.compile(helper.make_model(helper.make_graph(
        nodes, "f", list(model.graph.input), [model.graph.output[0]]),
        opset_imports=[helper.make_opsetid("", 17)]))
    for x, got in zip(xs, outs[1:]):
        np.testing.assert_allclose(got, _numeric(forward, feeds, x), rtol=1e-5, atol=1e-6)


def test_an_op_without_a_derivative_rule_is_refused() -> None:
    model = _model([helper.make_node("Sin", ["a"], ["y"])], {"a": [2]}, "y", ["a"])
    with pytest.raises(onnxc.OnnxcError, match="no derivative rule for Sin"):
        onnxc.compile(model)
