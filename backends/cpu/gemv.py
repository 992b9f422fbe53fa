"""A schedule for matrix products with few output rows (MatMul at batch 1..32, an LSTM step's
``h @ R`` and its input projection): latency-bound, reading ``b`` in place, unpacked.

With few rows there is little reuse of ``b``: the product streams ``b`` from cache or memory.
The packed schedule (gemm_packed.py) copies ``b`` into panels on every run, which costs as much
as the product itself below a few dozen rows; the register tile of ``gemm.py`` (the whole
reduction per tile of two vectors) reads ``b`` two cache lines per reduction row, each row a
new page when ``b``'s row pitch is 4 KiB, so the prefetchers barely help. Here a thread takes a
range of columns, ``NV`` vectors at a time, with ``rows x NV`` accumulators in registers:

* up to 5 rows (one register tile), the reduction runs in blocks of ``KB`` rows and each block
  sweeps the thread's columns, accumulators loaded from and stored back to a partial-sum buffer
  on the stack (L1-resident): ``b`` is read as ``KB`` sequential streams, each byte once;
* more rows, in tiles of ``ROW_TILE``, each tile over the whole reduction of a column block
  (the block's ``b`` stays in L1/L2 for the next tile).

Threads split the columns. The finished sums go through the stage's epilogue
(``gemm.spill_and_finish``) a row at a time, as in the other GEMM schedules.
"""
from __future__ import annotations

import math

from llvmlite import ir

from onnxc.ir.dtypes import DType
from onnxc.ir.kernel import Load, Op, Reduce, Stage, Var, flat_coef, walk

from .f32_vectors import F32Vectors
from .gemm import GemmPlan, column_env, spill_and_finish
from .llvm_types import I32, I64

ENABLED = True  # bench.ab switches it off to measure the register-tile schedule
MAX_ROWS = 32  # more rows: the packed schedule (gemm_packed), whose packing then pays
ROW_TILE = 4  # register tile rows when there are more than 5 rows
ACCUMULATORS = 16  # vector registers for accumulators (of 32 with AVX-512)
MAX_VECTORS = 8  # vectors of columns per register block
KB = 8  # reduction rows per sweep over the columns (one row tile; several: the whole reduction)
SCRATCH_FLOATS = 8192  # partial sums kept on the stack (32 KiB): columns per piece * rows


def match_row_vector(st: Stage, shapes: dict) -> GemmPlan | None:
    """The GEMM reading of a one-row product (``gemm_match.match_gemm`` wants a row axis of
    two or more): ``out[.., 0, j] = epilogue(sum_r a(r) * b(r, j))``, ``p`` the unit axis."""
    if not ENABLED or len(st.shape) < 2 or st.body.dtype != DType.float32:
        return None
    reds = [e for e in walk(st.body) if isinstance(e, Reduce)]
    if len(reds) != 1 or reds[0].kind != "sum":
        return None
    red, j = reds[0], st.vars[-1]
    body = red.body
    if not (isinstance(body, Op) and body.name == "mul" and
            all(isinstance(x, Load) and x.pad is None and x.dtype == DType.float32
                for x in body.args)):
        return None
    units = [k for k in range(len(st.shape) - 1) if st.shape[k] == 1]
    if not units:
        return None
    for a, b in (body.args, body.args[::-1]):
        if flat_coef(b, j, shapes[b.tensor]) == 1 and flat_coef(a, j, shapes[a.tensor]) == 0:
            return GemmPlan(red, a, b, st.vars[units[-1]], units[-1])
    return None


def use_gemv(st: Stage, plan: GemmPlan, shapes: dict, vw: int) -> bool:
    """Few output rows, plain (unmerged) columns, one reduction axis."""
    return (ENABLED and not plan.merged and 1 <= st.shape[plan.p_index] <= MAX_ROWS
            and plan.j_extent(st) > vw and len(plan.red.axes) == 1)


def row_tile(rows: int) -> int:
    """Rows per register tile: all of them up to 5 (one tile), else 4 (16 accumulators)."""
    return rows if rows <= 5 else ROW_TILE


