"""Importers for ConvTranspose and the normalizations that are compositions of core ops.

ConvTranspose becomes zero insertion (Reshape + Pad), a border Pad (negative pads crop) and a
stride-1 Conv with the weights flipped and their channel axes swapped, so it runs on Conv's
schedules; with constant weights the weight transform folds away at import.
"""
from __future__ import annotations

import numpy as np

from onnxc.ir.dtypes import DType

from .importer import ImportContext, onnx_op, prod


def _zero_insert(ctx: ImportContext, x, strides):
    """x with stride-1 zeros between neighbours along every spatial axis (s*(n-1)+1 long)."""
    if all(s == 1 for s in strides):
        return x
    n, c, *spatial = x.shape
    nd = len(spatial)
    split = [n, c]
    for d in spatial:
        split += [d, 1]
    y = ctx.add1("Reshape", [x], {"shape": tuple(split)})
    pads = [0] * (2 * len(split))
    for k, s in enumerate(strides):
        pads[len(split) + 3 + 2 * k] = s - 1  # end pad of each new unit axis
    y = ctx.add1("Pad", [y], {"pads": tuple(pads), "mode": "constant", "value": 0})
    y = ctx.add1("Reshape", [y], {"shape": (n, c) + tuple(d * s for d, s in zip(spatial,
                                                                                 strides))})
    ends = tuple(s * (d - 1) + 1 for d, s in zip(spatial, strides))
    return ctx.add1("Slice", [y], {"starts": (0,) * nd, "ends": ends,
                                   "axes": tuple(range(2, 2 + nd)), "steps": None})


def _conv_weights(ctx: ImportContext, w, group: int):
    """ConvTranspose weights (C, M/g, k...) -> Conv weights (M, C/g, k...) flipped spatially."""
    c, mg, *kernel = w.shape
    nd = len(kernel)
    cg = c // group
    if group > 1:
        w = ctx.add1("Reshape", [w], {"shape": (group, cg, mg, *kernel)})
        w = ctx.add1("Transpose", [w], {"perm": (0, 2, 1) + tuple(range(3, 3 + nd))})
        w = ctx.add1("Reshape", [w], {"shape": (group * mg, cg, *kernel)})
    else:
        w = ctx.add1("Transpose", [w], {"perm": (1, 0) + tuple(range(2, 2 + nd))})
    big = np.iinfo(np.int64).max // 2
    return ctx.add1("Slice", [w], {"starts": (-1,) * nd, "ends": (-big,) * nd,
                                   "axes": tuple(range(2, 2 + nd)), "steps": (-1,) * nd})


def conv_transpose_pads(in_spatial, kernel, strides, dilations, pads, output_padding,
                        output_shape, auto_pad: str):
    """(pads at the start, output sizes) per spatial axis, as onnx's reference computes them."""
    nd = len(kernel)
    full = [strides[d] * (in_spatial[d] - 1) + output_padding[d] +
            (kernel[d] - 1) * dilations[d] + 1 for d in range(nd)]
    if pads is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if output_shape is None:
            output_shape = [in_spatial[d] * strides[d] for d in range(nd)]
        total = [full[d] - output_shape[d] for d in range(nd)]
        begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        return begin, list(output_shape)
    pads = list(pads) if pads is not None else [0] * (2 * nd)
    if output_shape is None:
        output_shape = [full[d] - pads[d] - pads[nd + d] for d in range(nd)]
    return pads[:nd], list(output_shape)


