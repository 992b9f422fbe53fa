"""Small ONNX models for the CUDA backend checks (not a test module).

Shared by tests/test_cuda_codegen.py (cuda-sim and nvcc, no GPU) and scripts/gpu_check.py (a
real GPU). Each builder returns ``(model, feeds)``; weights and feeds are deterministic.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "cuda_check", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # what opset 17 needs; older onnxruntimes reject newer IR versions
    onnx.checker.check_model(model)
    return model


def _vi(name: str, dtype: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, list(shape))


def mlp(batch: int = 3, sizes=(32, 64, 10), seed: int = 0):
    """MatMul + Add + Relu layers."""
    rng = np.random.default_rng(seed)
    nodes, inits, cur = [], [], "x"
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = (rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{k}"),
                  numpy_helper.from_array(rng.standard_normal(b).astype(np.float32), f"b{k}")]
        out = "y" if k == len(sizes) - 2 else f"h{k}"
        nodes += [helper.make_node("MatMul", [cur, f"w{k}"], [f"mm{k}"]),
                  helper.make_node("Add", [f"mm{k}", f"b{k}"], [f"a{k}"]),
                  helper.make_node("Relu", [f"a{k}"], [out])]
        cur = out
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    return _model(nodes, [_vi("x", TensorProto.FLOAT, x.shape)],
                  [_vi("y", TensorProto.FLOAT, (batch, sizes[-1]))], inits), {"x": x}


def conv_bn_relu_pool(n: int = 2, c: int = 3, hw: int = 15, k: int = 8, seed: int = 1):
    """Conv (stride 2 and padding, then 3x3 same) + BatchNorm + Relu + MaxPool."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((k, c, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((k, k, 3, 3)) * 0.2).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(rng.standard_normal(k).astype(np.float32), "cb"),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, k).astype(np.float32), "scale"),
             numpy_helper.from_array(rng.standard_normal(k).astype(np.float32), "bias"),
             numpy_helper.from_array(rng.standard_normal(k).astype(np.float32), "mean"),
             numpy_helper.from_array(rng.uniform(0.5, 2.0, k).astype(np.float32), "var")]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "cb"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c2", "scale", "bias", "mean", "var"], ["bn"],
                         epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
    ]
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    o1 = (hw + 2 - 3) // 2 + 1
    o2 = (o1 + 2 - 3) // 2 + 1
    return _model(nodes, [_vi("x", TensorProto.FLOAT, x.shape)],
                  [_vi("y", TensorProto.FLOAT, (n, k, o2, o2))], inits), {"x": x}


def softmax(shape=(4, 37), seed: int = 2):
    """Softmax and LogSoftmax over the last axis (max, exp-sum, divide)."""
    x = (np.random.default_rng(seed).standard_normal(shape) * 3).astype(np.float32)
    nodes = [helper.make_node("Softmax", ["x"], ["y"], axis=-1),
             helper.make_node("LogSoftmax", ["x"], ["z"], axis=-1)]
    return _model(nodes, [_vi("x", TensorProto.FLOAT, shape)],
                  [_vi("y", TensorProto.FLOAT, shape), _vi("z", TensorProto.FLOAT, shape)]), \
        {"x": x}


def concat_transpose(seed: int = 3):
    """Concat along axis 1, then Transpose (pure index arithmetic)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b = rng.standard_normal((2, 5, 4)).astype(np.float32)
    nodes = [helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
             helper.make_node("Transpose", ["c"], ["y"], perm=[2, 0, 1])]
    return _model(nodes, [_vi("a", TensorProto.FLOAT, a.shape), _vi("b", TensorProto.FLOAT,
                                                                      b.shape)],
                  [_vi("y", TensorProto.FLOAT, (4, 2, 8))]), {"a": a, "b": b}


def where_bool(seed: int = 4):
    """Comparisons, Not/And/Or on bool tensors (stored as bytes), Where, and a bool output."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((3, 7)).astype(np.float32)
    b = rng.standard_normal((3, 7)).astype(np.float32)
    m = rng.random((1, 7)) < 0.5
    nodes = [helper.make_node("Greater", ["a", "b"], ["gt"]),
             helper.make_node("Not", ["m"], ["nm"]),
             helper.make_node("And", ["gt", "nm"], ["c1"]),
             helper.make_node("Less", ["a", "zero"], ["neg"]),
             helper.make_node("Or", ["c1", "neg"], ["cond"]),
             helper.make_node("Where", ["cond", "a", "b"], ["y"])]
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    return _model(nodes, [_vi("a", TensorProto.FLOAT, a.shape), _vi("b", TensorProto.FLOAT,
                                                                      b.shape),
                          _vi("m", TensorProto.BOOL, m.shape)],
                  [_vi("y", TensorProto.FLOAT, a.shape), _vi("cond", TensorProto.BOOL, a.shape)],
                  [zero]), {"a": a, "b": b, "m": m}


