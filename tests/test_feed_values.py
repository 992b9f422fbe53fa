"""Odd but valid feeds: NaN/Inf, zero-size batches, non-contiguous, Fortran-ordered, negative-
stride, stride-0 (broadcast) and read-only arrays. Compared with onnxruntime where it is
consistent; for max-like reductions onnxc always propagates NaN (numpy's rule), while
onnxruntime's answer depends on where the NaN sits."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the reference")

vi = helper.make_tensor_value_info


def _model(node, shape=(2, 8), inits=(), opset=18, out_shape=None) -> onnx.ModelProto:
    graph = helper.make_graph([node], "t", [vi("x", TensorProto.FLOAT, list(shape))],
                              [vi("y", TensorProto.FLOAT, out_shape)], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _nan_feed(shape=(2, 8)) -> np.ndarray:
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[0], flat[3], flat[-1], flat[len(flat) // 2] = np.nan, np.inf, np.nan, -np.inf
    return x


ELEMENTWISE = [
    helper.make_node("Relu", ["x"], ["y"]), helper.make_node("LeakyRelu", ["x"], ["y"]),
    helper.make_node("Sigmoid", ["x"], ["y"]), helper.make_node("Tanh", ["x"], ["y"]),
    helper.make_node("Abs", ["x"], ["y"]), helper.make_node("Exp", ["x"], ["y"]),
    helper.make_node("Softmax", ["x"], ["y"], axis=-1), helper.make_node("Elu", ["x"], ["y"]),
    helper.make_node("HardSigmoid", ["x"], ["y"]), helper.make_node("Floor", ["x"], ["y"]),
    helper.make_node("Sign", ["x"], ["y"]), helper.make_node("Erf", ["x"], ["y"]),
    helper.make_node("Clip", ["x", "lo", "hi"], ["y"]),
    helper.make_node("Max", ["x", "z"], ["y"]), helper.make_node("Min", ["x", "z"], ["y"]),
    helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0),
    helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1),
]
CONSTS = [numpy_helper.from_array(np.float32(-1), "lo"), numpy_helper.from_array(np.float32(1), "hi"),
          numpy_helper.from_array(np.zeros((2, 8), np.float32), "z"),
          numpy_helper.from_array(np.array([1], np.int64), "axes")]


@pytest.mark.parametrize("node", ELEMENTWISE, ids=lambda n: n.op_type)
def test_nan_and_inf_propagate_like_onnxruntime(node) -> None:
    inits = [c for c in CONSTS if c.name in node.input]
    m = _model(node, inits=inits)
    x = _nan_feed()
    want = ort.InferenceSession(m.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = onnxc.compile(m).run(None, {"x": x})[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("node,reference", [
    (helper.make_node("ReduceMax", ["x", "axes"], ["y"], keepdims=0),
     lambda x: np.max(x, axis=1)),
    (helper.make_node("ReduceMin", ["x", "axes"], ["y"], keepdims=0),
     lambda x: np.min(x, axis=1)),
    (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
     lambda x: x.reshape(1, 2, 2, 2, 2, 2).max(axis=(3, 5))),
], ids=["ReduceMax", "ReduceMin", "MaxPool"])
def test_nan_in_a_max_like_window_gives_nan(node, reference) -> None:
    pool = node.op_type == "MaxPool"
    shape = (1, 2, 4, 4) if pool else (2, 8)
    inits = [] if pool else [CONSTS[-1]]
    x = _nan_feed(shape)
    got = onnxc.compile(_model(node, shape, inits)).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, reference(x))


def test_zero_size_batches() -> None:
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)
    m = _model(node, shape=("n", 3), inits=[CONSTS[-1]])
    sess = onnxc.compile(m)
    assert sess.run(None, {"x": np.zeros((0, 3), np.float32)})[0].shape == (0,)
    table = numpy_helper.from_array(np.ones((5, 2), np.float32), "t")
    gather = helper.make_graph([helper.make_node("Gather", ["t", "i"], ["y"])], "g",
                               [vi("i", TensorProto.INT64, ["n"])], [vi("y", TensorProto.FLOAT, None)],
                               [table])
    g = onnxc.compile(helper.make_model(gather, opset_imports=[helper.make_opsetid("", 18)]))
    assert g.run(None, {"i": np.zeros(0, np.int64)})[0].shape == (0, 2)


def test_strided_fortran_broadcast_and_readonly_feeds() -> None:
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((6, 4))
                                .astype(np.float32), "w")
    m = _model(helper.make_node("MatMul", ["x", "w"], ["y"]), shape=(5, 6), inits=[w])
    sess = onnxc.compile(m)
    wv = numpy_helper.to_array(w)
    base = np.random.default_rng(2).standard_normal((10, 12)).astype(np.float32)
    readonly = base[:5, :6].copy()
    readonly.setflags(write=False)
    feeds = [np.asfortranarray(base[:5, :6]), base[::2, ::2], base[::-1, ::-1][:5, :6],
             base.T[:5, :6], np.broadcast_to(base[0, :6], (5, 6)), readonly]
    for x in feeds:
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], np.ascontiguousarray(x) @ wv,
                                   rtol=1e-5, atol=1e-5)
        assert not np.shares_memory(sess.run(None, {"x": x})[0], x)
