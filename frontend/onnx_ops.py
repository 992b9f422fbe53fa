"""One importer per ONNX op: maps it (and its opset-dependent attributes) onto core ops.

ONNX ops that are compositions of core ops (Gemm, BatchNormalization, Flatten, Sum, ...) are
decomposed here, so passes and backends only ever see the small core op set.
"""
from __future__ import annotations

import numpy as np

from onnxc.ir import Value
from onnxc.ir.dtypes import DType
from onnxc.ir.ops.nn import conv_output_size, pool_divisor

from .importer import ImportContext, onnx_op, prod
from .onnx_types import dtype_from_onnx

# -- elementwise ---------------------------------------------------------------------------------
_BINARY = {"Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div", "Pow": "Pow"}
_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Exp": "Exp", "Log": "Log",
          "Sqrt": "Sqrt", "Neg": "Neg", "Abs": "Abs", "Reciprocal": "Reciprocal"}


def _legacy_broadcast(ctx: ImportContext, a, b):
    """Opset < 7 binary ops broadcast B into A starting at ``axis`` when broadcast=1."""
    if ctx.opset >= 7 or not ctx.attr("broadcast", 0) or b.type.rank == a.type.rank:
        return b
    axis = ctx.attr("axis", a.type.rank - b.type.rank)
    axis = axis % a.type.rank
    shape = list(b.shape) + [1] * (a.type.rank - axis - b.type.rank)
    return ctx.add1("Reshape", [b], {"shape": tuple(shape)})


@onnx_op(*_BINARY)
def _binary(ctx: ImportContext, node):
    a, b = ctx.input(0), ctx.input(1)
    if node.op_type == "Pow" and a.dtype != b.dtype:
        b = ctx.add1("Cast", [b], {"to": a.dtype.value})
    return ctx.add(_BINARY[node.op_type], [a, _legacy_broadcast(ctx, a, b)])


@onnx_op(*_UNARY)
def _unary(ctx: ImportContext, node):
    return ctx.add(_UNARY[node.op_type], [ctx.input(0)])


@onnx_op("Sum", "Max", "Min", "Mean")
def _variadic(ctx: ImportContext, node):
    xs = [v for v in ctx.inputs() if v is not None]
    core = {"Sum": "Add", "Mean": "Add", "Max": "Max", "Min": "Min"}[node.op_type]
    acc = xs[0]
    for x in xs[1:]:
        acc = ctx.add1(core, [acc, x])
    if node.op_type == "Mean":
        acc = ctx.add1("Div", [acc, ctx.constant(np.array(len(xs), dtype=acc.dtype.np))])
    elif len(xs) == 1:
        acc = ctx.add1("Identity", [acc])
    return [acc]


@onnx_op("LeakyRelu")
def _leaky_relu(ctx: ImportContext, node):
    return ctx.add("LeakyRelu", [ctx.input(0)], {"alpha": float(ctx.attr("alpha", 0.01))})


@onnx_op("Clip")
def _clip(ctx: ImportContext, node):
    x = ctx.input(0)
    if ctx.opset < 11:
        lo, hi = ctx.attr("min"), ctx.attr("max")
        lo = ctx.constant(np.array(lo, dtype=x.dtype.np)) if lo is not None else None
        hi = ctx.constant(np.array(hi, dtype=x.dtype.np)) if hi is not None else None
    else:
        lo, hi = ctx.input(1), ctx.input(2)
    for bound in (lo, hi):
        if bound is not None and bound.type.rank != 0 and bound.type.shape != (1,):
            raise ctx.error(f"min/max must be scalars, got {bound.type}")
    if lo is not None and lo.type.rank:
        lo = ctx.add1("Reshape", [lo], {"shape": ()})
    if hi is not None and hi.type.rank:
        hi = ctx.add1("Reshape", [hi], {"shape": ()})
    return ctx.add("Clip", [x, lo, hi])


def cast_attrs(ctx: ImportContext, to: DType) -> dict:
    """The core Cast's attributes for an ONNX Cast/CastLike to ``to``: saturate (opset 19,
    default on) for float8, round_mode (opset 24, default up) for float8e8m0."""
    attrs: dict = {"to": to.value}
    if to.is_narrow_float and to.itemsize == 1 and to != DType.float4e2m1:
        attrs["saturate"] = bool(ctx.attr("saturate", 1))
    if to == DType.float8e8m0:
        mode = ctx.attr("round_mode", "up")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode not in ("up", "down", "nearest"):
            raise ctx.error(f"round_mode must be up, down or nearest, got {mode!r}")
        attrs["round_mode"] = mode
    return attrs