@onnx_op("ConvTranspose")
def _conv_transpose(ctx: ImportContext, node):
    x, w, bias = ctx.input(0), ctx.input(1), ctx.input(2)
    if x.type.rank < 3 or w.type.rank != x.type.rank:
        raise ctx.error(f"needs X of rank >= 3 and W of the same rank, got {x.type}, {w.type}")
    if not x.type.is_static or not w.type.is_static:
        raise ctx.unsupported(f"symbolic shapes ({x.type}, {w.type}) are not supported yet")
    nd = x.type.rank - 2
    group = int(ctx.attr("group", 1))
    kernel = list(w.shape[2:])
    given = ctx.attr("kernel_shape")
    if given is not None and list(given) != kernel:
        raise ctx.error(f"kernel_shape {list(given)} does not match weights {w.type}")
    strides = list(ctx.attr("strides", [1] * nd))
    dilations = list(ctx.attr("dilations", [1] * nd))
    output_padding = list(ctx.attr("output_padding", [0] * nd))
    output_shape = ctx.attr("output_shape")
    if output_shape is not None:
        output_shape = list(output_shape)[-nd:]
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise ctx.error(f"unknown auto_pad {auto_pad!r}")
    if x.shape[1] != w.shape[0] or x.shape[1] % group:
        raise ctx.error(f"X has {x.shape[1]} channels; W {w.type} needs {w.shape[0]}, "
                        f"divisible by group {group}")
    if min(strides + dilations) < 1 or any(len(a) != nd for a in (strides, dilations,
                                                                   output_padding)):
        raise ctx.error(f"strides {strides}, dilations {dilations}, output_padding "
                        f"{output_padding} do not fit {nd} spatial dimensions")
    pads = ctx.attr("pads") if auto_pad in ("NOTSET", "") else None
    begin, out_size = conv_transpose_pads(x.shape[2:], kernel, strides, dilations, pads,
                                          output_padding, output_shape, auto_pad)
    if min(out_size) < 1:
        raise ctx.error(f"the output would be empty (sizes {out_size})")
    return [conv_transpose(ctx, x, w, bias, group, strides, dilations, begin, out_size)]


def conv_transpose(ctx: ImportContext, x, w, bias, group: int, strides, dilations, begin,
                   out_size):
    """The ConvTranspose of x by w whose output starts ``begin`` into the full result and is
    ``out_size`` long (per spatial axis)."""
    nd = x.type.rank - 2
    kernel = list(w.shape[2:])
    y = _zero_insert(ctx, x, strides)
    # The Conv reads the zero-inserted input padded by (k-1)*d - begin on the left and whatever
    # makes the output out_size long on the right; negative pads crop.
    left = [(kernel[d] - 1) * dilations[d] - begin[d] for d in range(nd)]
    right = [out_size[d] + (kernel[d] - 1) * dilations[d] - left[d] - y.shape[2 + d]
             for d in range(nd)]
    if any(left) or any(right):
        y = ctx.add1("Pad", [y], {"pads": (0, 0, *left, 0, 0, *right), "mode": "constant",
                                  "value": 0})
    cw = _conv_weights(ctx, w, group)
    attrs = {"group": group, "strides": (1,) * nd, "dilations": tuple(dilations),
             "pads": (0,) * (2 * nd)}
    return ctx.add1("Conv", [y, cw] + ([bias] if bias is not None else []), attrs)


