"""Regenerate the bundled example models (deterministic): tiny_cnn.onnx and mlp.onnx.

    python examples/make_examples.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).parent


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array.astype(np.float32), name)


def tiny_cnn(seed: int = 0) -> onnx.ModelProto:
    """Conv-BatchNorm-Relu-MaxPool twice, GlobalAveragePool, Gemm, Softmax on 1x3x32x32."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    channels = [3, 16, 32]
    x = "image"
    for k in range(2):
        cin, cout = channels[k], channels[k + 1]
        inits += [_init(f"conv{k}_w", rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (9 * cin))),
                  _init(f"conv{k}_b", rng.standard_normal(cout) * 0.1),
                  _init(f"bn{k}_scale", 1 + 0.1 * rng.standard_normal(cout)),
                  _init(f"bn{k}_bias", 0.1 * rng.standard_normal(cout)),
                  _init(f"bn{k}_mean", 0.1 * rng.standard_normal(cout)),
                  _init(f"bn{k}_var", 0.5 + rng.random(cout))]
        nodes += [
            helper.make_node("Conv", [x, f"conv{k}_w", f"conv{k}_b"], [f"c{k}"], name=f"conv{k}",
                             pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
            helper.make_node("BatchNormalization", [f"c{k}", f"bn{k}_scale", f"bn{k}_bias",
                                                    f"bn{k}_mean", f"bn{k}_var"], [f"b{k}"],
                             name=f"bn{k}"),
            helper.make_node("Relu", [f"b{k}"], [f"r{k}"], name=f"relu{k}"),
            helper.make_node("MaxPool", [f"r{k}"], [f"p{k}"], name=f"pool{k}",
                             kernel_shape=[2, 2], strides=[2, 2]),
        ]
        x = f"p{k}"
    inits += [_init("fc_w", rng.standard_normal((10, 32)) * np.sqrt(1 / 32)),
              _init("fc_b", 0.1 * rng.standard_normal(10))]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
              helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
              helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1)]
    graph = helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="onnxc-examples")
    onnx.checker.check_model(model, full_check=True)
    return model


def mlp(seed: int = 0, sizes=(64, 128, 128, 10)) -> onnx.ModelProto:
    """h = ReLU(W x + b) layers: MatMul + Add + Relu, the lecture's dense layer."""
    rng = np.random.default_rng(seed)
    inits, nodes, x = [], [], "x"
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        inits += [_init(f"W{k}", rng.standard_normal((a, b)) * np.sqrt(2 / a)),
                  _init(f"b{k}", 0.1 * rng.standard_normal(b))]
        nodes += [helper.make_node("MatMul", [x, f"W{k}"], [f"m{k}"], name=f"matmul{k}"),
                  helper.make_node("Add", [f"m{k}", f"b{k}"], [f"a{k}"], name=f"add{k}")]
        x = f"a{k}"
        if k < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"h{k}"], name=f"relu{k}"))
            x = f"h{k}"
    nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", sizes[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="onnxc-examples")
    onnx.checker.check_model(model, full_check=True)
    return model


if __name__ == "__main__":
    onnx.save(tiny_cnn(), HERE / "tiny_cnn.onnx")
    onnx.save(mlp(), HERE / "mlp.onnx")
    print("wrote", HERE / "tiny_cnn.onnx", "and", HERE / "mlp.onnx")
