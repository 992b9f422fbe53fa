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
    assert [n.op_type for n in optimized.graph.node] == ["Gemm"]  # MatMul+Add written back


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


def test_shape_computation_chains_fold_to_a_static_reshape():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape (what torch exports for x.view(n, -1))
    folds away at import: one Reshape view, no kernel at all for the shape arithmetic."""
    i64 = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)  # noqa: E731
    model = _model([helper.make_node("Shape", ["x"], ["s"]),
                    helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
                    helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
                    helper.make_node("Concat", ["n1", "minus_one"], ["shape"], axis=0),
                    helper.make_node("Reshape", ["x", "shape"], ["r"]),
                    helper.make_node("Relu", ["r"], ["y"])],
                   [_f("x", [2, 3, 4])], [_f("y", [2, 12])],
                   [i64("zero", 0), i64("axes", [0]), i64("minus_one", [-1])])
    assert _ops_after(model, pipeline(2)) == ["Reshape", "Relu"]
    optimized = _check_against_ort(model, {"x": np.arange(24, dtype=np.float32).reshape(2, 3, 4)
                                           - 12})
    assert [n.op_type for n in optimized.graph.node] == ["Reshape", "Relu"]


@pytest.mark.parametrize("activation", ["Relu", "LeakyRelu", "Clip6", "Sigmoid", "Tanh",
                                        "HardSigmoid", "GeluErf"])
def test_matmul_bias_activation_is_one_kernel(activation):
    rng = np.random.default_rng(6)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["a"])]
    inits = [_const("w", rng.standard_normal((8, 6))), _const("b", rng.standard_normal(6))]
    if activation == "Clip6":
        nodes.append(helper.make_node("Clip", ["a", "lo", "hi"], ["y"]))
        inits += [_const("lo", 0.0), _const("hi", 6.0)]
    elif activation == "GeluErf":  # x * 0.5 * (1 + erf(x / sqrt(2))), as exporters write it
        nodes += [helper.make_node("Div", ["a", "sqrt2"], ["d"]),
                  helper.make_node("Erf", ["d"], ["e"]),
                  helper.make_node("Add", ["e", "one"], ["p"]),
                  helper.make_node("Mul", ["a", "p"], ["q"]),
                  helper.make_node("Mul", ["q", "half"], ["y"])]
        inits += [_const("sqrt2", np.sqrt(2.0)), _const("one", 1.0), _const("half", 0.5)]
    else:
        nodes.append(helper.make_node(activation, ["a"], ["y"]))
    model = _model(nodes, [_f("x", [5, 8])], [_f("y", [5, 6])], inits)
    _check_against_ort(model, {"x": rng.standard_normal((5, 8), np.float32)})
    kernels = onnxc.compile(model).describe()["kernels"]
    assert len(kernels) == 1 and kernels[0]["ops"][0] == "MatMul", kernels


@pytest.mark.parametrize("form", ["half_x_first", "half_last", "half_with_p", "mul_inv_sqrt2",
                                  "not_gelu"])
def test_decomposed_gelu_is_recognized_in_every_association(form):
    from onnxc.passes.patterns import RecognizeGelu

    scaled = [helper.make_node("Div", ["x", "sqrt2"], ["d"])]
    if form == "mul_inv_sqrt2":
        scaled = [helper.make_node("Mul", ["inv_sqrt2", "x"], ["d"])]
    head = scaled + [helper.make_node("Erf", ["d"], ["e"]),
                     helper.make_node("Add", ["one", "e"], ["p"])]
    half = "half" if form != "not_gelu" else "not_half"
    tails = {"half_x_first": [helper.make_node("Mul", ["x", half], ["h"]),
                              helper.make_node("Mul", ["h", "p"], ["y"])],
             "half_last": [helper.make_node("Mul", ["p", "x"], ["q"]),
                           helper.make_node("Mul", ["q", half], ["y"])],
             "half_with_p": [helper.make_node("Mul", ["p", half], ["q"]),
                             helper.make_node("Mul", ["x", "q"], ["y"])]}
    tail = tails.get(form, tails["half_last"])
    inits = [_const("sqrt2", np.sqrt(2.0)), _const("inv_sqrt2", 1 / np.sqrt(2.0)),
             _const("one", 1.0), _const("half", 0.5), _const("not_half", 0.6)]
    model = _model(head + tail, [_f("x", [4, 5])], [_f("y", [4, 5])], inits)
    ops = _ops_after(model, [RecognizeGelu()])
    assert ops == (["Gelu"] if form != "not_gelu" else [n.op_type for n in head + tail])
    _check_against_ort(model, {"x": np.linspace(-4, 4, 20, dtype=np.float32).reshape(4, 5)})


@pytest.mark.parametrize("square, affine", [("Pow", True), ("Mul", True), ("Pow", False)])
def test_decomposed_layernorm_is_one_kernel(square, affine):
    """torch's opset-13 export of nn.LayerNorm: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt,
    Div, Mul, Add -> one LayerNormalization node, one kernel."""
    from onnxc.passes.patterns import RecognizeLayerNorm

    rng = np.random.default_rng(7)
    sq = helper.make_node("Pow", ["d", "two"], ["sq"]) if square == "Pow" else \
        helper.make_node("Mul", ["d", "d"], ["sq"])
    nodes = [helper.make_node("ReduceMean", ["x"], ["mu"], axes=[-1]),
             helper.make_node("Sub", ["x", "mu"], ["d"]), sq,
             helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["sd"]),
             helper.make_node("Div", ["d", "sd"], ["n" if affine else "y"])]
    if affine:
        nodes += [helper.make_node("Mul", ["n", "gamma"], ["g"]),
                  helper.make_node("Add", ["g", "beta"], ["y"])]
    inits = [_const("two", 2.0), _const("eps", 1e-5), _const("gamma", rng.random(16) + 0.5),
             _const("beta", rng.standard_normal(16))]
    model = _model(nodes, [_f("x", [2, 3, 16])], [_f("y", [2, 3, 16])], inits)
    model.opset_import[0].version = 13
    assert _ops_after(model, [RecognizeLayerNorm()]) == ["LayerNormalization"]
    _check_against_ort(model, {"x": rng.standard_normal((2, 3, 16), np.float32) * 3 + 1})
    kernels = onnxc.compile(model).describe()["kernels"]
    assert len(kernels) == 1
    assert set(kernels[0]["ops"]) == {"ReduceMean", "Sub", square, "Add", "Sqrt", "Div"} | (
        {"Mul"} if affine else set())
