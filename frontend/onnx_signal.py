"""DFT and STFT as matrix products with constant DFT matrices, computed in float64 (like the
reference's numpy FFT: float32 sums leave 1e-6 where the exact result is 0): every variant (real or complex input, inverse, one-sided, zero-padded or truncated to
dft_length) is a linear map of (time, real/imag) to (frequency, real/imag)."""
from __future__ import annotations

import numpy as np

from onnxc.ir.dtypes import DType

from .importer import ImportContext, onnx_op


def dft_matrix(n: int, c_in: int, length: int, inverse: bool, onesided: bool) -> np.ndarray:
    """M[t, c, k, j]: output k (real j=0, imaginary j=1) of input t (component c); inputs
    past ``length`` are dropped, missing ones count as zeros."""
    if inverse and onesided:  # irfft: n one-sided bins -> length real samples
        k = np.arange(n)[:, None]
        t = np.arange(length)[None, :]
        theta = 2 * np.pi * k * t / length
        weight = np.where((k == 0) | ((length % 2 == 0) & (k == length // 2)), 1.0, 2.0)
        weight = np.where(k <= length // 2, weight, 0.0)  # bins past Nyquist are ignored
        m = np.zeros((n, c_in, length, 1))
        m[:, 0, :, 0] = weight * np.cos(theta) / length
        if c_in == 2:
            m[:, 1, :, 0] = -weight * np.sin(theta) / length
        return m
    out = length // 2 + 1 if onesided else length
    t = np.arange(min(n, length))[:, None]
    k = np.arange(out)[None, :]
    theta = 2 * np.pi * k * t / length
    sign, scale = (1.0, 1.0 / length) if inverse else (-1.0, 1.0)
    cos, sin = np.cos(theta) * scale, sign * np.sin(theta) * scale
    m = np.zeros((n, c_in, out, 2))
    rows = t.shape[0]
    # (a + ib)(cos + i sin') = (a cos - b sin') + i(a sin' + b cos), sin' = sign * sin
    m[:rows, 0, :, 0], m[:rows, 0, :, 1] = cos, sin
    if c_in == 2:
        m[:rows, 1, :, 0], m[:rows, 1, :, 1] = -sin, cos
    return m


def dft(ctx: ImportContext, x, axis: int, length: int, inverse: bool, onesided: bool):
    rank = x.type.rank
    axis %= rank
    if axis == rank - 1 or x.shape[-1] not in (1, 2):
        raise ctx.error(f"the last axis of {x.type} must hold 1 (real) or 2 (complex) "
                        f"components and must not be the transformed axis")
    n, c = x.shape[axis], x.shape[-1]
    m = dft_matrix(n, c, length, inverse, onesided)
    k, c_out = m.shape[2], m.shape[3]
    others = [d for d in range(rank - 1) if d != axis]
    y = ctx.add1("Transpose", [x], {"perm": tuple(others) + (axis, rank - 1)})
    lead = tuple(x.shape[d] for d in others)
    y = ctx.add1("Reshape", [y], {"shape": lead + (1, n * c)})
    if y.dtype != DType.float64:
        y = ctx.add1("Cast", [y], {"to": "float64"})
    w = ctx.constant(m.reshape(n * c, k * c_out), "dft_matrix")
    y = ctx.add1("Reshape", [ctx.add1("MatMul", [y, w])], {"shape": lead + (k, c_out)})
    if x.dtype != DType.float64:
        y = ctx.add1("Cast", [y], {"to": x.dtype.value})
    back = list(range(len(others)))
    back.insert(axis, len(others))
    return ctx.add1("Transpose", [y], {"perm": tuple(back) + (rank - 1,)})


def _int_input(ctx: ImportContext, k: int, what: str):
    v = ctx.const(k)
    if ctx.input(k) is not None and v is None:
        raise ctx.unsupported(f"{what} computed at run time is not supported")
    return None if v is None else int(np.asarray(v).reshape(-1)[0])


@onnx_op("DFT")
def _dft(ctx: ImportContext, node):
    x = ctx.input(0)
    length = _int_input(ctx, 1, "dft_length")
    if ctx.opset >= 20:
        axis = _int_input(ctx, 2, "axis")
        axis = -2 if axis is None else axis
    else:
        axis = int(ctx.attr("axis", 1))
    inverse, onesided = bool(ctx.attr("inverse", 0)), bool(ctx.attr("onesided", 0))
    n = x.shape[axis % x.type.rank]
    if length is None:
        length = 2 * (n - 1) if inverse and onesided else n
    if length < 1:
        raise ctx.error(f"dft_length must be positive, got {length}")
    return [dft(ctx, x, axis, length, inverse, onesided)]


@onnx_op("STFT")
def _stft(ctx: ImportContext, node):
    """Frames (a Gather of a constant index table), times the window, then a DFT per frame."""
    x, window = ctx.input(0), ctx.input(2)
    step = _int_input(ctx, 1, "frame_step")
    length = _int_input(ctx, 3, "frame_length")
    if x.type.rank != 3:
        raise ctx.error(f"signal must be [batch, length, 1 or 2], got {x.type}")
    if length is None:
        length = window.shape[0] if window is not None else x.shape[1]
    if step is None or step < 1 or length < 1 or length > x.shape[1]:
        raise ctx.error(f"frame_step {step} and frame_length {length} do not fit {x.type}")
    frames = 1 + (x.shape[1] - length) // step
    index = np.arange(frames)[:, None] * step + np.arange(length)[None, :]
    y = ctx.add1("Gather", [x, ctx.constant(index.astype(np.int64), "stft_frames")],
                 {"axis": 1})  # [B, frames, length, c]
    if window is not None:
        y = ctx.add1("Mul", [y, ctx.add1("Reshape", [window], {"shape": (length, 1)})])
    return [dft(ctx, y, 2, length, False, bool(ctx.attr("onesided", 1)))]


@onnx_op("MelWeightMatrix")
def _mel_weight_matrix(ctx: ImportContext, node):
    """A constant: the triangular mel filter bank, as onnx's reference computes it."""
    from .onnx_types import dtype_from_onnx

    names = ("num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz",
             "upper_edge_hertz")
    bins, length, rate, low, high = (np.asarray(ctx.require_const(k, n)).reshape(())
                                     for k, n in enumerate(names))
    bins, length = int(bins), int(length)
    edges = np.arange(0, bins + 2)
    low_mel = 2595 * np.log1p(low / 700) / np.log(10)
    high_mel = 2595 * np.log1p(high / 700) / np.log(10)
    edges = edges * ((high_mel - low_mel) / (bins + 2)) + low_mel
    edges = 700 * np.expm1(edges / 2595 * np.log(10))
    edges = (((length + 1) * edges) // rate).astype(int)
    out = np.zeros((length // 2 + 1, bins))
    for i in range(bins):
        left, center, right = edges[i], edges[i + 1], edges[i + 2]
        if center == left:
            out[center, i] = 1
        else:
            j = np.arange(left, center + 1)
            out[j, i] = (j - left) / (center - left)
        if right > center:
            j = np.arange(center, right)
            out[j, i] = (right - j) / (right - center)
    dtype = dtype_from_onnx(ctx.attr("output_datatype", 1), "MelWeightMatrix: ")
    return [ctx.constant(out.astype(dtype.np), node.output[0])]
