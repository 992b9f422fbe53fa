"""Op cases the ONNX node tests leave out, checked against numpy: Pad with wide, negative and
one-element pads in every mode, Tile, Trilu with off-diagonal k, and Mod with zeros and signs."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxc


def _run(node: onnx.NodeProto, x: np.ndarray, *consts: np.ndarray, opset: int = 21,
         extra_inputs: dict[str, np.ndarray] | None = None) -> np.ndarray:
    inits = [onnx.numpy_helper.from_array(c, name) for name, c in
             zip(node.input[1:], consts) if name]
    feeds = {node.input[0]: x, **(extra_inputs or {})}
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for k, v in feeds.items()]
    out = helper.make_tensor_value_info(node.output[0], TensorProto.UNDEFINED, None)
    graph = helper.make_graph([node], "g", ins, [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return onnxc.compile(model).run(None, feeds)[0]


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "wrap"])
@pytest.mark.parametrize("pads", [((1, 2), (3, 0)), ((0, 0), (3, 3)), ((2, 1), (-1, 2)),
                                  ((0, 0), (0, 0))])
def test_pad_matches_numpy(mode: str, pads) -> None:
    x = np.arange(4 * 5, dtype=np.float32).reshape(4, 5)
    flat = np.array([p[0] for p in pads] + [p[1] for p in pads], dtype=np.int64)
    node = helper.make_node("Pad", ["x", "pads", "value"], ["y"], mode=mode)
    y = _run(node, x, flat, np.array(7.5, dtype=np.float32))
    crop = tuple(slice(-b if b < 0 else 0, x.shape[k] + e if e < 0 else None)
                 for k, (b, e) in enumerate(pads))
    grow = [(max(b, 0), max(e, 0)) for b, e in pads]
    kwargs = {"constant_values": 7.5} if mode == "constant" else {}
    np.testing.assert_array_equal(y, np.pad(x[crop], grow, mode=mode, **kwargs))


@pytest.mark.parametrize("mode", ["edge", "reflect", "wrap"])
def test_pad_wide_and_single_element(mode: str) -> None:
    node = helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode)
    one = np.array([[3.0]], dtype=np.float32)
    np.testing.assert_array_equal(_run(node, one, np.array([2, 1, 0, 3], dtype=np.int64)),
                                  np.pad(one, [(2, 0), (1, 3)], mode="edge"))
    if mode != "reflect":  # reflect pads must be narrower than the axis
        x = np.arange(3, dtype=np.float32)
        np.testing.assert_array_equal(_run(node, x, np.array([7, 5], dtype=np.int64)),
                                      np.pad(x, (7, 5), mode=mode))


def test_tile_and_trilu() -> None:
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    node = helper.make_node("Tile", ["x", "r"], ["y"])
    np.testing.assert_array_equal(_run(node, x, np.array([2, 3], dtype=np.int64)),
                                  np.tile(x, (2, 3)))
    for upper, k in ((1, -1), (0, 2), (1, 5), (0, -4)):
        node = helper.make_node("Trilu", ["x", "k"], ["y"], upper=upper)
        ref = np.triu(x, k) if upper else np.tril(x, k)
        np.testing.assert_array_equal(_run(node, x, np.array(k, dtype=np.int64)), ref)


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_mod_signs(dtype) -> None:
    a = np.array([-7, -6, -1, 0, 1, 6, 7, 5, -5], dtype=dtype)
    b = np.array([3, 3, -3, -3, 3, -3, -3, 5, 5], dtype=dtype)
    for fmod, ref in ((0, np.mod(a, b)), (1, np.fmod(a, b))):
        node = helper.make_node("Mod", ["x", "b"], ["y"], fmod=fmod)
        got = _run(node, a, extra_inputs={"b": b})
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(ref))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_with_run_time_indices(axis: int) -> None:
    """Indices too many to specialize on: the kernel reads them (negative ones count from the
    end), also when they are computed by a node fused into the same kernel."""
    rng = np.random.default_rng(0)
    data = rng.standard_normal((6, 7, 5)).astype(np.float32)
    n = data.shape[axis]
    idx = rng.integers(-n, n, size=(10, 9)).astype(np.int32)
    one = np.ones((), dtype=np.int32)
    nodes = [helper.make_node("Add", ["i", "one"], ["i1"]),
             helper.make_node("Sub", ["i1", "one"], ["i2"]),
             helper.make_node("Gather", ["x", "i2"], ["y"], axis=axis),
             helper.make_node("GatherElements", ["x", "e"], ["z"], axis=axis)]
    elems = rng.integers(-n, n, size=data.shape).astype(np.int64)
    feeds = {"x": data, "i": idx, "e": elems}
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for k, v in feeds.items()]
    outs = [helper.make_tensor_value_info(k, TensorProto.UNDEFINED, None) for k in "yz"]
    graph = helper.make_graph(nodes, "g", ins, outs,
                              initializer=[onnx.numpy_helper.from_array(one, "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    y, z = onnxc.compile(model).run(None, feeds)
    np.testing.assert_array_equal(y, np.take(data, idx, axis=axis))
    np.testing.assert_array_equal(z, np.take_along_axis(data, np.where(elems < 0, elems + n,
                                                                       elems), axis=axis))


def test_new_ops_survive_export() -> None:
    """onnxc.optimize writes the new core ops back as standard ONNX that onnxruntime runs."""
    ort = pytest.importorskip("onnxruntime")
    x = np.linspace(-3, 3, 2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    slope = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    nodes = [helper.make_node("Elu", ["x"], ["a"], alpha=0.5),
             helper.make_node("PRelu", ["a", "slope"], ["b"]),
             helper.make_node("HardSwish", ["b"], ["c"]),
             helper.make_node("Pad", ["c", "pads"], ["d"], mode="reflect"),
             helper.make_node("Tile", ["d", "reps"], ["e"]),
             helper.make_node("Gather", ["e", "idx"], ["f"], axis=2),
             helper.make_node("Mod", ["f", "three"], ["g"], fmod=1),
             helper.make_node("Round", ["g"], ["y"])]
    inits = [onnx.numpy_helper.from_array(v, k) for k, v in {
        "slope": slope, "pads": np.array([0, 0, 1, 0, 0, 2], dtype=np.int64),
        "reps": np.array([1, 2, 1], dtype=np.int64), "idx": np.array([3, -1, 0], np.int64),
        "three": np.array(3.0, dtype=np.float32)}.items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, x.shape)],
                              [helper.make_tensor_value_info("y", 1, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    optimized = onnxc.optimize(model)
    onnx.checker.check_model(optimized, full_check=True)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    np.testing.assert_allclose(run(optimized), run(model), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(onnxc.compile(model).run(None, {"x": x})[0], run(model),
                               rtol=1e-5, atol=1e-5)


def _unary_or_binary_session(op: str, n_inputs: int, shape):
    names = ["x", "y"][:n_inputs]
    graph = helper.make_graph(
        [helper.make_node(op, names, ["z"])], op,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(shape)) for n in names],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    return onnxc.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def test_fast_exp_log_are_accurate_and_keep_special_values():
    """float32 exp/log/tanh are generated polynomials (vectorizable): check them like libm."""
    x = np.concatenate([np.linspace(-110, 90, 5000), [np.nan, np.inf, -np.inf, 0.0, -0.0]])
    x = x.astype(np.float32)
    with np.errstate(all="ignore"):
        for op, ref in (("Exp", np.exp), ("Log", np.log), ("Tanh", np.tanh)):
            arg = np.abs(x) * np.float32(1e-30) if op == "Log" else x
            got = _unary_or_binary_session(op, 1, arg.shape).run(None, {"x": arg})[0]
            want = ref(arg.astype(np.float64)).astype(np.float32)
            np.testing.assert_allclose(got, want, rtol=3e-7, atol=2e-45, equal_nan=True)
            if op == "Log":
                assert np.isnan(got[np.signbit(arg) & (arg != 0)]).all()


def test_pow_follows_ieee_special_cases():
    vals = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -3.0, 3.5],
                    np.float32)
    x, y = (a.astype(np.float32) for a in np.meshgrid(vals, vals, indexing="ij"))
    got = _unary_or_binary_session("Pow", 2, x.shape).run(None, {"x": x, "y": y})[0]
    with np.errstate(all="ignore"):
        want = np.power(x, y)
    np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
    assert (np.signbit(got) == np.signbit(want))[want == 0].all()
