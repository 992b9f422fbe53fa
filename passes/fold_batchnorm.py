"""Fold BatchNormalization (imported as a per-channel scale and shift) into the weights of the
Conv or MatMul before it.

Rules, each applied only when the Conv/MatMul result has one use and is not a graph output, and
the weights and the scale/shift are constants:
  Mul(Conv(x, W, b), s) -> Conv(x, W * s[m], b * s)    s varies only along channels (axis 1)
  Add(Conv(x, W, b), t) -> Conv(x, W, b + t)           t varies only along channels
  Mul(MatMul(x, W), s)  -> MatMul(x, W * s)            W is 2-D, s varies only along the last axis
  Mul(Add(MatMul(x, W), b), s) -> Add(Mul(MatMul(x, W), s), b * s)   (Gemm + BatchNorm; the
      Mul then folds as above and the two Adds merge into one bias)
A lone BatchNormalization already is one fused scale-and-shift kernel (see fusion).
"""
from __future__ import annotations

import numpy as np

from onnxc.ir import Graph, Node, Value
from onnxc.ir.ops.registry import broadcast_shapes

from .manager import Pass, rewrite_until_stable
from .simplify import combine_constant_chain


def _per_axis(c: Value, out_shape: tuple, axis: int) -> np.ndarray | None:
    """The constant as a vector along ``axis`` of ``out_shape``, if that is all it varies on."""
    if c.const is None or len(c.shape) > len(out_shape):
        return None
    arr = c.const
    full = (1,) * (len(out_shape) - arr.ndim) + arr.shape
    if any(d != 1 for k, d in enumerate(full) if k != axis):
        return None
    n = out_shape[axis]
    vec = arr.reshape(-1)
    if vec.size == 1:
        vec = np.repeat(vec, n)
    return vec if vec.size == n else None


class FoldBatchNorm(Pass):
    name = "fold-batchnorm"
    purpose = "fold per-channel scale/shift (BatchNorm) into Conv and MatMul weights"

    def run(self, graph: Graph) -> Graph:
        return rewrite_until_stable(graph, lambda g, n: n.op in ("Mul", "Add") and (
            self._fold(g, n) or self._distribute(g, n) or combine_constant_chain(g, n)))

    def _fold(self, graph: Graph, node: Node) -> bool:
        outputs = {id(v) for v in graph.outputs}
        for k in (0, 1):
            y, c = node.inputs[k], node.inputs[1 - k]
            p = y.producer
            if p is None or p.op not in ("Conv", "MatMul") or len(y.uses) != 1 or \
                    id(y) in outputs or y.dtype != c.dtype or not y.dtype.is_float:
                continue
            if node.outputs[0].shape != y.shape or p.inputs[1].const is None:
                continue
            if p.op == "Conv":
                bias = p.inputs[2] if len(p.inputs) > 2 else None
                vec = _per_axis(c, y.shape, 1)
                if bias is not None and bias.const is None:
                    continue
                if vec is None:
                    continue
                self._into_conv(graph, p, node.op, vec)
            else:
                vec = _per_axis(c, y.shape, len(y.shape) - 1)
                if vec is None or node.op != "Mul" or p.inputs[1].type.rank != 2:
                    continue
                w = p.inputs[1].const
                graph.set_input(p, 1, graph.add_constant((w * vec[None, :]).astype(w.dtype),
                                                         f"{p.inputs[1].name}_folded"))
            p.origin = p.origin + node.origin
            graph.replace_uses(node.outputs[0], y)
            graph.remove_node(node)
            return True
        return False

    @staticmethod
    def _distribute(graph: Graph, node: Node) -> bool:
        """Mul(Add(MatMul, b), s) -> Add(Mul(MatMul, s), b * s), rewriting both in place."""
        if node.op != "Mul":
            return False
        for k in (0, 1):
            a, s = node.inputs[k], node.inputs[1 - k]
            add = a.producer
            if s.const is None or add is None or add.op != "Add" or len(a.uses) != 1 or \
                    a in graph.outputs:
                continue
            for j in (0, 1):
                m, b = add.inputs[j], add.inputs[1 - j]
                if b.const is None or m.producer is None or m.producer.op != "MatMul" or \
                        not m.dtype.is_float or not (m.type == a.type == node.outputs[0].type):
                    continue
                bs = np.asarray(b.const * s.const, dtype=b.const.dtype)
                if broadcast_shapes(m.shape, bs.shape) != m.shape or \
                        broadcast_shapes(m.shape, s.const.shape) != m.shape:
                    continue
                add.op, node.op = "Mul", "Add"
                graph.set_input(add, 1 - j, s)
                graph.set_input(node, 1 - k, graph.add_constant(bs, f"{b.name}_scaled"))
                return True
        return False

    @staticmethod
    def _into_conv(graph: Graph, conv: Node, op: str, vec: np.ndarray) -> None:
        w = conv.inputs[1].const
        bias = conv.inputs[2] if len(conv.inputs) > 2 else None
        b = bias.const if bias is not None else None
        if op == "Mul":
            scale = vec.reshape((-1,) + (1,) * (w.ndim - 1))
            graph.set_input(conv, 1, graph.add_constant((w * scale).astype(w.dtype),
                                                        f"{conv.inputs[1].name}_folded"))
            if b is not None:
                graph.set_input(conv, 2, graph.add_constant((b * vec).astype(w.dtype),
                                                            f"{bias.name}_folded"))
        else:
            base = b if b is not None else np.zeros(w.shape[0], dtype=w.dtype)
            graph.set_input(conv, 2, graph.add_constant((base + vec).astype(w.dtype),
                                                        "conv_bias_folded"))