def block_vectors(rows: int) -> int:
    return max(1, min(MAX_VECTORS, ACCUMULATORS // max(row_tile(rows), 1)))


def _others(st: Stage, plan: GemmPlan) -> list[int]:
    return [k for k in range(len(st.shape) - 1) if k != plan.p_index]


def gemv_outer_extent(st: Stage, plan: GemmPlan, vw: int) -> int:
    """Work units: column blocks times the other (batch) axes."""
    jblock = block_vectors(st.shape[plan.p_index]) * vw
    return math.prod(st.shape[k] for k in _others(st, plan)) * -(-plan.j_extent(st) // jblock)


def emit_gemv(se, plan: GemmPlan, vw: int) -> None:
    """Emit the whole stage body (this thread's share of the column blocks) into ``se.fn``."""
    st, b = se.st, se.b
    f32 = ir.FloatType()
    vec = ir.VectorType(f32, vw)
    P = st.shape[plan.p_index]
    RT = row_tile(P)
    NV = block_vectors(P)
    jblock = NV * vw
    J = plan.j_extent(st)
    jblocks = -(-J // jblock)
    other = _others(st, plan)
    total = math.prod(st.shape[k] for k in other) * jblocks
    kvar, K = plan.red.axes[0]
    piece = max(1, min(jblocks, SCRATCH_FLOATS // (P * jblock)))  # column blocks per piece
    full_tiles, last_rows = divmod(P, RT)

    lo, hi = se.share(total)
    tile = se.alloca(vec, "tile", count=NV)
    scratch = se.alloca(vec, "partial", count=piece * P * NV)
    accs = [[se.alloca(vec, f"acc{m}_{n}") for n in range(NV)] for m in range(RT)]
    vx = F32Vectors(se, vw)
    fma, mload, lanes, zero, splat = vx.fma, vx.mload, vx.lanes, vx.zero, vx.splat

    def minimum(x, y):
        return b.select(b.icmp_signed("<", x, y), x, y)

    def slot(jb_rel, m, n):
        """Partial sums of column block ``jb_rel`` of the piece, row ``m`` (an i64), vector n."""
        return b.gep(scratch, [b.add(b.mul(jb_rel, I64(P * NV)),
                                     b.add(b.mul(m, I64(NV)), I64(n)))], source_etype=vec)

    def per_other(o):
        env: dict[Var, ir.Value] = {plan.p: I64(0)}
        rest = o
        for k in reversed(other):
            env[st.vars[k]] = b.urem(rest, I64(st.shape[k]))
            rest = b.udiv(rest, I64(st.shape[k]))
        base = b.mul(o, I64(jblocks))
        first = b.sub(lo, base)
        first = b.select(b.icmp_signed("<", first, I64(0)), I64(0), first)
        last = minimum(b.sub(hi, base), I64(jblocks))
        pieces = b.sdiv(b.add(b.sub(last, first), I64(piece - 1)), I64(piece))
        se.loop(I64(0), pieces,
                lambda pc: run_piece(env, b.add(first, b.mul(pc, I64(piece))), last),
                name="piece")

    def run_piece(env, jb0, last):
        jb1 = minimum(b.add(jb0, I64(piece)), last)
        count = b.sub(jb1, jb0)
        se.loop(I64(0), b.mul(count, I64(P * NV)),
                lambda i: b.store(zero, b.gep(scratch, [i], source_etype=vec)), name="zero")
        kb_rows = KB if P == RT else K
        kblocks = -(-K // kb_rows)

        def per_kblock(kb):
            k0 = b.mul(kb, I64(kb_rows))
            k1 = minimum(b.add(k0, I64(kb_rows)), I64(K))
            se.loop(jb0, jb1, lambda jb: sweep(env, jb, b.sub(jb, jb0), k0, k1), name="jb")

        se.loop(I64(0), I64(kblocks), per_kblock, name="kb")

        def finish(jb):
            j0 = b.mul(jb, I64(jblock))
            rel = b.sub(jb, jb0)

            def row(m):
                spill_and_finish(se, plan, env, m, j0, 1, NV, vw, tile,
                                 [[b.load(slot(rel, m, n), typ=vec) for n in range(NV)]],
                                 b.sub(I64(J), j0))

            if P == 1:
                row(I64(0))
            else:
                se.loop(I64(0), I64(P), row, name="epi_row")

        se.loop(jb0, jb1, finish, name="epi_jb")

    def sweep(env, jb, rel, k0, k1):
        j0 = b.mul(jb, I64(jblock))
        remaining = b.sub(I64(J), j0)
        if full_tiles == 1 and not last_rows:
            rows_tile(env, rel, I64(0), RT, k0, k1, j0, remaining)
        elif full_tiles:
            se.loop(I64(0), I64(full_tiles),
                    lambda t: rows_tile(env, rel, b.mul(t, I64(RT)), RT, k0, k1, j0, remaining),
                    name="rt")
        if last_rows:
            rows_tile(env, rel, I64(full_tiles * RT), last_rows, k0, k1, j0, remaining)

    def rows_tile(env, rel, m0, mr, k0, k1, j0, remaining):
        rows = [b.add(m0, I64(i)) for i in range(mr)]
        for i in range(mr):
            for n in range(NV):
                b.store(b.load(slot(rel, rows[i], n), typ=vec), accs[i][n])
        with b.if_else(b.icmp_signed(">=", remaining, I64(jblock))) as (then, otherwise):
            with then:
                se.loop(k0, k1, lambda k: step(env, k, j0, None, rows), name="k")
            with otherwise:
                masks = [b.icmp_signed("<", lanes, splat(b.sub(remaining, I64(n * vw)),
                                                         ir.VectorType(I64, vw)))
                         for n in range(NV)]
                se.loop(k0, k1, lambda k: step(env, k, j0, masks, rows), name="kt")
        for i in range(mr):
            for n in range(NV):
                b.store(b.load(accs[i][n], typ=vec), slot(rel, rows[i], n))

    def step(env, k, j0, masks, rows):
        env = {**env, kvar: k}
        bvecs = []
        for n in range(NV):
            idx = [se.ix(i, {**env, **column_env(se, plan, b.add(j0, I64(n * vw)))})
                   for i in plan.b.index]
            ptr = se.address(plan.b.tensor, idx)
            if masks is None:
                ld = b.load(ptr, typ=vec)
                ld.align = 4
                bvecs.append(ld)
            else:
                bvecs.append(b.call(mload, [ptr, I32(4), masks[n], zero]))
        for i, m in enumerate(rows):
            idx = [se.ix(x, {**env, plan.p: m, **column_env(se, plan, j0)})
                   for x in plan.a.index]
            a = splat(b.load(se.address(plan.a.tensor, idx), typ=f32), vec)
            for n in range(NV):
                acc = b.load(accs[i][n], typ=vec)
                b.store(b.call(fma, [a, bvecs[n], acc]), accs[i][n])

    n_other = math.prod(st.shape[k] for k in other)
    if n_other == 1:
        per_other(I64(0))
    else:
        o_lo = b.sdiv(lo, I64(jblocks))
        o_hi = minimum(b.sdiv(b.add(hi, I64(jblocks - 1)), I64(jblocks)), I64(n_other))
        se.loop(o_lo, o_hi, per_other, name="o")
