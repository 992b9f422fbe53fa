"""Passes: each one keeps the numbers (differential tests) and does its rewrite."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc
from onnxc.ir.verifier import verify
from onnxc.passes import PassManager, all_passes, pipeline
from onnxc.runtime.build import CompileOptions, optimize_graph

from models import mlp


def conv_bn_model(seed: int = 0, bias: bool = True) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    c, m = 3, 8
    inits = [numpy_helper.from_array(rng.standard_normal((m, c, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(m).astype(np.float32), "b")]
    for name, values in (("scale", rng.standard_normal(m)), ("shift", rng.standard_normal(m)),
                         ("mean", rng.standard_normal(m)), ("var", 0.5 + rng.random(m))):
        inits.append(numpy_helper.from_array(values.astype(np.float32), name))
    nodes = [helper.make_node("Conv", ["x", "w", "b"] if bias else ["x", "w"], ["c"],
                              pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"],
                              ["bn"], name="bn", epsilon=1e-3),
             helper.make_node("Relu", ["bn"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "conv_bn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, c, 9, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])


MODELS = {"conv_bn": conv_bn_model(), "conv_bn_nobias": conv_bn_model(1, bias=False),
          "mlp": mlp(4, (8, 16, 16, 3), 0)}


def _feeds(session, seed=0):
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in session.get_inputs()}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("disabled", [None] + sorted(all_passes()))
def test_each_pass_keeps_the_numbers(name, disabled):
    """-O0 is the reference; -O2 with every pass, and with each pass disabled in turn, agrees."""
    model = MODELS[name]
    reference = onnxc.compile(model, opt_level=0)
    feeds = _feeds(reference)
    expected = reference.run(None, feeds)
    optimized = onnxc.compile(model, opt_level=2,
                              disable_passes=[disabled] if disabled else [])
    for got, want in zip(optimized.run(None, feeds), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_verifier_passes_after_every_pass(name):
    graph = optimize_graph(MODELS[name], None, CompileOptions(opt_level=0))
    verify(graph)
    for p in pipeline(3):
        graph = PassManager([p], verify_each=True).run(graph)


def test_batchnorm_folds_into_conv_weights():
    session = onnxc.compile(MODELS["conv_bn"], opt_level=2, disable_passes=["fuse"])
    text = session.ir_text()
    assert "Mul(" not in text and "Add(" not in text, text
    assert "Conv" in text and "Relu" in text


def test_matmul_add_relu_become_one_kernel():
    session = onnxc.compile(MODELS["mlp"], opt_level=2)
    kernels = session.describe()["kernels"]
    assert [k["ops"] for k in kernels][:2] == [["MatMul", "Add", "Relu"]] * 2
    assert kernels[-1]["ops"][:2] == ["MatMul", "Add"]


def test_print_after_and_timings(capsys):
    printed = []
    graph = optimize_graph(MODELS["mlp"], None, CompileOptions(opt_level=2))
    pm = PassManager(pipeline(2), print_after={"fuse"}, printer=printed.append)
    pm.run(optimize_graph(MODELS["mlp"], None, CompileOptions(opt_level=0)))
    assert len(printed) == 1 and "Fused" in printed[0]
    assert [n for n, _ in pm.timings] == [p.name for p in pipeline(2)]
    assert graph.nodes
