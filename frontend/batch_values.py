"""Does a model use its batch size as a value? (a condition of batch tiling)

A program compiled at batch tile T folds Shape(x) to T. That is exactly right where the value
only shapes tensors (torch's dynamic-axes exports: Shape -> Gather -> Concat -> Reshape), and
wrong where it reaches data: ``x / x.shape[0]``, ``arange(batch)``, an output that is the shape.
This pass follows the batch size from Shape/Size through the graph, element by element through
the small integer vectors shape arithmetic uses, and reports the first graph output that
depends on it as a value. It stops where the batch size is the first element of an operand
that only gives a shape (Reshape's shape, Expand's shape, ConstantOfShape's input): what those
shape is checked on the compiled program (runtime/batch_proof.py).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

ALL = None  # every element depends on the batch size

# Inputs that only give the shape of the node's result, never its values: the batch size may
# flow into them, as the first element only (the result's leading, batch axis). Anywhere else
# (Reshape(x, [S, B]), Slice's bounds) it decides which data an output holds: a value use.
SHAPE_OPERANDS = {"Reshape": {1}, "Expand": {1}, "ConstantOfShape": {0}}
_PASS_THROUGH = {"Identity", "Cast", "Unsqueeze", "Squeeze", "Flatten", "Reshape"}


def _shapes(model: onnx.ModelProto) -> dict[str, list]:
    """Each tensor's dims as onnx shape inference knows them: int, a symbol, or None."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - no shape info means a more conservative answer
        inferred = model
    out = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        out[vi.name] = [d.dim_value if d.HasField("dim_value") else
                        (d.dim_param or None) for d in t.shape.dim]
    return out


def _consts(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    c = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            c[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return c


def batch_value_use(model: onnx.ModelProto, rest_symbols: Iterable[str] = ()) -> str | None:
    """None when no graph output depends on the batch size as a value; else why, naming the
    Shape/Size node it comes from. Dims named in ``rest_symbols`` are not the batch (they are
    specialized per value), so their Shape elements are values that may reach data."""
    rest = set(rest_symbols)
    shapes, consts = _shapes(model), _consts(model)
    taint: dict[str, tuple[object, str]] = {}  # name -> (set of elements or ALL, source node)

    for node in model.graph.node:
        where = f"{node.name or node.output[0]!r} ({node.op_type})"
        ins = [taint.get(i) if i else None for i in node.input]
        if node.op_type in ("Shape", "Size"):
            dims = shapes.get(node.input[0])
            if node.op_type == "Size":
                if dims is None or any(not isinstance(d, int) or d == 0 for d in dims):
                    taint[node.output[0]] = (ALL, where)
                continue
            if dims is None:
                taint[node.output[0]] = (ALL, where)
                continue
            attrs = {a.name: a.i for a in node.attribute}
            lo, hi = attrs.get("start", 0), attrs.get("end", len(dims))
            picked = dims[slice(lo, hi)]
            elems = {k for k, d in enumerate(picked)
                     if not (isinstance(d, int) and d > 0) and not (isinstance(d, str) and
                                                                     d in rest)}
            if elems:
                taint[node.output[0]] = (frozenset(elems), where)
            continue
        if any(g.type == onnx.AttributeProto.GRAPH for g in node.attribute):
            inner = _subgraph_names(node)
            hit = [taint[n] for n in inner if n in taint] + [t for t in ins if t]
            if hit or _uses_shape(node):
                src = hit[0][1] if hit else where
                for o in node.output:
                    taint[o] = (ALL, src)
            continue
        shaping = SHAPE_OPERANDS.get(node.op_type, ())
        data = [t for k, t in enumerate(ins)
                if t and (k not in shaping or t[0] is ALL or set(t[0]) - {0})]
        if not data:
            continue
        src = data[0][1]
        elems = _elements(node, ins, consts, shapes)
        if elems is ALL or elems:
            taint[node.output[0]] = (elems, src)
        for o in node.output[1:]:
            taint[o] = (ALL, src)
    for out in model.graph.output:
        if out.name in taint:
            return (f"output {out.name!r} depends on the batch size as a value (from node "
                    f"{taint[out.name][1]}); a tile program would see its tile size instead")
    return None


def _elements(node, ins, consts, shapes):
    """Which elements of a shape vector carry the batch size after ``node``."""
    first = ins[0][0] if ins and ins[0] else ALL
    op = node.op_type
    if op in _PASS_THROUGH and first is not ALL and all(not t for t in ins[1:]):
        return first
    if op == "Gather" and first is not ALL and node.input[1] in consts and not ins[1]:
        idx = np.asarray(consts[node.input[1]]).reshape(-1)
        n = (shapes.get(node.input[0]) or [None])[0]
        if not isinstance(n, int):
            return ALL
        return frozenset(k for k, i in enumerate(idx) if int(i) % n in first)
    if op == "Concat":
        out, offset = set(), 0
        for name, t in zip(node.input, ins):
            dims = shapes.get(name)
            if not dims or len(dims) != 1 or not isinstance(dims[0], int):
                return ALL
            if t:
                if t[0] is ALL:
                    return ALL
                out |= {offset + k for k in t[0]}
            offset += dims[0]
        return frozenset(out)
    return ALL


def _subgraph_names(node) -> set[str]:
    names = set()
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            for n in a.g.node:
                names.update(n.input)
    return names


def _uses_shape(node) -> bool:
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            for n in a.g.node:
                if n.op_type in ("Shape", "Size") or _uses_shape(n):
                    return True
    return False
