"""Fuzzing the model loader and importer with hypothesis: mutated, truncated and spliced bytes
of a real model, and structural mutations of its protobuf (op types, wiring, attributes,
shapes, opsets). Whatever comes in, onnxc.compile either succeeds or raises an
onnxc.OnnxcError: never another exception, a crash or a hang.

CI runs a short budget; ``ONNXC_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz_loader.py``
runs a longer campaign.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a dev extra")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("ONNXC_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def _seed_model() -> onnx.ModelProto:
    """A small model touching several importers: Conv, BatchNorm, Reshape, Gemm, Softmax."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("w", rng.standard_normal((4, 2, 3, 3)).astype(np.float32)),
        ("scale", np.ones(4, np.float32)), ("bias", np.zeros(4, np.float32)),
        ("mean", np.zeros(4, np.float32)), ("var", np.ones(4, np.float32)),
        ("shape", np.array([1, -1], np.int64)),
        ("fc", rng.standard_normal((64, 5)).astype(np.float32)),
        ("fcb", np.zeros(5, np.float32)), ("idx", np.array([0, 2], np.int64)),
    ]]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"],
                         name="bn"),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Reshape", ["p", "shape"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["g"], name="fc"),
        helper.make_node("Gather", ["g", "idx"], ["h"], name="pick", axis=1),
        helper.make_node("Softmax", ["h"], ["y"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "seed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


SEED = _seed_model()
SEED_BYTES = SEED.SerializeToString()


def _compile_or_onnxc_error(model) -> None:
    try:
        sess = onnxc.compile(model, opt_level=0, memory_limit_bytes=1 << 28)
    except onnxc.OnnxcError:
        return
    feeds = {}
    for arg in sess.get_inputs():
        if any(not isinstance(d, int) or d > 64 for d in arg.shape):
            return
        dtype = {"tensor(float)": np.float32, "tensor(int64)": np.int64}.get(arg.type)
        if dtype is None:
            return
        feeds[arg.name] = np.zeros(arg.shape, dtype)
    try:
        sess.run(None, feeds)
    except onnxc.OnnxcError:
        pass


# -- byte-level mutations -----------------------------------------------------------------------
def _apply(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, pos, value in edits:
        if not buf:
            break
        pos %= len(buf)
        if kind == "flip":
            buf[pos] ^= value or 1
        elif kind == "set":
            buf[pos] = value
        elif kind == "insert":
            buf[pos:pos] = bytes([value]) * (1 + value % 8)
        elif kind == "delete":
            del buf[pos:pos + 1 + value % 16]
        elif kind == "truncate":
            del buf[pos:]
    return bytes(buf)


EDITS = st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
                           st.integers(0, len(SEED_BYTES) - 1), st.integers(0, 255)),
                 min_size=1, max_size=6)


@FUZZ
@given(EDITS)
def test_mutated_model_bytes(edits) -> None:
    _compile_or_onnxc_error(_apply(SEED_BYTES, edits))


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    _compile_or_onnxc_error(data)


# -- structural mutations -----------------------------------------------------------------------
OPS = ["Relu", "Add", "MatMul", "Conv", "Gather", "Reshape", "Softmax", "Concat", "Transpose",
       "Slice", "Squeeze", "Unsqueeze", "ReduceSum", "Expand", "Tile", "Pad", "Split", "Where",
       "Cast", "Flatten", "Gemm", "MaxPool", "AveragePool", "BatchNormalization", "LSTM",
       "ConstantOfShape", "Range", "Shape", "If", "Loop", "NoSuchOp"]
ATTR_INTS = st.one_of(st.integers(-3, 5), st.sampled_from([-(1 << 62), 1 << 40, 1 << 62]))
MUTATION = st.one_of(
    st.tuples(st.just("op"), st.integers(0, 7), st.sampled_from(OPS)),
    st.tuples(st.just("input"), st.integers(0, 7), st.integers(0, 5),
              st.sampled_from(["x", "c", "b", "r", "p", "f", "g", "h", "y", "", "w", "zzz"])),
    st.tuples(st.just("drop_input"), st.integers(0, 7), st.integers(0, 5), st.none()),
    st.tuples(st.just("attr"), st.integers(0, 7), st.sampled_from(
        ["axis", "pads", "strides", "kernel_shape", "group", "dilations", "perm", "transB"]),
        st.lists(ATTR_INTS, min_size=0, max_size=5)),
    st.tuples(st.just("dims"), st.integers(0, 8), st.lists(ATTR_INTS, max_size=4), st.none()),
    st.tuples(st.just("input_dims"), st.lists(ATTR_INTS, max_size=5), st.none(), st.none()),
    st.tuples(st.just("dtype"), st.integers(0, 8), st.integers(0, 25), st.none()),
    st.tuples(st.just("opset"), st.integers(-1, 40), st.none(), st.none()),
    st.tuples(st.just("swap"), st.integers(0, 7), st.integers(0, 7), st.none()),
    st.tuples(st.just("output"), st.integers(0, 7), st.sampled_from(["x", "c", "y", "w", ""]),
              st.none()),
)


def _mutate(m: onnx.ModelProto, mutation) -> None:
    kind, a, b, c = mutation
    g = m.graph
    if kind == "op":
        g.node[a].op_type = b
    elif kind == "input":
        ins = g.node[a].input
        if b < len(ins):
            ins[b] = c
        else:
            ins.append(c)
    elif kind == "drop_input" and b < len(g.node[a].input):
        del g.node[a].input[b]
    elif kind == "attr":
        node = g.node[a]
        kept = [x for x in node.attribute if x.name != b]
        del node.attribute[:]
        node.attribute.extend(kept)
        value = c if b in ("pads", "strides", "kernel_shape", "dilations", "perm") else \
            (c[0] if c else 0)
        node.attribute.append(helper.make_attribute(b, value))
    elif kind == "dims":
        t = g.initializer[a]
        del t.dims[:]
        t.dims.extend(b)
    elif kind == "input_dims":
        shape = g.input[0].type.tensor_type.shape
        del shape.dim[:]
        for d in a:
            shape.dim.add().dim_value = d
    elif kind == "dtype":
        g.initializer[a].data_type = b
    elif kind == "opset":
        m.opset_import[0].version = a
    elif kind == "swap":
        first, second = onnx.NodeProto(), onnx.NodeProto()
        first.CopyFrom(g.node[a])
        second.CopyFrom(g.node[b])
        g.node[a].CopyFrom(second)
        g.node[b].CopyFrom(first)
    elif kind == "output":
        outs = g.node[a].output
        outs[0] = b


@FUZZ
@given(st.lists(MUTATION, min_size=1, max_size=3))
def test_structurally_mutated_models(mutations) -> None:
    m = onnx.ModelProto()
    m.CopyFrom(SEED)
    for mutation in mutations:
        try:
            _mutate(m, mutation)
        except (ValueError, TypeError):
            return  # protobuf refused the mutation itself (e.g. a dim out of int64 range)
    _compile_or_onnxc_error(m)
    _compile_or_onnxc_error(m.SerializeToString())


def test_seed_model_compiles_and_runs() -> None:
    """The fuzzers start from a model that works (else they would only test parse errors)."""
    x = np.random.default_rng(1).standard_normal((1, 2, 8, 8)).astype(np.float32)
    got = onnxc.compile(SEED).run(None, {"x": x})[0]
    import onnxruntime as ort

    want = ort.InferenceSession(SEED_BYTES, providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
