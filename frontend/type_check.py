"""Input element types checked against the ONNX op schema's type constraints, per node.

Importers and core-op shape rules assume ONNX's constraints hold (Gather's indices are
integers, Conv's inputs are floats...); a model that breaks them would otherwise fail deep in
code generation. Checked once here, at the boundary, with a message naming node and input.
"""
from __future__ import annotations

from functools import lru_cache

import onnx

from onnxc.ir import Value
from onnxc.ir.errors import ModelError

from .onnx_types import ort_type_string

_type_string = lru_cache(maxsize=None)(ort_type_string)


@lru_cache(maxsize=None)
def _allowed(op_type: str, opset: int) -> tuple[tuple[str, frozenset[str] | None, bool], ...]:
    """(formal name, allowed type strings or None for any, variadic) per formal input."""
    try:
        schema = onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return ()
    constraints = {c.type_param_str: frozenset(c.allowed_type_strs)
                   for c in schema.type_constraints}
    out = []
    for formal in schema.inputs:
        allowed = constraints.get(formal.type_str)
        if allowed is None and formal.type_str.startswith("tensor("):
            allowed = frozenset([formal.type_str])
        variadic = formal.option == onnx.defs.OpSchema.FormalParameterOption.Variadic
        out.append((formal.name, allowed, variadic))
    return tuple(out)


def check_input_types(node: onnx.NodeProto, values: dict[str, Value], opset: int,
                      label: str) -> None:
    """ModelError when an input's element type is outside the op's type constraint."""
    if node.domain not in ("", "ai.onnx"):
        return  # other domains' importers check their own inputs
    formals = _allowed(node.op_type, opset)
    if not formals:
        return
    for k, name in enumerate(node.input):
        if not name or name not in values:
            continue
        formal, allowed, _ = formals[min(k, len(formals) - 1)]
        if k >= len(formals) and not formals[-1][2]:
            raise ModelError(f"has {len(node.input)} inputs; {node.op_type} takes at most "
                             f"{len(formals)}", node=label, op=node.op_type)
        if allowed is None:
            continue
        got = _type_string(values[name].dtype)
        if got not in allowed:
            names = ", ".join(sorted(t[7:-1] for t in allowed if t.startswith("tensor(")))
            raise ModelError(f"input {k} {name!r} ({formal}) has element type {got[7:-1]}; "
                             f"{node.op_type} expects one of: {names}", node=label,
                             op=node.op_type)
