"""The packed, cache-blocked GEMM schedule (BLIS's loop order, without the k split).

For a stage matched by ``gemm.match_gemm`` whose ``a`` operand is contiguous along the
flattened reduction (MatMul's ``x[i, k]``, Conv's ``w[co, ci, kh, kw]``), each thread takes a
block of ``NC`` columns (and of output rows, when there are few column blocks), copies
``b``'s columns of that block into a buffer of micro-panels ``[NC / (NR*vw)][K][NR*vw]``
(zero-padded, 64-byte aligned: the copy is where a convolution's implicit im2col happens and
where row strides that are multiples of 4 KiB stop thrashing L1 sets), then runs an
``MR x NR`` vector micro-kernel over the whole reduction for every row tile of the block: per
reduction step, ``NR`` aligned vector loads from the panel, ``MR`` broadcasts from ``a`` (one
pointer per row, advancing by one), ``MR * NR`` FMAs on register accumulators. ``NC`` keeps a
block's panels (``K * NC`` floats) in half of L2, the row tile's ``a`` slice streams through L1.

The whole reduction runs in one pass, so the accumulators hold finished sums and the stage's
epilogue (bias, BatchNorm, activation, residual) runs on them directly.
"""
from __future__ import annotations

import math

from llvmlite import ir

from onnxc.ir.kernel import Stage, Var, flat_coef

from .gemm import GemmPlan, column_env, spill_and_finish
from .llvm_types import I32, I64, PTR

from . import gemm_shapes
from .f32_vectors import F32Vectors
from .gemm_shapes import choose_tile
from .gemm_tail import ColumnTail, split_columns

MR, NR = 6, 2  # the default tile: 6 rows by 2 vectors (choose_tile picks per shape)
PANEL_FLOATS = 96 * 1024  # K * NC per packed block: 384 KiB, under half of a 1 MiB L2
MIN_ROWS = MR  # at least one full row tile
MIN_K = 16
# Split rows too when there are fewer column blocks than this. 32, not 8: a 2-thread team
# claims 8 chunks per stage, and with 8-12 units (ResNet-50's 1x1 convolutions at 14x14) one
# thread got a unit more than the other. A/B in one process (bench.ab, 20 runs), 2 threads:
# ResNet-50 1.48 -> 1.39 of onnxruntime, DenseNet-121 1.19 -> 1.16, SqueezeNet 1.32 -> 1.27,
# MobileNet 1.18 -> 1.14; 1 thread within noise (row groups repack their column block).
MIN_WORK_UNITS = 32


def reduction_extent(plan: GemmPlan) -> int:
    return math.prod(n for _, n in plan.red.axes)


def a_is_contiguous(plan: GemmPlan, shapes: dict) -> bool:
    """``a`` advances by one element per step of the flattened (row-major) reduction."""
    step = 1
    for var, extent in reversed(plan.red.axes):
        c = flat_coef(plan.a, var, shapes[plan.a.tensor])
        if c is None or (extent > 1 and c != step):
            return False
        step *= extent
    return all(ix.coef(v) is not None for ix in plan.a.index for v, _ in plan.red.axes)


ENABLED = True  # bench.ab switches it off to measure the unpacked schedule in one process


def use_packed(st: Stage, plan: GemmPlan, shapes: dict, vw: int) -> bool:
    return (ENABLED and st.shape[plan.p_index] >= MIN_ROWS and plan.j_extent(st) > vw
            and reduction_extent(plan) >= MIN_K and a_is_contiguous(plan, shapes))


def tile_shape(st: Stage, plan: GemmPlan, vw: int) -> tuple[int, int]:
    """(rows, vectors) of the micro-kernel for this stage's shape."""
    return choose_tile(st.shape[plan.p_index], main_columns(st, plan, vw), vw,
                       reduction_extent(plan), (MR, NR))


def main_columns(st: Stage, plan: GemmPlan, vw: int) -> int:
    """Columns the vector micro-kernel covers; the rest (a few) are dot products."""
    return split_columns(plan.j_extent(st), vw)[0]


