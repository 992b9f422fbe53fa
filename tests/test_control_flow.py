"""If, Loop and Scan (imported inline, loops unrolled) against onnxruntime: an If whose
condition is computed at run time (both branches, then Where), a Loop with carried state and
scan outputs, a Scan in reverse with output on axis 1; and what is refused, with the reason."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import onnxc
from onnxc.ir.errors import UnsupportedOpError
from test_ops_vs_ort import check_vs_ort

RNG = np.random.default_rng(13)
F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _branch(name, op, value):
    const = helper.make_node("Constant", [], [f"{name}_c"],
                             value=helper.make_tensor(f"{name}_t", F, [], [value]))
    node = helper.make_node(op, ["x", f"{name}_c"], [f"{name}_y"])
    return helper.make_graph([const, node], name, [],
                             [helper.make_tensor_value_info(f"{name}_y", F, [10, 10])])


def test_if_with_run_time_condition() -> None:
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=_branch("a", "Mul", 3.0),
                              else_branch=_branch("b", "Add", -1.0))]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, [10, 10])],
                   [helper.make_tensor_value_info("y", F, [10, 10])],
                   [helper.make_tensor("zero", F, [], [0.0])])
    session = onnxc.compile(model)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for sign in (1, -1):
        x = (np.abs(RNG.standard_normal((10, 10))) * sign).astype(np.float32)
        np.testing.assert_allclose(session.run(None, {"x": x})[0], ref.run(None, {"x": x})[0],
                                   rtol=1e-5, atol=1e-6)
    # one compiled program serves both conditions: no specialization on the data
    assert len(session.describe()["specializations"]) == 1


def test_loop_with_state_and_scan_output() -> None:
    # body: acc = acc * 0.5 + x * i ; emits acc each step; keeps going
    body = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["fi"], to=F),
         helper.make_node("Mul", ["x", "fi"], ["xi"]),
         helper.make_node("Mul", ["acc", "half"], ["h"]),
         helper.make_node("Add", ["h", "xi"], ["acc_out"]),
         helper.make_node("Identity", ["cond"], ["cond_out"]),
         helper.make_node("Identity", ["acc_out"], ["emit"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc", F, [2, 3])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", F, [2, 3]),
         helper.make_tensor_value_info("emit", F, [2, 3])],
        [helper.make_tensor("half", F, [], [0.5])])
    nodes = [helper.make_node("Loop", ["n", "t", "a0"], ["acc", "all"], body=body)]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, [2, 3]),
                           helper.make_tensor_value_info("a0", F, [2, 3])],
                   [helper.make_tensor_value_info("acc", F, [2, 3]),
                    helper.make_tensor_value_info("all", F, [5, 2, 3])],
                   [helper.make_tensor("n", TensorProto.INT64, [], [5]),
                    helper.make_tensor("t", TensorProto.BOOL, [], [True])])
    feeds = {"x": RNG.standard_normal((2, 3)).astype(np.float32),
             "a0": RNG.standard_normal((2, 3)).astype(np.float32)}
    check_vs_ort(model, feeds)


def test_scan_reverse_with_output_axis() -> None:
    body = helper.make_graph(
        [helper.make_node("Add", ["s", "xt"], ["s_out"]),
         helper.make_node("Mul", ["s_out", "xt"], ["y"])],
        "body", [helper.make_tensor_value_info("s", F, [4]),
                 helper.make_tensor_value_info("xt", F, [4])],
        [helper.make_tensor_value_info("s_out", F, [4]),
         helper.make_tensor_value_info("y", F, [4])])
    nodes = [helper.make_node("Scan", ["s0", "x"], ["s", "ys"], body=body, num_scan_inputs=1,
                              scan_input_axes=[1], scan_input_directions=[1],
                              scan_output_axes=[1])]
    model = _model(nodes, [helper.make_tensor_value_info("s0", F, [4]),
                           helper.make_tensor_value_info("x", F, [4, 6])],
                   [helper.make_tensor_value_info("s", F, [4]),
                    helper.make_tensor_value_info("ys", F, [4, 6])])
    feeds = {"s0": RNG.standard_normal(4).astype(np.float32),
             "x": RNG.standard_normal((4, 6)).astype(np.float32)}
    check_vs_ort(model, feeds)


def test_loop_with_run_time_trip_count_is_computed_first() -> None:
    """The trip count comes from the tensor's contents: the session computes it, then
    compiles the loop unrolled for that count (runtime/staged.py)."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond"], ["cond_out"]),
         helper.make_node("Identity", ["v"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v", F, [100])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", F, [100])])
    nodes = [helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
             helper.make_node("Cast", ["m"], ["n"], to=TensorProto.INT64),
             helper.make_node("Loop", ["n", "", "x"], ["y"], body=body)]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, [100])],
                   [helper.make_tensor_value_info("y", F, [100])])
    for seed in range(2):
        x = (np.random.default_rng(seed).random(100) * 5).astype(np.float32)
        check_vs_ort(model, {"x": x})


def test_data_dependent_shape_inside_a_loop_body_is_refused() -> None:
    """A cut can only be made between top-level nodes: NonZero on a run-time tensor inside a
    Loop body is refused at compile time, naming the node."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond"], ["cond_out"]),
         helper.make_node("NonZero", ["v"], ["nz"], name="nz_in_body"),
         helper.make_node("Identity", ["v"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v", F, [100])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", F, [100]),
         helper.make_tensor_value_info("nz", TensorProto.INT64, None)])
    nodes = [helper.make_node("Loop", ["n", "", "x"], ["y", "nzs"], body=body)]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, [100])],
                   [helper.make_tensor_value_info("y", F, [100]),
                    helper.make_tensor_value_info("nzs", TensorProto.INT64, None)],
                   )
    model.graph.initializer.append(helper.make_tensor("n", TensorProto.INT64, [], [2]))
    with pytest.raises(UnsupportedOpError, match="nz_in_body.*inside a control-flow body"):
        onnxc.compile(model)
