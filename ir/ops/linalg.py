"""Matrix products."""
from __future__ import annotations

from ..errors import ModelError
from ..kernel import Ix, reduce, stage
from ..types import TensorType
from .registry import OpDef, broadcast_shapes, register


def _matmul_infer(types, attrs, consts):
    a, b = types
    if a.rank < 2 or b.rank < 2:
        raise ModelError(f"core MatMul takes rank >= 2 operands, got {a} and {b}")
    if a.dtype != b.dtype:
        raise ModelError(f"MatMul operands differ in element type: {a.dtype} and {b.dtype}")
    k1, k2 = a.shape[-1], b.shape[-2]
    if isinstance(k1, int) and isinstance(k2, int) and k1 != k2:
        raise ModelError(f"MatMul inner dimensions differ: A is {a}, B is {b} "
                         f"(A's last dim {k1} must equal B's second-to-last {k2})")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return [TensorType(a.dtype, batch + (a.shape[-2], b.shape[-1]))]


def _matmul_compute(ins, outs, attrs):
    a, b = ins
    out = outs[0]
    nbatch = len(out.shape) - 2
    k_extent = a.shape[-1]

    def index(t, batch_vars, row, col):
        lead = len(t.shape) - 2
        bidx = [Ix.lift(0) if t.shape[k] == 1 else batch_vars[nbatch - lead + k]
                for k in range(lead)]
        return tuple(bidx) + (row, col)

    def body(*v):
        batch_vars, i, j = v[:nbatch], v[-2], v[-1]
        return reduce("sum", [k_extent],
                      lambda k: a[index(a, batch_vars, i, k)] * b[index(b, batch_vars, k, j)])

    return [stage(out.name, out.shape, body)]


register(OpDef("MatMul", _matmul_infer, _matmul_compute, kind="reduction",
               doc="numpy matmul of rank >= 2 operands with broadcast batch dims"))
