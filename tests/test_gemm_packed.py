"""The packed GEMM schedule, its vector epilogues and the one-region thread team, against
numpy (MatMul) and onnxruntime (Conv) on random weights: sizes with remainders in every
dimension (row tiles of 6, column tiles of 2 vectors, column blocks, the reduction), batched
products, flattened-row convolutions with and without pitch padding, residual epilogues, and
1, 2 and 3 threads (chunks are claimed dynamically, so any team size must give the same
result)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc

THREADS = (1, 2, 3)


def _model(nodes, inputs, inits, opset=13):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _compile_all(model):
    return {t: onnxc.compile(model, num_threads=t) for t in THREADS}


def _close(got, want, rtol=1e-4):
    np.testing.assert_allclose(got, want, rtol=rtol,
                               atol=rtol * max(float(np.abs(want).max()), 1.0))


# (batch, M, K, N): M % 6, N % 32, K odd, several column blocks (K * NC <= 96 Ki floats)
# (rows above 32: fewer go to the few-row schedule, backends/cpu/gemv.py)
MATMUL = [(None, 37, 33, 45), (None, 61, 300, 700), (None, 42, 17, 64), (3, 43, 40, 50),
          (None, 36, 1024, 129), (None, 100, 16, 17)]


@pytest.mark.parametrize("shape", MATMUL, ids=str)
@pytest.mark.parametrize("epilogue", ["none", "bias_relu", "tanh"])
def test_matmul_packed(shape, epilogue):
    batch, m, k, n = shape
    rng = np.random.default_rng(sum(shape[1:]))
    x_shape = (m, k) if batch is None else (batch, m, k)
    w = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm" if epilogue != "none" else "y"])]
    inits = {"w": w}
    if epilogue == "bias_relu":
        nodes += [helper.make_node("Add", ["mm", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
        inits["b"] = bias
    elif epilogue == "tanh":  # not vectorizable: the scalar epilogue
        nodes += [helper.make_node("Tanh", ["mm"], ["y"])]
    model = _model(nodes, [("x", x_shape)], inits)
    x = rng.standard_normal(x_shape).astype(np.float32)
    want = x.astype(np.float64) @ w.astype(np.float64)
    if epilogue == "bias_relu":
        want = np.maximum(want + bias, 0)
    elif epilogue == "tanh":
        want = np.tanh(want)
    sessions = _compile_all(model)
    if m >= 6 and n > 16 and k >= 16:
        assert "aligned_alloc" in sessions[1].llvm_ir()  # the packed schedule ran
    for t, s in sessions.items():
        _close(s.run(None, {"x": x})[0], want)


CONV = [  # (C, M, H, W, kernel, pad, residual)
    (16, 13, 9, 11, 3, 1, False),   # pitch 13 > width 11, 13 output channels (tail of 1)
    (24, 40, 14, 14, 1, 0, True),   # pitch == width, residual Add in the epilogue
    (5, 64, 23, 23, 3, 0, False),   # reduction 45, several column tiles
    (3, 8, 33, 31, 7, 3, True),     # 7x7 kernel, residual
]


@pytest.mark.parametrize("case", CONV, ids=lambda c: "x".join(map(str, c)))
def test_conv_packed(case):
    c, m, h, w, k, pad, residual = case
    rng = np.random.default_rng(c * m + h)
    wt = (rng.standard_normal((m, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[pad] * 4)]
    inputs = [("x", (1, c, h, w))]
    feeds = {"x": rng.standard_normal((1, c, h, w)).astype(np.float32)}
    if residual:
        nodes += [helper.make_node("Add", ["c", "r"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
        inputs.append(("r", (1, m, oh, ow)))
        feeds["r"] = rng.standard_normal((1, m, oh, ow)).astype(np.float32)
    else:
        nodes += [helper.make_node("Relu", ["c"], ["y"])]
    model = _model(nodes, inputs, {"w": wt, "b": bias})
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    sessions = _compile_all(model)
    assert "aligned_alloc" in sessions[1].llvm_ir()
    for t, s in sessions.items():
        _close(s.run(None, feeds)[0], want)


def test_team_runs_a_chain_of_small_and_large_stages():
    """Serial and parallel stages alternate inside one region; every stage must see its
    producer's whole output."""
    rng = np.random.default_rng(5)
    ws = {f"w{i}": rng.standard_normal((64, 64)).astype(np.float32) / 8 for i in range(6)}
    nodes, prev = [], "x"
    for i in range(6):
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]))
        nodes.append(helper.make_node("Relu" if i % 2 else "Sigmoid", [f"m{i}"],
                                      ["y" if i == 5 else f"a{i}"]))
        prev = f"a{i}"
    model = _model(nodes, [("x", (300, 64))], ws)
    x = rng.standard_normal((300, 64)).astype(np.float32)
    want = x.astype(np.float64)
    for i in range(6):
        want = want @ ws[f"w{i}"]
        want = np.maximum(want, 0) if i % 2 else 1 / (1 + np.exp(-want))
    sessions = _compile_all(model)
    assert "onnxc_team" in sessions[2].llvm_ir()
    for _ in range(3):
        for t, s in sessions.items():
            _close(s.run(None, {"x": x})[0], want)
