"""Quantization ops on random inputs against onnxruntime: per-tensor, per-axis and blocked
QuantizeLinear/DequantizeLinear, DynamicQuantizeLinear, MatMulInteger with per-row/column zero
points, ConvInteger with padding and groups, QLinearMatMul and QLinearConv (per-channel)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from test_ops_vs_ort import check_vs_ort, one_node_model

RNG = np.random.default_rng(11)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16])
@pytest.mark.parametrize("mode", ["tensor", "axis", "block"])
def test_quantize_dequantize(dtype, mode) -> None:
    x = (RNG.standard_normal((3, 8, 5)) * 40).astype(np.float32)
    x[0, 0, :3] = [0.5, 1.5, -2.5]  # halves round to even
    info = np.iinfo(dtype)
    if mode == "tensor":
        scale, attrs = np.array(0.37, np.float32), {}
        zp = np.array((int(info.min) + int(info.max)) // 3, dtype)
    elif mode == "axis":
        scale, attrs = RNG.uniform(0.1, 0.5, 8).astype(np.float32), {"axis": 1}
        zp = RNG.integers(info.min // 4, info.max // 4, 8).astype(dtype)
    else:
        scale, attrs = RNG.uniform(0.1, 0.5, (3, 3, 5)).astype(np.float32), \
            {"axis": 1, "block_size": 3}
        zp = RNG.integers(info.min // 4, info.max // 4, (3, 3, 5)).astype(dtype)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], **attrs)
    check_vs_ort(one_node_model(node, {"x": x}, {"s": scale, "z": zp}), {"x": x})
    q = RNG.integers(info.min, info.max, x.shape).astype(dtype)
    node = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **attrs)
    check_vs_ort(one_node_model(node, {"q": q}, {"s": scale, "z": zp}), {"q": q})


def test_dynamic_quantize() -> None:
    x = (RNG.standard_normal((4, 7)) * 3 + 1).astype(np.float32)
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    check_vs_ort(one_node_model(node, {"x": x}, n_outputs=3), {"x": x})


def test_matmul_integer_and_qlinear_matmul() -> None:
    a = RNG.integers(0, 255, (2, 5, 16)).astype(np.uint8)
    b = RNG.integers(-128, 127, (16, 6)).astype(np.int8)
    node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    consts = {"b": b, "az": np.array(131, np.uint8),
              "bz": RNG.integers(-5, 5, 6).astype(np.int8)}
    check_vs_ort(one_node_model(node, {"a": a}, consts), {"a": a})
    b8 = RNG.integers(0, 255, (16, 6)).astype(np.uint8)
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"],
                            ["y"])
    consts = {"as": np.array(0.02, np.float32), "az": np.array(120, np.uint8), "b": b8,
              "bs": np.array(0.03, np.float32), "bz": np.array(130, np.uint8),
              "ys": np.array(0.5, np.float32), "yz": np.array(100, np.uint8)}
    check_vs_ort(one_node_model(node, {"a": a}, consts), {"a": a})


def test_conv_integer_and_qlinear_conv() -> None:
    x = RNG.integers(0, 255, (1, 4, 7, 6)).astype(np.uint8)
    w = RNG.integers(0, 255, (6, 2, 3, 3)).astype(np.uint8)
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], pads=[1, 1, 1, 1],
                            group=2, strides=[2, 1])
    consts = {"w": w, "xz": np.array(128, np.uint8), "wz": np.array(120, np.uint8)}
    check_vs_ort(one_node_model(node, {"x": x}, consts), {"x": x})
    w8 = RNG.integers(-127, 127, (6, 4, 3, 3)).astype(np.int8)
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                            ["y"], pads=[1, 0, 1, 0])
    consts = {"xs": np.array(0.01, np.float32), "xz": np.array(125, np.uint8), "w": w8,
              "ws": RNG.uniform(0.005, 0.02, 6).astype(np.float32),
              "wz": np.zeros(6, np.int8), "ys": np.array(0.2, np.float32),
              "yz": np.array(110, np.uint8), "b": RNG.integers(-500, 500, 6).astype(np.int32)}
    check_vs_ort(one_node_model(node, {"x": x}, consts), {"x": x})