def float16_add(seed: int = 5):
    """float16 storage, computed in float: Add with broadcasting, Relu, Cast to float."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((3, 5)).astype(np.float16)
    b = rng.standard_normal((5,)).astype(np.float16)
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"]),
             helper.make_node("Cast", ["s"], ["z"], to=TensorProto.FLOAT)]
    return _model(nodes, [_vi("a", TensorProto.FLOAT16, a.shape),
                          _vi("b", TensorProto.FLOAT16, b.shape)],
                  [_vi("y", TensorProto.FLOAT16, a.shape), _vi("z", TensorProto.FLOAT,
                                                                a.shape)]), {"a": a, "b": b}


def nan_max_intdiv():
    """NaN through Max and ReduceMax (propagates, like numpy), and int32 Div (truncates)."""
    x = np.array([[1.0, np.nan, -2.0], [np.nan, 0.5, 3.0]], np.float32)
    w = np.array([[0.0, 2.0, np.nan], [1.0, -1.0, 2.0]], np.float32)
    p = np.array([7, -7, 7, -7, 0, 9], np.int32)
    q = np.array([2, 2, -2, -2, 3, -4], np.int32)
    nodes = [helper.make_node("Max", ["x", "w"], ["m"]),
             helper.make_node("ReduceMax", ["x"], ["r"], axes=[1], keepdims=0),
             helper.make_node("Div", ["p", "q"], ["d"])]
    return _model(nodes, [_vi("x", TensorProto.FLOAT, x.shape), _vi("w", TensorProto.FLOAT,
                                                                      w.shape),
                          _vi("p", TensorProto.INT32, p.shape), _vi("q", TensorProto.INT32,
                                                                      q.shape)],
                  [_vi("m", TensorProto.FLOAT, x.shape), _vi("r", TensorProto.FLOAT, (2,)),
                   _vi("d", TensorProto.INT32, p.shape)]), {"x": x, "w": w, "p": p, "q": q}


MODELS: dict[str, Callable] = {
    "mlp": mlp, "conv_bn_relu_pool": conv_bn_relu_pool, "softmax": softmax,
    "concat_transpose": concat_transpose, "where_bool": where_bool, "float16_add": float16_add,
    "nan_max_intdiv": nan_max_intdiv,
}

# Bigger shapes for timing on a real GPU (scripts/gpu_check.py).
BENCH: dict[str, Callable] = {
    "mlp_b64": lambda: mlp(64, (512, 1024, 1024, 10)),
    "conv_b8": lambda: conv_bn_relu_pool(8, 3, 64, 32),
    "softmax_256x1000": lambda: softmax((256, 1000)),
}


def _float16_add_numpy(feeds: dict) -> list[np.ndarray]:
    # onnxruntime computes float16 Add in float and drops the Add -> Cast rounding; ONNX
    # (and onnxc) round the float16 sum first, as numpy does.
    s = feeds["a"] + feeds["b"]
    return [np.maximum(s, np.float16(0)), s.astype(np.float32)]


def _nan_max_intdiv_numpy(feeds: dict) -> list[np.ndarray]:
    # onnxruntime's ReduceMax drops a NaN that is not first in a row; numpy propagates it.
    p, q = feeds["p"], feeds["q"]
    return [np.maximum(feeds["x"], feeds["w"]), np.max(feeds["x"], axis=1),
            (np.sign(p) * np.sign(q) * (np.abs(p) // np.abs(q))).astype(np.int32)]


# Models whose reference is numpy rather than onnxruntime (see the comments above).
NUMPY_REFERENCE: dict[str, Callable] = {"float16_add": _float16_add_numpy,
                                        "nan_max_intdiv": _nan_max_intdiv_numpy}


def node_cases() -> list[tuple[object, dict, list[np.ndarray]]]:
    """(case, feeds, expected outputs) for every data set of the ONNX node test cases that
    pass on the cpu backend (all but tests/known_failures.py's list)."""
    import warnings

    import onnx.backend.test.case.node as cases_module

    with warnings.catch_warnings():  # generating the cases warns about overflows on purpose
        warnings.simplefilter("ignore")
        from known_failures import NODE_KNOWN_NAMES

        cases = cases_module.collect_testcases()

    def array(x) -> np.ndarray:
        return numpy_helper.to_array(x) if isinstance(x, TensorProto) else np.asarray(x)

    def structured(x):  # a sequence feed stays a list, an absent optional None
        return None if x is None else [array(e) for e in x] if isinstance(x, list) else array(x)

    def flat(outputs) -> list[np.ndarray]:  # the compiled plan's outputs: sequences flattened
        return [e for o in outputs for e in (o if isinstance(o, list) else
                                             [] if o is None else [o])]

    selected = []
    for case in cases:
        if case.name[len("test_"):] in NODE_KNOWN_NAMES:
            continue
        for inputs, outputs in case.data_sets:
            feeds = dict(zip([i.name for i in case.model.graph.input], map(structured, inputs)))
            selected.append((case, feeds, flat([structured(o) for o in outputs])))
    return selected


def all_node_case_names() -> list[str]:
    """The names of every ONNX node test case (1884 with onnx 1.19), passing on cpu or not."""
    import warnings

    import onnx.backend.test.case.node as cases_module

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [case.name for case in cases_module.collect_testcases()]


def flat_feeds(model: onnx.ModelProto, feeds: dict) -> dict[str, np.ndarray]:
    """Feeds by compiled-plan input name: sequence elements as ``name[k]`` (as the Session
    flattens them)."""
    from onnxc.frontend.containers import flatten_feed, kind_of

    flat: dict[str, np.ndarray] = {}
    for vi in model.graph.input:
        if vi.name in feeds:
            kind = kind_of(vi.type)[0] if vi.type.WhichOneof("value") else "tensor"
            flat.update(flatten_feed(kind, vi.name, feeds[vi.name]))
    return flat


def reference(model: onnx.ModelProto, feeds: dict, name: str = "") -> list[np.ndarray]:
    """The expected outputs in model output order: numpy where NUMPY_REFERENCE says so, else
    onnxruntime (CPU provider)."""
    if name in NUMPY_REFERENCE:
        return NUMPY_REFERENCE[name](feeds)
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)
