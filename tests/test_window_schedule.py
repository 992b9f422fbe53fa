"""The CPU window schedule (backends/cpu/window.py): depthwise/grouped convolutions, pooling and
the pad / stride copies before them, across odd sizes, strides, pads, dilations, ceil_mode,
channel multipliers and batches, against onnxruntime on random inputs; at 1 and 2 threads."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc
from onnxc.backends.cpu import codegen, window
from onnxc.backends.cpu.window_fuse import ix_range
from onnxc.ir.kernel import Ix, Var

# (N, C, multiplier, H, W, K, stride, pads (t, l, b, r), dilation)
DEPTHWISE = [
    (1, 8, 1, 56, 56, 3, 1, (1, 1, 1, 1), 1), (1, 8, 1, 28, 28, 3, 2, (1, 1, 1, 1), 1),
    (2, 5, 1, 13, 37, 3, 2, (1, 1, 1, 1), 1), (1, 3, 2, 9, 17, 3, 1, (0, 0, 0, 0), 1),
    (1, 4, 3, 11, 23, 5, 2, (2, 1, 0, 2), 1), (1, 6, 1, 15, 19, 3, 1, (2, 2, 2, 2), 2),
    (1, 4, 1, 12, 40, 3, 3, (1, 1, 1, 1), 1), (1, 16, 1, 7, 7, 3, 1, (1, 1, 1, 1), 1),
    (1, 3, 1, 20, 33, 2, 2, (0, 0, 1, 1), 1), (2, 4, 1, 10, 18, 3, 4, (1, 1, 1, 1), 1),
]

# (op, N, C, H, W, K, stride, pads, dilation, ceil_mode)
POOLS = [
    ("MaxPool", 1, 8, 55, 55, 3, 2, (0, 0, 0, 0), 1, 1),
    ("MaxPool", 2, 3, 17, 21, 3, 2, (1, 1, 1, 1), 1, 0),
    ("MaxPool", 1, 4, 16, 33, 2, 2, (0, 0, 0, 0), 1, 0),
    ("MaxPool", 1, 5, 14, 29, 3, 1, (1, 1, 1, 1), 1, 0),
    ("MaxPool", 1, 3, 19, 26, 3, 2, (0, 1, 2, 0), 2, 1),
    ("MaxPool", 1, 2, 12, 40, 3, 3, (0, 0, 0, 0), 1, 1),
    ("AveragePool", 1, 6, 13, 27, 3, 2, (1, 1, 1, 1), 1, 0),
    ("AveragePool", 2, 4, 10, 22, 2, 2, (0, 0, 0, 0), 1, 1),
    ("AveragePool", 1, 3, 9, 35, 5, 1, (2, 2, 2, 2), 1, 0),
]


def _ids(case):
    return "-".join(str(x).replace(" ", "") for x in case)


def _depthwise_model(n, c, mult, h, w, k, stride, pads, dilation, seed=0):
    rng = np.random.default_rng(seed)
    m = c * mult
    init = [numpy_helper.from_array(rng.standard_normal((m, 1, k, k)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.standard_normal(m).astype(np.float32), "b")]
    for name, value in (("g", 1 + 0.1 * rng.standard_normal(m)), ("be", rng.standard_normal(m)),
                        ("mu", rng.standard_normal(m)), ("var", rng.uniform(0.5, 1.5, m))):
        init.append(numpy_helper.from_array(value.astype(np.float32), name))
    init += [numpy_helper.from_array(np.array(0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6, np.float32), "hi")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[stride] * 2,
                              pads=list(pads), dilations=[dilation] * 2, group=c,
                              kernel_shape=[k, k]),
             helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["bn"]),
             helper.make_node("Clip", ["bn", "lo", "hi"], ["y"])]
    return _model(nodes, [n, c, h, w], init)


def _pool_model(op, n, c, h, w, k, stride, pads, dilation, ceil_mode):
    attrs = dict(kernel_shape=[k, k], strides=[stride] * 2, pads=list(pads), ceil_mode=ceil_mode)
    if op == "MaxPool":
        attrs["dilations"] = [dilation] * 2
    else:
        attrs["count_include_pad"] = int(sum(pads) % 2 == 0)
    nodes = [helper.make_node(op, ["x"], ["p"], **attrs), helper.make_node("Relu", ["p"], ["y"])]
    return _model(nodes, [n, c, h, w], [], opset=19 if op == "MaxPool" else 19)


def _model(nodes, shape, init, opset=17):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _check(model, shape, monkeypatch):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    used = []
    emit = codegen.emit_window
    monkeypatch.setattr(codegen, "emit_window", lambda se, plan, vw: (
        used.append(plan.red is not None), emit(se, plan, vw))[-1])
    # Split every window stage across threads, however small, to test the row partition.
    monkeypatch.setattr(window, "PARALLEL_MIN_WORK", 1)
    for threads in (1, 2):
        got = onnxc.compile(model, num_threads=threads).run(None, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert any(used), "the window schedule was not chosen"


@pytest.mark.parametrize("case", DEPTHWISE, ids=_ids)
def test_depthwise_conv_matches_onnxruntime(case, monkeypatch):
    n, c, _, h, w = case[:5]
    _check(_depthwise_model(*case), (n, c, h, w), monkeypatch)


@pytest.mark.parametrize("case", POOLS, ids=_ids)
def test_pool_matches_onnxruntime(case, monkeypatch):
    _check(_pool_model(*case), case[1:5], monkeypatch)


def test_interval_arithmetic_of_stride_phase_reads():
    """The read of a stride-phase copy, substituted: (k + t//2)*2 + t%2 stays in [0, 2K]."""
    k, t = Var("k"), Var("t")
    ix = (k + t // 2) * 2 + t % 2
    assert ix_range(ix, {k: (0, 55), t: (0, 2)}) == (0, 113)
    assert ix_range(Ix.lift(7) % 3, {}) == (1, 1)
    assert ix_range((k + -1) // 2, {k: (0, 4)}) is None  # negative operand: unknown
    assert ix_range(k * t, {k: (-2, 3), t: (-1, 4)}) == (-8, 12)


@pytest.mark.parametrize("axis,widths", [(1, (3, 5, 2)), (2, (4, 7)), (0, (1, 2))], ids=str)
def test_concat_and_pad_copies_match_onnxruntime(axis, widths, monkeypatch):
    """Concat (a select per row between sources) then a constant Pad and a stride-2 Slice."""
    base = [2, 3, 5, 37]
    shapes = []
    for k, n in enumerate(widths):
        s = list(base)
        s[axis] = n
        shapes.append(s)
    inputs = [helper.make_tensor_value_info(f"x{k}", TensorProto.FLOAT, s)
              for k, s in enumerate(shapes)]
    init = [numpy_helper.from_array(np.array([0, 0, 1, 3, 0, 0, 2, 1], np.int64), "pads"),
            numpy_helper.from_array(np.array([1, 2], np.int64), "starts"),
            numpy_helper.from_array(np.array([1000, 1000], np.int64), "ends"),
            numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
            numpy_helper.from_array(np.array([1, 2], np.int64), "steps")]
    nodes = [helper.make_node("Concat", [f"x{k}" for k in range(len(widths))], ["c"], axis=axis),
             helper.make_node("Pad", ["c", "pads"], ["p"], mode="constant"),
             helper.make_node("Slice", ["p", "starts", "ends", "axes", "steps"], ["y"])]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(
        "y", TensorProto.FLOAT, None)], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rng = np.random.default_rng(3)
    feeds = {f"x{k}": rng.standard_normal(s).astype(np.float32) for k, s in enumerate(shapes)}
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    used = []
    emit = codegen.emit_window
    monkeypatch.setattr(codegen, "emit_window", lambda se, plan, vw: (
        used.append(plan), emit(se, plan, vw))[-1])
    monkeypatch.setattr(window, "PARALLEL_MIN_WORK", 1)
    for threads in (1, 2):
        got = onnxc.compile(model, num_threads=threads).run(None, feeds)[0]
        np.testing.assert_array_equal(got, want)
    assert used, "the copy schedule was not chosen"


@pytest.mark.parametrize("size", [3, 5])
def test_lrn_window_with_scalar_epilogue_matches_onnxruntime(size, monkeypatch):
    """LRN: a window across channels (padded along a non-innermost axis) whose epilogue has a
    pow, which runs a lane at a time after the vector reduction."""
    nodes = [helper.make_node("LRN", ["x"], ["y"], size=size, alpha=1e-3, beta=0.75, bias=1.5)]
    _check(_model(nodes, [2, 7, 6, 19], []), (2, 7, 6, 19), monkeypatch)


@pytest.mark.parametrize("op,shape", [("GlobalAveragePool", (2, 5, 13, 13)),
                                      ("GlobalMaxPool", (1, 3, 7, 7)),
                                      ("ReduceSumSquare", (3, 4, 9, 11)),
                                      ("ReduceL2", (2, 3, 4, 16))], ids=str)
def test_contiguous_multi_axis_reductions_match_onnxruntime(op, shape, monkeypatch):
    """Reductions over trailing axes as one flat vector loop (flat_reduce.py), masked tails."""
    if op.startswith("Global"):
        nodes = [helper.make_node(op, ["x"], ["y"])]
    else:
        nodes = [helper.make_node(op, ["x"], ["y"], axes=[2, 3], keepdims=1)]
    _check(_model(nodes, list(shape), [], opset=17), shape, monkeypatch)
