"""Importers for smaller ops that are compositions of core ops: SwiGLU, CenterCropPad, LpPool,
ReverseSequence, Compress, MaxPool's Indices output."""
from __future__ import annotations

import numpy as np

from onnxc.ir.dtypes import DType
from onnxc.ir.ops.nn import conv_output_size

from .host_eval import data_dependent
from .importer import ImportContext, onnx_op
from .onnx_ops import _pool_attrs


def _ints(array) -> list[int]:
    return [int(v) for v in np.asarray(array).reshape(-1)]


@onnx_op("SwiGLU")
def _swiglu(ctx: ImportContext, node):
    """a * sigmoid(alpha * a) * b."""
    a, b = ctx.input(0), ctx.input(1)
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ctx.error(f"A and B must have one shape and type, got {a.type} and {b.type}")
    alpha = float(ctx.attr("alpha", 1.0))
    z = a if alpha == 1.0 else ctx.add1("Mul", [a, ctx.constant(np.array(alpha, a.dtype.np))])
    return [ctx.add1("Mul", [ctx.add1("Mul", [a, ctx.add1("Sigmoid", [z])]), b])]


@onnx_op("CenterCropPad")
def _center_crop_pad(ctx: ImportContext, node):
    """Crop or zero-pad each axis to the wanted size, centred (the odd element goes last):
    one Pad with negative (cropping) and positive pads."""
    x = ctx.input(0)
    shape = _ints(ctx.require_const(1, "shape"))
    rank = x.type.rank
    axes = ctx.attr("axes")
    axes = list(range(rank)) if axes is None else [a % rank for a in axes]
    if len(axes) != len(shape):
        raise ctx.error(f"shape {shape} must have one entry per axis {axes}")
    pads = [0] * (2 * rank)
    for a, size in zip(axes, shape):
        d = size - x.shape[a]  # > 0 pads, < 0 crops
        begin = int(np.sign(d)) * (abs(d) // 2)
        pads[a], pads[rank + a] = begin, d - begin
    return ctx.add("Pad", [x], {"pads": tuple(pads), "mode": "constant", "value": 0})


@onnx_op("LpPool")
def _lp_pool(ctx: ImportContext, node):
    """(sum over the window of |x|^p)^(1/p): a sum pool (AveragePool dividing by 1)."""
    x = ctx.input(0)
    attrs = _pool_attrs(ctx, x)
    p = float(ctx.attr("p", 2))
    nd = len(attrs["kernel_shape"])
    out = [conv_output_size(x.shape[2 + d], attrs["kernel_shape"][d], attrs["strides"][d],
                            attrs["pads"][d], attrs["pads"][nd + d], attrs["dilations"][d],
                            bool(attrs["ceil_mode"])) for d in range(nd)]
    ones = ctx.constant(np.ones(out, dtype=x.dtype.np), "lp_pool_divisor")
    pw = ctx.constant(np.array(p, dtype=x.dtype.np))
    powered = ctx.add1("Abs", [x]) if p == 1 else \
        ctx.add1("Pow", [ctx.add1("Abs", [x]), pw])
    total = ctx.add1("AveragePool", [powered, ones], {**attrs, "count_include_pad": 1})
    if p == 1:
        return [total]
    return [ctx.add1("Pow", [total, ctx.constant(np.array(1.0 / p, dtype=x.dtype.np))])]


@onnx_op("ReverseSequence")
def _reverse_sequence(ctx: ImportContext, node):
    """out[b, t] = x[b, len[b] - 1 - t] for t < len[b], else x[b, t]: GatherElements along
    the time axis with an index computed from the (run-time) lengths."""
    x, lens = ctx.input(0), ctx.input(1)
    batch_axis, time_axis = int(ctx.attr("batch_axis", 1)), int(ctx.attr("time_axis", 0))
    rank = x.type.rank
    nb, nt = x.shape[batch_axis], x.shape[time_axis]
    lens = ctx.add1("Cast", [lens], {"to": "int64"}) if lens.dtype != DType.int64 else lens
    shape_b = [1] * rank
    shape_b[batch_axis] = nb
    shape_t = [1] * rank
    shape_t[time_axis] = nt
    n = ctx.add1("Reshape", [lens], {"shape": tuple(shape_b)})
    t = ctx.constant(np.arange(nt, dtype=np.int64).reshape(shape_t), "time_index")
    flipped = ctx.add1("Sub", [ctx.add1("Sub", [n, ctx.constant(np.array(1, np.int64))]), t])
    index = ctx.add1("Where", [ctx.add1("Less", [t, n]), flipped, t])
    index = ctx.add1("Expand", [index], {"shape": tuple(x.shape)})
    return ctx.add("GatherElements", [x, index], {"axis": time_axis})


@onnx_op("Compress")
def _compress(ctx: ImportContext, node):
    """A Gather of the positions where the (compile-time) condition holds."""
    x = ctx.input(0)
    cond = ctx.const(1)
    if cond is None:
        raise data_dependent(ctx, node)  # run on the host between compiled parts
    axis = ctx.attr("axis")
    if axis is None:
        x = ctx.add1("Reshape", [x], {"shape": (x.type.numel(),)})
        axis = 0
    axis = int(axis) % x.type.rank
    keep = np.nonzero(np.asarray(cond).reshape(-1)[:x.shape[axis]])[0].astype(np.int64)
    return ctx.add("Gather", [x, ctx.constant(keep, "compress_index")], {"axis": axis})


# -- losses --------------------------------------------------------------------------------------
def nll_loss(ctx: ImportContext, logp, target, weight, ignore, reduction: str):
    """-logp[n, target[n, ...], ...] * weight[target], ignored targets contributing 0; mean
    divides by the total weight of the targets that count."""
    if reduction not in ("none", "sum", "mean"):
        raise ctx.error(f"reduction must be none, sum or mean, got {reduction!r}")
    if logp.type.rank < 2 or tuple(target.shape) != (logp.shape[0],) + tuple(logp.shape[2:]):
        raise ctx.error(f"target {target.type} does not fit input {logp.type}")
    target = ctx.add1("Cast", [target], {"to": "int64"}) if target.dtype != DType.int64 \
        else target
    c = logp.shape[1]
    i64 = np.int64
    dead = None
    if ignore is not None:
        dead = ctx.add1("Equal", [target, ctx.constant(np.array(ignore, i64))])
        target = ctx.add1("Where", [dead, ctx.constant(np.array(0, i64)), target])
    # clip as the reference does for the weight lookup (keeps indices in range)
    target = ctx.add1("Clip", [target, ctx.constant(np.array(0, i64)),
                               ctx.constant(np.array(c - 1, i64))])
    shape = (target.shape[0], 1) + tuple(target.shape[1:])
    picked = ctx.add1("GatherElements", [logp, ctx.add1("Reshape", [target], {"shape": shape})],
                      {"axis": 1})
    loss = ctx.add1("Neg", [ctx.add1("Reshape", [picked], {"shape": tuple(target.shape)})])
    zero, one = (ctx.constant(np.array(v, logp.dtype.np)) for v in (0, 1))
    w = ctx.add1("Gather", [weight, target], {"axis": 0}) if weight is not None else None
    if dead is not None:
        w = ctx.add1("Where", [dead, zero, w if w is not None else one])
    if w is not None:
        if w.shape != loss.shape:
            w = ctx.add1("Expand", [w], {"shape": tuple(loss.shape)})
        loss = ctx.add1("Mul", [loss, w])
    if reduction == "none":
        return loss
    everything = {"axes": tuple(range(loss.type.rank)), "keepdims": 0}
    total = ctx.add1("ReduceSum", [loss], everything)
    if reduction == "sum":
        return total
    if w is None:
        return ctx.add1("ReduceMean", [loss], everything)
    return ctx.add1("Div", [total, ctx.add1("ReduceSum", [w], everything)])


@onnx_op("NegativeLogLikelihoodLoss")
def _nll(ctx: ImportContext, node):
    return [nll_loss(ctx, ctx.input(0), ctx.input(1), ctx.input(2), ctx.attr("ignore_index"),
                     ctx.attr("reduction", "mean"))]


@onnx_op("SoftmaxCrossEntropyLoss")
def _sce(ctx: ImportContext, node):
    """NegativeLogLikelihoodLoss of LogSoftmax over the class axis (1); the optional second
    output is the log-probabilities."""
    x = ctx.input(0)
    logp = ctx.add1("LogSoftmax", [x], {"axis": 1})
    loss = nll_loss(ctx, logp, ctx.input(1), ctx.input(2), ctx.attr("ignore_index"),
                    ctx.attr("reduction", "mean"))
    return [loss, logp]


@onnx_op("AffineGrid")
def _affine_grid(ctx: ImportContext, node):
    """theta (N, k, k+1) times the homogeneous base grid (x, y[, z], 1) of the output size."""
    theta = ctx.input(0)
    size = _ints(ctx.require_const(1, "size"))
    spatial = size[2:]
    k = len(spatial)
    if k not in (2, 3) or tuple(theta.shape[1:]) != (k, k + 1):
        raise ctx.error(f"theta {theta.type} does not fit size {size}")
    align = bool(ctx.attr("align_corners", 0))
    axes = []
    for n in spatial:
        i = np.arange(n, dtype=np.float64)
        axes.append(np.linspace(-1, 1, n) if align else -1 + (2 * i + 1) / n)
    mesh = np.meshgrid(*axes, indexing="ij")  # per spatial dim, in (D,) H, W order
    coords = [m.reshape(-1) for m in reversed(mesh)] + [np.ones(int(np.prod(spatial)))]
    base = ctx.constant(np.stack(coords).astype(theta.dtype.np), "affine_base_grid")
    grid = ctx.add1("MatMul", [theta, base])  # (N, k, P)
    grid = ctx.add1("Transpose", [grid], {"perm": (0, 2, 1)})
    return [ctx.add1("Reshape", [grid], {"shape": (theta.shape[0], *spatial, k)})]


@onnx_op("GridSample")
def _grid_sample(ctx: ImportContext, node):
    mode = ctx.attr("mode", "linear" if ctx.opset >= 20 else "bilinear")
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    return ctx.add("GridSample", [ctx.input(0), ctx.input(1)], {
        "mode": mode, "padding_mode": ctx.attr("padding_mode", "zeros"),
        "align_corners": int(ctx.attr("align_corners", 0))})


@onnx_op("RoiAlign")
def _roi_align(ctx: ImportContext, node):
    x, rois, batch = ctx.input(0), ctx.input(1), ctx.input(2)
    ratio = int(ctx.attr("sampling_ratio", 0))
    if ratio < 1:
        raise ctx.unsupported("sampling_ratio=0 (samples per bin from each roi's run-time size) "
                              "is not supported; export with a fixed sampling_ratio")
    if batch.dtype != DType.int64:
        batch = ctx.add1("Cast", [batch], {"to": "int64"})
    mode = ctx.attr("coordinate_transformation_mode",
                    "half_pixel" if ctx.opset >= 16 else "output_half_pixel")
    return ctx.add("RoiAlign", [x, rois, batch], {
        "output_height": int(ctx.attr("output_height", 1)),
        "output_width": int(ctx.attr("output_width", 1)), "sampling_ratio": ratio,
        "spatial_scale": float(ctx.attr("spatial_scale", 1.0)),
        "mode": ctx.attr("mode", "avg"), "coordinate_transformation_mode": mode})
