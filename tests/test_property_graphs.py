"""Property-based tests: hypothesis draws random valid ONNX graphs of elementwise, broadcast,
reduction and MatMul ops; onnxc (at -O0 and -O2) must give onnxruntime's answers.

Every drawn graph is compiled and compared (no example is discarded), so the number compared
is the number of examples run: ``ONNXC_PROPERTY_EXAMPLES`` (default 50 per test in CI, two
tests). Graphs stay small because each example costs an LLVM compile.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc

pytest.importorskip("hypothesis", reason="hypothesis is a dev extra")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the reference")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("ONNXC_PROPERTY_EXAMPLES", "50"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

UNARY = ["Relu", "Neg", "Abs", "Sigmoid", "Tanh", "Exp", "Softsign", "LeakyRelu", "Floor"]
BINARY = ["Add", "Sub", "Mul", "Max", "Min"]
REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSumSquare"]
DIMS = st.integers(1, 5)


@st.composite
def broadcast_partner(draw, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts with ``shape`` to exactly ``shape``: a suffix, some dims 1."""
    keep = draw(st.integers(0, len(shape)))
    tail = shape[len(shape) - keep:]
    return tuple(1 if draw(st.booleans()) else d for d in tail)


@st.composite
def graphs(draw):
    """(model, feeds): 1-2 inputs, 1-6 nodes, every value float32 and fully shaped."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    shapes: dict[str, tuple[int, ...]] = {}
    inputs, inits, nodes = [], [], []
    for k in range(draw(st.integers(1, 2))):
        shape = tuple(draw(st.lists(DIMS, min_size=1, max_size=3)))
        name = f"in{k}"
        shapes[name] = shape
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))

    def weight(shape) -> str:
        name = f"w{len(inits)}"
        inits.append(numpy_helper.from_array(
            rng.uniform(-1.5, 1.5, shape).astype(np.float32), name))
        shapes[name] = tuple(shape)
        return name

    for k in range(draw(st.integers(1, 6))):
        out = f"v{k}"
        x = draw(st.sampled_from(sorted(n for n in shapes if n.startswith(("in", "v")))))
        shape = shapes[x]
        kind = draw(st.sampled_from(["unary", "binary", "binary", "reduce", "matmul"]))
        if kind == "unary":
            op = draw(st.sampled_from(UNARY))
            nodes.append(helper.make_node(op, [x], [out]))
            shapes[out] = shape
        elif kind == "binary":
            op = draw(st.sampled_from(BINARY))
            same = [n for n in shapes if shapes[n] == shape and n != x and
                    not n.startswith("axes")]
            if same and draw(st.booleans()):
                y = draw(st.sampled_from(sorted(same)))
            else:
                y = weight(draw(broadcast_partner(shape)))
            a, b = (x, y) if draw(st.booleans()) else (y, x)
            nodes.append(helper.make_node(op, [a, b], [out]))
            shapes[out] = shape
        elif kind == "reduce":
            op = draw(st.sampled_from(REDUCE))
            axes = sorted(draw(st.sets(st.integers(0, len(shape) - 1), min_size=1)))
            keep = draw(st.booleans()) or len(axes) == len(shape)
            nodes.append(helper.make_node(op, [x, weight_axes(inits, shapes, axes)], [out],
                                          keepdims=int(keep)))
            shapes[out] = tuple(1 if i in axes else d for i, d in enumerate(shape)
                                if keep or i not in axes)
        else:
            n = draw(DIMS)
            w = weight((shape[-1], n)) if draw(st.booleans()) or len(shape) < 2 else \
                weight(tuple(shape[:-2]) + (shape[-1], n))
            nodes.append(helper.make_node("MatMul", [x, w], [out]))
            shapes[out] = tuple(shape[:-1]) + (n,)
    outs = [f"v{len(nodes) - 1}"]
    extra = [n for n in shapes if n.startswith("v") and n not in outs]
    if extra and draw(st.booleans()):
        outs.append(draw(st.sampled_from(sorted(extra))))
    graph = helper.make_graph(
        nodes, "random", inputs,
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, list(shapes[o])) for o in outs],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model, full_check=True)
    feeds = {vi.name: rng.uniform(-2, 2, shapes[vi.name]).astype(np.float32) for vi in inputs}
    return model, feeds


def weight_axes(inits, shapes, axes) -> str:
    """ReduceX takes axes as an int64 input from opset 18 on."""
    name = f"axes{len(inits)}"
    inits.append(numpy_helper.from_array(np.array(axes, np.int64), name))
    shapes[name] = (len(axes),)
    return name


def _compare(model: onnx.ModelProto, feeds: dict, opt_level: int) -> None:
    data = model.SerializeToString()
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = onnxc.compile(model, opt_level=opt_level, num_threads=1).run(None, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5, equal_nan=True)


@PROPERTY
@given(graphs())
def test_random_graphs_match_onnxruntime_optimized(case) -> None:
    _compare(*case, opt_level=2)


@PROPERTY
@given(graphs())
def test_random_graphs_match_onnxruntime_unoptimized(case) -> None:
    _compare(*case, opt_level=0)
