"""The last few columns of a packed GEMM as dot products along the reduction.

A 7x7 feature map has 49 columns: three vectors of 16 and one column left over. Covering that
column with the vector micro-kernel computes 16 lanes to keep one (a 2-vector tile pads 49 to
64: a quarter of the FMAs wasted). Here the ``r`` leftover columns (``r`` small) are copied,
once per packed block, into a buffer ``tail[c][k]`` contiguous along the reduction and
zero-padded to whole vectors; each row's ``a`` is contiguous along the reduction too, so every
output element is a vector dot product: ``K / vw`` FMAs on ``rows x r`` vector accumulators,
one horizontal add at the end, then the stage's epilogue per element.
"""
from __future__ import annotations

import math

from llvmlite import ir

from .gemm import column_env
from .llvm_types import I1, I32, I64

TAIL_MAX = 4  # at most this many leftover columns go to dot products
ROWS = 6  # rows per dot-product block: ROWS * TAIL_MAX accumulators + TAIL_MAX + 1 registers


def split_columns(j: int, vw: int) -> tuple[int, int]:
    """(columns for the vector micro-kernel, leftover columns for dot products)."""
    r = j % vw
    return (j - r, r) if j > vw and 0 < r <= TAIL_MAX else (j, 0)


def padded_k(k: int, vw: int) -> int:
    return -(-k // vw) * vw


class ColumnTail:
    """Emits the leftover-column buffer, its packing and the dot-product blocks."""

    def __init__(self, se, plan, vw: int, k: int, j_main: int, r: int):
        self.se, self.plan, self.vw, self.K, self.j_main, self.r = se, plan, vw, k, j_main, r
        f32 = ir.FloatType()
        self.vec = ir.VectorType(f32, vw)
        self.kp = padded_k(k, vw)
        alloc = se.mb.declare("aligned_alloc", ir.PointerType(), [I64, I64])
        self.buf = se.b.call(alloc, [I64(64), I64(r * self.kp * 4)])
        self.accs = [[se.alloca(self.vec, f"tacc{m}_{c}") for c in range(r)]
                     for m in range(ROWS)]
        self.fma = se.mb.declare(f"llvm.fma.v{vw}f32", self.vec, [self.vec] * 3)
        self.hsum = se.mb.declare(f"llvm.vector.reduce.fadd.v{vw}f32", f32, [f32, self.vec])
        self.mload = se.mb.declare(f"llvm.masked.load.v{vw}f32.p0", self.vec,
                                   [ir.PointerType(), I32, ir.VectorType(I1, vw), self.vec])

    def free(self) -> None:
        se = self.se
        se.b.call(se.mb.declare("free", ir.VoidType(), [ir.PointerType()]), [self.buf])

    def pack(self, env: dict) -> None:
        """tail[c][k] = b(k, j_main + c), zero for k >= K."""
        se, b, plan = self.se, self.se.b, self.plan
        f32 = ir.FloatType()
        for c in range(self.r):
            row = c * self.kp
            for k in range(self.K, self.kp):
                b.store(f32(0.0), b.gep(self.buf, [I64(row + k)], source_etype=f32))
            jn = column_env(se, plan, I64(self.j_main + c))

            def nest(level, renv, kflat, row=row, jn=jn):
                if level < len(plan.red.axes):
                    var, extent = plan.red.axes[level]
                    after = math.prod(e for _, e in plan.red.axes[level + 1:])
                    se.loop(I64(0), I64(extent),
                            lambda i: nest(level + 1, {**renv, var: i},
                                           b.add(kflat, b.mul(i, I64(after)))),
                            name=f"tk{level}")
                    return
                idx = [se.ix(i, {**renv, **jn}) for i in plan.b.index]
                v = b.load(se.address(plan.b.tensor, idx), typ=f32)
                b.store(v, b.gep(self.buf, [b.add(I64(row), kflat)], source_etype=f32))

            nest(0, {**env, plan.p: I64(0)}, I64(0))

    def rows(self, env: dict, p0, mr: int) -> None:
        """Outputs (p0 .. p0 + mr) x (j_main .. j_main + r), blocks of ROWS rows."""
        for m0 in range(0, mr, ROWS):
            self._block(env, self.se.b.add(p0, I64(m0)), min(ROWS, mr - m0))

    def _block(self, env: dict, p0, mr: int) -> None:
        se, b, plan, vw, r = self.se, self.se.b, self.plan, self.vw, self.r
        st = se.st
        f32 = ir.FloatType()
        vec = self.vec
        zero = ir.Constant(vec, [f32(0.0)] * vw)
        zero_red = {var: I64(0) for var, _ in plan.red.axes}
        arows = []
        for m in range(mr):
            e = {**env, **zero_red, **column_env(se, plan, I64(0)), plan.p: b.add(p0, I64(m))}
            arows.append(se.address(plan.a.tensor, [se.ix(i, e) for i in plan.a.index]))
        for m in range(mr):
            for c in range(r):
                b.store(zero, self.accs[m][c])

        def step(k, mask=None):
            bv = []
            for c in range(r):
                ld = b.load(b.gep(self.buf, [b.add(I64(c * self.kp), k)], source_etype=f32),
                            typ=vec)
                ld.align = 4
                bv.append(ld)
            for m in range(mr):
                ptr = b.gep(arows[m], [k], source_etype=f32)
                if mask is None:
                    av = b.load(ptr, typ=vec)
                    av.align = 4
                else:
                    av = b.call(self.mload, [ptr, I32(4), mask, zero])
                for c in range(r):
                    acc = b.load(self.accs[m][c], typ=vec)
                    b.store(b.call(self.fma, [av, bv[c], acc]), self.accs[m][c])

        full = self.K // vw
        se.loop(I64(0), I64(full), lambda i: step(b.mul(i, I64(vw))), name="tdot")
        left = self.K - full * vw
        if left:
            mask = ir.Constant(ir.VectorType(I1, vw), [I1(int(k < left)) for k in range(vw)])
            step(I64(full * vw), mask)
        for m in range(mr):
            for c in range(r):
                total = b.call(self.hsum, [f32(0.0), b.load(self.accs[m][c], typ=vec)],
                               fastmath=("reassoc",))
                jn = column_env(se, plan, I64(self.j_main + c))
                e2 = {**env, plan.p: b.add(p0, I64(m)), **jn}
                if plan.merged and (self.j_main + c) % plan.pitch >= st.shape[-1]:
                    continue  # a pitch-padding column: computed, never stored
                se.reduce_values[id(plan.red)] = total
                se.store(se.expr(st.body, e2), st.out, [e2[v] for v in st.vars])
                del se.reduce_values[id(plan.red)]
