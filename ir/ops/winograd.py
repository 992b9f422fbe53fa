"""Winograd F(2x2, 3x3) convolution: the input and output transforms as core ops.

A 3x3 stride-1 convolution becomes (passes/winograd.py)

    V = WinogradInput(x)              [N, 4, 4, C, TH, TW]  V = B^T d B per 4x4 input tile d
    M = MatMul(U, Reshape(V))         [N, 16, K, TH*TW]     U = G g G^T, folded at compile time
    Y = WinogradOutput(M, bias)       [N, K, H_out, W_out]  Y = A^T m A per 2x2 output tile

so the 16 per-position matrix products run on the backends' GEMM schedule with 2.25x fewer
multiplies than the direct convolution (Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks", 2015). Tile (ty, tx) covers output rows 2ty, 2ty+1 and columns 2tx, 2tx+1;
tiles past the output's last odd row or column compute values that are never stored.
WinogradOutput is a "reduction"-kind op only so that fusion hands it the convolution's
elementwise epilogue (BatchNorm, activation, residual) like a Conv's. The batch stays the
leading axis of every tensor, so batch tiling (runtime/batch_proof.py) still applies.
"""
from __future__ import annotations

import numpy as np

from ..dtypes import DType
from ..errors import ModelError
from ..kernel import IndexValue, Ix, TensorRef, call, cast, const, ix_min, select, stage
from ..types import TensorType
from .registry import OpDef, register

# F(2x2, 3x3) matrices (Lavin & Gray): Y = A^T [(G g G^T) * (B^T d B)] A
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def tile_counts(out_h: int, out_w: int, grid_w: int = 0) -> tuple[int, int]:
    """(tile rows, tile columns); ``grid_w`` widens the tile grid (attr grid_w of both ops):
    the extra tiles are computed and never stored, but they make the transforms' inner loops
    a multiple of the vector width."""
    return -(-out_h // 2), max(-(-out_w // 2), grid_w)


def transform_weights(w: np.ndarray) -> np.ndarray:
    """U[i*4 + j, k, c] = (G w[k, c] G^T)[i, j], for MatMul against the reshaped V."""
    k, c = w.shape[:2]
    u = np.einsum("ia,kcab,jb->ijkc", G, w.astype(np.float64), G)
    return np.ascontiguousarray(u.reshape(16, k, c).astype(w.dtype))


# -- WinogradInput ------------------------------------------------------------------------------
def _input_attrs(attrs, x):
    pads = list(attrs["pads"])
    out_h = x.shape[2] + pads[0] + pads[2] - 2
    out_w = x.shape[3] + pads[1] + pads[3] - 2
    return pads, out_h, out_w


def _input_infer(types, attrs, consts):
    x = types[0]
    if x.rank != 4 or not x.is_static or not x.dtype.is_float:
        raise ModelError(f"WinogradInput needs a static float NCHW input, got {x}")
    _, out_h, out_w = _input_attrs(attrs, x)
    if out_h < 1 or out_w < 1:
        raise ModelError(f"WinogradInput: a 3x3 window does not fit {x} with pads "
                         f"{attrs['pads']}")
    th, tw = tile_counts(out_h, out_w, attrs.get("grid_w", 0))
    return [TensorType(x.dtype, (x.shape[0], 4, 4, x.shape[1], th, tw))]


def _row(i):
    """Row i of B^T has two non-zeros: +1 at column a0(i), s(i) at column a1(i)."""
    a0 = ix_min(i, 2) - i // 3          # 0, 1, 2, 1
    a1 = 2 - i // 2 + (i // 3) * 2      # 2, 2, 1, 3
    return a0, a1


def _sign(i, dtype):
    """+1 for i == 1, else -1 (the sign of the second non-zero of B^T's row i)."""
    return select(call("eq", IndexValue(Ix.lift(i)), const(1, DType.int64)),
                  const(1.0, dtype), const(-1.0, dtype))


def _coef(j, b: int, dtype):
    """B^T[j, b] as a select chain on j (loop-invariant in the inner loop)."""
    col = [int(v) for v in BT[:, b]]
    jv = IndexValue(Ix.lift(j))
    out = const(float(col[3]), dtype)
    for k in (2, 1, 0):
        out = select(call("eq", jv, const(k, DType.int64)), const(float(col[k]), dtype), out)
    return out


def _input_compute(ins, outs, attrs):
    x, out = ins[0], outs[0]
    pads, _, _ = _input_attrs(attrs, x)
    th, tw = out.shape[4], out.shape[5]
    n_, c_ = x.shape[:2]
    ph, pw = 2 * th + 2, 2 * tw + 2
    prologue = []
    if pads[0] or pads[1] or ph != x.shape[2] or pw != x.shape[3]:
        name = f"{out.name}__pad"
        prologue = [stage(name, (n_, c_, ph, pw),
                          lambda n, c, r, s: x.padded([n, c, r - pads[0], s - pads[1]], 0.0))]
        x = TensorRef(name, (n_, c_, ph, pw), x.dtype)

    def body(n, i, j, c, ty, tx):
        # Rows of the tile: B^T's row i picks rows a0, a1 (runtime offsets along ty are free);
        # columns: the four taps at constant offsets 0..3 along tx, times B^T[j, b] (loop-
        # invariant selects), so the inner loop reads interleaved stride-2 vectors.
        ai0, ai1 = _row(i)
        si = _sign(i, x.dtype)
        total = None
        for b in range(4):
            term = _coef(j, b, x.dtype) * (x[n, c, ty * 2 + ai0, tx * 2 + b] +
                                           si * x[n, c, ty * 2 + ai1, tx * 2 + b])
            total = term if total is None else total + term
        return total

    return prologue + [stage(out.name, out.shape, body, names="nijchw")]


def _input_reference(arrays, attrs):
    x = arrays[0]
    pads, out_h, out_w = _input_attrs(attrs, x)
    th, tw = tile_counts(out_h, out_w, attrs.get("grid_w", 0))
    xp = np.zeros(x.shape[:2] + (2 * th + 2, 2 * tw + 2), dtype=np.float64)
    h = min(x.shape[2], 2 * th + 2 - pads[0])
    w = min(x.shape[3], 2 * tw + 2 - pads[1])
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + w] = x[:, :, :h, :w]
    d = np.empty(x.shape[:2] + (th, tw, 4, 4))
    for a in range(4):
        for b in range(4):
            d[..., a, b] = xp[:, :, a:a + 2 * th:2, b:b + 2 * tw:2]
    return [np.einsum("ia,jb,nctsab->nijcts", BT, BT, d).astype(x.dtype)]


