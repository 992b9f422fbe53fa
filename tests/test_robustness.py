"""Reliability: many threads on one session, long runs, odd feeds, big graphs."""
from __future__ import annotations

import concurrent.futures
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc

from models import mlp, mlp_reference

SIZES = (32, 64, 64, 10)


@pytest.fixture(scope="module")
def mlp_session():
    return onnxc.compile(mlp("N", SIZES, 0), input_shapes={"x": (16, 32)})


def test_one_session_many_threads_same_answers(mlp_session):
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((16, 32)).astype(np.float32) for _ in range(32)]
    expected = [mlp_reference(x, SIZES, 0) for x in inputs]

    def work(k):
        got = mlp_session.run(None, {"x": inputs[k % len(inputs)]})[0]
        return np.abs(got - expected[k % len(inputs)]).max()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        errors = list(pool.map(work, range(400)))
    assert max(errors) < 1e-4


def test_thousands_of_runs_do_not_grow_memory(mlp_session):
    import resource

    x = np.ones((16, 32), np.float32)
    for _ in range(200):
        mlp_session.run(None, {"x": x})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(3000):
        mlp_session.run(None, {"x": x})
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 20 * 1024, f"max RSS grew by {grown_kib} KiB over 3000 runs"


# The GIL release is tested without timing in test_concurrency.py.


def test_non_contiguous_and_fortran_feeds(mlp_session):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((32, 32)).astype(np.float32)
    for x in (np.asfortranarray(base[:16]), base[::2], base.T[:16]):
        got = mlp_session.run(None, {"x": x})[0]
        np.testing.assert_allclose(got, mlp_reference(np.ascontiguousarray(x), SIZES, 0),
                                   rtol=1e-4, atol=1e-5)


def test_zero_size_batch():
    sess = onnxc.compile(mlp("N", SIZES, 0))
    out = sess.run(None, {"x": np.zeros((0, 32), np.float32)})[0]
    assert out.shape == (0, 10)


def test_nan_and_inf_propagate_like_onnxruntime():
    model = mlp(4, SIZES, 2)
    x = np.random.default_rng(2).standard_normal((4, 32)).astype(np.float32)
    x[0, 0], x[1, 3], x[2, 5] = np.nan, np.inf, -np.inf
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = onnxc.compile(model).run(None, {"x": x})[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-4)


def test_failed_run_leaves_session_usable(mlp_session):
    with pytest.raises(onnxc.InputError):
        mlp_session.run(None, {"x": np.ones((16, 31), np.float32)})
    with pytest.raises(onnxc.InputError):
        mlp_session.run(None, {"x": np.ones((16, 32), np.float64)})
    assert mlp_session.run(None, {"x": np.ones((16, 32), np.float32)})[0].shape == (16, 10)


def _long_chain(n: int) -> onnx.ModelProto:
    nodes, x = [], "x"
    for k in range(n):
        op = ("Relu", "Neg", "Abs", "Sigmoid")[k % 4]
        nodes.append(helper.make_node(op, [x], [f"v{k}"], name=f"n{k}"))
        x = f"v{k}"
    graph = helper.make_graph(nodes, "chain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [4, 8])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_long_elementwise_chain_compiles_into_few_kernels_quickly():
    start = time.perf_counter()
    sess = onnxc.compile(_long_chain(2000))
    seconds = time.perf_counter() - start
    x = np.random.default_rng(3).standard_normal((4, 8)).astype(np.float32)
    want = ort.InferenceSession(_long_chain(2000).SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-6)
    assert seconds < 120, f"2000-node chain took {seconds:.1f}s to compile"


def test_many_independent_nodes_compile(tmp_path):
    """A wide graph: 3000 small MatMul+Add branches concatenated."""
    rng = np.random.default_rng(4)
    inits, nodes, outs = [], [], []
    for k in range(300):
        inits.append(numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32),
                                             f"w{k}"))
        nodes += [helper.make_node("MatMul", ["x", f"w{k}"], [f"m{k}"]),
                  helper.make_node("Relu", [f"m{k}"], [f"r{k}"])]
        outs.append(f"r{k}")
    nodes.append(helper.make_node("Concat", outs, ["y"], axis=1))
    graph = helper.make_graph(nodes, "wide",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1200])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = rng.standard_normal((2, 8)).astype(np.float32)
    got = onnxc.compile(model).run(None, {"x": x})[0]
    want = np.concatenate([np.maximum(x @ numpy_helper.to_array(w), 0) for w in inits], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
