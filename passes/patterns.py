"""Pattern recognition: decomposed GELU and LayerNormalization, as exporters write them
(torch before opset 17/20), become one Gelu / LayerNormalization node, which fuse.

Rule: y = 0.5 * x * (1 + erf(x / sqrt(2))), in any of the associations exporters produce
  Mul(Mul(x, 0.5), p), Mul(Mul(x, p), 0.5), Mul(x, Mul(p, 0.5))
  with p = Add(Erf(Div(x, sqrt 2) | Mul(x, 1 / sqrt 2)), 1)
becomes y = Gelu(x). The decomposition reads x twice, so the MatMul (+ bias) before it
cannot fuse with it; one Gelu reads x once and fuses into that MatMul's kernel.
"""
from __future__ import annotations

import math

import numpy as np

from onnxc.ir import Graph, Node, Value

from .manager import Pass


def _scalar(v: Value | None, target: float) -> bool:
    return v is not None and v.const is not None and v.const.size == 1 and \
        bool(np.isclose(float(v.const.reshape(())), target, rtol=1e-3, atol=0))


def _other(node: Node, v: Value) -> Value | None:
    """The other input of binary ``node``, one of whose inputs is ``v``."""
    a, b = node.inputs
    return b if a is v else a if b is v else None


def _only_use(v: Value, graph: Graph) -> Node | None:
    return v.uses[0] if len(v.uses) == 1 and v not in graph.outputs else None


def _erf_argument(erf: Node) -> Value | None:
    """x for Erf(x / sqrt 2) or Erf(x * (1 / sqrt 2))."""
    t = erf.inputs[0].producer
    if t is None or len(erf.inputs[0].uses) != 1:
        return None
    if t.op == "Div" and _scalar(t.inputs[1], math.sqrt(2)):
        return t.inputs[0]
    if t.op == "Mul":
        for k in (0, 1):
            if _scalar(t.inputs[1 - k], 1 / math.sqrt(2)):
                return t.inputs[k]
    return None


def _match(graph: Graph, erf: Node) -> tuple[Value, Node, list[Node]] | None:
    """(x, the node computing y, the matched nodes) when ``erf`` sits inside a decomposed
    GELU."""
    x = _erf_argument(erf)
    add = _only_use(erf.outputs[0], graph)
    if x is None or add is None or add.op != "Add" or not _scalar(
            _other(add, erf.outputs[0]), 1.0):
        return None
    p = add.outputs[0]
    m1 = _only_use(p, graph)
    if m1 is None or m1.op != "Mul":
        return None
    other = _other(m1, p)
    nodes = [erf.inputs[0].producer, erf, add, m1]
    if other is x:  # Mul(Mul(x, p), 0.5)
        m2 = _only_use(m1.outputs[0], graph)
        if m2 is not None and m2.op == "Mul" and _scalar(_other(m2, m1.outputs[0]), 0.5):
            return x, m2, nodes + [m2]
        return None
    h = other.producer if other is not None else None
    if h is not None and h.op == "Mul" and x in h.inputs and _scalar(_other(h, x), 0.5) \
            and len(other.uses) == 1:  # Mul(Mul(x, 0.5), p)
        return x, m1, [h] + nodes
    if _scalar(other, 0.5):  # Mul(x, Mul(p, 0.5))
        m2 = _only_use(m1.outputs[0], graph)
        if m2 is not None and m2.op == "Mul" and _other(m2, m1.outputs[0]) is x:
            return x, m2, nodes + [m2]
    return None


class RecognizeGelu(Pass):
    name = "recognize-gelu"
    purpose = "turn decomposed GELU (erf form) into one Gelu node, which fuses"

    def run(self, graph: Graph) -> Graph:
        for erf in [n for n in graph.nodes if n.op == "Erf"]:
            found = _match(graph, erf)
            if found is None:
                continue
            x, last, matched = found
            if last.outputs[0].type != x.type or not x.dtype.is_float:
                continue
            _become(graph, last, "Gelu", [x], {"approximate": "none"},
                    [o for n in matched for o in n.origin])
        graph.prune()
        return graph