register(OpDef("WinogradInput", _input_infer, _input_compute, _input_reference,
               kind="opaque", doc="attrs pads (top, left, bottom, right) of the 3x3 conv, grid_w; "
                                  "out [N, 4, 4, C, TH, TW] = B^T d B per 4x4 tile"))


# -- WinogradOutput -----------------------------------------------------------------------------
def _output_infer(types, attrs, consts):
    m = types[0]
    out_h, out_w = attrs["out_hw"]
    th, tw = tile_counts(out_h, out_w, attrs.get("grid_w", 0))
    if m.rank != 4 or m.shape[1] != 16 or m.shape[3] != th * tw:
        raise ModelError(f"WinogradOutput needs M of shape [N, 16, K, {th * tw}], got {m}")
    if len(types) > 1 and types[1] is not None and types[1].shape != (m.shape[2],):
        raise ModelError(f"WinogradOutput bias must have shape ({m.shape[2]},), got {types[1]}")
    return [TensorType(m.dtype, (m.shape[0], m.shape[2], out_h, out_w))]


def _output_compute(ins, outs, attrs):
    m, out = ins[0], outs[0]
    bias = ins[1] if len(ins) > 1 else None
    tw = tile_counts(*attrs["out_hw"], attrs.get("grid_w", 0))[1]
    dt = m.dtype

    def sign(r):  # row r of A^T: m[r] + (1 - 2r) * (m[r + 1] + m[r + 2])
        return const(1.0, dt) - cast(IndexValue(r), dt) * const(2.0, dt)

    def body(n, k, y, x):
        ry, rx = y % 2, x % 2
        t = (y // 2) * tw + x // 2
        sy, sx = sign(ry), sign(rx)

        def row(i):
            return (m[n, i * 4 + rx, k, t] +
                    sx * (m[n, i * 4 + rx + 1, k, t] + m[n, i * 4 + rx + 2, k, t]))

        val = row(ry) + sy * (row(ry + 1) + row(ry + 2))
        return val + bias[k] if bias is not None else val

    return [stage(out.name, out.shape, body, names="nkyx")]


def _output_reference(arrays, attrs):
    m, bias = arrays[0], arrays[1] if len(arrays) > 1 else None
    out_h, out_w = attrs["out_hw"]
    th, tw = tile_counts(out_h, out_w, attrs.get("grid_w", 0))
    n_, k_ = m.shape[0], m.shape[2]
    mm = m.astype(np.float64).reshape(n_, 4, 4, k_, th, tw)
    y = np.einsum("ri,sj,nijkab->nkarbs", AT, AT, mm).reshape(n_, k_, 2 * th, 2 * tw)
    y = y[:, :, :out_h, :out_w]
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return [y.astype(m.dtype)]


register(OpDef("WinogradOutput", _output_infer, _output_compute, _output_reference,
               kind="reduction", doc="inputs M [N, 16, K, TH*TW], optional bias [K]; attr "
                                     "out_hw, grid_w; out [N, K, H, W] = A^T m A per 2x2 tile"))
