"""A transformer encoder layer (multi-head attention, LayerNormalization, an Erf-GELU
feed-forward block, residuals), as torch.onnx.export writes it, on cpu and cuda-sim vs
onnxruntime, with random weights and a symbolic batch."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc

B, S, D, H, F = 2, 8, 32, 4, 64


def encoder_layer(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(name, *shape, scale=None):
        scale = scale if scale is not None else 1 / np.sqrt(shape[0])
        return const(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    def node(op, inputs, out, **attrs):
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def linear(x, name, n_in, n_out):
        m = node("MatMul", [x, weight(f"{name}_w", n_in, n_out)], f"{name}_mm")
        return node("Add", [m, weight(f"{name}_b", n_out, scale=0.1)], name)

    heads = const("heads_shape", np.array([0, 0, H, D // H], np.int64))
    merged = const("merged_shape", np.array([0, 0, D], np.int64))
    q = node("Transpose", [node("Reshape", [linear("x", "q", D, D), heads], "q4")], "qt",
             perm=[0, 2, 1, 3])
    k = node("Transpose", [node("Reshape", [linear("x", "k", D, D), heads], "k4")], "kt",
             perm=[0, 2, 3, 1])
    v = node("Transpose", [node("Reshape", [linear("x", "v", D, D), heads], "v4")], "vt",
             perm=[0, 2, 1, 3])
    scores = node("Div", [node("MatMul", [q, k], "qk"),
                          const("sqrt_dh", np.array(np.sqrt(D // H), np.float32))], "scores")
    probs = node("Softmax", [scores], "probs", axis=-1)
    ctx = node("Transpose", [node("MatMul", [probs, v], "ctx4")], "ctxt", perm=[0, 2, 1, 3])
    attn = linear(node("Reshape", [ctx, merged], "ctx"), "o", D, D)
    h1 = node("LayerNormalization", [node("Add", ["x", attn], "res1"),
                                     weight("ln1_g", D, scale=1.0), weight("ln1_b", D, scale=0.1)],
              "h1", axis=-1, epsilon=1e-5)
    f1 = linear(h1, "ff1", D, F)
    erf = node("Erf", [node("Div", [f1, const("sqrt2", np.array(np.sqrt(2), np.float32))],
                            "f1s")], "erf")
    gelu = node("Mul", [node("Mul", [f1, node("Add", [erf, const("one", np.array(
        1, np.float32))], "erf1")], "f1e"), const("half", np.array(0.5, np.float32))], "gelu")
    f2 = linear(gelu, "ff2", F, D)
    node("LayerNormalization", [node("Add", [h1, f2], "res2"), weight("ln2_g", D, scale=1.0),
                                weight("ln2_b", D, scale=0.1)], "y", axis=-1, epsilon=1e-5)
    graph = helper.make_graph(
        nodes, "encoder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", S, D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", S, D])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("target", ["cpu", "cuda-sim"])
def test_encoder_layer_matches_onnxruntime(target):
    model = encoder_layer()
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sess = onnxc.compile(model, target=target)
    for batch in (B, 1):
        x = np.random.default_rng(batch).standard_normal((batch, S, D)).astype(np.float32)
        want = ref.run(None, {"x": x})[0]
        got = sess.run(None, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_encoder_layer_optimizes_to_standard_onnx():
    model = encoder_layer(1)
    optimized = onnxc.optimize(model, input_shapes={"x": (B, S, D)})
    x = np.random.default_rng(5).standard_normal((B, S, D)).astype(np.float32)
    run = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
           .run(None, {"x": x})[0] for m in (model, optimized)]
    np.testing.assert_allclose(run[1], run[0], rtol=1e-4, atol=1e-5)
