"""Algebraic simplification: no-op and back-to-back layout ops, neutral elements, constant
chains. Each rule keeps the node's output type, so it can rewrite in place.

Rules (x is any value, c, c1, c2 are constants):
  Transpose(Transpose(x, p), q) -> Transpose(x, p∘q), or x when that is the identity
  Reshape(Reshape(x)) -> Reshape(x);  Reshape/Transpose/Cast/Expand that change nothing -> x
  Add(x, 0), Sub(x, 0), Mul(x, 1), Div(x, 1), Pow(x, 1) -> x   (when the result has x's type)
  Add(Add(x, c1), c2) -> Add(x, c1 + c2);  Mul(Mul(x, c1), c2) -> Mul(x, c1 * c2)
      (inner node used once; the merged constant must not broadcast the result any wider)
"""
from __future__ import annotations

import numpy as np

from onnxc.ir import Graph, Node, Value
from onnxc.ir.ops.registry import broadcast_shapes

from .manager import Pass, rewrite_until_stable

NEUTRAL = {"Add": (0, (0, 1)), "Sub": (0, (1,)), "Mul": (1, (0, 1)), "Div": (1, (1,)),
           "Pow": (1, (1,))}  # op -> (neutral value, input positions where it may stand)


def _forward(graph: Graph, node: Node, x: Value) -> bool:
    """Make node's (single) output an alias of ``x``: its uses read x; the node goes."""
    graph.replace_uses(node.outputs[0], x)
    graph.remove_node(node)
    return True


def _perm(node: Node) -> list[int]:
    perm = node.attrs.get("perm")
    return list(perm) if perm is not None else list(reversed(range(node.inputs[0].type.rank)))


def _is_all(c: Value | None, value: float) -> bool:
    return c is not None and c.const is not None and c.const.size > 0 and \
        bool(np.all(c.const == value))


def _const_operand(node: Node) -> tuple[Value, Value] | None:
    """(variable, constant) for a binary node with exactly one constant operand."""
    if len(node.inputs) != 2 or any(v is None for v in node.inputs):
        return None
    a, b = node.inputs
    if b.const is not None and a.const is None:
        return a, b
    if a.const is not None and b.const is None:
        return b, a
    return None


def combine_constant_chain(graph: Graph, node: Node) -> bool:
    """Add(Add(x, c1), c2) -> Add(x, c1 + c2) and the same for Mul, rewriting ``node``."""
    if node.op not in ("Add", "Mul"):
        return False
    outer = _const_operand(node)
    if outer is None:
        return False
    inner_value, c2 = outer
    inner = inner_value.producer
    if inner is None or inner.op != node.op or len(inner_value.uses) != 1 or \
            inner_value in graph.outputs:
        return False
    pair = _const_operand(inner)
    if pair is None:
        return False
    x, c1 = pair
    merged = (c1.const + c2.const) if node.op == "Add" else (c1.const * c2.const)
    merged = np.asarray(merged, dtype=c2.const.dtype)
    if x.dtype != node.outputs[0].dtype or \
            broadcast_shapes(x.shape, merged.shape) != node.outputs[0].shape:
        return False
    graph.set_input(node, 0, x)
    graph.set_input(node, 1, graph.add_constant(merged, f"{c2.name}_merged"))
    node.origin = inner.origin + node.origin
    graph.remove_node(inner)
    return True


def _simplify(graph: Graph, node: Node) -> bool:
    out = node.outputs[0] if len(node.outputs) == 1 else None
    if out is None or not node.inputs or node.inputs[0] is None:
        return False
    x = node.inputs[0]
    if node.op in ("Reshape", "Transpose", "Cast", "Expand", "Identity") and x.type == out.type \
            and (node.op != "Transpose" or _perm(node) == sorted(_perm(node))):
        return _forward(graph, node, x)
    if node.op in ("Reshape", "Transpose") and x.producer is not None and \
            x.producer.op == node.op:
        inner = x.producer
        if node.op == "Transpose":
            p, q = _perm(inner), _perm(node)
            node.attrs = {**node.attrs, "perm": tuple(p[k] for k in q)}
        graph.set_input(node, 0, inner.inputs[0])
        if not inner.outputs[0].uses and inner.outputs[0] not in graph.outputs:
            graph.remove_node(inner)
        return True
    if node.op in NEUTRAL:
        value, positions = NEUTRAL[node.op]
        for k in positions:
            other = node.inputs[1 - k]
            if _is_all(node.inputs[k], value) and other is not None and other.type == out.type:
                return _forward(graph, node, other)
    return combine_constant_chain(graph, node)


class Simplify(Pass):
    name = "simplify"
    purpose = "remove no-op layout ops and neutral arithmetic; merge constant chains"

    def run(self, graph: Graph) -> Graph:
        return rewrite_until_stable(graph, lambda g, n: n.op != "Fused" and _simplify(g, n))
