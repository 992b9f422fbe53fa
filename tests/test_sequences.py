"""Sequence and optional values, and ops with data-dependent output shapes, on random inputs.

References: onnxruntime (CPU) where it runs the model, else onnx.reference.ReferenceEvaluator.
Sequences are resolved at compile time (frontend/containers.py); NonMaxSuppression/NonZero on
run-time tensors cut the model (runtime/staged.py).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx.reference import ReferenceEvaluator

import onnxc
from onnxc.ir.errors import InputError

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the reference here")

FLOAT_SEQ = h.make_sequence_type_proto(h.make_tensor_type_proto(T.FLOAT, None))


def _model(nodes, inputs, outputs, inits=(), opset=18):
    g = h.make_graph(nodes, "g", inputs, outputs, list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)], ir_version=9)


def _ort(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _same(got, want, rtol=1e-5, atol=1e-6):
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (got, want)
        for g, w in zip(got, want):
            _same(g, w, rtol, atol)
        return
    if want is None:
        assert got is None
        return
    assert got.dtype == want.dtype and got.shape == want.shape, (got, want)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def test_sequence_built_in_a_loop_matches_onnxruntime():
    """Loop carries a sequence (SequenceInsert per iteration); ConcatFromSequence and
    SequenceAt with a run-time position read it afterwards."""
    body = h.make_graph(
        [h.make_node("Identity", ["c_in"], ["c_out"]),
         h.make_node("Cast", ["i"], ["fi"], to=T.FLOAT),
         h.make_node("Mul", ["x", "fi"], ["y"]),
         h.make_node("SequenceInsert", ["s_in", "y"], ["s_out"])],
        "body", [h.make_tensor_value_info("i", T.INT64, []),
                 h.make_tensor_value_info("c_in", T.BOOL, []),
                 h.make_value_info("s_in", FLOAT_SEQ)],
        [h.make_tensor_value_info("c_out", T.BOOL, []), h.make_value_info("s_out", FLOAT_SEQ)])
    nodes = [h.make_node("SequenceEmpty", [], ["s0"], dtype=T.FLOAT),
             h.make_node("Loop", ["n", "", "s0"], ["s"], body=body),
             h.make_node("ConcatFromSequence", ["s"], ["cat"], axis=0),
             h.make_node("ConcatFromSequence", ["s"], ["stacked"], axis=1, new_axis=1),
             h.make_node("SequenceAt", ["s", "pos"], ["at"]),
             h.make_node("SequenceLength", ["s"], ["len"])]
    model = _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [3, 4]),
                           h.make_tensor_value_info("pos", T.INT64, [])],
                   [h.make_value_info("s", FLOAT_SEQ),
                    h.make_tensor_value_info("cat", T.FLOAT, None),
                    h.make_tensor_value_info("stacked", T.FLOAT, None),
                    h.make_tensor_value_info("at", T.FLOAT, None),
                    h.make_tensor_value_info("len", T.INT64, None)],
                   [h.make_tensor("n", T.INT64, [], [5])])
    sess, ref = onnxc.compile(model), _ort(model)
    rng = np.random.default_rng(0)
    for pos in (2, -1, 0):
        feeds = {"x": rng.standard_normal((3, 4)).astype(np.float32),
                 "pos": np.array(pos, np.int64)}
        _same(sess.run(None, feeds), ref.run(None, feeds))


def test_sequence_input_and_output_with_split_and_erase():
    """A sequence graph input of varying length and element shapes: the session compiles once
    per structure and reuses it."""
    nodes = [h.make_node("SequenceErase", ["seq", "one"], ["erased"]),
             h.make_node("SplitToSequence", ["x"], ["parts"], axis=1),
             h.make_node("SequenceInsert", ["erased", "x", "zero"], ["out"])]
    model = _model(nodes, [h.make_value_info("seq", FLOAT_SEQ),
                           h.make_tensor_value_info("x", T.FLOAT, [2, "n"])],
                   [h.make_value_info("out", FLOAT_SEQ), h.make_value_info("parts", FLOAT_SEQ)],
                   [h.make_tensor("one", T.INT64, [], [1]),
                    h.make_tensor("zero", T.INT64, [], [0])])
    sess, ref = onnxc.compile(model), _ort(model)
    rng = np.random.default_rng(1)
    for n, shapes in [(3, [(2,), (3, 1), (4,)]), (3, [(2,), (3, 1), (4,)]), (5, [(1,), (2,)])]:
        feeds = {"seq": [rng.standard_normal(s).astype(np.float32) for s in shapes],
                 "x": rng.standard_normal((2, n)).astype(np.float32)}
        _same(sess.run(None, feeds), ref.run(None, feeds))
    assert len(sess.executables) == 2  # the repeated structure reused its executable
    with pytest.raises(InputError, match="sequence"):
        sess.run(None, {"seq": np.zeros(3, np.float32), "x": np.zeros((2, 2), np.float32)})


def test_sequence_map_matches_the_reference():
    """SequenceMap over a sequence and a tensor: the body is imported once per element."""
    body = h.make_graph([h.make_node("Add", ["e", "b"], ["y"]), h.make_node("Shape", ["e"], ["s"])],
                        "body", [h.make_tensor_value_info("e", T.FLOAT, None),
                                 h.make_tensor_value_info("b", T.FLOAT, None)],
                        [h.make_tensor_value_info("y", T.FLOAT, None),
                         h.make_tensor_value_info("s", T.INT64, None)])
    int_seq = h.make_sequence_type_proto(h.make_tensor_type_proto(T.INT64, None))
    model = _model([h.make_node("SequenceMap", ["seq", "b"], ["ys", "shapes"], body=body)],
                   [h.make_value_info("seq", FLOAT_SEQ),
                    h.make_tensor_value_info("b", T.FLOAT, [4])],
                   [h.make_value_info("ys", FLOAT_SEQ), h.make_value_info("shapes", int_seq)])
    sess, ref = onnxc.compile(model), ReferenceEvaluator(model)
    rng = np.random.default_rng(2)
    for shapes in [[(3, 4), (4,), (2, 1, 4)], [(5, 4)]]:
        feeds = {"seq": [rng.standard_normal(s).astype(np.float32) for s in shapes],
                 "b": rng.standard_normal(4).astype(np.float32)}
        _same(sess.run(None, feeds), [list(o) for o in ref.run(None, feeds)])


def test_optional_input_present_and_absent():
    """An optional graph input: fed an array or None (absent); OptionalHasElement folds, If
    picks its branch per specialization."""
    opt = h.make_optional_type_proto(h.make_tensor_type_proto(T.FLOAT, [3]))
    then = h.make_graph([h.make_node("OptionalGetElement", ["o"], ["v"]),
                         h.make_node("Mul", ["v", "x"], ["r"])], "then", [],
                        [h.make_tensor_value_info("r", T.FLOAT, [3])])
    other = h.make_graph([h.make_node("Neg", ["x"], ["r2"])], "else", [],
                         [h.make_tensor_value_info("r2", T.FLOAT, [3])])
    nodes = [h.make_node("OptionalHasElement", ["o"], ["has"]),
             h.make_node("If", ["has"], ["y"], then_branch=then, else_branch=other),
             h.make_node("Identity", ["o"], ["o_out"])]
    model = _model(nodes, [h.make_value_info("o", opt),
                           h.make_tensor_value_info("x", T.FLOAT, [3])],
                   [h.make_tensor_value_info("y", T.FLOAT, [3]), h.make_tensor_value_info(
                       "has", T.BOOL, []), h.make_value_info("o_out", opt)])
    # onnx's reference cannot return an absent optional (Identity of None): it runs without it
    plain = onnx.ModelProto()
    plain.CopyFrom(model)
    del plain.graph.node[2]
    del plain.graph.output[2]
    sess, ref = onnxc.compile(model), ReferenceEvaluator(plain)
    rng = np.random.default_rng(3)
    for present in (True, False, True):
        feeds = {"o": rng.standard_normal(3).astype(np.float32) if present else None,
                 "x": rng.standard_normal(3).astype(np.float32)}
        got = sess.run(None, feeds)
        _same(got[:2], [np.asarray(w) for w in ref.run(None, feeds)])
        _same(got[2], feeds["o"])
    assert [a.type for a in sess.get_inputs()] == ["optional(tensor(float))", "tensor(float)"]


def _nms_model(n_boxes: int) -> onnx.ModelProto:
    """Boxes and scores computed in the graph (so NMS's inputs are run-time tensors), and a
    Gather after NMS that consumes its data-dependent output."""
    nodes = [h.make_node("Abs", ["boxes"], ["b"]), h.make_node("Sigmoid", ["logits"], ["s"]),
             h.make_node("NonMaxSuppression", ["b", "s", "max_out", "iou", "thr"], ["sel"]),
             h.make_node("Gather", ["sel", "two"], ["box_id"], axis=1),
             h.make_node("Gather", ["b", "box_id"], ["picked"], axis=1)]
    return _model(nodes, [h.make_tensor_value_info("boxes", T.FLOAT, [2, n_boxes, 4]),
                          h.make_tensor_value_info("logits", T.FLOAT, [2, 3, n_boxes]),
                          h.make_tensor_value_info("max_out", T.INT64, [1])],
                  [h.make_tensor_value_info("sel", T.INT64, None),
                   h.make_tensor_value_info("picked", T.FLOAT, None)],
                  [h.make_tensor("two", T.INT64, [], [2]),
                   h.make_tensor("iou", T.FLOAT, [1], [0.4]),
                   h.make_tensor("thr", T.FLOAT, [1], [0.3])])


def test_non_max_suppression_on_random_boxes_matches_onnxruntime():
    """~100 random boxes per batch: the model is cut at NMS and the part after it compiled per
    number of selected boxes."""
    n = 100
    model = _nms_model(n)
    sess, ref = onnxc.compile(model), _ort(model)
    rng = np.random.default_rng(4)
    counts = set()
    for max_out in (5, 50, 50, 200):
        corner = rng.random((2, n, 2), dtype=np.float32) * 20
        size = rng.random((2, n, 2), dtype=np.float32) * 6
        feeds = {"boxes": np.concatenate([corner, corner + size], -1),
                 "logits": rng.standard_normal((2, 3, n)).astype(np.float32),
                 "max_out": np.array([max_out], np.int64)}
        got, want = sess.run(None, feeds), ref.run(None, feeds)
        _same(got, want)
        counts.add(len(want[0]))
    assert len(counts) > 1  # the output shape did vary between runs


def test_non_zero_on_a_large_run_time_tensor():
    """NonZero of a computed tensor (too big to specialize on its value) then a Gather."""
    nodes = [h.make_node("Greater", ["x", "zero"], ["mask"]), h.make_node("NonZero", ["mask"], ["nz"]),
             h.make_node("Transpose", ["nz"], ["idx"]), h.make_node("GatherND", ["x", "idx"], ["vals"])]
    model = _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [16, 16])],
                   [h.make_tensor_value_info("vals", T.FLOAT, None)],
                   [h.make_tensor("zero", T.FLOAT, [], [0.5])])
    sess, ref = onnxc.compile(model), _ort(model)
    rng = np.random.default_rng(5)
    for _ in range(2):
        feeds = {"x": rng.random((16, 16), dtype=np.float32)}
        _same(sess.run(None, feeds), ref.run(None, feeds))


def test_top_k_with_a_computed_k_and_a_saved_artifact(tmp_path):
    """TopK whose K is computed from a big tensor: cut there; the artifact of such a session
    keeps the model and runs after loading."""
    nodes = [h.make_node("Greater", ["x", "zero"], ["mask"]),
             h.make_node("Cast", ["mask"], ["m"], to=T.INT64),
             h.make_node("ReduceSum", ["m"], ["k"], keepdims=1),
             h.make_node("TopK", ["x", "k"], ["v", "i"], axis=0),
             h.make_node("Relu", ["v"], ["y"])]
    model = _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [200])],
                   [h.make_tensor_value_info("y", T.FLOAT, None),
                    h.make_tensor_value_info("i", T.INT64, None)],
                   [h.make_tensor("zero", T.FLOAT, [], [0.0])])
    sess, ref = onnxc.compile(model), _ort(model)
    rng = np.random.default_rng(6)
    x = rng.standard_normal(200).astype(np.float32)
    _same(sess.run(None, {"x": x}), ref.run(None, {"x": x}))
    sess.save(tmp_path / "m.onnxc")
    loaded = onnxc.load(tmp_path / "m.onnxc")
    x = rng.standard_normal(200).astype(np.float32)
    _same(loaded.run(None, {"x": x}), ref.run(None, {"x": x}))


def test_sequence_session_saved_and_loaded(tmp_path):
    """An artifact of a session with a sequence input keeps its specializations (keys with
    sequence structure) and the model."""
    model = _model([h.make_node("ConcatFromSequence", ["seq"], ["y"], axis=0)],
                   [h.make_value_info("seq", FLOAT_SEQ)],
                   [h.make_tensor_value_info("y", T.FLOAT, None)])
    sess = onnxc.compile(model)
    feeds = {"seq": [np.ones(2, np.float32), np.arange(3, dtype=np.float32)]}
    want = np.concatenate(feeds["seq"])
    _same(sess.run(None, feeds)[0], want)
    sess.save(tmp_path / "s.onnxc")
    loaded = onnxc.load(tmp_path / "s.onnxc")
    assert len(loaded.executables) == 1
    _same(loaded.run(None, feeds)[0], want)
    assert len(loaded.executables) == 1  # the saved specialization was used
    _same(loaded.run(None, {"seq": [np.ones(4, np.float32)]})[0], np.ones(4, np.float32))


def test_loop_with_a_computed_trip_count_and_range_with_a_computed_limit():
    """Values needed at compile time but computed from tensor contents: the session computes
    them first and specializes the rest of the model on them."""
    body = h.make_graph(
        [h.make_node("Identity", ["c_in"], ["c_out"]),
         h.make_node("Mul", ["acc_in", "x"], ["acc_out"]),
         h.make_node("Cast", ["i"], ["fi"], to=T.FLOAT)],
        "body", [h.make_tensor_value_info("i", T.INT64, []),
                 h.make_tensor_value_info("c_in", T.BOOL, []),
                 h.make_tensor_value_info("acc_in", T.FLOAT, [20])],
        [h.make_tensor_value_info("c_out", T.BOOL, []),
         h.make_tensor_value_info("acc_out", T.FLOAT, [20]),
         h.make_tensor_value_info("fi", T.FLOAT, [])])
    nodes = [h.make_node("Greater", ["x", "zero"], ["pos"]),
             h.make_node("Cast", ["pos"], ["pos_i"], to=T.INT64),
             h.make_node("ReduceSum", ["pos_i"], ["n"], keepdims=0),
             h.make_node("Loop", ["n", "", "one"], ["acc", "steps"], body=body),
             h.make_node("Range", ["zero_i", "n", "one_i"], ["r"])]
    model = _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [20])],
                   [h.make_tensor_value_info("acc", T.FLOAT, [20]),
                    h.make_tensor_value_info("steps", T.FLOAT, None),
                    h.make_tensor_value_info("r", T.INT64, None)],
                   [h.make_tensor("zero", T.FLOAT, [], [0.0]),
                    h.make_tensor("one", T.FLOAT, [20], [1.0] * 20),
                    h.make_tensor("zero_i", T.INT64, [], [0]),
                    h.make_tensor("one_i", T.INT64, [], [1])])
    sess, ref = onnxc.compile(model), _ort(model)
    rng = np.random.default_rng(7)
    for _ in range(3):
        feeds = {"x": (rng.standard_normal(20) * 0.5 + 1).astype(np.float32)}
        _same(sess.run(None, feeds), ref.run(None, feeds), rtol=1e-4)
