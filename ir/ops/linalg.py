"""Matrix products."""
from __future__ import annotations

import numpy as np

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


# -- Det (closed forms for matrices up to 3 x 3) ----------------------------------------------------
MAX_DET_SIZE = 3


def _det_infer(types, attrs, consts):
    x = types[0]
    if x.rank < 2 or x.shape[-1] != x.shape[-2]:
        raise ModelError(f"Det needs [..., n, n] matrices, got {x}")
    return [TensorType(x.dtype, tuple(x.shape[:-2]))]


def _det_compute(ins, outs, attrs):
    x, out = ins[0], outs[0]
    n = x.shape[-1]
    if n > MAX_DET_SIZE:
        raise ModelError(f"Det of {n} x {n} matrices is not supported (closed forms up to "
                         f"{MAX_DET_SIZE} x {MAX_DET_SIZE})")

    def body(*v):
        def a(i, j):
            return x[tuple(v) + (i, j)]

        if n == 1:
            return a(0, 0)
        if n == 2:
            return a(0, 0) * a(1, 1) - a(0, 1) * a(1, 0)
        return (a(0, 0) * (a(1, 1) * a(2, 2) - a(1, 2) * a(2, 1))
                - a(0, 1) * (a(1, 0) * a(2, 2) - a(1, 2) * a(2, 0))
                + a(0, 2) * (a(1, 0) * a(2, 1) - a(1, 1) * a(2, 0)))

    return [stage(out.name, out.shape, body)]


def _det_reference(arrays, attrs):
    return [np.linalg.det(arrays[0]).astype(arrays[0].dtype)]


register(OpDef("Det", _det_infer, _det_compute, _det_reference, kind="elementwise",
               doc="determinants of [..., n, n] matrices; n <= 3 at run time"))
