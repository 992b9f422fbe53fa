"""The bf16 GEMM schedule of ``precision="bf16"``: bfloat16 operands, float32 accumulation.

Same loop order as gemm_packed.py (a thread packs ``b``'s columns of a block into micro-panels
and runs an ``MR x NR`` micro-kernel over every row tile; the last row tile is computed whole
on zero rows, and its real rows finished one by one), with two differences:

* both operands are rounded to bfloat16 while they are copied: ``b`` into panels of *pairs*
  ``[tile][K/2][NR*16 columns][2]`` (the two reduction steps ``2q`` and ``2q+1`` of a column
  side by side in one 32-bit lane), each row tile's ``a`` into a row buffer ``[MR][K]`` (``K``
  rounded up to even, zero-padded);
* a reduction step consumes a pair: per column vector one ``vdpbf16ps`` (16 float32 lanes +=
  a[2q+1]*b[2q+1] + a[2q]*b[2q], the ``a`` pair broadcast as one 32-bit value).

Without ``avx512_bf16`` the same kernel is *emulated*: operands rounded with the same rule
(``round_bits``), a pair's products accumulated by two float32 FMAs in the instruction's order
(odd step, then even). bf16 x bf16 products are exact in float32, so an FMA there equals the
instruction's add: both paths give the same bits (the instruction flushes denormal results to
zero, the FMA keeps them; only sums below 1e-38 can differ). The conversion follows the
instruction (``vcvtne2ps2bf16``): round to nearest even, denormal inputs to signed zero, NaN
quietened. That flush is where it differs from ir/float_formats.py's bfloat16 rounding (ONNX
tensors keep denormals), so the emulated path rounds here rather than through narrow.encode.

A constant operand (MatMul's weights as ``b``, Conv's as ``a``) is not converted at run time:
bf16_weights.py rounds it and lays it out at compile time (a uint16 constant of the kernel,
``kernel.bf16_prepacked``), so a run reads half the bytes and skips that copy.

The epilogue (bias, BatchNorm, activation, residual) runs on the float32 sums as in the other
schedules; inputs and outputs of the stage stay float32.
"""
from __future__ import annotations

import math

from llvmlite import ir

from onnxc.ir.kernel import Stage

from .gemm import GemmPlan, column_env, spill_and_finish
from .gemm_packed import a_is_contiguous, reduction_extent, split_unit
from .llvm_types import I1, I32, I64, PTR

L = 16  # float32 lanes of one vdpbf16ps (a 512-bit register)
# Micro-kernel tiles (rows x 16-column vectors) and their relative speed; each stage takes the
# one with the least padded work over its speed (the last row tile and the last column tile
# are computed whole): 8x3 suits wide stages, 12x2 / 16x1 the 7x7 and 14x14 images of late CNN
# layers (61 or 222 flattened columns), where a 48-column tile would waste up to a third;
# 1x4 one or two rows (a batch-1 MatMul: memory-bound on its weights, half the bytes in bf16).
TILES = {(8, 3): 1.0, (12, 2): 1.0, (16, 1): 0.75, (1, 4): 0.3}
PANEL_BYTES = 384 * 1024  # K * NC * 2 per packed block, under half of a 1 MiB L2
MIN_WORK_UNITS = 8
PRECISIONS = ("fp32", "bf16")
EMULATE = False  # tests switch it on to compare the emulated kernel with the native one

F32 = ir.FloatType()
I16 = ir.IntType(16)
V16F = ir.VectorType(F32, L)
V16I = ir.VectorType(I32, L)
V32H = ir.VectorType(I16, 2 * L)


class BFloatType(ir.Type):
    """LLVM's ``bfloat`` (llvmlite has no class for it): only used inside vector types, for
    the signatures of the avx512bf16 intrinsics."""

    intrinsic_name = "bf16"

    def __str__(self) -> str:
        return "bfloat"

    def __eq__(self, other) -> bool:
        return isinstance(other, BFloatType)

    def __hash__(self) -> int:
        return hash(BFloatType)


V32BF = ir.VectorType(BFloatType(), 2 * L)


def native_supported(features: str) -> bool:
    """The host (LLVM feature string) has vdpbf16ps / vcvtne2ps2bf16."""
    return "+avx512bf16" in features.split(",") and not EMULATE


