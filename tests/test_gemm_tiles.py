"""The packed GEMM's per-shape tiles (gemm_shapes) and leftover-column dot products (gemm_tail):
every tile pinned in turn on shapes with remainders in rows (the last row tile's own kernel),
columns (masked vectors, 1..4 leftover columns as dot products, more as a masked tile) and the
reduction (a masked last vector of the dot products), against numpy (MatMul) and onnxruntime
(Conv: 1x1 at 7x7, a pitch-flattened 3x3 whose leftover columns fall in the pitch padding,
strided, dilated, residual epilogues), at 1 and 2 threads."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxc.backends.cpu import gemm_shapes, gemv
from onnxc.backends.cpu.gemm_tail import split_columns

import onnxc

TILES = [(4, 4), (6, 3), (6, 2), (12, 1)]


def _model(nodes, inputs, inits):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s))
                     for n, s in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _compile(model, tile, threads):
    """Compiled with ``tile`` forced on the packed schedule; the few-row schedule (gemv.py,
    tested in test_small_models.py) is off so products of up to 32 rows reach the tiles."""
    saved = gemm_shapes.FORCE, gemv.ENABLED
    gemm_shapes.FORCE, gemv.ENABLED = tile, False
    try:
        return onnxc.compile(model, num_threads=threads)
    finally:
        gemm_shapes.FORCE, gemv.ENABLED = saved


def _close(got, want, rtol=1e-4):
    np.testing.assert_allclose(got, want, rtol=rtol,
                               atol=rtol * max(float(np.abs(want).max()), 1.0))


def test_tile_choice_follows_padding():
    assert split_columns(49, 16) == (48, 1)
    assert split_columns(196, 16) == (192, 4)
    assert split_columns(169, 16) == (169, 0)  # 9 left over: a masked tile
    assert split_columns(16, 16) == (16, 0) and split_columns(3, 16) == (3, 0)
    assert gemm_shapes.choose_tile(1024, 48, 16, 1024, (6, 2)) == (6, 3)
    assert gemm_shapes.choose_tile(512, 192, 16, 512, (6, 2)) == (4, 4)
    assert gemm_shapes.choose_tile(1000, 169, 16, 512, (6, 2)) == (12, 1)
    assert gemm_shapes.choose_tile(1000, 169, 16, 1024, (6, 2)) != (12, 1)  # a leaves L1
    assert gemm_shapes.choose_tile(64, 3136, 8, 64, (6, 2)) == (6, 2)  # AVX2: as written


# (batch, M, K, N): leftover columns 1 (49), 4 (100), 3 with K % 16 = 6 (35, K 1030), 2 in a
# batched product (18), 9 (a masked tile, 25); rows 13, 25, 7, 9 leave row remainders
MATMUL = [(None, 13, 37, 49), (None, 25, 20, 100), (None, 7, 1030, 35), (2, 9, 16, 18),
          (None, 30, 64, 25)]


@pytest.mark.parametrize("tile", TILES, ids=lambda t: f"{t[0]}x{t[1]}")
@pytest.mark.parametrize("shape", MATMUL, ids=str)
def test_matmul_tiles(shape, tile):
    batch, m, k, n = shape
    rng = np.random.default_rng(m * n + k)
    x_shape = (m, k) if batch is None else (batch, m, k)
    w = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    tanh = n % 2 == 1  # odd widths take the scalar epilogue (tanh), even ones bias + ReLU
    if tanh:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]),
                 helper.make_node("Tanh", ["mm"], ["y"])]
        inits = {"w": w}
    else:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]),
                 helper.make_node("Add", ["mm", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
        inits = {"w": w, "b": bias}
    model = _model(nodes, [("x", x_shape)], inits)
    x = rng.standard_normal(x_shape).astype(np.float32)
    want = x.astype(np.float64) @ w.astype(np.float64)
    want = np.tanh(want) if tanh else np.maximum(want + bias, 0)
    for threads in (1, 2):
        s = _compile(model, tile, threads)
        assert "aligned_alloc" in s.llvm_ir()  # the packed schedule ran
        _close(s.run(None, {"x": x})[0], want)


CONV = [  # (C, M, H, W, kernel, stride, pad, dilation, residual)
    (32, 20, 7, 7, 1, 1, 0, 1, True),   # 49 columns: 48 + 1 dot product, 20 rows
    (16, 13, 14, 14, 1, 1, 0, 1, False),  # 196 = 192 + 4
    (5, 10, 7, 1, 3, 1, 1, 1, False),   # pitch 3 > width 1: 19 = 16 + 3, two in the padding
    (8, 14, 15, 15, 3, 2, 1, 1, True),  # stride phases, 8x8 output
    (6, 9, 11, 11, 3, 1, 2, 2, False),  # dilated
]


@pytest.mark.parametrize("tile", TILES, ids=lambda t: f"{t[0]}x{t[1]}")
@pytest.mark.parametrize("case", CONV, ids=lambda c: "x".join(map(str, c)))
def test_conv_tiles(case, tile):
    c, m, h, w, k, stride, pad, dil, residual = case
    rng = np.random.default_rng(c * m + h + k)
    wt = (rng.standard_normal((m, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    oh = (h + 2 * pad - dil * (k - 1) - 1) // stride + 1
    ow = (w + 2 * pad - dil * (k - 1) - 1) // stride + 1
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[pad] * 4,
                              strides=[stride] * 2, dilations=[dil] * 2)]
    inputs = [("x", (1, c, h, w))]
    feeds = {"x": rng.standard_normal((1, c, h, w)).astype(np.float32)}
    if residual:
        nodes += [helper.make_node("Add", ["c", "r"], ["s"]),
                  helper.make_node("Relu", ["s"], ["y"])]
        inputs.append(("r", (1, m, oh, ow)))
        feeds["r"] = rng.standard_normal((1, m, oh, ow)).astype(np.float32)
    else:
        nodes += [helper.make_node("Relu", ["c"], ["y"])]
    model = _model(nodes, inputs, {"w": wt, "b": bias})
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    for threads in (1, 2):
        s = _compile(model, tile, threads)
        _close(s.run(None, feeds)[0], want)

