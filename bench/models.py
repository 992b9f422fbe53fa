"""The bench set's generated models: an MLP, a transformer encoder layer, an LSTM and a
MobileNet-style network, with seeded random weights (the light models ship with onnx).

Each builder returns a checked ``onnx.ModelProto``; the tests import ``encoder_layer`` too.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    """Collects nodes and seeded random initializers for one graph."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.inits: list[onnx.TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []

    def const(self, name: str, array) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, name: str, *shape: int, scale: float | None = None) -> str:
        scale = scale if scale is not None else 1 / np.sqrt(shape[0])
        return self.const(name, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def node(self, op: str, inputs: list[str], out: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def linear(self, x: str, name: str, n_in: int, n_out: int) -> str:
        m = self.node("MatMul", [x, self.weight(f"{name}_w", n_in, n_out)], f"{name}_mm")
        return self.node("Add", [m, self.weight(f"{name}_b", n_out, scale=0.1)], name)

    def model(self, name: str, inputs, outputs, opset: int = 17) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        return model


def mlp(batch: int | str = 1, sizes: tuple[int, ...] = (784, 1024, 1024, 10),
        seed: int = 0) -> onnx.ModelProto:
    """MatMul + bias + ReLU layers (no ReLU after the last)."""
    b = _Builder(seed)
    x = "x"
    for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        x = b.linear(x, f"fc{k}", n_in, n_out)
        if k < len(sizes) - 2:
            x = b.node("Relu", [x], f"relu{k}")
    b.nodes[-1].output[0] = "y"
    return b.model("mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                         [batch, sizes[0]])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, sizes[-1]])])


def encoder_layer(seed: int = 0, seq: int = 8, dim: int = 32, heads: int = 4,
                  ffn: int = 64) -> onnx.ModelProto:
    """A transformer encoder layer as torch.onnx.export writes it: multi-head attention,
    residuals, LayerNormalization and an Erf-GELU feed-forward block; symbolic batch."""
    b = _Builder(seed)
    node = b.node
    shape4 = b.const("heads_shape", np.array([0, 0, heads, dim // heads], np.int64))
    merged = b.const("merged_shape", np.array([0, 0, dim], np.int64))

    def split_heads(name: str, perm: list[int]) -> str:
        reshaped = node("Reshape", [b.linear("x", name, dim, dim), shape4], f"{name}4")
        return node("Transpose", [reshaped], f"{name}t", perm=perm)

    q, k, v = (split_heads("q", [0, 2, 1, 3]), split_heads("k", [0, 2, 3, 1]),
               split_heads("v", [0, 2, 1, 3]))
    scores = node("Div", [node("MatMul", [q, k], "qk"),
                          b.const("sqrt_dh", np.array(np.sqrt(dim // heads), np.float32))],
                  "scores")
    probs = node("Softmax", [scores], "probs", axis=-1)
    ctx = node("Transpose", [node("MatMul", [probs, v], "ctx4")], "ctxt", perm=[0, 2, 1, 3])
    attn = b.linear(node("Reshape", [ctx, merged], "ctx"), "o", dim, dim)
    h1 = node("LayerNormalization", [node("Add", ["x", attn], "res1"),
                                     b.weight("ln1_g", dim, scale=1.0),
                                     b.weight("ln1_b", dim, scale=0.1)],
              "h1", axis=-1, epsilon=1e-5)
    f1 = b.linear(h1, "ff1", dim, ffn)
    erf = node("Erf", [node("Div", [f1, b.const("sqrt2", np.array(np.sqrt(2), np.float32))],
                            "f1s")], "erf")
    gelu = node("Mul", [node("Mul", [f1, node("Add", [erf, b.const("one", np.array(
        1, np.float32))], "erf1")], "f1e"), b.const("half", np.array(0.5, np.float32))], "gelu")
    f2 = b.linear(gelu, "ff2", ffn, dim)
    node("LayerNormalization", [node("Add", [h1, f2], "res2"), b.weight("ln2_g", dim, scale=1.0),
                                b.weight("ln2_b", dim, scale=0.1)], "y", axis=-1, epsilon=1e-5)
    return b.model("encoder",
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", seq, dim])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", seq, dim])])


def lstm(seq: int = 32, batch: int = 1, size: int = 128, hidden: int = 256,
         seed: int = 0) -> onnx.ModelProto:
    """One forward LSTM layer (the ONNX LSTM op) returning its full output sequence."""
    b = _Builder(seed)
    w = b.weight("W", 1, 4 * hidden, size, scale=1 / np.sqrt(size))
    r = b.weight("R", 1, 4 * hidden, hidden, scale=1 / np.sqrt(hidden))
    bias = b.weight("B", 1, 8 * hidden, scale=0.1)
    b.nodes.append(helper.make_node("LSTM", ["x", w, r, bias], ["y"], name="lstm",
                                    hidden_size=hidden))
    return b.model("lstm",
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [seq, batch, size])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                  [seq, 1, batch, hidden])])


def mobilenet(seed: int = 0, resolution: int = 224) -> onnx.ModelProto:
    """MobileNet v1 (width 1.0): a 3x3 stride-2 stem, 13 depthwise-separable blocks (depthwise
    3x3 + BatchNorm + ReLU6, pointwise 1x1 + BatchNorm + ReLU6), global pooling, a classifier."""
    b = _Builder(seed)
    zero, six = b.const("zero", np.array(0, np.float32)), b.const("six", np.array(6, np.float32))

    def conv_bn_relu6(x: str, name: str, c_in: int, c_out: int, k: int, stride: int,
                      group: int) -> str:
        w = b.weight(f"{name}_w", c_out, c_in // group, k, k,
                     scale=np.sqrt(2 / (c_in // group * k * k)))
        y = b.node("Conv", [x, w], f"{name}_conv", kernel_shape=[k, k], strides=[stride] * 2,
                   pads=[k // 2] * 4, group=group)
        gamma = b.const(f"{name}_g", (1 + 0.1 * b.rng.standard_normal(c_out)).astype(np.float32))
        beta = b.const(f"{name}_b", (0.1 * b.rng.standard_normal(c_out)).astype(np.float32))
        mean = b.const(f"{name}_m", (0.1 * b.rng.standard_normal(c_out)).astype(np.float32))
        var = b.const(f"{name}_v", b.rng.uniform(0.5, 1.5, c_out).astype(np.float32))
        y = b.node("BatchNormalization", [y, gamma, beta, mean, var], f"{name}_bn")
        return b.node("Clip", [y, zero, six], f"{name}_relu6")

    x = conv_bn_relu6("x", "stem", 3, 32, 3, 2, 1)
    blocks = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1),
              (256, 512, 2)] + [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]
    for k, (c_in, c_out, stride) in enumerate(blocks):
        x = conv_bn_relu6(x, f"dw{k}", c_in, c_in, 3, stride, c_in)
        x = conv_bn_relu6(x, f"pw{k}", c_in, c_out, 1, 1, 1)
    pooled = b.node("Flatten", [b.node("GlobalAveragePool", [x], "pool")], "flat")
    b.node("Gemm", [pooled, b.weight("fc_w", 1024, 1000), b.weight("fc_b", 1000, scale=0.1)],
           "y")
    return b.model("mobilenet_v1",
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                  [1, 3, resolution, resolution])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])])


GENERATED: dict[str, Callable[[], onnx.ModelProto]] = {
    "mlp_b1": lambda: mlp(1),
    "mlp_b64": lambda: mlp(64),
    "transformer_encoder": lambda: encoder_layer(seq=128, dim=256, heads=4, ffn=1024),
    "lstm": lstm,
    "mobilenet_v1": mobilenet,
}
"""Bench models by name, built on demand."""
