"""The Gradient op (ai.onnx.preview.training): reverse-mode differentiation of the graph.

``Gradient(xs..., xs=[...], y=name)`` outputs dy/dx for each x, with y's gradient seeded with
ones (the gradient of sum(y)). The importer writes the derivative as ordinary ONNX nodes —
one rule per op below, gradients summed where a value feeds several nodes and summed over
broadcast axes (shapes are static here) — and imports them like any other nodes, so the
gradient is compiled and fused with the forward graph. Ops without a rule are refused,
naming the op.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .importer import ImportContext, import_nodes, onnx_op

TRAINING = "ai.onnx.preview.training"


class _Writer:
    """Emits derivative nodes with fresh names."""

    def __init__(self, ctx: ImportContext, dtype: np.dtype):
        ctx.expansions += 1
        self.ctx, self.dtype, self.prefix = ctx, dtype, f"__grad{ctx.expansions}"
        self.nodes: list[onnx.NodeProto] = []

    def name(self) -> str:
        return f"{self.prefix}_{len(self.nodes)}"

    def op(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name()
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def const(self, value) -> str:
        out = self.name()
        tensor = numpy_helper.from_array(np.asarray(value, dtype=self.dtype), out)
        self.nodes.append(helper.make_node("Constant", [], [out], name=out, value=tensor))
        return out

    def filled(self, like_shape: tuple[int, ...], value: float) -> str:
        return self.const(np.full(like_shape, value, dtype=self.dtype))

    def unbroadcast(self, grad: str, grad_shape: tuple, shape: tuple) -> str:
        """``grad`` summed over the axes broadcasting stretched, reshaped to ``shape``."""
        if tuple(grad_shape) == tuple(shape):
            return grad
        lead = len(grad_shape) - len(shape)
        axes = list(range(lead)) + [lead + k for k, d in enumerate(shape)
                                    if d == 1 and grad_shape[lead + k] != 1]
        if axes:
            if self.ctx.opset >= 13:
                grad = self.op("ReduceSum", [grad, self.const_int(axes)], keepdims=1)
            else:
                grad = self.op("ReduceSum", [grad], axes=axes, keepdims=1)
        return self.op("Reshape", [grad, self.const_int(list(shape))])

    def const_int(self, values: list[int]) -> str:
        out = self.name()
        tensor = numpy_helper.from_array(np.asarray(values, dtype=np.int64), out)
        self.nodes.append(helper.make_node("Constant", [], [out], name=out, value=tensor))
        return out


# rule(writer, node, input names, gradient of the output) -> gradient per input (None: none)
Rule = Callable[[_Writer, onnx.NodeProto, list[str], str], list]


def _matmul(w: _Writer, node, ins, g):
    a, b = ins
    if len(w.ctx.values[a].type.shape) != 2 or len(w.ctx.values[b].type.shape) != 2:
        raise w.ctx.unsupported("Gradient through MatMul is implemented for 2-D operands only")
    return [w.op("MatMul", [g, w.op("Transpose", [b], perm=[1, 0])]),
            w.op("MatMul", [w.op("Transpose", [a], perm=[1, 0]), g])]


RULES: dict[str, Rule] = {
    "Identity": lambda w, n, i, g: [g],
    "Neg": lambda w, n, i, g: [w.op("Neg", [g])],
    "Add": lambda w, n, i, g: [g, g],
    "Sub": lambda w, n, i, g: [g, w.op("Neg", [g])],
    "Mul": lambda w, n, i, g: [w.op("Mul", [g, i[1]]), w.op("Mul", [g, i[0]])],
    "Div": lambda w, n, i, g: [w.op("Div", [g, i[1]]),
                               w.op("Neg", [w.op("Div", [w.op("Mul", [g, i[0]]),
                                                         w.op("Mul", [i[1], i[1]])])])],
    "Relu": lambda w, n, i, g: [w.op("Where", [w.op("Greater", [i[0], w.const(0)]), g,
                                               w.const(0)])],
    "Exp": lambda w, n, i, g: [w.op("Mul", [g, n.output[0]])],
    "Tanh": lambda w, n, i, g: [w.op("Mul", [g, w.op("Sub", [w.const(1), w.op(
        "Mul", [n.output[0], n.output[0]])])])],
    "Sigmoid": lambda w, n, i, g: [w.op("Mul", [g, w.op("Mul", [n.output[0], w.op(
        "Sub", [w.const(1), n.output[0]])])])],
    "MatMul": _matmul,
}


@onnx_op("Gradient", domain=TRAINING)
def _gradient(ctx: ImportContext, node: onnx.NodeProto):
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    xs = [x.decode() if isinstance(x, bytes) else x for x in attrs.get("xs", [])]
    y = attrs.get("y")
    y = y.decode() if isinstance(y, bytes) else y
    stop = {z.decode() if isinstance(z, bytes) else z for z in attrs.get("zs", [])}
    producers: dict[str, onnx.NodeProto] = getattr(ctx, "producers", {})
    if y not in ctx.values or any(x not in ctx.values for x in xs):
        raise ctx.error("Gradient's y and xs must name values of the main graph")
    # The nodes on a path from some x to y, in the graph's order.
    reaches: dict[str, bool] = {x: True for x in xs}

    def depends(name: str) -> bool:
        if name not in reaches:
            reaches[name] = False  # cycles cannot happen in a sorted graph; guards recursion
            producer = producers.get(name)
            reaches[name] = producer is not None and name not in stop and any(
                depends(i) for i in producer.input if i)
        return reaches[name]

    depends(y)
    order = list(ctx.producer_order) if hasattr(ctx, "producer_order") else []
    path = [n for n in order if any(reaches.get(o) for o in n.output) and n.output[0] != ""
            and any(reaches.get(i) for i in n.input)]
    w = _Writer(ctx, ctx.values[y].type.dtype.np)
    shape = {name: tuple(v.type.shape) for name, v in ctx.values.items() if hasattr(v, "type")}
    grads: dict[str, str] = {y: w.filled(shape[y], 1.0)}
    for n in reversed(path):
        g = grads.get(n.output[0])
        if g is None:
            continue
        rule = RULES.get(n.op_type) if n.domain in ("", "ai.onnx") else None
        if rule is None or len(n.output) != 1:
            raise ctx.unsupported(f"Gradient has no derivative rule for {n.op_type} (node "
                                  f"{n.name or n.output[0]!r}); supported: {sorted(RULES)}")
        ins = list(n.input)
        for name, gin in zip(ins, rule(w, n, ins, g)):
            if gin is None or not reaches.get(name):
                continue
            gin = w.unbroadcast(gin, shape[n.output[0]], shape[name])
            grads[name] = w.op("Add", [grads[name], gin]) if name in grads else gin
    outputs = []
    for x in xs:
        outputs.append(w.op("Identity", [grads[x]]) if x in grads else w.filled(shape[x], 0.0))
    import_nodes(ctx, w.nodes)
    return [ctx.values[o] for o in outputs]