def use_bf16(st: Stage, plan: GemmPlan, shapes: dict) -> bool:
    """Every GEMM stage whose ``a`` runs contiguously along the reduction (MatMul, Gemm
    without transA, Conv): the others (a transposed ``a``) keep the float32 schedules."""
    return reduction_extent(plan) >= 2 and a_is_contiguous(plan, shapes)


def tile_shape(st: Stage, plan: GemmPlan) -> tuple[int, int]:
    """(MR, NR): the tile with the least padded work over its speed."""
    P, J = st.shape[plan.p_index], plan.j_extent(st)

    def cost(tile):
        mr, nr = tile
        return -(-P // mr) * mr * -(-J // (nr * L)) * nr * L / TILES[tile]
    return min(TILES, key=cost)


def _blocking(st: Stage, plan: GemmPlan) -> tuple[int, int, int, int, list[int]]:
    """(NC, column blocks, row tiles per group, row groups, other axes), as gemm_packed."""
    K2 = -(-reduction_extent(plan) // 2) * 2
    J = plan.j_extent(st)
    MR, NR = tile_shape(st, plan)
    jtile = NR * L
    jtiles = -(-J // jtile)
    nc_tiles = max(1, min(jtiles, PANEL_BYTES // (K2 * 2 * jtile)))
    if jtiles * K2 * 2 * jtile <= 2 * PANEL_BYTES:  # one block up to 768 KiB: a second block
        nc_tiles = jtiles  # would read all of a again (late CNN layers: 7x7 images, K 4608)
    jblocks = -(-jtiles // nc_tiles)
    nc_tiles = -(-jtiles // jblocks)
    inner = 2 if plan.merged else 1
    other = [k for k in range(len(st.shape) - inner) if k != plan.p_index]
    outer = math.prod(st.shape[k] for k in other) * jblocks
    ptiles = -(-st.shape[plan.p_index] // MR)
    groups = min(ptiles, max(1, -(-MIN_WORK_UNITS // outer)))
    per_group = -(-ptiles // groups)
    groups = -(-ptiles // per_group)
    return nc_tiles * jtile, jblocks, per_group, groups, other


def bf16_outer_extent(st: Stage, plan: GemmPlan) -> int:
    _, jblocks, _, groups, other = _blocking(st, plan)
    return math.prod(st.shape[k] for k in other) * jblocks * groups


class Bf16Ops:
    """The conversions and the pair product, native or emulated (same bits)."""

    def __init__(self, mb, b: ir.IRBuilder, native: bool):
        self.b, self.native = b, native
        if native:
            self._cvt = mb.declare("llvm.x86.avx512bf16.cvtne2ps2bf16.512", V32BF, [V16F, V16F])
            self._dp = mb.declare("llvm.x86.avx512bf16.dpbf16ps.512", V16F,
                                  [V16F, V32BF, V32BF])
        else:
            self._fma = mb.declare(f"llvm.fma.v{L}f32", V16F, [V16F, V16F, V16F])

    def _splat(self, value: int) -> ir.Constant:
        return ir.Constant(V16I, [I32(value)] * L)

    def round_bits(self, x: ir.Value) -> ir.Value:
        """float32 lanes -> i32 lanes whose high half is the bfloat16 (low half zero)."""
        b, c = self.b, self._splat
        bits = b.bitcast(x, V16I)
        mag = b.and_(bits, c(0x7FFFFFFF))
        odd = b.and_(b.lshr(bits, c(16)), c(1))
        rounded = b.and_(b.add(b.add(bits, c(0x7FFF)), odd), c(-65536))
        zero = b.and_(bits, c(-0x80000000))
        quiet = b.and_(b.or_(bits, c(0x400000)), c(-65536))
        out = b.select(b.icmp_unsigned("<", mag, c(0x800000)), zero, rounded)
        return b.select(b.icmp_unsigned(">", mag, c(0x7F800000)), quiet, out)

    def pairs(self, even: ir.Value, odd: ir.Value) -> ir.Value:
        """Lane c = bf16(even[c]) | bf16(odd[c]) << 16: the dpbf16ps operand layout."""
        b = self.b
        if self.native:
            h = b.bitcast(b.call(self._cvt, [odd, even]), V32H)  # [bf(even) x16, bf(odd) x16]
            mask = ir.Constant(ir.VectorType(I32, 2 * L),
                               [I32(k // 2 + (L if k % 2 else 0)) for k in range(2 * L)])
            return b.bitcast(b.shuffle_vector(h, h, mask), V16I)
        return b.or_(b.lshr(self.round_bits(even), self._splat(16)),
                     self.round_bits(odd))

    def consecutive(self, lo: ir.Value, hi: ir.Value) -> ir.Value:
        """32 consecutive float32 (``lo`` then ``hi``) as 32 bf16 in order (i16 lanes)."""
        b = self.b
        if self.native:
            return b.bitcast(b.call(self._cvt, [hi, lo]), V32H)
        both = b.shuffle_vector(self.round_bits(lo), self.round_bits(hi),
                                ir.Constant(ir.VectorType(I32, 2 * L),
                                            [I32(k) for k in range(2 * L)]))
        return b.trunc(b.lshr(both, ir.Constant(ir.VectorType(I32, 2 * L),
                                                [I32(16)] * (2 * L))), V32H)

    def dot(self, acc: ir.Value, a_pair: ir.Value, b_pairs: ir.Value) -> ir.Value:
        """acc + a.odd * b.odd + a.even * b.even per lane (``a_pair`` broadcast i32 lanes)."""
        b = self.b
        if self.native:
            return b.call(self._dp, [acc, b.bitcast(a_pair, V32BF), b.bitcast(b_pairs, V32BF)])
        hi_mask, sh = self._splat(-65536), self._splat(16)
        a_odd = b.bitcast(b.and_(a_pair, hi_mask), V16F)
        a_even = b.bitcast(b.shl(a_pair, sh), V16F)
        b_odd = b.bitcast(b.and_(b_pairs, hi_mask), V16F)
        b_even = b.bitcast(b.shl(b_pairs, sh), V16F)
        acc = b.call(self._fma, [a_odd, b_odd, acc])
        return b.call(self._fma, [a_even, b_even, acc])


def emit_gemm_bf16(se, plan: GemmPlan, vw: int, native: bool) -> None:
    """Emit the whole stage body (this thread's share of the work units) into ``se.fn``."""
    st, b = se.st, se.b
    ops = Bf16Ops(se.mb, b, native)
    K = reduction_extent(plan)
    KP = -(-K // 2)  # pairs
    J = plan.j_extent(st)
    P = st.shape[plan.p_index]
    MR, NR = tile_shape(st, plan)
    jtile = NR * L
    NC, jblocks, per_group, groups, other = _blocking(st, plan)
    total = math.prod(st.shape[k] for k in other) * jblocks * groups
    split = L // vw if vw < L else 1  # epilogue vectors per accumulator (AVX2 hosts: 2)
    evw = L // split

    lo, hi = se.share(total)
    evec = ir.VectorType(F32, evw)
    tile = se.alloca(evec, "tile", count=MR * NR * split)
    accs = [[se.alloca(V16F, f"acc{m}_{n}") for n in range(NR)] for m in range(MR)]
    spill = se.alloca(V16F, "spill", count=MR * NR)  # the last row tile's sums, row by row
    mload = se.mb.declare(f"llvm.masked.load.v{L}f32.p0", V16F,
                          [PTR, I32, ir.VectorType(I1, L), V16F])
    alloc = se.mb.declare("aligned_alloc", PTR, [I64, I64])
    free = se.mb.declare("free", ir.VoidType(), [PTR])
    lanes = ir.Constant(ir.VectorType(I64, L), [I64(k) for k in range(L)])
    zero = ir.Constant(V16F, [F32(0.0)] * L)
    no_lanes = ir.Constant(ir.VectorType(I1, L), [I1(0)] * L)
    splat_mask = ir.Constant(ir.VectorType(I32, L), [I32(0)] * L)

    def splat(value, typ):
        v = b.insert_element(ir.Constant(typ, None), value, I32(0))
        return b.shuffle_vector(v, v, splat_mask)

    def tail_mask(left):
        return b.icmp_signed("<", lanes, splat(left, ir.VectorType(I64, L)))

    # panel: [tile][KP][NR * L] i32 pairs; arow: [MR][2 * KA] i16, KA = KP rounded up to L
    KA = -(-KP // L) * L
    # Constant operands come prepared (bf16_weights.py): b's panels of every block, a's rows.
    prepared = getattr(se.kernel, "bf16_prepacked", {}).get(st.out, {})
    bfixed = se.ptr(prepared["b"]) if "b" in prepared else None
    afixed = se.ptr(prepared["a"]) if "a" in prepared else None
    panel = b.call(alloc, [I64(64), I64(KP * NC * 4)]) if bfixed is None else None
    abuf = b.call(alloc, [I64(64), I64(MR * 2 * KA * 2)]) if afixed is None else None
    packed_key = se.alloca(I64, "packed_key")
    b.store(I64(-1), packed_key)

    def unit(q):
        env, group, key, jb, jb0, ntiles = split_unit(b, st, q, groups, jblocks, other, NC, J,
                                                      jtile)
        if bfixed is None:
            with b.if_then(b.icmp_signed("!=", b.load(packed_key, typ=I64), key)):
                pack_b(env, jb0, ntiles)
                b.store(key, packed_key)
            panels = panel
        else:
            panels = b.gep(bfixed, [b.mul(jb, I64(NC * KP))], source_etype=I32)
        ptiles = -(-P // MR)
        pt0 = b.mul(group, I64(per_group))
        pt_end = b.add(pt0, I64(per_group))
        pt_end = b.select(b.icmp_signed("<", pt_end, I64(ptiles)), pt_end, I64(ptiles))

        def row_tile(pt):
            p0 = b.mul(pt, I64(MR))
            rows = b.sub(I64(P), p0)
            rows = b.select(b.icmp_signed("<", rows, I64(MR)), rows, I64(MR))
            if afixed is None:
                se.loop(I64(0), I64(MR), lambda m: pack_a(env, b.add(p0, m), m, rows),
                        name="pa")
                abase = abuf
            else:
                abase = b.gep(afixed, [b.mul(p0, I64(2 * KA))], source_etype=I16)
            columns(env, p0, rows, jb0, ntiles, panels, abase)

        se.loop(pt0, pt_end, row_tile, name="ptile")

    def red_env(kflat) -> dict:
        """The reduction variables of flat step ``kflat`` (row-major over the axes)."""
        env, rest = {}, kflat
        for var, extent in reversed(plan.red.axes):
            env[var] = b.urem(rest, I64(extent)) if extent > 1 else I64(0)
            rest = b.udiv(rest, I64(extent)) if extent > 1 else rest
        return env

    def pack_b(env, jb0, ntiles):
        """panel[t][q][n*L + c] = pair(b(2q, j), b(2q+1, j)), j = jb0 + t*jtile + n*L + c."""
        def per_tile(t):
            j0 = b.add(jb0, b.mul(t, I64(jtile)))
            remaining = b.sub(I64(J), j0)
            masks = [tail_mask(b.sub(remaining, I64(n * L))) for n in range(NR)]
            base = b.mul(t, I64(KP * jtile))

            def step(q):
                k0 = b.mul(q, I64(2))
                k1 = b.add(k0, I64(1))
                has_odd = b.icmp_signed("<", k1, I64(K))
                k1 = b.select(has_odd, k1, k0)
                rows = []
                for kk, keep in ((k0, None), (k1, has_odd)):
                    renv = {**env, plan.p: I64(0), **red_env(kk)}
                    row = []
                    for n in range(NR):
                        jn = column_env(se, plan, b.add(j0, I64(n * L)))
                        idx = [se.ix(i, {**renv, **jn}) for i in plan.b.index]
                        mask = masks[n] if keep is None else b.select(keep, masks[n], no_lanes)
                        row.append(b.call(mload, [se.address(plan.b.tensor, idx), I32(4),
                                                  mask, zero]))
                    rows.append(row)
                dst = b.add(base, b.mul(q, I64(jtile)))
                for n in range(NR):
                    ptr = b.gep(panel, [b.add(dst, I64(n * L))], source_etype=I32)
                    b.store(ops.pairs(rows[0][n], rows[1][n]), ptr).align = 64

            se.loop(I64(0), I64(KP), step, name="pk")

        se.loop(I64(0), ntiles, per_tile, name="pack")

    def pack_a(env, p, m, rows):
        """abuf row m = bf16(a(p, 0..K-1)), zero-padded to 2*KA elements; zero past ``rows``."""
        live = b.icmp_signed("<", m, rows)
        p = b.select(live, p, I64(0))
        e = {**env, **{var: I64(0) for var, _ in plan.red.axes},
             **column_env(se, plan, I64(0)), plan.p: p}
        src = se.address(plan.a.tensor, [se.ix(i, e) for i in plan.a.index])
        row = b.mul(m, I64(2 * KA))

        def chunk(c):
            k = b.mul(c, I64(2 * L))
            halves = []
            for h in range(2):
                kh = b.add(k, I64(h * L))
                mask = b.select(live, tail_mask(b.sub(I64(K), kh)), no_lanes)
                halves.append(b.call(mload, [b.gep(src, [kh], source_etype=F32), I32(4),
                                             mask, zero]))
            ptr = b.gep(abuf, [b.add(row, k)], source_etype=I16)
            b.store(ops.consecutive(*halves), ptr).align = 64

        se.loop(I64(0), I64(KA // L), chunk, name="ak")

    def columns(env, p0, rows, jb0, ntiles, panel, abuf):
        """Row tile p0.. (abuf; zero rows past ``rows``) times every panel tile of the block."""
        mr = MR
        arows = [b.gep(abuf, [I64(m * 2 * KA)], source_etype=I16) for m in range(MR)]

        def per_tile(t):
            j0 = b.add(jb0, b.mul(t, I64(jtile)))
            for m in range(mr):
                for n in range(NR):
                    b.store(zero, accs[m][n])
            base = b.gep(panel, [b.mul(t, I64(KP * jtile))], source_etype=I32)

            def step(q):
                row = b.gep(base, [b.mul(q, I64(jtile))], source_etype=I32)
                bv = []
                for n in range(NR):
                    ld = b.load(b.gep(row, [I64(n * L)], source_etype=I32), typ=V16I)
                    ld.align = 64 if bfixed is None else 4  # numpy constants: 16-byte
                    bv.append(ld)
                for m in range(mr):
                    pair = b.load(b.gep(arows[m], [q], source_etype=I32), typ=I32)
                    a = splat(pair, V16I)
                    for n in range(NR):
                        acc = b.load(accs[m][n], typ=V16F)
                        b.store(ops.dot(acc, a, bv[n]), accs[m][n])

            se.loop(I64(0), I64(KP), step, name="k")
            left = b.sub(I64(J), j0)
            with b.if_else(b.icmp_signed(">=", rows, I64(MR))) as (then, otherwise):
                with then:
                    finish(env, p0, j0, MR, [[b.load(accs[m][n], typ=V16F) for n in range(NR)]
                                             for m in range(MR)], left)
                with otherwise:  # the last row tile: only its first ``rows`` rows exist
                    for m in range(MR):
                        for n in range(NR):
                            b.store(b.load(accs[m][n], typ=V16F),
                                    b.gep(spill, [I64(m * NR + n)], source_etype=V16F))

                    def one_row(m):
                        at = b.mul(m, I64(NR))
                        finish(env, b.add(p0, m), j0, 1, [[b.load(
                            b.gep(spill, [b.add(at, I64(n))], source_etype=V16F), typ=V16F)
                            for n in range(NR)]], left)
                    se.loop(I64(0), rows, one_row, name="prow")

        se.loop(I64(0), ntiles, per_tile, name="jt")

    def finish(env, p0, j0, mr, values, left):
        if split > 1:  # narrower host vectors: the epilogue takes vw-lane pieces
            values = [[b.shuffle_vector(v, v, ir.Constant(
                ir.VectorType(I32, evw), [I32(s * evw + c) for c in range(evw)]))
                for v in row for s in range(split)] for row in values]
        spill_and_finish(se, plan, env, p0, j0, mr, NR * split, evw, tile, values, left)

    se.loop(lo, hi, unit, name="q")
    for buf in (panel, abuf):
        if buf is not None:
            b.call(free, [buf])


__all__ = ["emit_gemm_bf16", "use_bf16", "bf16_outer_extent", "native_supported", "tile_shape",
           "PRECISIONS", "Bf16Ops"]
