"""Reductions over several axes that are one contiguous run of memory (GlobalAveragePool's
``sum over (h, w)``, a ReduceMean over trailing axes).

The generic ``point`` schedule nests one loop per reduction axis, so a 13x13 or 7x7 window
gives LLVM inner loops of 13 or 7 elements that it vectorizes poorly. When every load that moves
with the reduction advances through the axes as one run (the last axis by 1, each earlier one by
the extent of those after it), the reduction is a single loop over ``prod(extents)`` elements:
``vw``-lane vector accumulators, a masked tail, one horizontal combine, then the stage's scalar
epilogue (the mean's division, a cast...).
"""
from __future__ import annotations

import math

from llvmlite import ir

from onnxc.ir.dtypes import DType
from onnxc.ir.kernel import Const, Load, Op, Reduce, Stage, Var, flat_coef, walk

from .epilogue import FLOAT_OPS
from .llvm_types import I1, I32, I64, PTR

ACCUMULATORS = 2  # independent vector chains, so the adds overlap


def match_flat(st: Stage, shapes: dict) -> Reduce | None:
    """The stage's single multi-axis reduction if it reads one contiguous run, else None."""
    reds = [e for e in walk(st.body) if isinstance(e, Reduce)]
    if len(reds) != 1 or reds[0].kind not in ("sum", "max", "min") or len(reds[0].axes) < 2:
        return None
    red = reds[0]
    if red.dtype != DType.float32 or red.body.dtype != DType.float32:
        return None
    moving = 0
    for e in walk(red.body):
        if isinstance(e, Const):
            if e.dtype != DType.float32:
                return None
        elif isinstance(e, Load):
            if (e.pad is not None or e.dtype != DType.float32 or e.tensor not in shapes
                    or any(ix.loads() for ix in e.index)):
                return None
            coefs = [flat_coef(e, v, shapes[e.tensor]) for v, _ in red.axes]
            if all(c == 0 for c in coefs):
                continue
            step = 1
            for c, (_, n) in zip(reversed(coefs), reversed(red.axes)):
                if c != step:
                    return None
                step *= n
            moving += 1
        elif not (isinstance(e, Op) and e.name in FLOAT_OPS and e.dtype == DType.float32):
            return None
    return red if moving else None


class FlatRow:
    """One row of output points, each a flat vector reduction plus the scalar epilogue."""

    def __init__(self, se, red: Reduce, vw: int):
        from .epilogue import VectorEpilogue
        self.se, self.b, self.red, self.vw = se, se.b, red, vw
        self.f32 = ir.FloatType()
        self.vec = ir.VectorType(self.f32, vw)
        self.ops = VectorEpilogue(se, red, vw)  # for its vector arithmetic
        self.total = math.prod(n for _, n in red.axes)
        self.accs = [se.alloca(self.vec, f"facc{k}") for k in range(ACCUMULATORS)]
        self.mload = se.mb.declare(f"llvm.masked.load.v{vw}f32.p0", self.vec,
                                   [PTR, I32, ir.VectorType(I1, vw), self.vec])

    def emit(self, env) -> None:
        se, st = self.se, self.se.st
        j = st.vars[-1]
        se.loop(I64(0), I64(st.shape[-1]), lambda jv: self.point({**env, j: jv}), name="fj")

    def point(self, env) -> None:
        se, b, red, vw = self.se, self.b, self.red, self.vw
        base = {**env, **{v: I64(0) for v, _ in red.axes}}
        init = self.ops.splat(se.reduce_init(red.kind, red.dtype))
        for acc in self.accs:
            b.store(init, acc)
        step = vw * ACCUMULATORS
        full = self.total // step

        def block(t):
            for k, acc in enumerate(self.accs):
                off = b.add(b.mul(t, I64(step)), I64(k * vw))
                v = self.value(red.body, base, off, vw, {})
                b.store(self.combine(b.load(acc, typ=self.vec), v), acc)

        se.loop(I64(0), I64(full), block, name="fr")
        for start in range(full * step, self.total, vw):  # the tail, a vector at a time
            count = min(vw, self.total - start)
            v = self.value(red.body, base, I64(start), count, {})
            # Lanes past the run hold the identity, whatever the body made of them.
            mask = ir.Constant(ir.VectorType(I1, vw), [ir.Constant(I1, int(k < count))
                                                       for k in range(vw)])
            v = b.select(mask, v, init)
            b.store(self.combine(b.load(self.accs[0], typ=self.vec), v), self.accs[0])
        acc = b.load(self.accs[0], typ=self.vec)
        for other in self.accs[1:]:
            acc = self.combine(acc, b.load(other, typ=self.vec))
        if red.kind == "sum":  # a shuffle tree, not vw dependent adds
            fn = se.mb.declare(f"llvm.vector.reduce.fadd.v{vw}f32", self.f32,
                               [self.f32, self.vec])
            total = b.call(fn, [ir.Constant(self.f32, -0.0), acc], fastmath=("reassoc",))
        else:
            total = b.extract_element(acc, I32(0))
            for k in range(1, vw):
                total = self.combine(total, b.extract_element(acc, I32(k)))
        se.reduce_values[id(red)] = total
        st = se.st
        se.store(se.expr(st.body, env), st.out, [env[v] for v in st.vars])
        del se.reduce_values[id(red)]

    def value(self, e, base, off, count: int, memo: dict):
        hit = memo.get(id(e))
        if hit is not None:
            return hit
        se, b = self.se, self.b
        if isinstance(e, Const):
            out = self.ops.splat(se.constant(e.value, e.dtype))
        elif isinstance(e, Load):
            if all(flat_coef(e, v, se.shapes[e.tensor]) == 0 for v, _ in self.red.axes):
                out = self.ops.splat(se.load(e, base))
            else:
                ptr = se.address(e.tensor, [se.ix(i, base) for i in e.index])
                ptr = b.gep(ptr, [off], source_etype=self.f32, inbounds=True)
                mask = ir.Constant(ir.VectorType(I1, self.vw),
                                   [ir.Constant(I1, int(k < count)) for k in range(self.vw)])
                identity = self.ops.splat(se.reduce_init(self.red.kind, self.red.dtype))
                out = b.call(self.mload, [ptr, I32(4), mask, identity])
        else:
            out = self.ops._op(e, [self.value(a, base, off, count, memo) for a in e.args])
        memo[id(e)] = out
        return out

    def combine(self, acc, v):
        b, kind = self.b, self.red.kind
        if kind == "sum":
            out = b.fadd(acc, v)
            out.flags.extend(["reassoc", "contract"])
            return out
        take = b.fcmp_ordered(">" if kind == "max" else "<", v, acc)
        return b.select(b.fcmp_unordered("uno", v, v), v, b.select(take, v, acc))


__all__ = ["match_flat", "FlatRow"]
