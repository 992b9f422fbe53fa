"""The fallback importer: an op without an importer is expanded into its ONNX function body.

ONNX defines many ops (LinearAttention, CausalConvWithState, FlexAttention, ...) as a function
of simpler ops, either a fixed body (``OpSchema.has_function``) or one built from the node's
attributes and input types (``has_context_dependent_function``). Such a node is replaced by its
body, with attribute references resolved and internal names made unique, and the body is
imported node by node under the function's own opset. So an op onnx adds later with a function
body imports without an importer of its own; a dedicated importer still wins when there is one.
"""
from __future__ import annotations

from typing import Mapping

import onnx

from onnxc.ir import Value

from .onnx_types import dtype_to_onnx

def schema_for(node: onnx.NodeProto, opsets: Mapping[str, int]) -> onnx.defs.OpSchema | None:
    """The op's schema for the opset the model imports for its domain, or None."""
    domain = "" if node.domain == "ai.onnx" else node.domain
    version = opsets.get(domain)
    if version is None:
        return None
    try:
        return onnx.defs.get_schema(node.op_type, version, domain)
    except onnx.defs.SchemaError:
        return None


def has_body(node: onnx.NodeProto, opsets: Mapping[str, int]) -> bool:
    """Whether ONNX defines the node's op as a function (fixed or context-dependent)."""
    schema = schema_for(node, opsets)
    return schema is not None and (schema.has_function or schema.has_context_dependent_function)


def fixed_body(node: onnx.NodeProto, opsets: Mapping[str, int]) -> onnx.FunctionProto | None:
    """The op's fixed (not context-dependent) body, to check its ops before importing."""
    schema = schema_for(node, opsets)
    if schema is None or not schema.has_function:
        return None
    return schema.function_body


def _type_proto(v: Value | None) -> onnx.TypeProto:
    if v is None:
        return onnx.TypeProto()
    shape = [d if isinstance(d, int) else str(d) for d in v.type.shape]
    return onnx.helper.make_tensor_type_proto(dtype_to_onnx(v.dtype), shape)


def function_body(node: onnx.NodeProto, opsets: Mapping[str, int],
                  inputs: list[Value | None]) -> onnx.FunctionProto | None:
    """The node's function body (context-dependent ones built for these input types)."""
    schema = schema_for(node, opsets)
    if schema is None:
        return None
    if schema.has_function:
        return schema.function_body
    if not schema.has_context_dependent_function:
        return None
    try:
        raw = schema.get_context_dependent_function(
            node.SerializeToString(), [_type_proto(v).SerializeToString() for v in inputs])
    except Exception as exc:  # onnx's C++ builder: SchemaError, RuntimeError, ...
        raise ValueError(f"ONNX cannot build the function body for these attributes and "
                         f"input types: {exc}") from exc
    body = onnx.FunctionProto()
    body.ParseFromString(raw)
    return body if len(body.node) else None


FunctionKey = tuple[str, str, str]  # (domain, name, overload) of a model-local function


def local_key(node: onnx.NodeProto) -> FunctionKey:
    return (node.domain, node.op_type, getattr(node, "overload", ""))


def local_functions(model: onnx.ModelProto) -> dict[FunctionKey, onnx.FunctionProto]:
    """The model's own functions (ModelProto.functions), by what a node calls them by."""
    return {(f.domain, f.name, getattr(f, "overload", "")): f for f in model.functions}


def _attributes(node: onnx.NodeProto, schema: onnx.defs.OpSchema | None,
                body: onnx.FunctionProto) -> dict[str, onnx.AttributeProto]:
    """The node's attributes, with the schema's (or the local function's) defaults for the
    ones it leaves out."""
    attrs = {a.name: a for a in body.attribute_proto}
    if schema is not None:
        for name, formal in schema.attributes.items():
            if formal.default_value is not None and formal.default_value.type:
                attrs[name] = formal.default_value
    attrs.update({a.name: a for a in node.attribute})
    return attrs


def _rename_graph(g: onnx.GraphProto, names: dict[str, str],
                  attrs: dict[str, onnx.AttributeProto]) -> None:
    """Point a body node's subgraph at the renamed outer names (its own names stay)."""
    own = {vi.name for vi in g.input} | {t.name for t in g.initializer}
    own |= {o for n in g.node for o in n.output}
    outer = {k: v for k, v in names.items() if k not in own}
    for n in g.node:
        _rename_node(n, outer, attrs)
    for vi in g.output:
        if vi.name in outer:
            vi.name = outer[vi.name]


def _rename_node(n: onnx.NodeProto, names: dict[str, str],
                 attrs: dict[str, onnx.AttributeProto]) -> None:
    n.input[:] = [names.get(x, x) if x else x for x in n.input]
    n.output[:] = [names.get(x, x) if x else x for x in n.output]
    kept = []
    for a in n.attribute:
        if a.ref_attr_name:
            if a.ref_attr_name not in attrs:
                continue  # an optional attribute the caller left out
            resolved = onnx.AttributeProto()
            resolved.CopyFrom(attrs[a.ref_attr_name])
            resolved.name = a.name
            a = resolved
        if a.type == onnx.AttributeProto.GRAPH:
            _rename_graph(a.g, names, attrs)
        for sub in a.graphs:
            _rename_graph(sub, names, attrs)
        kept.append(a)
    del n.attribute[:]
    n.attribute.extend(kept)


def expand(node: onnx.NodeProto, body: onnx.FunctionProto, schema: onnx.defs.OpSchema | None,
           serial: int) -> tuple[list[onnx.NodeProto], list[str]]:
    """The body's nodes wired to ``node``'s inputs, internal names made unique with
    ``serial`` (the import's count of expansions, so names repeat from compile to compile),
    and the names of the body's outputs."""
    prefix = f"{node.name or node.output[0]}__{node.op_type}{serial}__"
    names: dict[str, str] = {}
    for k, formal in enumerate(body.input):
        names[formal] = node.input[k] if k < len(node.input) else ""
    for formal in body.output:  # the caller binds the node's own output names
        names[formal] = prefix + formal
    for n in body.node:
        for name in n.output:
            if name and name not in names:
                names[name] = prefix + name
    attrs = _attributes(node, schema, body)
    nodes = []
    for k, n in enumerate(body.node):
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        copy.name = f"{prefix}{n.name or k}"
        _rename_node(copy, names, attrs)
        nodes.append(copy)
    return nodes, [names[formal] for formal in body.output]


def body_opsets(body: onnx.FunctionProto, outer: Mapping[str, int]) -> dict[str, int]:
    """The opsets the body's nodes are imported under: the function's own imports win."""
    opsets = dict(outer)
    for imp in body.opset_import:
        opsets["" if imp.domain == "ai.onnx" else imp.domain] = int(imp.version)
    return opsets