@onnx_op("Cast")
def _cast(ctx: ImportContext, node):
    to = dtype_from_onnx(ctx.attr("to"), f"Cast {node.name!r}: ")
    return ctx.add("Cast", [ctx.input(0)], cast_attrs(ctx, to))


_COMPARE = {"Less": "Less", "LessOrEqual": "LessOrEqual", "Greater": "Greater",
            "GreaterOrEqual": "GreaterOrEqual", "Equal": "Equal", "And": "And", "Or": "Or",
            "Xor": "Xor"}


@onnx_op(*_COMPARE)
def _compare(ctx: ImportContext, node):
    a, b = ctx.input(0), ctx.input(1)
    return ctx.add(_COMPARE[node.op_type], [a, _legacy_broadcast(ctx, a, b)])


@onnx_op("Not")
def _not(ctx: ImportContext, node):
    return ctx.add("Not", [ctx.input(0)])


@onnx_op("Where")
def _where(ctx: ImportContext, node):
    return ctx.add("Where", [ctx.input(0), ctx.input(1), ctx.input(2)])


@onnx_op("CastLike")
def _cast_like(ctx: ImportContext, node):
    return ctx.add("Cast", [ctx.input(0)], cast_attrs(ctx, ctx.input(1).dtype))


@onnx_op("Identity")
def _identity(ctx: ImportContext, node):
    x = ctx.input(0)
    if not isinstance(x, Value):  # a sequence or an optional passes through
        return [x]
    return ctx.add("Identity", [x])


@onnx_op("Dropout")
def _dropout(ctx: ImportContext, node):
    x = ctx.input(0)
    training = ctx.const(2) if ctx.opset >= 12 else None
    if training is not None and bool(training.reshape(-1)[0]):
        ratio = 0.5 if ctx.input(1) is None else ctx.require_const(1, "ratio")
        ratio = float(np.asarray(ratio).reshape(-1)[0])
        if ratio != 0.0:
            from .onnx_random import dropout_training
            y, mask = dropout_training(ctx, x, ratio)
            return [y, mask if len(node.output) > 1 and node.output[1] else None]
    if ctx.opset < 7 and ctx.attr("is_test", 0) == 0:
        pass  # old exporters marked inference with is_test; identity either way at inference
    out = ctx.add1("Identity", [x])
    mask = None
    if len(node.output) > 1 and node.output[1]:
        ctx.check_alloc(x.shape, 1, "its mask output")
        mask = ctx.constant(np.ones(x.shape, dtype=bool), "dropout_mask")
    return [out, mask]


# -- matrix products -----------------------------------------------------------------------------
@onnx_op("MatMul")
def _matmul(ctx: ImportContext, node):
    a, b = ctx.input(0), ctx.input(1)
    squeeze = []
    if a.type.rank == 1:
        a = ctx.add1("Reshape", [a], {"shape": (1, a.shape[0])})
        squeeze.append(-2)
    if b.type.rank == 1:
        b = ctx.add1("Reshape", [b], {"shape": (b.shape[0], 1)})
        squeeze.append(-1)
    y = ctx.add1("MatMul", [a, b])
    if squeeze:
        shape = list(y.shape)
        for axis in sorted(squeeze):
            del shape[axis]
        y = ctx.add1("Reshape", [y], {"shape": tuple(shape)})
    return [y]


@onnx_op("Gemm")
def _gemm(ctx: ImportContext, node):
    a, b, c = ctx.input(0), ctx.input(1), ctx.input(2)
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    if a.type.rank != 2 or b.type.rank != 2:
        raise ctx.error(f"Gemm needs 2-D A and B, got {a.type} and {b.type}")
    if ctx.attr("transA", 0):
        a = ctx.add1("Transpose", [a], {"perm": (1, 0)})
    if ctx.attr("transB", 0):
        b = ctx.add1("Transpose", [b], {"perm": (1, 0)})
    y = ctx.add1("MatMul", [a, b])
    if alpha != 1.0:
        y = ctx.add1("Mul", [y, ctx.constant(np.array(alpha, dtype=y.dtype.np))])
    if c is not None and beta != 0.0:
        if beta != 1.0:
            c = ctx.add1("Mul", [c, ctx.constant(np.array(beta, dtype=c.dtype.np))])
        y = ctx.add1("Add", [y, c])
    return [y]


