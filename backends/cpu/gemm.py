"""A register-blocked schedule for stages that are matrix products in disguise.

A stage ``out[..., p, ..., j] = epilogue(sum_r a(p, r) * b(r, j))`` — MatMul, and Conv once its
input is padded (``p`` = output channel, ``j`` = output column) — is computed in tiles of
``MR`` values of ``p`` by ``NR`` vectors of ``j``. For each reduction step the tile loads ``NR``
contiguous vectors of ``b`` and broadcasts ``MR`` scalars of ``a``: ``MR * NR`` fused
multiply-adds on accumulators that stay in registers. Column tails use masked loads. The
accumulated tile then goes through the stage's epilogue (bias, BatchNorm, activation,
residual) with the ordinary scalar emitter, which LLVM vectorizes.
"""
from __future__ import annotations

import math

from llvmlite import ir

from onnxc.ir.kernel import Stage, Var

from ..gemm_match import GemmPlan, match_gemm
from .epilogue import VectorEpilogue, vectorizable
from .f32_vectors import F32Vectors
from .llvm_types import I32, I64

__all__ = ["GemmPlan", "match_gemm", "gemm_outer_extent", "emit_gemm"]


def gemm_outer_extent(st: Stage, plan: GemmPlan, vw: int) -> int:
    others = [n for k, n in enumerate(st.shape[:-2 if plan.merged else -1])
              if k != plan.p_index]
    return math.prod(others) * -(-st.shape[plan.p_index] // plan.tile(st, vw)[0])


def column_env(se, plan: GemmPlan, j) -> dict:
    """Index variables for flat column ``j`` (two of them when the axes are merged)."""
    st, b = se.st, se.b
    if not plan.merged:
        return {st.vars[-1]: j}
    pitch = I64(plan.pitch)
    return {st.vars[-2]: b.udiv(j, pitch), st.vars[-1]: b.urem(j, pitch)}


def spill_and_finish(se, plan: GemmPlan, env: dict, p0, j0, mr: int, nr: int, vw: int, tile,
                     values, remaining) -> None:
    """Store the accumulator vectors ``values[m][n]`` to the stack tile, then run the stage's
    epilogue (bias, activation, residual, ...) on its first ``remaining`` columns per row."""
    st, b = se.st, se.b
    f32 = ir.FloatType()
    vec = ir.VectorType(f32, vw)
    jtile = nr * vw
    vector = vectorizable(st, plan.red, se.shapes, se.dtypes[st.out])
    if vector and not plan.merged:  # straight from the registers, a vector at a time
        ve = VectorEpilogue(se, plan.red, vw)
        for m in range(mr):
            for n in range(nr):
                left = b.sub(remaining, I64(n * vw))
                with b.if_then(b.icmp_signed(">", left, I64(0))):
                    ve.store({**env, plan.p: b.add(p0, I64(m)),
                              st.vars[-1]: b.add(j0, I64(n * vw))}, values[m][n], left)
        return
    for m in range(mr):
        for n in range(nr):
            b.store(values[m][n], b.gep(tile, [I64(m * nr + n)], source_etype=vec))
    count = b.select(b.icmp_signed("<", remaining, I64(jtile)), remaining, I64(jtile))

    def write(row0, jj, e2):  # row0: the tile offset of the row (an i64 value)
        slot = b.gep(tile, [b.add(row0, jj)], source_etype=f32)
        se.reduce_values[id(plan.red)] = b.load(slot, typ=f32)
        se.store(se.expr(st.body, e2), st.out, [e2[v] for v in st.vars])
        del se.reduce_values[id(plan.red)]

    if not plan.merged:
        for m in range(mr):
            def finish(jj, m=m):
                write(I64(m * jtile), jj, {**env, plan.p: b.add(p0, I64(m)),
                                           st.vars[-1]: b.add(j0, jj)})
            se.loop(I64(0), count, finish, name="epi", unroll=False)
        return
    # Merged rows: loop over the output rows the tile covers, then over the columns of each
    # that are inside the image (the pitch padding is dropped): no division per element, and
    # a contiguous inner loop that LLVM vectorizes.
    pitch, width = I64(plan.pitch), I64(st.shape[-1])
    ve = VectorEpilogue(se, plan.red, vw) if vector else None
    y_lo = b.udiv(j0, pitch)
    y_hi = b.add(b.udiv(b.sub(b.add(j0, count), I64(1)), pitch), I64(1))

    def tile_row(m):  # one row of the tile; a loop over them, not mr copies (compile time)
        row0, pm = b.mul(m, I64(jtile)), b.add(p0, m)

        def row(y):
            start = b.sub(b.mul(y, pitch), j0)  # tile offset of column 0 of row y
            xs = b.select(b.icmp_signed("<", start, I64(0)), b.neg(start), I64(0))
            xe = b.sub(count, start)
            xe = b.select(b.icmp_signed("<", xe, width), xe, width)

            def col(x):
                write(row0, b.add(start, x), {**env, plan.p: pm, st.vars[-2]: y,
                                              st.vars[-1]: x})

            def col_vector(c):
                x = b.add(xs, b.mul(c, I64(vw)))
                left = b.sub(xe, x)
                slot = b.gep(tile, [b.add(row0, b.add(start, x))], source_etype=f32)
                ve.store({**env, plan.p: pm, st.vars[-2]: y, st.vars[-1]: x},
                         ve.tile_vector(slot, ve.mask(left)), left)

            if vector:
                chunks = b.sdiv(b.add(b.sub(xe, xs), I64(vw - 1)), I64(vw))
                se.loop(I64(0), chunks, col_vector, name="epiv", unroll=False)
            else:
                se.loop(xs, xe, col, name="epi", unroll=False)
        se.loop(y_lo, y_hi, row, name="epirow")

    if mr == 1:
        tile_row(I64(0))
    else:
        se.loop(I64(0), I64(mr), tile_row, name="epim", unroll=False)


def emit_gemm(se, plan: GemmPlan, vw: int) -> None:
    """Emit the whole stage body (the parallel loop included) into ``se``'s function."""
    st, b = se.st, se.b
    f32 = ir.FloatType()
    vec = ir.VectorType(f32, vw)
    J = plan.j_extent(st)
    MR, NR = plan.tile(st, vw)
    P = st.shape[plan.p_index]
    inner = 2 if plan.merged else 1
    other = [k for k in range(len(st.shape) - inner) if k != plan.p_index]
    ptiles = -(-P // MR)
    total = math.prod(st.shape[k] for k in other) * ptiles
    jtile = NR * vw
    jtiles = -(-J // jtile)

    lo, hi = se.share(total)
    tile = se.alloca(vec, "tile", count=MR * NR)
    accs = [[se.alloca(vec, f"acc{m}_{n}") for n in range(NR)] for m in range(MR)]
    vx = F32Vectors(se, vw)
    fma, mload, lanes, zero = vx.fma, vx.mload, vx.lanes, vx.zero

    def jenv(j):
        return column_env(se, plan, j)

    def outer(q):
        env: dict[Var, ir.Value] = {}
        rest = q
        p0 = b.mul(b.urem(rest, I64(ptiles)), I64(MR))
        rest = b.udiv(rest, I64(ptiles))
        for k in reversed(other):
            env[st.vars[k]] = b.urem(rest, I64(st.shape[k]))
            rest = b.udiv(rest, I64(st.shape[k]))
        rows = b.sub(I64(P), p0)
        full = b.icmp_signed(">=", rows, I64(MR))
        with b.if_else(full) as (then, otherwise):
            with then:
                columns(env, p0, MR)
            with otherwise:
                # The last tile of p: one row at a time.
                se.loop(I64(0), rows, lambda m: columns(env, b.add(p0, m), 1), name="ptail")

    def columns(env, p0, mr):
        def per_tile(t):
            j0 = b.mul(t, I64(jtile))
            remaining = b.sub(I64(J), j0)
            for m in range(mr):
                for n in range(NR):
                    b.store(zero, accs[m][n])
            masks = []
            for n in range(NR):
                left = b.sub(remaining, I64(n * vw))
                splat = b.insert_element(ir.Constant(ir.VectorType(I64, vw), None), left, I32(0))
                splat = b.shuffle_vector(splat, splat, ir.Constant(ir.VectorType(I32, vw),
                                                                   [ir.Constant(I32, 0)] * vw))
                masks.append(b.icmp_signed("<", lanes, splat))
            reduce_nest(0, {**env, plan.p: p0}, j0, masks, mr)
            spill_and_finish(se, plan, env, p0, j0, mr, NR, vw, tile,
                             [[b.load(accs[m][n], typ=vec) for n in range(NR)]
                              for m in range(mr)], remaining)

        se.loop(I64(0), I64(jtiles), per_tile, name="jt")

    def reduce_nest(level, env, j0, masks, mr):
        if level < len(plan.red.axes):
            var, extent = plan.red.axes[level]
            se.loop(I64(0), I64(extent),
                    lambda i: reduce_nest(level + 1, {**env, var: i}, j0, masks, mr),
                    name=f"r{level}")
            return
        bvecs = []
        for n in range(NR):
            idx = [se.ix(i, {**env, **jenv(b.add(j0, I64(n * vw)))}) for i in plan.b.index]
            ptr = se.address(plan.b.tensor, idx)
            bvecs.append(b.call(mload, [ptr, I32(4), masks[n], zero]))
        for m in range(mr):
            idx = [se.ix(i, {**env, plan.p: b.add(env[plan.p], I64(m)), **jenv(j0)})
                   for i in plan.a.index]
            a = b.load(se.address(plan.a.tensor, idx), typ=f32)
            splat = b.insert_element(ir.Constant(vec, None), a, I32(0))
            splat = b.shuffle_vector(splat, splat, ir.Constant(ir.VectorType(I32, vw),
                                                               [ir.Constant(I32, 0)] * vw))
            for n in range(NR):
                acc = b.load(accs[m][n], typ=vec)
                b.store(b.call(fma, [splat, bvecs[n], acc]), accs[m][n])

    se.loop(lo, hi, outer, name="q")