def _blocking(st: Stage, plan: GemmPlan, vw: int) -> tuple[int, int, int, int, list[int]]:
    """(NC, column blocks, row tiles per group, row groups, other axes)."""
    K = reduction_extent(plan)
    J = main_columns(st, plan, vw)
    MR, NR = tile_shape(st, plan, vw)
    jtile = NR * vw
    jtiles = -(-J // jtile)
    nc_tiles = max(1, min(jtiles, PANEL_FLOATS // (K * jtile)))
    jblocks = -(-jtiles // nc_tiles)
    inner = 2 if plan.merged else 1
    other = [k for k in range(len(st.shape) - inner) if k != plan.p_index]
    want = -(-MIN_WORK_UNITS // math.prod(st.shape[k] for k in other))
    if gemm_shapes.SPLIT_COLUMNS and jblocks < want:
        # Threads share out column blocks before row groups: each packs only its own columns
        # (row groups of one block would each pack the whole block again).
        nc_tiles = max(1, jtiles // want)
        jblocks = -(-jtiles // nc_tiles)
    nc_tiles = -(-jtiles // jblocks)  # even blocks
    outer = math.prod(st.shape[k] for k in other) * jblocks
    ptiles = -(-st.shape[plan.p_index] // MR)
    groups = min(ptiles, max(1, -(-MIN_WORK_UNITS // outer)))
    per_group = -(-ptiles // groups)
    groups = -(-ptiles // per_group)
    return nc_tiles * jtile, jblocks, per_group, groups, other


def packed_outer_extent(st: Stage, plan: GemmPlan, vw: int) -> int:
    _, jblocks, _, groups, other = _blocking(st, plan, vw)
    return math.prod(st.shape[k] for k in other) * jblocks * groups


def split_unit(b: ir.IRBuilder, st: Stage, q: ir.Value, groups: int, jblocks: int,
               other: list[int], NC: int, J: int, jtile: int):
    """Work unit ``q`` of a packed GEMM stage (row group fastest, then column block, then the
    other axes): (env of the other axes, row group, packing key, column block, its first
    column, its column tiles). Consecutive units of one thread with the same key share a
    column block and pack it once."""
    env: dict[Var, ir.Value] = {}
    rest = q
    group = b.urem(rest, I64(groups))
    rest = b.udiv(rest, I64(groups))
    key = rest
    jb = b.urem(rest, I64(jblocks))
    rest = b.udiv(rest, I64(jblocks))
    for k in reversed(other):
        env[st.vars[k]] = b.urem(rest, I64(st.shape[k]))
        rest = b.udiv(rest, I64(st.shape[k]))
    jb0 = b.mul(jb, I64(NC))
    left = b.sub(I64(J), jb0)
    ncols = b.select(b.icmp_signed("<", left, I64(NC)), left, I64(NC))
    ntiles = b.udiv(b.add(ncols, I64(jtile - 1)), I64(jtile))
    return env, group, key, jb, jb0, ntiles


def emit_gemm_packed(se, plan: GemmPlan, vw: int) -> None:
    """Emit the whole stage body (this thread's share of the work units) into ``se.fn``."""
    st, b = se.st, se.b
    f32 = ir.FloatType()
    vec = ir.VectorType(f32, vw)
    K = reduction_extent(plan)
    J, r = split_columns(plan.j_extent(st), vw)  # J: the micro-kernel's columns
    P = st.shape[plan.p_index]
    MR, NR = tile_shape(st, plan, vw)
    jtile = NR * vw
    NC, jblocks, per_group, groups, other = _blocking(st, plan, vw)
    total = math.prod(st.shape[k] for k in other) * jblocks * groups

    lo, hi = se.share(total)
    tile = se.alloca(vec, "tile", count=MR * NR)
    accs = [[se.alloca(vec, f"acc{m}_{n}") for n in range(NR)] for m in range(MR)]
    vx = F32Vectors(se, vw)
    fma, mload, lanes, zero, splat = vx.fma, vx.mload, vx.lanes, vx.zero, vx.splat
    alloc = se.mb.declare("aligned_alloc", PTR, [I64, I64])
    free = se.mb.declare("free", ir.VoidType(), [PTR])

    # A constant b comes laid out already (packed_weights.py): the panels of every block.
    prepared = getattr(se.kernel, "f32_prepacked", {}).get(st.out)
    bfixed = se.ptr(prepared[0]) if prepared is not None and prepared[1] == vw else None
    panel = b.call(alloc, [I64(64), I64(K * NC * 4)]) if bfixed is None else None
    packed_key = se.alloca(I64, "packed_key")
    b.store(I64(-1), packed_key)
    tail = ColumnTail(se, plan, vw, K, J, r) if r else None

    def unit(q):
        env, group, key, jb, jb0, ntiles = split_unit(b, st, q, groups, jblocks, other, NC, J,
                                                      jtile)
        last = b.icmp_signed("==", jb, I64(jblocks - 1))
        with b.if_then(b.icmp_signed("!=", b.load(packed_key, typ=I64), key)):
            if bfixed is None:
                pack(env, jb0, ntiles)
            if tail is not None:
                with b.if_then(last):
                    tail.pack(env)
            b.store(key, packed_key)
        pt0 = b.mul(group, I64(per_group))
        pt_end = b.add(pt0, I64(per_group))
        pt_end = b.select(b.icmp_signed("<", pt_end, I64(-(-P // MR))), pt_end,
                          I64(-(-P // MR)))

        def row_tile(pt):
            p0 = b.mul(pt, I64(MR))
            rows = b.sub(I64(P), p0)
            def rows_of(mr):
                columns(env, p0, mr, jb0, ntiles)
                if tail is not None:
                    with b.if_then(last):
                        tail.rows(env, p0, mr)

            if P % MR == 0:
                rows_of(MR)
                return
            with b.if_else(b.icmp_signed(">=", rows, I64(MR))) as (then, otherwise):
                with then:
                    rows_of(MR)
                with otherwise:  # the last tile: P % MR rows, known when compiling
                    rows_of(P % MR)

        se.loop(pt0, pt_end, row_tile, name="pt")

    def pack(env, jb0, ntiles):
        """panel[t][k][c] = b(k, jb0 + t * jtile + c), zero past the last column."""
        def per_tile(t):
            j0 = b.add(jb0, b.mul(t, I64(jtile)))
            remaining = b.sub(I64(J), j0)
            masks = [b.icmp_signed("<", lanes, splat(b.sub(remaining, I64(n * vw)),
                                                     ir.VectorType(I64, vw)))
                     for n in range(NR)]
            base = b.mul(t, I64(K * jtile))

            def nest(level, renv, kflat):
                if level < len(plan.red.axes):
                    var, extent = plan.red.axes[level]
                    after = math.prod(e for _, e in plan.red.axes[level + 1:])
                    se.loop(I64(0), I64(extent),
                            lambda i: nest(level + 1, {**renv, var: i},
                                           b.add(kflat, b.mul(i, I64(after)))),
                            name=f"pk{level}", unroll=False)
                    return
                dst = b.add(base, b.mul(kflat, I64(jtile)))
                for n in range(NR):
                    jn = column_env(se, plan, b.add(j0, I64(n * vw)))
                    idx = [se.ix(i, {**renv, **jn}) for i in plan.b.index]
                    v = b.call(mload, [se.address(plan.b.tensor, idx), I32(4), masks[n], zero])
                    ptr = b.gep(panel, [b.add(dst, I64(n * vw))], source_etype=f32)
                    b.store(v, ptr).align = 64

            nest(0, {**env, plan.p: I64(0)}, I64(0))

        se.loop(I64(0), ntiles, per_tile, name="pack")

    def columns(env, p0, mr, jb0, ntiles):
        # a's row pointers at reduction step 0 (a does not depend on the columns)
        zero_red = {var: I64(0) for var, _ in plan.red.axes}
        arows = []
        for m in range(mr):
            e = {**env, **zero_red, **column_env(se, plan, I64(0)), plan.p: b.add(p0, I64(m))}
            arows.append(se.address(plan.a.tensor, [se.ix(i, e) for i in plan.a.index]))

        def per_tile(t):
            j0 = b.add(jb0, b.mul(t, I64(jtile)))
            for m in range(mr):
                for n in range(NR):
                    b.store(zero, accs[m][n])
            if bfixed is None:
                base = b.gep(panel, [b.mul(t, I64(K * jtile))], source_etype=f32)
            else:  # tile j0 / jtile of all the prepared panels
                base = b.gep(bfixed, [b.mul(j0, I64(K))], source_etype=f32)

            def step(k):
                row = b.gep(base, [b.mul(k, I64(jtile))], source_etype=f32)
                bv = []
                for n in range(NR):
                    ld = b.load(b.gep(row, [I64(n * vw)], source_etype=f32), typ=vec)
                    ld.align = 64
                    bv.append(ld)
                for m in range(mr):
                    a = splat(b.load(b.gep(arows[m], [k], source_etype=f32), typ=f32), vec)
                    for n in range(NR):
                        acc = b.load(accs[m][n], typ=vec)
                        b.store(b.call(fma, [a, bv[n], acc]), accs[m][n])

            se.loop(I64(0), I64(K), step, name="k")
            spill_and_finish(se, plan, env, p0, j0, mr, NR, vw, tile,
                             [[b.load(accs[m][n], typ=vec) for n in range(NR)]
                              for m in range(mr)], b.sub(I64(J), j0))

        se.loop(I64(0), ntiles, per_tile, name="jt")

    se.loop(lo, hi, unit, name="q")
    if panel is not None:
        b.call(free, [panel])
    if tail is not None:
        tail.free()
