"""IR -> standard ONNX: the model-conversion writer behind ``onnxc.optimize``.

Every core op maps back onto one default-domain ONNX op (fused kernels are written as their
member nodes), so the result runs on any ONNX runtime and passes the full checker.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxc.ir import Graph, Node, Value
from onnxc.ir.dtypes import DType
from onnxc.ir.errors import OnnxcError

from .onnx_types import dtype_to_onnx

EXPORT_OPSET = 17
SAME_NAME = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Relu", "Sigmoid", "Tanh", "Exp",
             "Log", "Sqrt", "Neg", "Abs", "Reciprocal", "Identity", "Less", "LessOrEqual",
             "Greater", "GreaterOrEqual", "Equal", "And", "Or", "Xor", "Not", "Where", "MatMul",
             "PRelu", "Softplus", "Softsign", "Sign", "Erf", "Floor", "Ceil", "Round", "Sin",
             "Cos", "IsNaN", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh",
             "Atanh"}
# Core ops whose attributes are ONNX attributes of the same name and meaning.
SAME_ATTRS = {"Elu", "Selu", "HardSigmoid", "ThresholdedRelu", "Shrink", "IsInf", "Mod", "Gather",
              "GatherElements", "ArgMax", "ArgMin", "GatherND"}


class _Writer:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.names: dict[int, str] = {}
        self.used: set[str] = set()
        self.opset = EXPORT_OPSET  # raised to 19 only for what opset 17 cannot say

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name

    def name(self, v: Value | None) -> str:
        if v is None:
            return ""
        if id(v) not in self.names:
            self.names[id(v)] = self.fresh(v.name)
        return self.names[id(v)]

    def constant(self, array: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def emit(self, op: str, node: Node, inputs: list[str], **attrs) -> None:
        self.nodes.append(helper.make_node(op, inputs, [self.name(v) for v in node.outputs],
                                           name=self.name(node.outputs[0]) + "_node", **attrs))


def _ints(x) -> list[int]:
    return [int(v) for v in x]


def _pool_attrs(node: Node, dilations: bool = True) -> dict:
    a = node.attrs
    out = {"kernel_shape": _ints(a["kernel_shape"]), "strides": _ints(a["strides"]),
           "pads": _ints(a["pads"]), "ceil_mode": int(a.get("ceil_mode", 0))}
    if dilations and any(d != 1 for d in a["dilations"]):
        out["dilations"] = _ints(a["dilations"])
    return out


def _cast_attrs(a: dict) -> dict:
    """saturate is written only where it means something (float8 and float8e8m0 targets; its
    ONNX default is 1, the core op's 0), round_mode only for float8e8m0 (opset 24)."""
    to = DType(a["to"])
    out = {}
    if to.is_narrow_float and to.itemsize == 1 and to != DType.float4e2m1:
        out["saturate"] = int(bool(a.get("saturate", False)))
    if to == DType.float8e8m0:
        out["round_mode"] = a.get("round_mode", "nearest")
    return out


# The opset that brought each element type to the standard ops (onnx.defs says which ops).
TYPE_OPSET = {DType.float8e4m3fn: 19, DType.float8e4m3fnuz: 19, DType.float8e5m2: 19,
              DType.float8e5m2fnuz: 19, DType.int4: 21, DType.uint4: 21,
              DType.float4e2m1: 23, DType.float8e8m0: 24, DType.int2: 25, DType.uint2: 25}


def _type_opset(graph: Graph) -> int:
    values = list(graph.inputs) + list(graph.constants.values()) + \
        [v for n in graph.nodes for v in n.outputs]
    return max((TYPE_OPSET.get(v.dtype, 0) for v in values), default=0)


def _write_node(w: _Writer, node: Node) -> None:
    ins = [w.name(v) for v in node.inputs]
    a = node.attrs
    special: dict[str, Callable[[], None]] = {
        "LeakyRelu": lambda: w.emit("LeakyRelu", node, ins, alpha=float(a.get("alpha", 0.01))),
        "Clip": lambda: w.emit("Clip", node, ins),
        "Cast": lambda: w.emit("Cast", node, ins, to=dtype_to_onnx(DType(a["to"])),
                               **_cast_attrs(a)),
        "Conv": lambda: w.emit("Conv", node, ins, group=int(a.get("group", 1)),
                               strides=_ints(a["strides"]), pads=_ints(a["pads"]),
                               dilations=_ints(a["dilations"]),
                               kernel_shape=_ints(node.inputs[1].shape[2:])),
        "MaxPool": lambda: w.emit("MaxPool", node, ins[:1], **_pool_attrs(node)),
        "AveragePool": lambda: _avgpool(w, node, ins),
        "LRN": lambda: w.emit("LRN", node, ins, size=int(a["size"]), alpha=float(a["alpha"]),
                              beta=float(a["beta"]), bias=float(a["bias"])),
        "Softmax": lambda: w.emit("Softmax", node, ins, axis=int(a.get("axis", -1))),
        "LogSoftmax": lambda: w.emit("LogSoftmax", node, ins, axis=int(a.get("axis", -1))),
        "Reshape": lambda: w.emit("Reshape", node, [ins[0], w.constant(
            np.array(a["shape"], dtype=np.int64), node.outputs[0].name + "_shape")],
            allowzero=1),
        "Transpose": lambda: w.emit("Transpose", node, ins, perm=_ints(a["perm"])),
        "Concat": lambda: w.emit("Concat", node, ins, axis=int(a["axis"])),
        "Slice": lambda: _slice(w, node, ins),
        "Expand": lambda: w.emit("Expand", node, ins + [w.constant(
            np.array(a["shape"], dtype=np.int64), node.outputs[0].name + "_shape")]),
        "Tile": lambda: w.emit("Tile", node, ins + [w.constant(
            np.array(a["repeats"], dtype=np.int64), node.outputs[0].name + "_repeats")]),
        "Pad": lambda: w.emit("Pad", node, ins + [
            w.constant(np.array(a["pads"], dtype=np.int64), node.outputs[0].name + "_pads"),
            w.constant(np.array(a.get("value", 0), dtype=node.inputs[0].dtype.np),
                       node.outputs[0].name + "_value")], mode=a.get("mode", "constant")),
        "Gelu": lambda: _gelu(w, node, ins),
        "LayerNormalization": lambda: w.emit("LayerNormalization", node, ins,
                                             axis=int(a["axis"]), epsilon=float(a["epsilon"])),
        "Trilu": lambda: w.emit("Trilu", node, ins + [w.constant(
            np.array(a.get("k", 0), dtype=np.int64), node.outputs[0].name + "_k")],
            upper=int(a.get("upper", 1))),
        "TopK": lambda: w.emit("TopK", node, ins + [w.constant(
            np.array([a["k"]], dtype=np.int64), node.outputs[0].name + "_k")],
            axis=int(a.get("axis", -1)), largest=int(a.get("largest", 1))),
        "CumSum": lambda: w.emit("CumSum", node, ins + [w.constant(
            np.array(a["axis"], dtype=np.int64), node.outputs[0].name + "_axis")],
            exclusive=int(a.get("exclusive", 0)), reverse=int(a.get("reverse", 0))),
        "OneHot": lambda: w.emit("OneHot", node, [ins[0], w.constant(
            np.array(a["depth"], dtype=np.int64), node.outputs[0].name + "_depth"), ins[1]],
            axis=int(a.get("axis", -1))),
        "ScatterElements": lambda: _scatter(w, node, ins, axis=int(a.get("axis", 0))),
        "GridSample": lambda: _grid_sample(w, node, ins),
        "Resample": lambda: _resample(w, node, ins),
        "MaxPoolIndices": lambda: w.nodes.append(helper.make_node(
            "MaxPool", ins[:1], [w.fresh(node.outputs[0].name + "_values"),
                                 w.name(node.outputs[0])],
            name=w.name(node.outputs[0]) + "_node", storage_order=int(a.get("storage_order", 0)),
            **_pool_attrs(node))),
        "BitShift": lambda: _bit_shift(w, node, ins),
        "ScatterND": lambda: _scatter(w, node, ins),
    }
    if node.op in ("And", "Or", "Xor") and node.inputs[0].dtype != DType.bool:
        w.opset = max(w.opset, 18)  # on integers the core ops are bitwise: BitwiseAnd, ...
        w.emit("Bitwise" + node.op, node, ins)
    elif node.op == "BitwiseNot":
        w.opset = max(w.opset, 18)
        w.emit("BitwiseNot", node, ins)
    elif node.op == "Det":
        w.emit("Det", node, ins)
    elif node.op in SAME_NAME:
        w.emit(node.op, node, ins)
    elif node.op in SAME_ATTRS:
        w.emit(node.op, node, ins, **a)
    elif node.op in special:
        special[node.op]()
    elif node.op.startswith("Reduce"):
        _reduce(w, node, ins)
    elif node.op == "Fused":
        for member in node.subgraphs["body"].nodes:
            _write_node(w, member)
    else:
        raise OnnxcError(f"cannot write core op {node.op} (node {node.name!r}) back to ONNX")


def _gelu(w: _Writer, node: Node, ins: list[str]) -> None:
    """Gelu is opset 20: written as its definition for opset 17."""
    x, out = ins[0], node.outputs[0]
    dt = node.inputs[0].dtype.np
    tmp = lambda s: w.fresh(f"{out.name}_{s}")  # noqa: E731
    k = lambda v, s: w.constant(np.array(v, dtype=dt), f"{out.name}_{s}")  # noqa: E731
    add = lambda op, a, s: w.nodes.append(helper.make_node(op, a, [s], name=s + "_node")) or s  # noqa: E731,E501
    if node.attrs.get("approximate", "none") == "tanh":
        cube = add("Mul", [add("Mul", [x, x], tmp("sq")), x], tmp("cube"))
        poly = add("Add", [x, add("Mul", [cube, k(0.044715, "c")], tmp("cc"))], tmp("poly"))
        inner = add("Tanh", [add("Mul", [poly, k(np.sqrt(2 / np.pi), "k")], tmp("arg"))],
                    tmp("tanh"))
    else:
        inner = add("Erf", [add("Mul", [x, k(1 / np.sqrt(2), "k")], tmp("arg"))], tmp("erf"))
    half = add("Mul", [x, k(0.5, "half")], tmp("half"))
    w.emit("Mul", node, [half, add("Add", [inner, k(1.0, "one")], tmp("one_plus"))])


def _scatter(w: _Writer, node: Node, ins: list[str], **attrs) -> None:
    reduction = node.attrs.get("reduction", "none")
    if reduction in ("max", "min"):
        w.opset = max(w.opset, 18)  # reductions max and min came with opset 18
    w.emit(node.op, node, ins, reduction=reduction, **attrs)


def _resample(w: _Writer, node: Node, ins: list[str]) -> None:
    """ReduceSum(Gather(x, idx) * weights) along the axis."""
    axis, rank = int(node.attrs["axis"]), node.inputs[0].type.rank
    base = node.outputs[0].name
    gathered, weighted = w.fresh(base + "_taps"), w.fresh(base + "_weighted")
    shape = w.constant(np.array(list(node.inputs[2].shape) + [1] * (rank - axis - 1),
                                dtype=np.int64), base + "_wshape")
    wr = w.fresh(base + "_w")
    w.nodes += [helper.make_node("Gather", [ins[0], ins[1]], [gathered], axis=axis),
                helper.make_node("Reshape", [ins[2], shape], [wr]),
                helper.make_node("Mul", [gathered, wr], [weighted])]
    w.emit("ReduceSum", node, [weighted, w.constant(np.array([axis + 1], dtype=np.int64),
                                                    base + "_axes")], keepdims=0)


def _grid_sample(w: _Writer, node: Node, ins: list[str]) -> None:
    if node.inputs[0].type.rank != 4:
        raise OnnxcError(f"GridSample {node.name!r} on a {node.inputs[0].type.rank}-D input "
                         f"needs opset 20")
    mode = {"linear": "bilinear", "cubic": "bicubic"}.get(node.attrs["mode"], "nearest")
    w.emit("GridSample", node, ins, mode=mode, padding_mode=node.attrs["padding_mode"],
           align_corners=int(node.attrs.get("align_corners", 0)))


def _bit_shift(w: _Writer, node: Node, ins: list[str]) -> None:
    if not node.inputs[0].dtype.is_unsigned_int:
        raise OnnxcError(f"BitShift {node.name!r} on {node.inputs[0].dtype} needs opset 26")
    w.emit("BitShift", node, ins, direction="LEFT" if node.attrs.get("left", 1) else "RIGHT")


def _avgpool(w: _Writer, node: Node, ins: list[str]) -> None:
    """The core op divides window sums by its divisor input; ONNX's AveragePool by its own
    count. Where they differ (LpPool's sum pool, ...) the result is rescaled by a Mul."""
    from onnxc.ir.ops.nn import pool_divisor

    a = node.attrs
    dilated = any(d != 1 for d in a["dilations"])
    if dilated:
        w.opset = max(w.opset, 19)  # AveragePool's dilations came with opset 19
    x, out = node.inputs[0], node.outputs[0]
    include = bool(a.get("count_include_pad", 0))
    divisor = node.inputs[1].const if len(node.inputs) > 1 and node.inputs[1] is not None \
        else None

    def standard(include_pad: bool):
        return pool_divisor(x.shape[2:], out.shape[2:], a["kernel_shape"], a["strides"],
                            a["pads"], a["dilations"], include_pad)

    attrs = _pool_attrs(node, dilations=dilated)
    if divisor is None or np.array_equal(np.broadcast_to(divisor, out.shape[2:]),
                                         standard(include)):
        w.emit("AveragePool", node, ins[:1], count_include_pad=int(include), **attrs)
        return
    pooled = w.fresh(out.name + "_avg")
    w.nodes.append(helper.make_node("AveragePool", ins[:1], [pooled], name=pooled + "_node",
                                    count_include_pad=1, **attrs))
    scale = (standard(True) / np.broadcast_to(divisor, out.shape[2:])).astype(x.dtype.np)
    w.emit("Mul", node, [pooled, w.constant(scale, out.name + "_rescale")])


def _slice(w: _Writer, node: Node, ins: list[str]) -> None:
    a = node.attrs
    extra = [w.constant(np.array(a[k], dtype=np.int64), f"{node.outputs[0].name}_{k}")
             for k in ("starts", "ends")]
    for k in ("axes", "steps"):
        extra.append(w.constant(np.array(a[k], dtype=np.int64), f"{node.outputs[0].name}_{k}")
                     if a.get(k) is not None else "")
    while extra and extra[-1] == "":
        extra.pop()
    w.emit("Slice", node, ins[:1] + extra)


def _reduce(w: _Writer, node: Node, ins: list[str]) -> None:
    a = node.attrs
    if node.inputs[0].dtype == DType.bool:
        w.opset = max(w.opset, 20)  # ReduceMax/Min on bool came with opset 20
    axes = _ints(a.get("axes") or [])
    common = {"keepdims": int(a.get("keepdims", 1))}
    if node.op == "ReduceSum":
        extra = [w.constant(np.array(axes, dtype=np.int64), node.outputs[0].name + "_axes")] \
            if axes else []
        w.emit("ReduceSum", node, ins[:1] + extra, **common,
               noop_with_empty_axes=int(a.get("noop_with_empty_axes", 0)))
    elif a.get("noop_with_empty_axes") and not axes:
        w.emit("Identity", node, ins[:1])
    else:
        w.emit(node.op, node, ins[:1], **common, **({"axes": axes} if axes else {}))


def _matmul_add_to_gemm(w: _Writer, graph: Graph) -> None:
    """MatMul(x, W) + b with x and W 2-D and b a vector or row becomes one Gemm node."""
    ranks = {w.names[id(v)]: v.type.rank for v in graph.values() if id(v) in w.names}
    for body in (n.subgraphs["body"] for n in graph.nodes if "body" in n.subgraphs):
        ranks.update({w.names[id(v)]: v.type.rank for m in body.nodes for v in m.outputs
                      if id(v) in w.names})
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in w.nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    inits = {t.name: t for t in w.initializers}
    outputs = set(graph.output_names)
    gone = set()
    for k, mm in enumerate(w.nodes):
        if mm.op_type != "MatMul" or ranks.get(mm.input[0]) != 2 or \
                ranks.get(mm.input[1]) != 2 or mm.output[0] in outputs:
            continue
        uses = consumers.get(mm.output[0], [])
        if len(uses) != 1 or uses[0].op_type != "Add":
            continue
        add = uses[0]
        bias = add.input[1] if add.input[0] == mm.output[0] else add.input[0]
        t = inits.get(bias)
        if t is None or add.input[0] == add.input[1] or len(t.dims) > 2 or \
                (len(t.dims) == 2 and t.dims[0] != 1):
            continue
        w.nodes[k] = helper.make_node("Gemm", [mm.input[0], mm.input[1], bias],
                                      list(add.output), name=add.name)
        gone.add(id(add))
    w.nodes = [n for n in w.nodes if id(n) not in gone]


def _axes_as_inputs(w: _Writer) -> None:
    for n in w.nodes:
        if n.op_type.startswith("Reduce") and n.op_type != "ReduceSum":
            axes = next((a for a in n.attribute if a.name == "axes"), None)
            if axes is not None:
                n.input.append(w.constant(np.array(list(axes.ints), dtype=np.int64),
                                          n.output[0] + "_axes"))
                n.attribute.remove(axes)


def _value_info(name: str, v: Value) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype_to_onnx(v.dtype), list(v.shape))


