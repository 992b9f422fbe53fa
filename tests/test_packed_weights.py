"""float32 weights laid out for the packed GEMM at compile time (backends/cpu/packed_weights.py):
the run reads the prepared panels in place, the result matches numpy and the run-time packing
(same sums, same order), for shapes with leftover columns, several column blocks, Gemm's
transposed B and a batched MatMul, at 1, 2 and 3 threads; and weights load 64-byte aligned."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc
from onnxc.backends.cpu import packed_weights
from onnxc.runtime.executable import _aligned


def _model(nodes, x_shape, inits):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _exe(sess):
    return next(iter(sess._executables.values()))


# (x shape, K, N): leftover columns (N % 16), several column blocks (K * NC > 96 Ki floats)
CASES = [((64, 256), 256, 500), ((40, 784), 784, 1024), ((48, 33), 33, 70), ((2, 40, 64), 64, 96)]


@pytest.mark.parametrize("x_shape,K,N", CASES)
def test_matmul_with_prepared_weights(x_shape, K, N, monkeypatch):
    monkeypatch.setenv("ONNXC_CACHE", "0")
    rng = np.random.default_rng(K + N)
    w = rng.standard_normal((K, N)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    model = _model([helper.make_node("MatMul", ["x", "w"], ["t"]),
                    helper.make_node("Add", ["t", "b"], ["u"]),
                    helper.make_node("Relu", ["u"], ["y"])], x_shape, {"w": w, "b": bias})
    x = rng.standard_normal(x_shape).astype(np.float32)
    want = np.maximum(x @ w + bias, 0)
    monkeypatch.setattr(packed_weights, "ENABLED", False)
    before = onnxc.compile(model, num_threads=1)
    packed_each_run = before.run(None, {"x": x})[0]
    buffers = before.llvm_ir().count("@\"aligned_alloc\"(")
    monkeypatch.setattr(packed_weights, "ENABLED", True)
    for threads in (1, 2, 3):
        sess = onnxc.compile(model, num_threads=threads)
        assert sess.llvm_ir().count("@\"aligned_alloc\"(") < buffers  # no run-time panel buffer
        assert len(_exe(sess).constants) == 3  # w, b and the prepared panels
        got = sess.run(None, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        np.testing.assert_array_equal(got, packed_each_run)


def test_gemm_transposed_b_is_prepared(monkeypatch):
    monkeypatch.setenv("ONNXC_CACHE", "0")
    rng = np.random.default_rng(3)
    b = rng.standard_normal((300, 128)).astype(np.float32)  # B^T: [N, K]
    model = _model([helper.make_node("Gemm", ["x", "b"], ["y"], transB=1)], (50, 128), {"b": b})
    x = rng.standard_normal((50, 128)).astype(np.float32)
    sess = onnxc.compile(model, num_threads=2)
    assert len(_exe(sess).constants) == 2
    got = sess.run(None, {"x": x})[0]
    np.testing.assert_allclose(got, x @ b.T, rtol=1e-4, atol=1e-3)


def test_saved_artifact_keeps_the_prepared_weights(tmp_path):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((96, 200)).astype(np.float32)
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], (32, 96), {"w": w})
    x = rng.standard_normal((32, 96)).astype(np.float32)
    sess = onnxc.compile(model, num_threads=2)
    sess.save(str(tmp_path / "m.onnxc"))
    loaded = onnxc.load(str(tmp_path / "m.onnxc"))
    np.testing.assert_array_equal(loaded.run(None, {"x": x})[0], sess.run(None, {"x": x})[0])


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8, np.bool_])
def test_constants_are_64_byte_aligned(dtype):
    raw = np.zeros(1000 * 8 + 8, np.uint8)
    for offset in (0, 4, 8, 24):
        itemsize = np.dtype(dtype).itemsize
        a = raw[offset:offset + 100 * itemsize].view(dtype)
        a[...] = np.arange(100).astype(dtype)
        out = _aligned(a)
        assert out.ctypes.data % 64 == 0
        np.testing.assert_array_equal(out, a)
    assert _aligned(np.asarray(np.float32(2.5))).shape == ()
