"""Shared-memory tiled GEMM for the stages ``backends/gemm_match.py`` reads as matrix products.

A matched stage ``out[vars] = epilogue(sum_r a(p, r) * b(r, j))`` is laid out as C = A x B with
M = the extent of ``p`` (``a`` moves with it, ``b`` does not), N = the other output vars that
``a`` does not read (flattened; for a convolution: batch and output pixels, so Conv is an
implicit GEMM over its padded input), K = the reduction box (flattened), and a batch of such
products over the remaining vars (batched MatMul). Each block owns a BM x BN tile of C per
batch entry and walks K in steps of BK: the block stages an A and a B tile in ``__shared__``
memory, then every thread accumulates a TM x TN register tile from them. The epilogue (bias,
BatchNorm, activation, residual: everything around the ``Reduce``) runs on the accumulators
with the ordinary expression writer before the single store, so no intermediate tensor is
written.

float16 stages take the tensor-core path: the same tiles, but each warp computes its 32 x 32
part of C with ``nvcuda::wmma`` 16x16x16 fragments (half inputs, float accumulate), staged back
through shared memory for the epilogue. float32 stages take it only with ``allow_tf32``: TF32
rounds the inputs to 10 mantissa bits, which ONNX float32 semantics do not allow by default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from onnxc.ir.dtypes import DType
from onnxc.ir.kernel import Kernel, Stage, Var, flat_coef

from ..gemm_match import GemmPlan, match_gemm
from .cexpr import StageWriter, to_storage

MAX_BLOCKS = 65535
WMMA_TILE, WMMA_THREADS = 64, 128  # 64 x 64 C tile, 4 warps of 32 x 32 (2 x 2 fragments)


@dataclass
class GemmSchedule:
    """How one GEMM-like stage maps onto blocks, shared memory and registers."""

    plan: GemmPlan
    m: int  # rows of C: the extent of p
    n: int  # columns of C: product of n_vars' extents
    k: int  # product of the reduction extents
    batch_vars: list[int]  # stage var positions that index the batch of products
    n_vars: list[int]  # stage var positions flattened (row-major) into the column index
    bm: int
    bn: int
    bk: int
    tm: int
    tn: int
    mode: str = "simt"  # "simt", "wmma_f16" or "wmma_tf32"

    @property
    def threads(self) -> int:
        if self.mode != "simt":
            return WMMA_THREADS
        return (self.bm // self.tm) * (self.bn // self.tn)

    @property
    def batch(self) -> int:
        return self._extent(self.batch_vars)

    def _extent(self, positions: list[int]) -> int:
        return math.prod(self.plan_shape[k] for k in positions)

    @property
    def tiles(self) -> int:
        return self.batch * -(-self.m // self.bm) * -(-self.n // self.bn)

    def launch(self) -> tuple[int, int]:
        """(grid, block): one block per C tile, grid-stride beyond MAX_BLOCKS."""
        return max(1, min(self.tiles, MAX_BLOCKS)), self.threads

    plan_shape: tuple[int, ...] = ()


def _pow2_at_least(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def choose_tiles(m: int, n: int) -> tuple[int, int, int, int, int]:
    """(BM, BN, BK, TM, TN) for an M x N output: big tiles when there are enough of them to
    fill a GPU's SMs, narrow ones for the skinny products of small batches (M of a few rows)."""
    if m >= 128 and n >= 128 and (m // 128) * (n // 128) >= 64:
        return 128, 128, 8, 8, 8  # 256 threads, 64 accumulators each
    if m >= 64 and n >= 64:
        return 64, 64, 16, 8, 4  # 128 threads
    bm = min(64, max(4, _pow2_at_least(m)))
    bn = min(128, max(32, _pow2_at_least(n)))
    tm = min(4, bm)
    tn = 4
    while (bm // tm) * (bn // tn) < 32 and tm > 1:  # at least one full warp
        tm //= 2
    while (bm // tm) * (bn // tn) < 32 and tn > 1:
        tn //= 2
    return bm, bn, 16, tm, tn


def gemm_schedule(kernel: Kernel, st: Stage, allow_tf32: bool = False) -> GemmSchedule | None:
    """The tiled-GEMM schedule of ``st``, or None when the stage is not a matrix product."""
    shapes = {p.name: p.shape for p in kernel.params}
    plan = match_gemm(st, shapes, (DType.float32, DType.float16))
    if plan is None or plan.a.dtype != plan.b.dtype:
        return None
    k = math.prod(n for _, n in plan.red.axes)
    batch_vars, n_vars = [], []
    for pos, v in enumerate(st.vars):
        if pos == plan.p_index:
            continue
        ca = flat_coef(plan.a, v, shapes[plan.a.tensor])
        (n_vars if ca == 0 else batch_vars).append(pos)
    m = st.shape[plan.p_index]
    n = math.prod(st.shape[pos] for pos in n_vars)
    if k < 1 or m * n == 0:
        return None
    if plan.a.dtype == DType.float16:
        mode = "wmma_f16"
    elif allow_tf32:
        mode = "wmma_tf32"
    else:
        mode = "simt"
    if mode == "simt":
        bm, bn, bk, tm, tn = choose_tiles(m, n)
    else:
        bm, bn, bk, tm, tn = WMMA_TILE, WMMA_TILE, 16, 32, 32
    return GemmSchedule(plan, m, n, k, batch_vars, n_vars, bm, bn, bk, tm, tn, mode,
                        plan_shape=tuple(st.shape))


# --------------------------------------------------------------------------------------------
# Source text
# --------------------------------------------------------------------------------------------
def _decode(w: StageWriter, depth: int, flat: str, pairs: list[tuple[Var, int]]) -> None:
    """Declare ``pairs``' vars from a row-major flat index (last var fastest)."""
    if not pairs:
        return
    rest = w.temp("_f")
    w.emit(depth, f"i64 {rest} = {flat};")
    for k in range(len(pairs) - 1, -1, -1):
        v, n = pairs[k]
        w.extents[v] = n
        if k:
            w.emit(depth, f"const i64 {w.var(v)} = {rest} % {n}; {rest} /= {n};")
        else:
            w.emit(depth, f"const i64 {w.var(v)} = {rest};")


def _raw_load(w: StageWriter, load) -> str:
    return f"{w.pnames[load.tensor]}[{w.offset(load.tensor, load.index)}]"


def _tile_head(w: StageWriter, s: GemmSchedule, depth: int) -> None:
    """The grid-stride loop over C tiles, with the batch vars and the tile origin declared."""
    st = w.st
    mt, nt = -(-s.m // s.bm), -(-s.n // s.bn)
    w.emit(depth, f"for (i64 _tile = blockIdx.x; _tile < {s.tiles}LL; _tile += gridDim.x) {{")
    w.emit(depth + 1, f"const i64 _n0 = (_tile % {nt}) * {s.bn};")
    w.emit(depth + 1, f"const i64 _m0 = ((_tile / {nt}) % {mt}) * {s.bm};")
    _decode(w, depth + 1, f"_tile / {nt * mt}", [(st.vars[k], st.shape[k]) for k in s.batch_vars])


def _stage_tiles(w: StageWriter, s: GemmSchedule, depth: int, elem: str, zero: str,
                 a_tile: str, b_tile: str) -> None:
    """Copy the A (BM x BK, stored [m][k]) and B (BK x BN, stored [k][n]) tiles of step _k0 into
    shared memory, zero outside C and K; consecutive threads read consecutive k of a and
    consecutive columns of b, the contiguous directions of weights and activations."""
    st, plan = w.st, s.plan
    reds = list(plan.red.axes)
    p = st.vars[plan.p_index]
    nt = s.threads
    w.emit(depth, f"for (int _e = threadIdx.x; _e < {s.bm * s.bk}; _e += {nt}) {{")
    w.emit(depth + 1, f"const int _r = _e / {s.bk}, _c = _e % {s.bk};")
    w.emit(depth + 1, f"const i64 {w.var(p)} = _m0 + _r, _ka = _k0 + _c;")
    w.emit(depth + 1, f"{elem} _v = {zero};")
    w.emit(depth + 1, f"if ({w.var(p)} < {s.m} && _ka < {s.k}LL) {{")
    w.scopes.append({})
    _decode(w, depth + 2, "_ka", reds)
    w.emit(depth + 2, f"_v = {_raw_load(w, plan.a)};")
    w.scopes.pop()
    w.emit(depth + 1, "}")
    w.emit(depth + 1, f"{a_tile}[_r][_c] = _v;")
    w.emit(depth, "}")
    w.emit(depth, f"for (int _e = threadIdx.x; _e < {s.bk * s.bn}; _e += {nt}) {{")
    w.emit(depth + 1, f"const int _r = _e / {s.bn}, _c = _e % {s.bn};")
    w.emit(depth + 1, "const i64 _nb = _n0 + _c, _kb = _k0 + _r;")
    w.emit(depth + 1, f"{elem} _v = {zero};")
    w.emit(depth + 1, f"if (_nb < {s.n}LL && _kb < {s.k}LL) {{")
    w.scopes.append({})
    _decode(w, depth + 2, "_nb", [(st.vars[k], st.shape[k]) for k in s.n_vars])
    _decode(w, depth + 2, "_kb", reds)
    w.emit(depth + 2, f"_v = {_raw_load(w, plan.b)};")
    w.scopes.pop()
    w.emit(depth + 1, "}")
    w.emit(depth + 1, f"{b_tile}[_r][_c] = _v;")
    w.emit(depth, "}")


def _epilogue(w: StageWriter, s: GemmSchedule, depth: int, row: str, col: str, acc: str,
              out_ptr: str, out_dtype: DType) -> None:
    """out[element (row, col) of this tile] = epilogue(acc), inside C's bounds."""
    st, plan = w.st, s.plan
    p = st.vars[plan.p_index]
    w.emit(depth, f"const i64 {w.var(p)} = _m0 + {row}, _ne = _n0 + {col};")
    w.emit(depth, f"if ({w.var(p)} < {s.m} && _ne < {s.n}LL) {{")
    w.scopes.append({id(plan.red): acc})
    _decode(w, depth + 1, "_ne", [(st.vars[k], st.shape[k]) for k in s.n_vars])
    value = to_storage(w.expr(st.body, depth + 1), out_dtype)
    strides = [math.prod(st.shape[k + 1:]) for k in range(len(st.shape))]
    offset = " + ".join(f"{w.var(v)} * {sd}LL" if sd != 1 else w.var(v)
                        for v, sd, n in zip(st.vars, strides, st.shape) if n != 1) or "0"
    w.emit(depth + 1, f"{out_ptr}[{offset}] = {value};")
    w.scopes.pop()
    w.emit(depth, "}")


def simt_body(w: StageWriter, s: GemmSchedule, out_ptr: str, out_dtype: DType) -> None:
    """CUDA-core GEMM: shared tiles, a TM x TN register tile per thread (strided rows and
    columns so a warp's stores to C are contiguous and its shared reads broadcast)."""
    elem = "float"
    rt, ct = s.bm // s.tm, s.bn // s.tn
    w.emit(1, f"// tiled GEMM: M={s.m} N={s.n} K={s.k}, batch {s.batch}; block tile "
              f"{s.bm}x{s.bn}, k step {s.bk}, {s.tm}x{s.tn} accumulators per thread")
    w.emit(1, f"__shared__ {elem} _As[{s.bm}][{s.bk} + 1];")
    w.emit(1, f"__shared__ {elem} _Bs[{s.bk}][{s.bn}];")
    w.emit(1, f"const int _tr = threadIdx.x / {ct}, _tc = threadIdx.x % {ct};")
    _tile_head(w, s, 1)
    w.emit(2, f"float _acc[{s.tm}][{s.tn}];")
    w.emit(2, "#pragma unroll")
    w.emit(2, f"for (int _i = 0; _i < {s.tm}; ++_i)")
    w.emit(3, "#pragma unroll")
    w.emit(3, f"for (int _j = 0; _j < {s.tn}; ++_j) _acc[_i][_j] = 0.0f;")
    w.emit(2, f"for (i64 _k0 = 0; _k0 < {s.k}LL; _k0 += {s.bk}) {{")
    _stage_tiles(w, s, 3, elem, "0.0f", "_As", "_Bs")
    w.emit(3, "__syncthreads();")
    w.emit(3, "#pragma unroll")
    w.emit(3, f"for (int _kk = 0; _kk < {s.bk}; ++_kk) {{")
    w.emit(4, f"float _ra[{s.tm}], _rb[{s.tn}];")
    w.emit(4, "#pragma unroll")
    w.emit(4, f"for (int _i = 0; _i < {s.tm}; ++_i) _ra[_i] = _As[_tr + _i * {rt}][_kk];")
    w.emit(4, "#pragma unroll")
    w.emit(4, f"for (int _j = 0; _j < {s.tn}; ++_j) _rb[_j] = _Bs[_kk][_tc + _j * {ct}];")
    w.emit(4, "#pragma unroll")
    w.emit(4, f"for (int _i = 0; _i < {s.tm}; ++_i)")
    w.emit(5, "#pragma unroll")
    w.emit(5, f"for (int _j = 0; _j < {s.tn}; ++_j) _acc[_i][_j] = "
              "fmaf(_ra[_i], _rb[_j], _acc[_i][_j]);")
    w.emit(3, "}")
    w.emit(3, "__syncthreads();  // the tiles are overwritten by the next step")
    w.emit(2, "}")
    w.emit(2, "#pragma unroll")
    w.emit(2, f"for (int _i = 0; _i < {s.tm}; ++_i) {{")
    w.emit(3, "#pragma unroll")
    w.emit(3, f"for (int _j = 0; _j < {s.tn}; ++_j) {{")
    _epilogue(w, s, 4, f"_tr + _i * {rt}", f"_tc + _j * {ct}", "_acc[_i][_j]", out_ptr,
              out_dtype)
    w.emit(3, "}")
    w.emit(2, "}")
    w.emit(1, "}")


def wmma_body(w: StageWriter, s: GemmSchedule, out_ptr: str, out_dtype: DType) -> None:
    """Tensor-core GEMM through ``nvcuda::wmma``: each of the 4 warps owns a 32 x 32 quarter
    of the 64 x 64 C tile as 2 x 2 accumulator fragments (float)."""
    tf32 = s.mode == "wmma_tf32"
    elem, zero, kstep = ("float", "0.0f", 8) if tf32 else ("__half", "__float2half(0.0f)", 16)
    frag_t = "wmma::precision::tf32" if tf32 else "__half"
    t = WMMA_TILE
    w.emit(1, f"// tensor-core GEMM ({'tf32' if tf32 else 'fp16'} in, fp32 accumulate): "
              f"M={s.m} N={s.n} K={s.k}, batch {s.batch}; block tile {t}x{t}, k step {s.bk}")
    w.emit(1, "using namespace nvcuda;")
    w.emit(1, f"__shared__ __align__(32) {elem} _As[{t}][{s.bk} + 8];")
    w.emit(1, f"__shared__ __align__(32) {elem} _Bs[{s.bk}][{t} + 8];")
    w.emit(1, f"__shared__ __align__(32) float _Cs[{t}][{t} + 4];")
    w.emit(1, "const int _wm = (threadIdx.x >> 5) / 2, _wn = (threadIdx.x >> 5) % 2;")
    _tile_head(w, s, 1)
    w.emit(2, "wmma::fragment<wmma::accumulator, 16, 16, "
              f"{kstep}, float> _cf[2][2];")
    w.emit(2, "for (int _i = 0; _i < 2; ++_i)")
    w.emit(3, "for (int _j = 0; _j < 2; ++_j) wmma::fill_fragment(_cf[_i][_j], 0.0f);")
    w.emit(2, f"for (i64 _k0 = 0; _k0 < {s.k}LL; _k0 += {s.bk}) {{")
    _stage_tiles(w, s, 3, elem, zero, "_As", "_Bs")
    w.emit(3, "__syncthreads();")
    w.emit(3, f"for (int _ks = 0; _ks < {s.bk}; _ks += {kstep}) {{")
    w.emit(4, f"wmma::fragment<wmma::matrix_a, 16, 16, {kstep}, {frag_t}, wmma::row_major> "
              "_fa[2];")
    w.emit(4, f"wmma::fragment<wmma::matrix_b, 16, 16, {kstep}, {frag_t}, wmma::row_major> "
              "_fb[2];")
    w.emit(4, "for (int _i = 0; _i < 2; ++_i) {")
    w.emit(5, f"wmma::load_matrix_sync(_fa[_i], &_As[_wm * 32 + _i * 16][_ks], {s.bk} + 8);")
    w.emit(5, f"wmma::load_matrix_sync(_fb[_i], &_Bs[_ks][_wn * 32 + _i * 16], {t} + 8);")
    if tf32:
        w.emit(5, "for (int _x = 0; _x < _fa[_i].num_elements; ++_x) "
                  "_fa[_i].x[_x] = wmma::__float_to_tf32(_fa[_i].x[_x]);")
        w.emit(5, "for (int _x = 0; _x < _fb[_i].num_elements; ++_x) "
                  "_fb[_i].x[_x] = wmma::__float_to_tf32(_fb[_i].x[_x]);")
    w.emit(4, "}")
    w.emit(4, "for (int _i = 0; _i < 2; ++_i)")
    w.emit(5, "for (int _j = 0; _j < 2; ++_j) "
              "wmma::mma_sync(_cf[_i][_j], _fa[_i], _fb[_j], _cf[_i][_j]);")
    w.emit(3, "}")
    w.emit(3, "__syncthreads();")
    w.emit(2, "}")
    w.emit(2, "for (int _i = 0; _i < 2; ++_i)")
    w.emit(3, "for (int _j = 0; _j < 2; ++_j)")
    w.emit(4, "wmma::store_matrix_sync(&_Cs[_wm * 32 + _i * 16][_wn * 32 + _j * 16], "
              f"_cf[_i][_j], {t} + 4, wmma::mem_row_major);")
    w.emit(2, "__syncthreads();")
    w.emit(2, f"for (int _e = threadIdx.x; _e < {t * t}; _e += {WMMA_THREADS}) {{")
    w.emit(3, f"const int _r = _e / {t}, _c = _e % {t};")
    _epilogue(w, s, 3, "_r", "_c", "_Cs[_r][_c]", out_ptr, out_dtype)
    w.emit(2, "}")
    w.emit(2, "__syncthreads();  // _Cs is rewritten by the next tile")
    w.emit(1, "}")


__all__ = ["GemmSchedule", "gemm_schedule", "choose_tiles", "simt_body", "wmma_body"]
