"""Index ops (ArgMax/ArgMin, TopK, CumSum, OneHot, GatherND, ScatterElements, ScatterND) on
random inputs with ties, negative indices, batch dims and every reduction, against
onnxruntime; the scatters also on cuda-sim."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from test_ops_vs_ort import check_vs_ort, one_node_model

RNG = np.random.default_rng(7)


def _ties(shape) -> np.ndarray:
    """Small integers as floats: many equal values, so tie rules matter."""
    return RNG.integers(-3, 4, shape).astype(np.float32)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis,keepdims,last", [(0, 1, 0), (1, 0, 1), (-1, 1, 1), (2, 0, 0)])
def test_argmax_argmin(op, axis, keepdims, last) -> None:
    x = _ties((3, 4, 5))
    node = helper.make_node(op, ["x"], ["y"], axis=axis, keepdims=keepdims,
                            select_last_index=last)
    check_vs_ort(one_node_model(node, {"x": x}), {"x": x})


@pytest.mark.parametrize("axis,largest,k", [(-1, 1, 3), (0, 0, 2), (1, 1, 6), (1, 0, 0)])
def test_topk(axis, largest, k) -> None:
    x = _ties((4, 6, 3)) if axis != -1 else RNG.standard_normal((2, 3, 40)).astype(np.float32)
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=axis, largest=largest)
    model = one_node_model(node, {"x": x}, {"k": np.array([k], np.int64)}, n_outputs=2)
    check_vs_ort(model, {"x": x})


@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum(exclusive, reverse) -> None:
    x = RNG.integers(-5, 5, (3, 7)).astype(np.int32)
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], exclusive=exclusive, reverse=reverse)
    check_vs_ort(one_node_model(node, {"x": x}, {"axis": np.array(1, np.int64)}), {"x": x})


def test_onehot() -> None:
    idx = RNG.integers(-5, 5, (3, 4)).astype(np.int64)
    node = helper.make_node("OneHot", ["i", "depth", "values"], ["y"], axis=1)
    consts = {"depth": np.array(5, np.int64), "values": np.array([-1.5, 2.0], np.float32)}
    check_vs_ort(one_node_model(node, {"i": idx}, consts), {"i": idx})


@pytest.mark.parametrize("batch_dims,data_shape,idx_shape", [
    (0, (4, 5, 3), (2, 3, 2)), (1, (3, 4, 5), (3, 2, 1)), (2, (2, 3, 4, 5), (2, 3, 2))])
def test_gathernd(batch_dims, data_shape, idx_shape) -> None:
    data = RNG.standard_normal(data_shape).astype(np.float32)
    k = idx_shape[-1]
    bounds = np.array(data_shape[batch_dims:batch_dims + k])
    idx = (RNG.integers(0, 1 << 20, idx_shape) % bounds) - \
        RNG.integers(0, 2, idx_shape) * bounds  # some negative
    node = helper.make_node("GatherND", ["d", "i"], ["y"], batch_dims=batch_dims)
    feeds = {"d": data, "i": idx.astype(np.int64)}
    check_vs_ort(one_node_model(node, feeds), feeds)


def _distinct(count: int, n: int) -> np.ndarray:
    return RNG.permutation(n)[:count]


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements(reduction) -> None:
    data = RNG.standard_normal((4, 5)).astype(np.float32)
    # indices cover a 3x5 box of the 4x5 data; along axis 0 each column is distinct for
    # "none" (duplicates have no defined order in onnxruntime)
    idx = np.stack([_distinct(3, 4) for _ in range(5)], axis=1) if reduction == "none" else \
        RNG.integers(-4, 4, (3, 5))
    upd = RNG.standard_normal((3, 5)).astype(np.float32)
    node = helper.make_node("ScatterElements", ["d", "i", "u"], ["y"], axis=0,
                            reduction=reduction)
    feeds = {"d": data, "i": idx.astype(np.int64), "u": upd}
    check_vs_ort(one_node_model(node, feeds, opset=18), feeds)


@pytest.mark.parametrize("reduction", ["none", "add", "max"])
def test_scatternd(reduction) -> None:
    data = RNG.standard_normal((4, 3, 5)).astype(np.float32)
    flat = _distinct(6, 12) if reduction == "none" else RNG.integers(0, 12, 6)
    idx = np.stack([flat // 3, flat % 3], axis=-1).reshape(2, 3, 2)
    idx[0, 0] -= np.array([4, 3])  # negative indices
    upd = RNG.standard_normal((2, 3, 5)).astype(np.float32)
    node = helper.make_node("ScatterND", ["d", "i", "u"], ["y"], reduction=reduction)
    feeds = {"d": data, "i": idx.astype(np.int64), "u": upd}
    check_vs_ort(one_node_model(node, feeds, opset=18), feeds)


def test_scatters_and_topk_on_cuda_sim() -> None:
    from onnxc.backends.cuda.sim import find_cxx

    if find_cxx() is None:
        pytest.skip("cuda-sim needs g++ or clang++")
    data = RNG.standard_normal((4, 5)).astype(np.float32)
    idx = np.stack([_distinct(2, 4) for _ in range(5)], axis=1).astype(np.int64)
    upd = RNG.standard_normal((2, 5)).astype(np.float32)
    nodes = [helper.make_node("ScatterElements", ["d", "i", "u"], ["s"], axis=0),
             helper.make_node("TopK", ["s", "k"], ["v", "j"], axis=0),
             helper.make_node("ArgMin", ["s"], ["a"], axis=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype),
                                                   v.shape)
                     for n, v in (("d", data), ("i", idx), ("u", upd))],
        [helper.make_empty_tensor_value_info(n) for n in ("s", "v", "j", "a")],
        initializer=[helper.make_tensor("k", 7, [1], [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    check_vs_ort(model, {"d": data, "i": idx, "u": upd}, target="cuda-sim")


def test_new_ops_round_trip_through_optimize() -> None:
    """onnxc.optimize writes the new core ops back as standard ONNX (opset 17)."""
    import onnx
    import onnxruntime as ort

    import onnxc

    x = RNG.standard_normal((3, 6)).astype(np.float32)
    idx = np.array([[1], [0]], np.int64)
    nodes = [helper.make_node("ArgMax", ["x"], ["a"], axis=1, keepdims=0),
             helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1),
             helper.make_node("CumSum", ["x", "ax"], ["c"]),
             helper.make_node("OneHot", ["a", "depth", "vals"], ["o"]),
             helper.make_node("GatherND", ["x", "gi"], ["g"]),
             helper.make_node("ScatterND", ["x", "gi", "upd"], ["s"], reduction="add"),
             helper.make_node("Atan", ["x"], ["t"]),
             helper.make_node("Reshape", ["x", "img_shape"], ["img"]),
             helper.make_node("GridSample", ["img", "grid"], ["gs"], mode="bilinear"),
             helper.make_node("MaxPool", ["img"], ["mp", "mi"], kernel_shape=[2, 2]),
             helper.make_node("Resize", ["img", "", "scales"], ["rs"], mode="cubic")]
    consts = {"k": np.array([2], np.int64), "ax": np.array(1, np.int64),
              "depth": np.array(6, np.int64), "vals": np.array([0, 1], np.float32),
              "gi": idx, "upd": RNG.standard_normal((2, 6)).astype(np.float32),
              "img_shape": np.array([1, 1, 3, 6], np.int64),
              "scales": np.array([1, 1, 1.5, 0.7], np.float32),
              "grid": RNG.uniform(-1, 1, (1, 2, 2, 2)).astype(np.float32)}
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", 1, x.shape)],
        [helper.make_empty_tensor_value_info(n) for n in ("a", "v", "i", "c", "o", "g", "s",
                                                          "t", "gs", "mp", "mi", "rs")],
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    optimized = onnxc.optimize(model)
    onnx.checker.check_model(optimized, full_check=True)
    run = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
           for m in (model, optimized)]
    for want, got in zip(*(r.run(None, {"x": x}) for r in run)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_value_dependent_shapes_specialize_on_small_inputs_only() -> None:
    """NonZero's output shape depends on its input's values: a small graph input (<= 64
    elements) is compiled once per distinct value; a large one runs on the host between
    compiled parts (runtime/staged.py), with no compile per value."""
    import onnxc

    def model(n):
        graph = helper.make_graph([helper.make_node("NonZero", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", 1, [n])],
                                  [helper.make_empty_tensor_value_info("y")])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    session = onnxc.compile(model(6))
    for x in ([0, 1, 0, 2, 0, 3], [1, 1, 0, 0, 0, 0], [0, 1, 0, 2, 0, 3]):
        x = np.array(x, np.float32)
        np.testing.assert_array_equal(session.run(None, {"x": x})[0], np.array(np.nonzero(x)))
    assert len(session.describe()["specializations"]) == 2  # one per distinct value
    session = onnxc.compile(model(100))
    for seed in range(3):
        x = (np.random.default_rng(seed).random(100) < 0.3).astype(np.float32)
        np.testing.assert_array_equal(session.run(None, {"x": x})[0], np.array(np.nonzero(x)))
    assert not session.executables  # nothing compiled per value: the host ran NonZero


@pytest.mark.parametrize("mode", ["linear", "circular"])
def test_tensor_scatter_vs_reference(mode) -> None:
    cache = RNG.standard_normal((3, 2, 7, 4)).astype(np.float32)
    update = RNG.standard_normal((3, 2, 3, 4)).astype(np.float32)
    start = np.array([0, 4, 6] if mode == "circular" else [0, 2, 4], np.int64)
    node = helper.make_node("TensorScatter", ["c", "u", "w"], ["y"], mode=mode)
    feeds = {"c": cache, "u": update, "w": start}
    check_vs_ort(one_node_model(node, feeds, opset=24), feeds, reference=True)