@onnx_op("Col2Im")
def _col2im(ctx: ImportContext, node):
    """Sum the columns back into the image: a ConvTranspose (group = channels) of the block
    grid with one-hot weights, one per kernel offset."""
    x = ctx.input(0)
    image = [int(v) for v in np.asarray(ctx.require_const(1, "image_shape")).reshape(-1)]
    kernel = [int(v) for v in np.asarray(ctx.require_const(2, "block_shape")).reshape(-1)]
    nd = len(image)
    strides = list(ctx.attr("strides", [1] * nd))
    dilations = list(ctx.attr("dilations", [1] * nd))
    pads = list(ctx.attr("pads", [0] * (2 * nd)))
    blocks = [(image[d] + pads[d] + pads[nd + d] - dilations[d] * (kernel[d] - 1) - 1)
              // strides[d] + 1 for d in range(nd)]
    n, ck, count = x.shape
    kk = prod(kernel)
    if x.type.rank != 3 or ck % kk or count != prod(blocks):
        raise ctx.error(f"input {x.type} does not fit image {image}, blocks {kernel}")
    c = ck // kk
    grid = ctx.add1("Reshape", [x], {"shape": (n, ck, *blocks)})
    onehot = np.zeros((ck, 1, kk), dtype=x.dtype.np)
    onehot[np.arange(ck), 0, np.arange(ck) % kk] = 1
    w = ctx.constant(onehot.reshape(ck, 1, *kernel), "col2im_weight")
    return [conv_transpose(ctx, grid, w, None, c, strides, dilations, pads[:nd], image)]


# -- normalizations ------------------------------------------------------------------------------
def _scalar(ctx: ImportContext, value: float, like):
    return ctx.constant(np.array(value, dtype=like.dtype.np))


def _normalize(ctx: ImportContext, x, axes, eps: float, stash_float32: bool = True):
    """(x - mean) / sqrt(var + eps) over ``axes``, statistics in float32 for float16 input."""
    xs = x if not (stash_float32 and x.dtype == DType.float16) else \
        ctx.add1("Cast", [x], {"to": "float32"})
    attrs = {"axes": tuple(axes), "keepdims": 1}
    mean = ctx.add1("ReduceMean", [xs], attrs)
    d = ctx.add1("Sub", [xs, mean])
    var = ctx.add1("ReduceMean", [ctx.add1("Mul", [d, d])], attrs)
    y = ctx.add1("Div", [d, ctx.add1("Sqrt", [ctx.add1("Add", [var, _scalar(ctx, eps, xs)])])])
    return y if y.dtype == x.dtype else ctx.add1("Cast", [y], {"to": x.dtype.value})


def _per_channel(ctx: ImportContext, v, rank: int):
    return ctx.add1("Reshape", [v], {"shape": (v.shape[0],) + (1,) * (rank - 2)})


@onnx_op("InstanceNormalization")
def _instance_norm(ctx: ImportContext, node):
    x, scale, bias = ctx.input(0), ctx.input(1), ctx.input(2)
    rank = x.type.rank
    if rank < 3:
        raise ctx.error(f"input must have rank >= 3 (N, C, spatial...), got {x.type}")
    y = _normalize(ctx, x, range(2, rank), float(ctx.attr("epsilon", 1e-5)))
    y = ctx.add1("Mul", [y, _per_channel(ctx, scale, rank)])
    return [ctx.add1("Add", [y, _per_channel(ctx, bias, rank)])]


@onnx_op("GroupNormalization")
def _group_norm(ctx: ImportContext, node):
    """Normalize over (channels of a group, spatial); opset 18's scale/bias are per group,
    opset 21's per channel."""
    x, scale, bias = ctx.input(0), ctx.input(1), ctx.input(2)
    groups = int(ctx.attr("num_groups"))
    rank = x.type.rank
    if rank < 3 or x.shape[1] % groups:
        raise ctx.error(f"input {x.type} must have rank >= 3 and channels divisible by "
                        f"num_groups {groups}")
    n, c, *spatial = x.shape
    grouped = ctx.add1("Reshape", [x], {"shape": (n, groups, c // groups, *spatial)})
    y = _normalize(ctx, grouped, range(2, rank + 1), float(ctx.attr("epsilon", 1e-5)),
                   stash_float32=bool(ctx.attr("stash_type", 1)))
    if scale.shape[0] == groups and groups != c:  # opset 18: one scale per group
        shape = (groups,) + (1,) * (rank - 1)
        y = ctx.add1("Mul", [y, ctx.add1("Reshape", [scale], {"shape": shape})])
        y = ctx.add1("Add", [y, ctx.add1("Reshape", [bias], {"shape": shape})])
        return [ctx.add1("Reshape", [y], {"shape": tuple(x.shape)})]
    y = ctx.add1("Reshape", [y], {"shape": tuple(x.shape)})
    y = ctx.add1("Mul", [y, _per_channel(ctx, scale, rank)])
    return [ctx.add1("Add", [y, _per_channel(ctx, bias, rank)])]


@onnx_op("MeanVarianceNormalization")
def _mvn(ctx: ImportContext, node):
    x = ctx.input(0)
    axes = [a % x.type.rank for a in ctx.attr("axes", [0, 2, 3])]
    return [_normalize(ctx, x, axes, 1e-9, stash_float32=False)]


@onnx_op("LpNormalization")
def _lp_norm(ctx: ImportContext, node):
    """x / ||x||_p along one axis (p = 1 or 2); a zero norm gives 0, like the reference."""
    x = ctx.input(0)
    p = int(ctx.attr("p", 2))
    axis = int(ctx.attr("axis", -1)) % max(x.type.rank, 1)
    attrs = {"axes": (axis,), "keepdims": 1}
    if p == 1:
        norm = ctx.add1("ReduceSum", [ctx.add1("Abs", [x])], attrs)
    elif p == 2:
        norm = ctx.add1("Sqrt", [ctx.add1("ReduceSum", [ctx.add1("Mul", [x, x])], attrs)])
    else:
        raise ctx.error(f"p must be 1 or 2, got {p}")
    zero = _scalar(ctx, 0, x)
    is_zero = ctx.add1("Equal", [norm, zero])
    safe = ctx.add1("Where", [is_zero, _scalar(ctx, 1, x), norm])
    return [ctx.add1("Where", [is_zero, zero, ctx.add1("Div", [x, safe])])]


@onnx_op("RMSNormalization")
def _rms_norm(ctx: ImportContext, node):
    """x / sqrt(mean(x^2) + eps) * scale over the axes from ``axis`` on (float32 statistics)."""
    x, scale = ctx.input(0), ctx.input(1)
    rank = x.type.rank
    axis = int(ctx.attr("axis", -1))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < max(rank, 1):
        raise ctx.error(f"axis {ctx.attr('axis', -1)} is out of range for {x.type}")
    stash = ctx.attr("stash_type", 1)
    xs = x if x.dtype != DType.float16 or stash != 1 else \
        ctx.add1("Cast", [x], {"to": "float32"})
    ms = ctx.add1("ReduceMean", [ctx.add1("Mul", [xs, xs])],
                  {"axes": tuple(range(axis, rank)), "keepdims": 1})
    eps = _scalar(ctx, float(ctx.attr("epsilon", 1e-5)), xs)
    y = ctx.add1("Div", [xs, ctx.add1("Sqrt", [ctx.add1("Add", [ms, eps])])])
    if y.dtype != x.dtype:
        y = ctx.add1("Cast", [y], {"to": x.dtype.value})
    return [ctx.add1("Mul", [y, scale])]



@onnx_op("MaxUnpool")
def _max_unpool(ctx: ImportContext, node):
    """Zeros with X scattered at the flat indices I (as MaxPool's Indices give them) into the
    inferred shape, then padded (or cropped) at the end to ``output_shape``, as onnx's
    reference and its test data do."""
    x, idx = ctx.input(0), ctx.input(1)
    kernel = list(ctx.attr("kernel_shape"))
    nd = len(kernel)
    strides = list(ctx.attr("strides", [1] * nd))
    pads = list(ctx.attr("pads", [0] * 2 * nd))
    if x.type.rank != nd + 2 or idx.shape != x.shape:
        raise ctx.error(f"needs X of rank {nd + 2} and indices of X's shape, got {x.type} and "
                        f"{idx.type}")
    if not all(isinstance(d, int) for d in x.shape):
        raise ctx.unsupported("symbolic input dimensions")
    inferred = list(x.shape[:2]) + [(x.shape[2 + k] - 1) * strides[k] - pads[k] - pads[nd + k]
                                    + kernel[k] for k in range(nd)]
    shape = inferred
    if ctx.input(2) is not None:
        shape = [int(d) for d in ctx.require_const(2, "output_shape").reshape(-1)]
        if len(shape) != nd + 2:
            raise ctx.error(f"output_shape {shape} must have {nd + 2} entries")
    total = prod(inferred)
    ctx.check_alloc((total,), x.dtype.itemsize, "MaxUnpool's output")
    zeros = ctx.constant(np.zeros((total,), dtype=x.dtype.np), "unpool_zeros")
    flat_idx = ctx.add1("Reshape", [idx], {"shape": (prod(x.shape),)})
    if flat_idx.dtype != DType.int64:
        flat_idx = ctx.add1("Cast", [flat_idx], {"to": "int64"})
    flat_x = ctx.add1("Reshape", [x], {"shape": (prod(x.shape),)})
    y = ctx.add1("ScatterElements", [zeros, flat_idx, flat_x], {"axis": 0, "reduction": "none"})
    y = ctx.add1("Reshape", [y], {"shape": tuple(inferred)})
    if shape != inferred:
        grow = [0] * len(shape) + [s - i for s, i in zip(shape, inferred)]
        y = ctx.add1("Pad", [y], {"pads": tuple(grow), "mode": "constant", "value": 0})
    return [y]