# -- convolution and pooling ---------------------------------------------------------------------
def _explicit_pads(ctx: ImportContext, spatial, kernel, strides, dilations, ceil_mode=False):
    nd = len(kernel)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    pads = list(ctx.attr("pads", [0] * (2 * nd)))
    if auto_pad in ("NOTSET", ""):
        return pads
    if auto_pad == "VALID":
        return [0] * (2 * nd)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.error(f"unknown auto_pad {auto_pad!r}")
    pads = [0] * (2 * nd)
    for d in range(nd):
        out = -(-spatial[d] // strides[d])
        total = max(0, (out - 1) * strides[d] + (kernel[d] - 1) * dilations[d] + 1 - spatial[d])
        small, big = total // 2, total - total // 2
        pads[d], pads[nd + d] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    return pads


@onnx_op("Conv")
def _conv(ctx: ImportContext, node):
    x, w, bias = ctx.input(0), ctx.input(1), ctx.input(2)
    if x.type.rank < 3:
        raise ctx.error(f"Conv input must have rank >= 3 (N, C, spatial...), got {x.type}")
    nd = x.type.rank - 2
    kernel = list(ctx.attr("kernel_shape", w.shape[2:]))
    if tuple(kernel) != tuple(w.shape[2:]):
        raise ctx.error(f"kernel_shape {kernel} does not match weights {w.type}")
    strides = list(ctx.attr("strides", [1] * nd))
    dilations = list(ctx.attr("dilations", [1] * nd))
    pads = _explicit_pads(ctx, x.shape[2:], kernel, strides, dilations)
    attrs = {"group": int(ctx.attr("group", 1)), "strides": tuple(strides),
             "dilations": tuple(dilations), "pads": tuple(pads)}
    return ctx.add("Conv", [x, w] + ([bias] if bias is not None else []), attrs)


def _pool_attrs(ctx: ImportContext, x):
    kernel = list(ctx.attr("kernel_shape"))
    nd = len(kernel)
    strides = list(ctx.attr("strides", [1] * nd))
    dilations = list(ctx.attr("dilations", [1] * nd))
    ceil_mode = int(ctx.attr("ceil_mode", 0))
    pads = _explicit_pads(ctx, x.shape[2:], kernel, strides, dilations, ceil_mode)
    return {"kernel_shape": tuple(kernel), "strides": tuple(strides),
            "dilations": tuple(dilations), "pads": tuple(pads), "ceil_mode": ceil_mode}


@onnx_op("MaxPool")
def _maxpool(ctx: ImportContext, node):
    x = ctx.input(0)
    attrs = _pool_attrs(ctx, x)
    y = ctx.add1("MaxPool", [x], attrs)
    if len(node.output) < 2 or not node.output[1]:
        return [y]
    order = int(ctx.attr("storage_order", 0))
    return [y, ctx.add1("MaxPoolIndices", [x, y], {**attrs, "storage_order": order})]


@onnx_op("AveragePool")
def _avgpool(ctx: ImportContext, node):
    x = ctx.input(0)
    attrs = _pool_attrs(ctx, x)
    include_pad = bool(ctx.attr("count_include_pad", 0))
    nd = len(attrs["kernel_shape"])
    out_spatial = [conv_output_size(x.shape[2 + d], attrs["kernel_shape"][d],
                                    attrs["strides"][d], attrs["pads"][d],
                                    attrs["pads"][nd + d], attrs["dilations"][d],
                                    bool(attrs["ceil_mode"])) for d in range(nd)]
    divisor = pool_divisor(x.shape[2:], out_spatial, attrs["kernel_shape"], attrs["strides"],
                           attrs["pads"], attrs["dilations"], include_pad)
    div = ctx.constant(divisor.astype(x.dtype.np), "pool_divisor")
    return ctx.add("AveragePool", [x, div], {**attrs, "count_include_pad": int(include_pad)})


@onnx_op("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(ctx: ImportContext, node):
    x = ctx.input(0)
    op = "ReduceMean" if node.op_type == "GlobalAveragePool" else "ReduceMax"
    return ctx.add(op, [x], {"axes": tuple(range(2, x.type.rank)), "keepdims": 1})


@onnx_op("LRN")
def _lrn(ctx: ImportContext, node):
    return ctx.add("LRN", [ctx.input(0)], {
        "size": int(ctx.attr("size")), "alpha": float(ctx.attr("alpha", 1e-4)),
        "beta": float(ctx.attr("beta", 0.75)), "bias": float(ctx.attr("bias", 1.0))})


@onnx_op("BatchNormalization")
def _batchnorm(ctx: ImportContext, node):
    """Inference BatchNorm as y = x * s + t with s = scale / sqrt(var + eps), t = b - mean * s."""
    # Training: opset 14+ says so with training_mode; before, the extra outputs did.
    if ctx.attr("training_mode", 0) or (ctx.opset < 14 and any(node.output[1:])):
        from .onnx_training import batchnorm_training
        return batchnorm_training(ctx, node)[:len(node.output)]
    x, scale, bias, mean, var = (ctx.input(k) for k in range(5))
    eps = ctx.constant(np.array(ctx.attr("epsilon", 1e-5), dtype=x.dtype.np))
    if x.type.rank < 2:
        raise ctx.error(f"BatchNormalization input must have rank >= 2, got {x.type}")
    channel_shape = (x.shape[1],) + (1,) * (x.type.rank - 2)
    s = ctx.add1("Div", [scale, ctx.add1("Sqrt", [ctx.add1("Add", [var, eps])])])
    t = ctx.add1("Sub", [bias, ctx.add1("Mul", [mean, s])])
    s = ctx.add1("Reshape", [s], {"shape": channel_shape})
    t = ctx.add1("Reshape", [t], {"shape": channel_shape})
    return [ctx.add1("Add", [ctx.add1("Mul", [x, s]), t])]


# -- softmax and reductions ----------------------------------------------------------------------
@onnx_op("Softmax", "LogSoftmax")
def _softmax(ctx: ImportContext, node):
    x = ctx.input(0)
    rank = x.type.rank
    if ctx.opset >= 13:
        return ctx.add(node.op_type, [x], {"axis": int(ctx.attr("axis", -1))})
    axis = int(ctx.attr("axis", 1)) % max(rank, 1)
    if axis == rank - 1:
        return ctx.add(node.op_type, [x], {"axis": -1})
    # Before opset 13 the input is seen as 2-D: [prod(dims before axis), prod(dims from axis)].
    flat = ctx.add1("Reshape", [x], {"shape": (prod(x.shape[:axis]), prod(x.shape[axis:]))})
    y = ctx.add1(node.op_type, [flat], {"axis": -1})
    return [ctx.add1("Reshape", [y], {"shape": tuple(x.shape)})]


@onnx_op("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd")
def _reduce(ctx: ImportContext, node):
    return ctx.add(node.op_type, [ctx.input(0)], _reduce_attrs(ctx, node))


def _reduce_attrs(ctx: ImportContext, node) -> dict:
    takes_input = ctx.opset >= 18 or (node.op_type == "ReduceSum" and ctx.opset >= 13)
    if takes_input:
        axes = ctx.const(1)
        if ctx.input(1) is not None and axes is None:
            raise ctx.unsupported("axes computed at run time are not supported yet")
        axes = [] if axes is None else [int(a) for a in axes.reshape(-1)]
    else:
        axes = list(ctx.attr("axes", []))
    return {"axes": tuple(axes), "keepdims": int(ctx.attr("keepdims", 1)),
            "noop_with_empty_axes": int(ctx.attr("noop_with_empty_axes", 0))}


@onnx_op("ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp")
def _reduce_composite(ctx: ImportContext, node):
    """Reductions that are a map, ReduceSum, and a map."""
    x = ctx.input(0)
    pre = {"ReduceSumSquare": lambda v: ctx.add1("Mul", [v, v]),
           "ReduceL1": lambda v: ctx.add1("Abs", [v]),
           "ReduceL2": lambda v: ctx.add1("Mul", [v, v]),
           "ReduceLogSum": lambda v: v,
           "ReduceLogSumExp": lambda v: ctx.add1("Exp", [v])}[node.op_type]
    post = {"ReduceL2": "Sqrt", "ReduceLogSum": "Log", "ReduceLogSumExp": "Log"}.get(node.op_type)
    y = ctx.add1("ReduceSum", [pre(x)], _reduce_attrs(ctx, node))
    return [ctx.add1(post, [y]) if post else y]


# -- shape manipulation --------------------------------------------------------------------------
def _resolve_reshape(ctx: ImportContext, in_shape, target, allowzero: bool):
    out = []
    for k, d in enumerate(target):
        d = int(d)
        if d == 0 and not allowzero:
            if k >= len(in_shape):
                raise ctx.error(f"shape {list(target)} copies dim {k} of input {list(in_shape)}, "
                                f"which has no such dim")
            d = in_shape[k]
        out.append(d)
    if out.count(-1) > 1:
        raise ctx.error(f"shape {list(target)} has more than one -1")
    if -1 in out:
        known = prod(d for d in out if d != -1)
        total = prod(in_shape)
        if known == 0 or total % known:
            raise ctx.error(f"cannot reshape input {list(in_shape)} to {list(target)}")
        out[out.index(-1)] = total // known
    if any(d < 0 for d in out):
        raise ctx.error(f"invalid target shape {list(target)}")
    return tuple(out)


@onnx_op("Reshape")
def _reshape(ctx: ImportContext, node):
    x = ctx.input(0)
    if ctx.opset < 5:
        target = list(ctx.attr("shape"))
    else:
        target = [int(d) for d in ctx.require_const(1, "shape").reshape(-1)]
    shape = _resolve_reshape(ctx, x.shape, target, bool(ctx.attr("allowzero", 0)))
    return ctx.add("Reshape", [x], {"shape": shape})


@onnx_op("Flatten")
def _flatten(ctx: ImportContext, node):
    x = ctx.input(0)
    axis = int(ctx.attr("axis", 1))
    axis = axis + x.type.rank if axis < 0 else axis
    if not 0 <= axis <= x.type.rank:
        raise ctx.error(f"axis {axis} is out of range for {x.type}")
    return ctx.add("Reshape", [x], {"shape": (prod(x.shape[:axis]), prod(x.shape[axis:]))})


def _axes_arg(ctx: ImportContext, since_input: int):
    if ctx.opset >= since_input:
        axes = ctx.const(1)
        if ctx.input(1) is not None and axes is None:
            raise ctx.unsupported("axes computed at run time are not supported yet")
        return None if axes is None else [int(a) for a in axes.reshape(-1)]
    axes = ctx.attr("axes")
    return None if axes is None else [int(a) for a in axes]


@onnx_op("Squeeze")
def _squeeze(ctx: ImportContext, node):
    x = ctx.input(0)
    axes = _axes_arg(ctx, 13)
    rank = x.type.rank
    if axes is None:
        axes = [k for k, d in enumerate(x.shape) if d == 1]
    axes = {a % rank for a in axes}
    for a in axes:
        if x.shape[a] != 1:
            raise ctx.error(f"cannot squeeze axis {a} of {x.type}: its size is not 1")
    shape = tuple(d for k, d in enumerate(x.shape) if k not in axes)
    return ctx.add("Reshape", [x], {"shape": shape})


@onnx_op("Unsqueeze")
def _unsqueeze(ctx: ImportContext, node):
    x = ctx.input(0)
    axes = _axes_arg(ctx, 13)
    if axes is None:
        raise ctx.error("Unsqueeze needs axes")
    rank = x.type.rank + len(axes)
    axes = sorted({a % rank for a in axes})
    shape, it = [], iter(x.shape)
    for k in range(rank):
        shape.append(1 if k in axes else next(it))
    return ctx.add("Reshape", [x], {"shape": tuple(shape)})


@onnx_op("Transpose")
def _transpose(ctx: ImportContext, node):
    x = ctx.input(0)
    perm = ctx.attr("perm")
    perm = tuple(perm) if perm is not None else tuple(reversed(range(x.type.rank)))
    return ctx.add("Transpose", [x], {"perm": perm})


CONCAT_FAN_IN = 8  # each output element selects among at most this many inputs


@onnx_op("Concat")
def _concat(ctx: ImportContext, node):
    """A tree of Concats of at most CONCAT_FAN_IN inputs: the core Concat picks its source
    with a chain of selects, which must stay short however many inputs the node has."""
    xs = [v for v in ctx.inputs() if v is not None]
    attrs = {"axis": int(ctx.attr("axis", 1 if ctx.opset < 4 else 0))}
    while len(xs) > CONCAT_FAN_IN:
        xs = [group[0] if len(group) == 1 else ctx.add1("Concat", group, attrs)
              for group in (xs[k:k + CONCAT_FAN_IN] for k in range(0, len(xs), CONCAT_FAN_IN))]
    return ctx.add("Concat", xs, attrs)


@onnx_op("Slice")
def _slice(ctx: ImportContext, node):
    x = ctx.input(0)
    if ctx.opset < 10:
        starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
        axes, steps = ctx.attr("axes"), None
    else:
        starts = [int(v) for v in ctx.require_const(1, "starts").reshape(-1)]
        ends = [int(v) for v in ctx.require_const(2, "ends").reshape(-1)]
        axes = ctx.const(3)
        steps = ctx.const(4)
        if ctx.input(3) is not None and axes is None or ctx.input(4) is not None and steps is None:
            raise ctx.unsupported("axes/steps computed at run time are not supported yet")
        axes = None if axes is None else [int(v) for v in axes.reshape(-1)]
        steps = None if steps is None else [int(v) for v in steps.reshape(-1)]
    big = np.iinfo(np.int64).max // 2
    ends = [max(min(e, big), -big) for e in ends]
    starts = [max(min(s, big), -big) for s in starts]
    return ctx.add("Slice", [x], {"starts": tuple(starts), "ends": tuple(ends),
                                  "axes": None if axes is None else tuple(axes),
                                  "steps": None if steps is None else tuple(steps)})


# -- constants and shape queries -----------------------------------------------------------------
@onnx_op("Constant")
def _constant(ctx: ImportContext, node):
    for name, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                        ("value_int", np.int64), ("value_ints", np.int64)):
        v = ctx.attr(name)
        if v is not None:
            return [ctx.constant(np.array(v, dtype=dtype), node.output[0])]
    value = ctx.attr("value")
    if value is None:
        raise ctx.unsupported("only value, value_float(s) and value_int(s) are supported")
    return [ctx.constant(value, node.output[0])]


@onnx_op("ConstantOfShape")
def _constant_of_shape(ctx: ImportContext, node):
    shape = [int(d) for d in ctx.require_const(0, "shape").reshape(-1)]
    if any(d < 0 for d in shape):
        raise ctx.error(f"negative dimension in shape {shape}")
    value = ctx.attr("value")
    fill = np.zeros((), dtype=np.float32) if value is None else value.reshape(-1)[:1].reshape(())
    ctx.check_alloc(shape, fill.dtype.itemsize, "its output")
    return [ctx.constant(np.full(shape, fill, dtype=fill.dtype), node.output[0])]


@onnx_op("Shape")
def _shape(ctx: ImportContext, node):
    x = ctx.input(0)
    if not x.type.is_static:
        raise ctx.unsupported(f"Shape of a symbolic shape {x.type} is not supported yet")
    dims = np.array(x.shape, dtype=np.int64)
    start, end = ctx.attr("start", 0), ctx.attr("end", None)
    return [ctx.constant(dims[start:end], node.output[0])]


@onnx_op("Gather", "GatherElements")
def _gather(ctx: ImportContext, node):
    data, indices = ctx.input(0), ctx.input(1)
    axis = int(ctx.attr("axis", 0))
    # Not ctx.const(1): fed indices are data, checked at run time (Executable.check_indices);
    # specializing on their values would compile once per distinct index value.
    known = indices.const if indices is not None else None
    if known is not None and known.size and data.type.rank:
        n = data.shape[axis % data.type.rank]
        if isinstance(n, int) and (known.min() < -n or known.max() >= n):
            raise ctx.error(f"indices must lie in [{-n}, {n - 1}], got {known.min()} .. "
                            f"{known.max()}")
    return ctx.add(node.op_type, [data, indices], {"axis": axis})


__all__ = ["DType"]
