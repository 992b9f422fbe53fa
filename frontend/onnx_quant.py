"""Quantization ops as compositions of core ops, with onnx's reference arithmetic:
QuantizeLinear (round half to even, saturate), DequantizeLinear (float32 math), per-tensor,
per-axis and blocked parameters, DynamicQuantizeLinear, MatMulInteger, ConvInteger,
QLinearMatMul and QLinearConv (int32 accumulation, float64 requantization as numpy does it).
Quantized types: 8/16-bit integers, int4/uint4 and int2/uint2 (round, add the zero point,
clamp), float8 (a Cast, saturating unless saturate=0) and float4e2m1 (a Cast after adding the
zero point, as onnx's reference does); float8 and float4 ignore the zero point, which must be 0."""
from __future__ import annotations

import numpy as np

from onnxc.ir.dtypes import DType

from .importer import ImportContext, onnx_op
from .onnx_types import dtype_from_onnx

_RANGES = {DType.uint8: (0, 255), DType.int8: (-128, 127), DType.uint16: (0, 65535),
           DType.int16: (-32768, 32767), DType.uint4: (0, 15), DType.int4: (-8, 7),
           DType.uint2: (0, 3), DType.int2: (-2, 1)}
_FLOAT8 = (DType.float8e4m3fn, DType.float8e4m3fnuz, DType.float8e5m2, DType.float8e5m2fnuz)


def _scalar(ctx: ImportContext, value, dtype: DType):
    return ctx.constant(np.array(value, dtype=dtype.np))


def _cast(ctx: ImportContext, v, dtype: DType):
    return v if v.dtype == dtype else ctx.add1("Cast", [v], {"to": dtype.value})