def export_model(graph: Graph, *, producer: str = "onnxc") -> onnx.ModelProto:
    """A standard-opset ModelProto computing the same outputs as ``graph``."""
    w = _Writer(graph)
    for v in graph.inputs:
        w.name(v)
    # The outputs keep the model's names: reserve them before any other value is named.
    inputs = {id(v) for v in graph.inputs}
    free: set[str] = set()  # reserved output names not yet written by a node
    for v, out_name in zip(graph.outputs, graph.output_names):
        if out_name in w.used:
            continue
        w.used.add(out_name)
        if id(v) not in w.names and id(v) not in inputs and v.const is None:
            w.names[id(v)] = out_name
        else:
            free.add(out_name)
    for v in graph.constants.values():
        w.initializers.append(numpy_helper.from_array(np.asarray(v.const), w.name(v)))
    for node in graph.nodes:
        _write_node(w, node)
    outputs = []
    for v, out_name in zip(graph.outputs, graph.output_names):
        name = w.name(v)
        if name != out_name:
            if out_name not in free:
                raise OnnxcError(f"output name {out_name!r} clashes with another value")
            free.discard(out_name)
            w.nodes.append(helper.make_node("Identity", [name], [out_name],
                                            name=f"{out_name}_output"))
        outputs.append(_value_info(out_name, v))
    w.opset = max(w.opset, _type_opset(graph))  # float8 needs 19, int4 21, ..., int2 25
    if w.opset >= 18:  # opset 18 moved the other reductions' axes into an input too
        _axes_as_inputs(w)
    _matmul_add_to_gemm(w, graph)
    read = {name for n in w.nodes for name in n.input}
    w.initializers = [t for t in w.initializers if t.name in read]
    g = helper.make_graph(w.nodes, graph.name, [_value_info(w.name(v), v) for v in graph.inputs],
                          outputs, w.initializers)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", w.opset)],
                              producer_name=producer)
    model.ir_version = min(model.ir_version, 8 if w.opset <= 17 else 9) if w.opset <= 20 else \
        helper.find_min_ir_version_for([helper.make_opsetid("", w.opset)])
    return model


# Protobuf cannot serialize a message of 2 GiB or more; leave room for the graph itself.
PROTOBUF_LIMIT = (2 << 30) - (64 << 20)


def needs_external_data(model: onnx.ModelProto) -> bool:
    """Whether the weights are too big for one protobuf file."""
    return sum(t.ByteSize() for t in model.graph.initializer) >= PROTOBUF_LIMIT


def save_model(model: onnx.ModelProto, path: str, external_data: bool | None = None) -> None:
    """Write ``model`` to ``path``; weights go to ``<file>.data`` beside it when asked or when
    the model would pass protobuf's 2 GiB limit. The file written is checked in full."""
    import os

    if external_data is None:
        external_data = needs_external_data(model)
    if external_data:
        location = os.path.basename(path) + ".data"
        if os.path.exists(os.path.join(os.path.dirname(path) or ".", location)):
            os.remove(os.path.join(os.path.dirname(path) or ".", location))  # onnx appends
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=location, size_threshold=1024)
    else:
        onnx.save_model(model, path)
    onnx.checker.check_model(path, full_check=True)
