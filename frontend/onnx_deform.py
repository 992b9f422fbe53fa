"""DeformConv (2-D): bilinear sampling at offset kernel taps, then one batched GEMM.

Each output position p and kernel tap k samples the input at its regular tap position plus
the learned offset. The sampling is the core GridSample (linear, zero padding,
align_corners=1, as onnx.reference defines DeformConv), one grid per offset group with the
P x K taps as its spatial dims; the optional mask scales each sample; then
out[n, oc, p] = sum over (c in oc's group, k) of W[oc, c, k] * sample[n, c, p, k] is a MatMul.
"""
from __future__ import annotations

import numpy as np

from onnxc.ir import Value

from .importer import ImportContext, onnx_op


def _static(ctx: ImportContext, v: Value, what: str) -> tuple[int, ...]:
    if not all(isinstance(d, int) for d in v.shape):
        raise ctx.unsupported(f"{what} must have a static shape, got {v.type}; pass "
                              f"input_shapes to compile")
    return tuple(v.shape)


def _pad_single(ctx: ImportContext, x: Value, axis: int) -> Value:
    """Append a zero row along ``axis`` when it has size 1: the normalized align_corners grid
    needs two rows, and a zero row is what the zero padding samples there anyway."""
    if x.shape[axis] != 1:
        return x
    shape = list(x.shape)
    zeros = ctx.constant(np.zeros(shape, dtype=x.dtype.np), "deform_pad")
    return ctx.add1("Concat", [x, zeros], {"axis": axis})


@onnx_op("DeformConv")
def _deform_conv(ctx: ImportContext, node):
    x, w, off, bias, mask = (ctx.input(k) for k in range(5))
    if x.type.rank != 4:
        raise ctx.unsupported(f"only 2-D DeformConv (a 4-D input) is supported, got {x.type}")
    n, c, h, wd = _static(ctx, x, "input X")
    oc, cg, kh, kw = _static(ctx, w, "weights W")
    _, og2k, oh, ow = _static(ctx, off, "offset")
    group, og = int(ctx.attr("group", 1)), int(ctx.attr("offset_group", 1))
    if tuple(ctx.attr("kernel_shape", (kh, kw))) != (kh, kw):
        raise ctx.error(f"kernel_shape {ctx.attr('kernel_shape')} does not match W {w.type}")
    sh, sw = ctx.attr("strides", (1, 1))
    dh, dw = ctx.attr("dilations", (1, 1))
    pt, pl, pb, pr = ctx.attr("pads", (0, 0, 0, 0))
    if group < 1 or c != cg * group or oc % group:
        raise ctx.error(f"X has {c} channels and W {w.type}: with group={group} W must be "
                        f"[M, C/group, kH, kW] with M divisible by group")
    if og < 1 or c % og:
        raise ctx.error(f"offset_group={og} must divide the {c} input channels")
    k, p = kh * kw, oh * ow
    if og2k != og * k * 2:
        raise ctx.error(f"offset has {og2k} channels; offset_group * kH * kW * 2 = {og * k * 2}")
    if (oh, ow) != ((h + pt + pb - (kh - 1) * dh - 1) // sh + 1,
                    (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1):
        raise ctx.error(f"offset's output size {[oh, ow]} does not follow from X {x.type}, "
                        f"the kernel, pads, strides and dilations")
    if mask is not None and _static(ctx, mask, "mask") != (n, og * k, oh, ow):
        raise ctx.error(f"mask must be [{n}, {og * k}, {oh}, {ow}], got {mask.type}")
    dt = x.dtype.np
    xs = _pad_single(ctx, _pad_single(ctx, x, 2), 3)
    hh, ww = xs.shape[2], xs.shape[3]

    # Regular tap positions [P, K] (pixels), then the offsets added per (n, offset group).
    oi, oj, ki, kj = np.meshgrid(np.arange(oh), np.arange(ow), np.arange(kh), np.arange(kw),
                                 indexing="ij")
    base_y = (oi * sh - pt + ki * dh).reshape(p, k).astype(dt)
    base_x = (oj * sw - pl + kj * dw).reshape(p, k).astype(dt)
    o = ctx.add1("Reshape", [off], {"shape": (n, og, kh, kw, 2, oh, ow)})
    o = ctx.add1("Transpose", [o], {"perm": (0, 1, 4, 5, 6, 2, 3)})
    o = ctx.add1("Reshape", [o], {"shape": (n * og, 2, p, k)})

    def coord(axis: int, base: np.ndarray, size: int) -> Value:
        d = ctx.add1("Gather", [o, ctx.constant(np.array(axis, dtype=np.int64))], {"axis": 1})
        pos = ctx.add1("Add", [d, ctx.constant(base)])
        g = ctx.add1("Sub", [ctx.add1("Mul", [pos, ctx.constant(np.array(2.0 / (size - 1),
                                                                         dtype=dt))]),
                             ctx.constant(np.array(1.0, dtype=dt))])
        return ctx.add1("Reshape", [g], {"shape": (n * og, p, k, 1)})

    grid = ctx.add1("Concat", [coord(1, base_x, ww), coord(0, base_y, hh)], {"axis": 3})
    xg = ctx.add1("Reshape", [xs], {"shape": (n * og, c // og, hh, ww)})
    s = ctx.add1("GridSample", [xg, grid], {"mode": "linear", "padding_mode": "zeros",
                                           "align_corners": 1})  # [n*og, c/og, P, K]
    if mask is not None:
        mk = ctx.add1("Reshape", [mask], {"shape": (n, og, k, p)})
        mk = ctx.add1("Transpose", [mk], {"perm": (0, 1, 3, 2)})
        s = ctx.add1("Mul", [s, ctx.add1("Reshape", [mk], {"shape": (n * og, 1, p, k)})])
    s = ctx.add1("Reshape", [s], {"shape": (n, c, p, k)})
    s = ctx.add1("Transpose", [s], {"perm": (0, 1, 3, 2)})
    s = ctx.add1("Reshape", [s], {"shape": (n, group, cg * k, p)})
    wr = ctx.add1("Reshape", [w], {"shape": (group, oc // group, cg * k)})
    y = ctx.add1("MatMul", [wr, s])  # [n, group, oc/group, P]
    y = ctx.add1("Reshape", [y], {"shape": (n, oc, oh, ow)})
    if bias is not None:
        y = ctx.add1("Add", [y, ctx.add1("Reshape", [bias], {"shape": (1, oc, 1, 1)})])
    return [y]