def _become(graph: Graph, node: Node, op: str, inputs: list[Value], attrs: dict,
            origin: list) -> None:
    """Turn ``node`` into ``op(inputs)`` in place (its output type stays); the nodes it
    replaces die and are pruned."""
    for k in range(len(node.inputs)):
        graph.set_input(node, k, None)
    node.inputs = []
    for k, v in enumerate(inputs):
        graph.set_input(node, k, v)
    node.op, node.attrs = op, attrs
    node.origin = list(dict.fromkeys(origin + node.origin))


def _trailing_mean(node: Node | None, rank: int) -> tuple[int, ...] | None:
    """The axes of a keepdims ReduceMean over trailing axes, else None."""
    if node is None or node.op != "ReduceMean" or not node.attrs.get("keepdims", 1):
        return None
    axes = tuple(sorted(a % rank for a in (node.attrs.get("axes") or range(rank))))
    return axes if axes and axes == tuple(range(axes[0], rank)) else None


def _match_layernorm(graph: Graph, sub: Node):
    """(x, axis, epsilon, last node, scale, bias, nodes) for
    y = (x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) [* scale] [+ bias]."""
    x, mu = sub.inputs
    if x is None or mu is None or mu.producer is None or mu.producer.inputs[0] is not x:
        return None
    axes = _trailing_mean(mu.producer, x.type.rank)
    d = sub.outputs[0]
    users = list({id(u): u for u in d.uses}.values())
    if axes is None or len(users) != 2 or d in graph.outputs or not x.dtype.is_float:
        return None
    square = next((u for u in users if (u.op == "Pow" and _scalar(u.inputs[1], 2.0)) or
                   (u.op == "Mul" and u.inputs[0] is d and u.inputs[1] is d)), None)
    div = next((u for u in users if u.op == "Div" and u.inputs[0] is d), None)
    chain = [mu.producer, sub, square, div]
    if square is None or div is None:
        return None
    var = _only_use(square.outputs[0], graph)
    add = _only_use(var.outputs[0], graph) if var is not None else None
    sqrt = _only_use(add.outputs[0], graph) if add is not None else None
    if _trailing_mean(var, x.type.rank) != axes or add is None or add.op != "Add" or \
            sqrt is None or sqrt.op != "Sqrt" or div.inputs[1] is not sqrt.outputs[0]:
        return None
    eps = _other(add, var.outputs[0])
    if eps is None or eps.const is None or eps.const.size != 1:
        return None
    chain += [var, add, sqrt]
    last, scale, bias = div, None, None
    nxt = _only_use(div.outputs[0], graph)
    if nxt is not None and nxt.op == "Mul":
        c = _other(nxt, div.outputs[0])
        if c is not None and c.const is not None and c.shape == x.shape[axes[0]:][-len(c.shape):]:
            last, scale = nxt, c
            chain.append(nxt)
            nxt = _only_use(nxt.outputs[0], graph)
    if nxt is not None and nxt.op == "Add":
        c = _other(nxt, last.outputs[0])
        if c is not None and c.const is not None and c.shape == x.shape[axes[0]:][-len(c.shape):]:
            last, bias = nxt, c
            chain.append(nxt)
    return x, axes[0], float(eps.const.reshape(())), last, scale, bias, chain


class RecognizeLayerNorm(Pass):
    name = "recognize-layernorm"
    purpose = "turn decomposed LayerNormalization into one LayerNormalization node"

    def run(self, graph: Graph) -> Graph:
        for sub in [n for n in graph.nodes if n.op == "Sub"]:
            found = _match_layernorm(graph, sub)
            if found is None:
                continue
            x, axis, eps, last, scale, bias, chain = found
            if last.outputs[0].type != x.type:
                continue
            if scale is None:
                scale = graph.add_constant(np.ones(x.shape[axis:], dtype=x.dtype.np), "ones")
            _become(graph, last, "LayerNormalization", [x, scale] + ([bias] if bias else []),
                    {"axis": axis, "epsilon": eps}, [o for n in chain for o in n.origin])
        graph.prune()
        return graph