def spread(ctx: ImportContext, p, shape, axis: int, block: int):
    """A scale or zero point broadcast against a tensor of ``shape`` (onnx's reshape_input):
    scalar, one per index of ``axis``, or one per block of ``block`` indices along it."""
    if p.type.rank == 0:
        return p
    if p.type.numel() == 1:
        return ctx.add1("Reshape", [p], {"shape": ()})
    rank = len(shape)
    axis = axis % rank
    if not block:
        if p.type.rank != 1:
            raise ctx.error(f"a per-axis scale or zero point must be 1-D, got {p.type}")
        dims = [1] * rank
        dims[axis] = p.shape[0]
        return ctx.add1("Reshape", [p], {"shape": tuple(dims)})
    index = ctx.constant(np.arange(shape[axis], dtype=np.int64) // block, "block_index")
    return ctx.add1("Gather", [p, index], {"axis": axis})


def requantize(ctx: ImportContext, y, zp, target: DType):
    """Cast(Clip(Round(y) + zp)) for a float y, saturating to the target type."""
    if target not in _RANGES:
        raise ctx.unsupported(f"quantized type {target} is not supported")
    y = ctx.add1("Round", [y])
    if y.dtype.is_narrow_float:  # float16, bfloat16: add and clamp in float32
        y = _cast(ctx, y, DType.float32)
    if zp is not None:
        y = ctx.add1("Add", [y, _cast(ctx, zp, y.dtype)])
    lo, hi = _RANGES[target]
    y = ctx.add1("Clip", [y, _scalar(ctx, lo, y.dtype), _scalar(ctx, hi, y.dtype)])
    return _cast(ctx, y, target)


def _out_type(ctx: ImportContext, zp) -> DType:
    given = ctx.attr("output_dtype")
    if zp is not None:
        return zp.dtype
    return dtype_from_onnx(given, "output_dtype: ") if given else DType.uint8


@onnx_op("QuantizeLinear")
def _quantize(ctx: ImportContext, node):
    x, scale, zp = ctx.input(0), ctx.input(1), ctx.input(2)
    axis, block = int(ctx.attr("axis", 1)), int(ctx.attr("block_size", 0))
    target = _out_type(ctx, zp)
    precision = ctx.attr("precision")
    scale = spread(ctx, scale, x.shape, axis, block)
    if precision:
        p = dtype_from_onnx(precision, "precision: ")
        x, scale = _cast(ctx, x, p), _cast(ctx, scale, p)
    elif scale.dtype != x.dtype:
        scale = _cast(ctx, scale, x.dtype)
    zp = spread(ctx, zp, x.shape, axis, block) if zp is not None else None
    y = ctx.add1("Div", [x, scale])
    if target in _FLOAT8:
        return [ctx.add1("Cast", [y], {"to": target.value,
                                       "saturate": bool(ctx.attr("saturate", 1))})]
    if target == DType.float4e2m1:
        if zp is not None:
            y = ctx.add1("Add", [y, _cast(ctx, zp, y.dtype)])
        return [_cast(ctx, y, target)]
    return [requantize(ctx, y, zp, target)]


@onnx_op("DequantizeLinear")
def _dequantize(ctx: ImportContext, node):
    x, scale, zp = ctx.input(0), ctx.input(1), ctx.input(2)
    if x.dtype.is_float and x.dtype not in _FLOAT8 + (DType.float4e2m1,):
        raise ctx.unsupported(f"dequantizing {x.dtype} is not supported")
    if x.dtype.is_float:
        zp = None  # float8/float4: the zero point must be 0 and is not read
    axis, block = int(ctx.attr("axis", 1)), int(ctx.attr("block_size", 0))
    out = ctx.attr("output_dtype")
    out = dtype_from_onnx(out, "output_dtype: ") if out else scale.dtype
    d = _cast(ctx, x, DType.float32)
    if zp is not None:
        d = ctx.add1("Sub", [d, _cast(ctx, spread(ctx, zp, x.shape, axis, block),
                                      DType.float32)])
    scale = _cast(ctx, spread(ctx, scale, x.shape, axis, block), DType.float32)
    return [_cast(ctx, ctx.add1("Mul", [d, scale]), out)]


@onnx_op("DynamicQuantizeLinear")
def _dynamic_quantize(ctx: ImportContext, node):
    """uint8 with scale (max(0, max x) - min(0, min x)) / 255 and a rounded zero point."""
    x = ctx.input(0)
    f32 = DType.float32
    x32 = _cast(ctx, x, f32)
    all_axes = {"axes": tuple(range(x.type.rank)), "keepdims": 0}
    hi = ctx.add1("Max", [ctx.add1("ReduceMax", [x32], all_axes), _scalar(ctx, 0, f32)])
    lo = ctx.add1("Min", [ctx.add1("ReduceMin", [x32], all_axes), _scalar(ctx, 0, f32)])
    span = ctx.add1("Sub", [hi, lo])
    span = ctx.add1("Where", [ctx.add1("Equal", [hi, lo]), _scalar(ctx, 1, f32), span])
    scale = ctx.add1("Div", [span, _scalar(ctx, 255, f32)])
    zp = ctx.add1("Sub", [_scalar(ctx, 0, f32), ctx.add1("Div", [lo, scale])])
    zp = ctx.add1("Round", [ctx.add1("Clip", [zp, _scalar(ctx, 0, f32),
                                               _scalar(ctx, 255, f32)])])
    y = requantize(ctx, ctx.add1("Div", [x32, scale]), zp, DType.uint8)
    return [y, _cast(ctx, scale, x.dtype), _cast(ctx, zp, DType.uint8)]


def _centered(ctx: ImportContext, v, zp, zp_shape=None):
    """v - zero point, in int32."""
    v = _cast(ctx, v, DType.int32)
    if zp is None:
        return v
    if zp_shape is not None and zp.type.numel() > 1:
        zp = ctx.add1("Reshape", [zp], {"shape": zp_shape})
    elif zp.type.rank:
        zp = ctx.add1("Reshape", [zp], {"shape": ()})
    return ctx.add1("Sub", [v, _cast(ctx, zp, DType.int32)])


def _int_matmul(ctx: ImportContext, a, azp, b, bzp):
    if a.type.rank < 2 or b.type.rank < 2:
        raise ctx.unsupported("1-D operands of integer matrix products are not supported yet")
    a = _centered(ctx, a, azp, (a.shape[-2], 1))  # a per-row zero point: one per row of A
    b = _centered(ctx, b, bzp, (b.shape[-1],))
    return ctx.add1("MatMul", [a, b])


@onnx_op("MatMulInteger")
def _matmul_integer(ctx: ImportContext, node):
    return [_int_matmul(ctx, ctx.input(0), ctx.input(2), ctx.input(1), ctx.input(3))]


def _int_conv(ctx: ImportContext, x, xzp, w, wzp, bias):
    from .onnx_ops import _explicit_pads

    x = _centered(ctx, x, xzp)
    w = _centered(ctx, w, wzp, (w.shape[0],) + (1,) * (w.type.rank - 1))
    nd = x.type.rank - 2
    kernel = list(w.shape[2:])
    strides = list(ctx.attr("strides", [1] * nd))
    dilations = list(ctx.attr("dilations", [1] * nd))
    pads = _explicit_pads(ctx, x.shape[2:], kernel, strides, dilations)
    attrs = {"group": int(ctx.attr("group", 1)), "strides": tuple(strides),
             "dilations": tuple(dilations), "pads": tuple(pads)}
    return ctx.add1("Conv", [x, w] + ([bias] if bias is not None else []), attrs)


@onnx_op("ConvInteger")
def _conv_integer(ctx: ImportContext, node):
    return [_int_conv(ctx, ctx.input(0), ctx.input(2), ctx.input(1), ctx.input(3), None)]


def _requantize64(ctx: ImportContext, acc, multiplier, zp, target: DType):
    """acc (int32) * multiplier (float32 math, then float64 as numpy promotes) + zp."""
    f64 = DType.float64
    y = ctx.add1("Mul", [_cast(ctx, acc, f64), _cast(ctx, multiplier, f64)])
    return requantize(ctx, y, zp, target)


@onnx_op("QLinearMatMul")
def _qlinear_matmul(ctx: ImportContext, node):
    a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp = (ctx.input(k) for k in range(8))
    acc = _int_matmul(ctx, a, a_zp, b, b_zp)
    mult = ctx.add1("Div", [ctx.add1("Mul", [a_s, b_s]), _cast(ctx, y_s, a_s.dtype)])
    mult = spread(ctx, mult, acc.shape, -1, 0) if mult.type.rank else mult
    return [_requantize64(ctx, acc, mult, y_zp, y_zp.dtype if y_zp is not None else a.dtype)]


@onnx_op("QLinearConv")
def _qlinear_conv(ctx: ImportContext, node):
    x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp, bias = (ctx.input(k) for k in range(9))
    acc = _int_conv(ctx, x, x_zp, w, w_zp, bias)
    mult = ctx.add1("Div", [ctx.add1("Mul", [x_s, w_s]), _cast(ctx, y_s, x_s.dtype)])
    mult = spread(ctx, mult, acc.shape, 1, 0)
    return [_requantize64(ctx, acc, mult, y_zp, y_zp.dtype if y_zp is not None else x.dtype)]
