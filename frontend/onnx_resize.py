"""Resize and Upsample, imported as separable per-axis gathers of static index/weight tables.

Resize is separable: along each resized axis, output position ``o`` reads a few input
positions ``idx[o, t]`` with weights ``w[o, t]`` (1 tap for nearest, 2 for linear, 4 for cubic,
more with antialias). The tables depend only on the static shapes and attributes, so they are
computed here in float64 (as onnx's reference does) and each axis becomes one core
``Resample`` (a weighted gather, one kernel per axis; just ``Gather`` for nearest).
"""
from __future__ import annotations

import math

import numpy as np

from .importer import ImportContext, onnx_op

COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                    "asymmetric", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def source_coords(mode: str, n_in: int, n_out: int, scale: float, roi=(0.0, 1.0)):
    """Input coordinates of every output position (float64), and the positions outside the
    region of interest (tf_crop_and_resize only; else None)."""
    y = np.arange(n_out, dtype=np.float64)
    width = scale * n_in  # the unrounded output length
    outside = None
    if mode == "align_corners":
        x = np.zeros(n_out) if width == 1 else y * (n_in - 1) / (width - 1)
    elif mode == "asymmetric":
        x = y / scale
    elif mode == "tf_crop_and_resize":
        lo, hi = roi
        x = (np.full(n_out, (hi - lo) * (n_in - 1) / 2) if width == 1
             else y * (hi - lo) * (n_in - 1) / (width - 1))
        x = x + lo * (n_in - 1)
        outside = (x < 0) | (x > n_in - 1)
    elif mode == "pytorch_half_pixel":
        x = np.full(n_out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    elif mode == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        x = offset + (y + 0.5) / scale - 0.5
    else:
        raise ValueError(f"coordinate_transformation_mode {mode!r} is not one of "
                         f"{COORDINATE_MODES}")
    return x, outside


def nearest_table(x: np.ndarray, n_in: int, nearest_mode: str) -> np.ndarray:
    """The input index each output position copies."""
    base = np.floor(x)
    frac = x - base
    up = {"round_prefer_floor": frac > 0.5, "round_prefer_ceil": frac >= 0.5,
          "floor": np.zeros_like(frac, dtype=bool), "ceil": frac > 0}[nearest_mode]
    return np.clip(base + up, 0, n_in - 1).astype(np.int64)


def _cubic(ratio: float, a: float) -> list[float]:
    r, s = ratio, 1 - ratio
    return [((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
            ((a + 2) * r - (a + 3)) * r * r + 1,
            ((a + 2) * s - (a + 3)) * s * s + 1,
            ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a]


def _antialias(ratio: float, scale: float, cubic: bool, a: float) -> np.ndarray:
    """Kernel widened by 1/scale when downsampling, normalized to sum 1."""
    scale = min(scale, 1.0)
    if cubic:
        start = int(np.floor(-2 / scale) + 1)
        t = np.abs(scale * (np.arange(start, 2 - start) - ratio))
        c = np.where(t <= 1, (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1,
                     np.where(t < 2, a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a, 0.0))
    else:
        start = int(np.floor(-1 / scale) + 1)
        c = np.clip(1 - np.abs((np.arange(start, 2 - start) - ratio) * scale), 0, 1)
    return c / c.sum()


def interp_tables(x: np.ndarray, n_in: int, scale: float, cubic: bool, a: float,
                  antialias: bool, exclude_outside: bool) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each [n_out, taps]: the taps nearest to x, edge-clamped."""
    base = np.floor(x)
    ratios = np.where(x == base, 1.0, x - base)  # in (0, 1]: prefer the left neighbour
    if antialias:
        coeffs = np.stack([_antialias(r, scale, cubic, a) for r in ratios])
    elif cubic:
        coeffs = np.array([_cubic(r, a) for r in ratios], dtype=np.float64)
    else:
        coeffs = np.stack([1 - ratios, ratios], axis=1)
    taps = coeffs.shape[1]
    # The `taps` positions nearest to x, ties to the smaller (onnx's neighbour rule).
    pad = -(-taps // 2)
    xp = x + pad
    p = np.floor(xp).astype(np.int64)
    frac = xp - p
    if taps % 2 == 0:
        offset = np.where(frac == 0, -(taps // 2), -(taps // 2) + 1)
    else:
        offset = np.where(frac <= 0.5, -((taps - 1) // 2), -((taps - 1) // 2) + 1)
    idx = (p + offset)[:, None] + np.arange(taps)[None, :] - pad
    if exclude_outside:
        coeffs = np.where((idx < 0) | (idx >= n_in), 0.0, coeffs)
        total = coeffs.sum(axis=1, keepdims=True)
        coeffs = coeffs / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, n_in - 1), coeffs


def _resize_axes(ctx: ImportContext, x, scales, sizes, axes, policy: str):
    """Per resized axis: (axis, output size, scale)."""
    rank = x.type.rank
    axes = list(range(rank)) if axes is None else [a % rank for a in axes]
    if sizes is not None:
        sizes = [int(s) for s in sizes]
        if len(sizes) != len(axes):
            raise ctx.error(f"sizes {sizes} must have one entry per axis {axes}")
        ratio = [s / x.shape[a] for s, a in zip(sizes, axes)]
        if policy in ("not_larger", "not_smaller"):
            r = min(ratio) if policy == "not_larger" else max(ratio)
            return [(a, int(r * x.shape[a] + 0.5), r) for a in axes]
        if policy != "stretch":
            raise ctx.error(f"unknown keep_aspect_ratio_policy {policy!r}")
        return [(a, s, r) for a, s, r in zip(axes, sizes, ratio)]
    scales = [float(s) for s in scales]
    if len(scales) != len(axes) or min(scales, default=1) <= 0:
        raise ctx.error(f"scales {scales} must be positive, one per axis {axes}")
    return [(a, int(s * x.shape[a]), s) for a, s in zip(axes, scales)]


def resize(ctx: ImportContext, x, plan, mode: str, coord: str, nearest_mode: str, a: float,
           antialias: bool, exclude_outside: bool, roi, extrapolation: float):
    if mode not in ("nearest", "linear", "cubic"):
        raise ctx.error(f"mode must be nearest, linear or cubic, got {mode!r}")
    if coord not in COORDINATE_MODES or nearest_mode not in NEAREST_MODES:
        raise ctx.error(f"unknown coordinate_transformation_mode {coord!r} or nearest_mode "
                        f"{nearest_mode!r}")
    if mode != "nearest" and not x.dtype.is_float:
        raise ctx.unsupported(f"{mode} mode on {x.dtype} input is not supported yet")
    if antialias and mode == "nearest":
        raise ctx.error("antialias needs linear or cubic mode")
    if min((size for _, size, _ in plan), default=1) < 1:
        raise ctx.error(f"the output would be empty ({plan})")
    rank = x.type.rank
    y, masks = x, []
    for axis, size, scale in plan:
        n_in = x.shape[axis]
        lo_hi = (0.0, 1.0) if roi is None else (float(roi[axis]), float(roi[rank + axis]))
        if math.isclose(scale, 1.0) and size == n_in and (
                coord != "tf_crop_and_resize" or np.allclose(lo_hi, (0.0, 1.0))):
            continue  # identity along this axis, as in the reference
        coords, outside = source_coords(coord, n_in, size, scale, lo_hi)
        if outside is not None and outside.any():
            masks.append((axis, outside))
        if mode == "nearest":
            idx = ctx.constant(nearest_table(coords, n_in, nearest_mode), "resize_index")
            y = ctx.add1("Gather", [y, idx], {"axis": axis})
            continue
        idx, w = interp_tables(coords, n_in, scale, mode == "cubic", a, antialias,
                               exclude_outside)
        y = ctx.add1("Resample", [y, ctx.constant(idx, "resize_index"),
                                  ctx.constant(w.astype(x.dtype.np), "resize_weight")],
                     {"axis": axis})
    if masks:
        mask = np.zeros(y.shape, dtype=bool)
        for axis, outside in masks:
            mask |= outside.reshape((-1,) + (1,) * (rank - axis - 1))
        fill = ctx.constant(np.array(extrapolation, dtype=x.dtype.np))
        y = ctx.add1("Where", [ctx.constant(mask, "resize_outside"), fill, y])
    elif y is x:
        y = ctx.add1("Identity", [x])
    return [y]


@onnx_op("Resize")
def _resize(ctx: ImportContext, node):
    x = ctx.input(0)
    if not x.type.is_static:
        raise ctx.unsupported(f"symbolic input shape {x.type} is not supported yet")
    mode = ctx.attr("mode", "nearest")
    if ctx.opset < 11:  # Resize-10: X, scales; asymmetric coordinates
        scales = ctx.require_const(1, "scales").reshape(-1)
        plan = _resize_axes(ctx, x, scales, None, None, "stretch")
        return resize(ctx, x, plan, mode, "asymmetric", "floor", -0.75, False, False, None, 0.0)
    roi = ctx.const(1)
    scales = ctx.const(2)
    sizes = ctx.const(3)
    for k, (v, what) in enumerate(((roi, "roi"), (scales, "scales"), (sizes, "sizes")), 1):
        if ctx.input(k) is not None and v is None:
            raise ctx.unsupported(f"{what} computed at run time is not supported yet")
    if scales is not None and scales.size == 0:
        scales = None
    if sizes is not None and sizes.size == 0:
        sizes = None
    if (scales is None) == (sizes is None):
        raise ctx.error("exactly one of scales and sizes must be given")
    axes = ctx.attr("axes")
    coord = ctx.attr("coordinate_transformation_mode", "half_pixel")
    if roi is not None and roi.size and coord == "tf_crop_and_resize":
        roi = roi.reshape(-1).astype(np.float64)
        if axes is not None:  # spread the roi of the given axes over all axes
            rank = x.type.rank
            full = np.array([0.0] * rank + [1.0] * rank)
            for k, axis in enumerate(axes):
                full[axis % rank], full[rank + axis % rank] = roi[k], roi[len(axes) + k]
            roi = full
    else:
        roi = None
    if coord == "tf_crop_and_resize" and roi is None:
        raise ctx.error("tf_crop_and_resize needs a roi")
    plan = _resize_axes(ctx, x, None if scales is None else scales.reshape(-1),
                        None if sizes is None else sizes.reshape(-1), axes,
                        ctx.attr("keep_aspect_ratio_policy", "stretch"))
    return resize(ctx, x, plan, mode, coord, ctx.attr("nearest_mode", "round_prefer_floor"),
                  float(ctx.attr("cubic_coeff_a", -0.75)), bool(ctx.attr("antialias", 0)),
                  bool(ctx.attr("exclude_outside", 0)), roi,
                  float(ctx.attr("extrapolation_value", 0.0)))


@onnx_op("Upsample")
def _upsample(ctx: ImportContext, node):
    """Upsample (opsets 7-9): asymmetric coordinates, nearest rounds down."""
    x = ctx.input(0)
    scales = ctx.attr("scales") if ctx.opset < 9 else ctx.require_const(1, "scales")
    plan = _resize_axes(ctx, x, np.asarray(scales).reshape(-1), None, None, "stretch")
    return resize(ctx, x, plan, ctx.attr("mode", "nearest"), "asymmetric", "floor", -0.75,
                  False, False, None, 0.0)

