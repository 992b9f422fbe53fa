"""Each rewrite of passes/ (CSE, simplify, fold-constants, Gemm+BatchNorm folding, in-place
buffers) fires where it should, and the model still computes what onnxruntime computes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc
from onnxc.frontend import import_graph
from onnxc.ir import DType, Graph, TensorType
from onnxc.passes import PassManager, pipeline
from onnxc.passes.cse import CommonSubexpressionElimination
from onnxc.passes.fold_constants import FoldConstants
from onnxc.passes.simplify import Simplify

ort = pytest.importorskip("onnxruntime")
DATA = Path(__file__).resolve().parent / "data"


def _model(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _f(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _const(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _check_against_ort(model, feeds, opt_level=2):
    want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    got = onnxc.compile(model, opt_level=opt_level).run(None, feeds)
    optimized = onnxc.optimize(model, opt_level=opt_level)
    again = ort.InferenceSession(optimized.SerializeToString()).run(None, feeds)
    for g, a, w in zip(got, again, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-5)
    return optimized


def _ops_after(model, passes) -> list[str]:
    graph = PassManager(passes).run(import_graph(model))
    return [n.op for n in graph.nodes]


def test_cse_merges_equal_nodes_and_duplicate_initializers():
    w = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    model = _model([helper.make_node("MatMul", ["x", "w1"], ["a"]),
                    helper.make_node("MatMul", ["x", "w2"], ["b"]),  # w2 is a copy of w1
                    helper.make_node("Relu", ["a"], ["ra"]),
                    helper.make_node("Relu", ["b"], ["rb"]),
                    helper.make_node("Add", ["ra", "rb"], ["y"])],
                   [_f("x", [3, 4])], [_f("y", [3, 4])], [_const("w1", w), _const("w2", w)])
    assert _ops_after(model, [CommonSubexpressionElimination()]) == ["MatMul", "Relu", "Add"]
    optimized = _check_against_ort(model, {"x": np.ones((3, 4), np.float32)})
    assert len(optimized.graph.node) < len(model.graph.node)
    assert len(optimized.graph.initializer) == 1


def test_simplify_removes_layout_round_trips_and_neutral_arithmetic():
    model = _model([helper.make_node("Transpose", ["x"], ["t1"], perm=[0, 2, 1]),
                    helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 2, 1]),
                    helper.make_node("Reshape", ["t2", "s1"], ["r1"]),
                    helper.make_node("Reshape", ["r1", "s2"], ["r2"]),
                    helper.make_node("Mul", ["r2", "one"], ["m"]),
                    helper.make_node("Add", ["m", "zero"], ["a"]),
                    helper.make_node("Cast", ["a"], ["c"], to=TensorProto.FLOAT),
                    helper.make_node("Sigmoid", ["c"], ["y"])],
                   [_f("x", [2, 3, 4])], [_f("y", [2, 3, 4])],
                   [numpy_helper.from_array(np.array([6, 4], np.int64), "s1"),
                    numpy_helper.from_array(np.array([2, 3, 4], np.int64), "s2"),
                    _const("one", np.ones((3, 4))), _const("zero", 0.0)])
    assert _ops_after(model, [Simplify()]) == ["Sigmoid"]
    rng = np.random.default_rng(1)
    optimized = _check_against_ort(model, {"x": rng.standard_normal((2, 3, 4), np.float32)})
    assert [n.op_type for n in optimized.graph.node] == ["Sigmoid"]


def test_simplify_composes_transposes_and_merges_constant_chains():
    model = _model([helper.make_node("Transpose", ["x"], ["t1"], perm=[1, 2, 0]),
                    helper.make_node("Transpose", ["t1"], ["t2"], perm=[1, 0, 2]),
                    helper.make_node("Add", ["t2", "c1"], ["a1"]),
                    helper.make_node("Add", ["c2", "a1"], ["a2"]),
                    helper.make_node("Mul", ["a2", "c3"], ["m1"]),
                    helper.make_node("Mul", ["m1", "c4"], ["y"])],
                   [_f("x", [2, 3, 4])], [_f("y", [4, 3, 2])],
                   [_const("c1", [1.0, 2.0]), _const("c2", 0.5), _const("c3", [[2.0], [3.0],
                                                                                 [4.0]]),
                    _const("c4", -1.5)])
    assert _ops_after(model, [Simplify()]) == ["Transpose", "Add", "Mul"]
    rng = np.random.default_rng(2)
    _check_against_ort(model, {"x": rng.standard_normal((2, 3, 4), np.float32)})


def test_constant_chain_merges_across_broadcasting():
    # (x + c1) + c2 with x, c1 [3,1] and c2 [1,4]: x + (c1 + c2) broadcasts to the same [3,4].
    model = _model([helper.make_node("Add", ["x", "c1"], ["a"]),
                    helper.make_node("Add", ["a", "c2"], ["y"])],
                   [_f("x", [3, 1])], [_f("y", [3, 4])],
                   [_const("c1", [[1.0], [2.0], [3.0]]), _const("c2", [[1.0, 2.0, 3.0, 4.0]])])
    assert _ops_after(model, [Simplify()]) == ["Add"]
    _check_against_ort(model, {"x": np.arange(3, dtype=np.float32).reshape(3, 1)})


def test_fold_constants_evaluates_what_later_rewrites_made_constant():
    graph = Graph()
    a = graph.add_constant(np.arange(6, dtype=np.float32).reshape(2, 3), "a")
    b = graph.add_constant(np.full((2, 3), 2.0, np.float32), "b")
    x = graph.add_input("x", TensorType(DType.float32, (2, 3)))
    s = graph.add("Mul", [a, b])[0]
    y = graph.add("Add", [x, graph.add("Exp", [s])[0]])[0]
    graph.set_outputs([y], ["y"])
    PassManager([FoldConstants()]).run(graph)
    assert [n.op for n in graph.nodes] == ["Add"]
    folded = graph.nodes[0].inputs[1].const
    np.testing.assert_allclose(folded, np.exp(np.arange(6).reshape(2, 3) * 2.0), rtol=1e-6)


def test_gemm_batchnorm_folds_into_one_matmul_and_bias():
    rng = np.random.default_rng(3)
    w, b = rng.standard_normal((5, 8)), rng.standard_normal(5)
    bn = [_const(n, v) for n, v in (("s", rng.random(5) + 0.5), ("t", rng.standard_normal(5)),
                                     ("mu", rng.standard_normal(5)), ("var", rng.random(5) + .5))]
    model = _model([helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1),
                    helper.make_node("BatchNormalization", ["g", "s", "t", "mu", "var"], ["y"])],
                   [_f("x", [4, 8])], [_f("y", [4, 5])], [_const("w", w), _const("b", b)] + bn)
    optimized = _check_against_ort(model, {"x": rng.standard_normal((4, 8), np.float32)})
    assert [n.op_type for n in optimized.graph.node] == ["MatMul", "Add"]


@pytest.mark.parametrize("name", ["torch_conv_bn.onnx", "torch_bn_first.onnx"])
def test_torch_exported_batchnorms_are_folded(name):
    """torch.onnx.export(do_constant_folding=False) keeps BatchNormalization nodes; none
    survives optimization next to a Conv or Gemm, and no kernel is a lone BatchNorm after a
    Conv/Gemm (tests/data/make_torch_bn_models.py made these files)."""
    model = onnx.load(str(DATA / name))
    assert any(n.op_type == "BatchNormalization" for n in model.graph.node)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    optimized = _check_against_ort(model, {"x": x})
    assert not any(n.op_type == "BatchNormalization" for n in optimized.graph.node)
    onnx.checker.check_model(optimized, full_check=True)
    for kernel in onnxc.compile(model).describe()["kernels"]:
        assert kernel["ops"] != ["BatchNormalization"] or name == "torch_bn_first.onnx"
        if "Conv" in kernel["ops"] or "Gemm" in kernel["ops"]:
            continue
        assert kernel["ops"][0] != "BatchNormalization" or len(kernel["ops"]) == 1


def test_lone_batchnorm_is_one_scale_and_shift_kernel():
    model = onnx.load(str(DATA / "torch_bn_first.onnx"))
    kernels = onnxc.compile(model).describe()["kernels"]
    assert kernels[0]["ops"] == ["BatchNormalization"]  # one kernel: x * s + t
    assert ["Conv", "BatchNormalization", "Sigmoid"] in [k["ops"] for k in kernels]


def test_in_place_updates_shrink_the_arena_and_keep_the_numbers():
    rng = np.random.default_rng(5)
    nodes, prev = [], "x"
    for k in range(4):  # h_k = relu(prev @ v_k + prev @ w_k): the second kernel reads the
        # first's result only at the element it writes, and that result dies there
        nodes += [helper.make_node("MatMul", [prev, f"v{k}"], [f"a{k}"]),
                  helper.make_node("MatMul", [prev, f"w{k}"], [f"m{k}"]),
                  helper.make_node("Add", [f"m{k}", f"a{k}"], [f"s{k}"]),
                  helper.make_node("Relu", [f"s{k}"], [f"h{k}"])]
        prev = f"h{k}"
    nodes.append(helper.make_node("Tanh", [prev], ["y"]))
    weights = [_const(f"{n}{k}", rng.standard_normal((16, 16)) * 0.2) for k in range(4)
               for n in "vw"]
    model = _model(nodes, [_f("x", [8, 16])], [_f("y", [8, 16])], weights)
    for level in (0, 2):
        _check_against_ort(model, {"x": rng.standard_normal((8, 16), np.float32)}, level)
    from onnxc.runtime.build import plan_for_model

    plan = plan_for_model(model, {"x": np.zeros((8, 16), np.float32)})
    assert plan.notes["in_place_kernels"] >= 3
    assert plan.arena_bytes < plan.value_bytes


def test_in_place_is_refused_where_a_kernel_reads_other_elements():
    from onnxc.ir.compute import build_kernel
    from onnxc.runtime.plan import _in_place_pair

    graph = Graph()
    x = graph.add_input("x", TensorType(DType.float32, (4, 4)))
    t = graph.add("Transpose", [x], {"perm": (1, 0)})[0]
    s = graph.add("Softmax", [x], {"axis": -1})[0]
    e = graph.add("Exp", [x])[0]
    assert _in_place_pair(build_kernel([t.producer], [t])) is None
    assert _in_place_pair(build_kernel([s.producer], [s])) is None
    assert _in_place_pair(build_kernel([e.producer], [e])) == ("x", e.name)


def test_every_level_has_its_documented_pipeline():
    names = {level: [p.name for p in pipeline(level)] for level in range(4)}
    assert names[0] == ["materialize-outputs"]
    assert {"cse", "simplify", "fold-constants", "fold-batchnorm", "dce"} <= set(names[1])
    assert "fuse" not in names[1] and "fuse" in names[2]
    assert names[3] == names[2]
