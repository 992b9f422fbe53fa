"""Importers for activation functions and elementwise math (core ops in ir/ops/activations.py).

HardSwish, Mish, Gelu and Celu are compositions of core ops and are decomposed here; fusion puts
the pieces back into one kernel.
"""
from __future__ import annotations

import math

import numpy as np

from onnxc.ir.dtypes import DType

from .importer import ImportContext, onnx_op

_PLAIN = ("Softplus", "Softsign", "Sign", "Erf", "Floor", "Ceil", "Round", "Sin", "Cos", "IsNaN",
          "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "BitwiseNot")

# ONNX op -> {attribute: default}; the attributes become the core op's (float) attributes.
_WITH_ATTRS = {
    "Elu": {"alpha": 1.0},
    "Selu": {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875},
    "HardSigmoid": {"alpha": 0.2, "beta": 0.5},
    "ThresholdedRelu": {"alpha": 1.0},
    "Shrink": {"bias": 0.0, "lambd": 0.5},
}


def _scalar(ctx: ImportContext, value: float, like):
    return ctx.constant(np.array(value, dtype=like.dtype.np))


@onnx_op(*_PLAIN)
def _plain(ctx: ImportContext, node):
    return ctx.add(node.op_type, [ctx.input(0)])


@onnx_op(*_WITH_ATTRS)
def _with_attrs(ctx: ImportContext, node):
    attrs = {k: float(ctx.attr(k, d)) for k, d in _WITH_ATTRS[node.op_type].items()}
    return ctx.add(node.op_type, [ctx.input(0)], attrs)


@onnx_op("PRelu")
def _prelu(ctx: ImportContext, node):
    x, slope = ctx.input(0), ctx.input(1)
    if ctx.opset < 7 and slope.type.rank == 1 and x.type.rank > 2 and slope.shape[0] > 1:
        # Before opset 7 a 1-D slope is per channel (axis 1).
        shape = (slope.shape[0],) + (1,) * (x.type.rank - 2)
        slope = ctx.add1("Reshape", [slope], {"shape": shape})
    return ctx.add("PRelu", [x, slope])


@onnx_op("IsInf")
def _is_inf(ctx: ImportContext, node):
    return ctx.add("IsInf", [ctx.input(0)], {
        "detect_negative": int(ctx.attr("detect_negative", 1)),
        "detect_positive": int(ctx.attr("detect_positive", 1))})


@onnx_op("Mod")
def _mod(ctx: ImportContext, node):
    a, b = ctx.input(0), ctx.input(1)
    fmod = int(ctx.attr("fmod", 0))
    if a.dtype != b.dtype:
        raise ctx.error(f"inputs must share one element type, got {a.type} and {b.type}")
    return ctx.add("Mod", [a, b], {"fmod": fmod})


@onnx_op("BitwiseAnd", "BitwiseOr", "BitwiseXor")
def _bitwise(ctx: ImportContext, node):
    """The core And/Or/Xor are bitwise on integers."""
    a, b = ctx.input(0), ctx.input(1)
    if a.dtype.is_float or a.dtype == DType.bool or a.dtype != b.dtype:
        raise ctx.error(f"inputs must be integers of one type, got {a.type} and {b.type}")
    return ctx.add(node.op_type[len("Bitwise"):], [a, b])


@onnx_op("BitShift")
def _bit_shift(ctx: ImportContext, node):
    x, y = ctx.input(0), ctx.input(1)
    if x.dtype.is_float or x.dtype == DType.bool or x.dtype != y.dtype:
        raise ctx.error(f"inputs must be integers of one type, got {x.type} and {y.type}")
    direction = ctx.attr("direction")
    if direction not in ("LEFT", "RIGHT"):
        raise ctx.error(f"direction must be LEFT or RIGHT, got {direction!r}")
    return ctx.add("BitShift", [x, y], {"left": int(direction == "LEFT")})


@onnx_op("Swish")
def _swish(ctx: ImportContext, node):
    """x * sigmoid(alpha * x)."""
    x = ctx.input(0)
    alpha = float(ctx.attr("alpha", 1.0))
    z = x if alpha == 1.0 else ctx.add1("Mul", [x, _scalar(ctx, alpha, x)])
    return [ctx.add1("Mul", [x, ctx.add1("Sigmoid", [z])])]


@onnx_op("HardSwish")
def _hard_swish(ctx: ImportContext, node):
    """x * HardSigmoid(x) with alpha 1/6, beta 1/2."""
    x = ctx.input(0)
    gate = ctx.add1("HardSigmoid", [x], {"alpha": 1.0 / 6.0, "beta": 0.5})
    return [ctx.add1("Mul", [x, gate])]


@onnx_op("Mish")
def _mish(ctx: ImportContext, node):
    """x * tanh(softplus(x))."""
    x = ctx.input(0)
    return [ctx.add1("Mul", [x, ctx.add1("Tanh", [ctx.add1("Softplus", [x])])])]


@onnx_op("Celu")
def _celu(ctx: ImportContext, node):
    """alpha * Elu(x / alpha) with Elu's alpha 1."""
    x = ctx.input(0)
    alpha = float(ctx.attr("alpha", 1.0))
    if alpha == 1.0:
        return ctx.add("Elu", [x], {"alpha": 1.0})
    y = ctx.add1("Elu", [ctx.add1("Div", [x, _scalar(ctx, alpha, x)])], {"alpha": 1.0})
    return [ctx.add1("Mul", [y, _scalar(ctx, alpha, x)])]


@onnx_op("Gelu")
def _gelu(ctx: ImportContext, node):
    """One core op (see ir/ops/activations.py) so it fuses into the MatMul before it."""
    approximate = ctx.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise ctx.error(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return ctx.add("Gelu", [ctx.input(0)], {"approximate": approximate})


@onnx_op("LayerNormalization")
def _layer_norm(ctx: ImportContext, node):
    """(x - mean) / sqrt(var + eps) * scale + bias over the axes from ``axis`` on; the
    statistics are computed in float32 at least (stash_type), as the spec asks."""
    x, scale, bias = ctx.input(0), ctx.input(1), ctx.input(2)
    rank = x.type.rank
    axis = int(ctx.attr("axis", -1))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < max(rank, 1):
        raise ctx.error(f"axis {ctx.attr('axis', -1)} is out of range for {x.type}")
    if not any(node.output[1:]) and x.dtype in (DType.float16, DType.float32, DType.float64):
        return ctx.add("LayerNormalization", [x, scale] + ([bias] if bias is not None else []),
                       {"axis": axis, "epsilon": float(ctx.attr("epsilon", 1e-5))})
    # Mean and inverse std asked for too (training graphs): the decomposition gives them.
    axes = {"axes": tuple(range(axis, rank)), "keepdims": 1}
    xs = x if x.dtype != DType.float16 else ctx.add1("Cast", [x], {"to": "float32"})
    eps = ctx.constant(np.array(ctx.attr("epsilon", 1e-5), dtype=xs.dtype.np))
    mean = ctx.add1("ReduceMean", [xs], axes)
    d = ctx.add1("Sub", [xs, mean])
    var = ctx.add1("ReduceMean", [ctx.add1("Mul", [d, d])], axes)
    inv_std = ctx.add1("Reciprocal", [ctx.add1("Sqrt", [ctx.add1("Add", [var, eps])])])
    y = ctx.add1("Mul", [d, inv_std])
    if y.dtype != x.dtype:
        y = ctx.add1("Cast", [y], {"to": x.dtype.value})
    y = ctx.add1("Mul", [y, scale])
    if bias is not None:
        y = ctx.add1("Add", [y, bias])
    return [y, mean, inv_std]


@onnx_op("BitCast")
def _bitcast(ctx: ImportContext, node):
    from .onnx_types import dtype_from_onnx

    to = dtype_from_onnx(ctx.attr("to"), "BitCast: ")
    return ctx.add("BitCast", [ctx.input(0)], {"to": to.value})


@onnx_op("Det")
def _det(ctx: ImportContext, node):
    x = ctx.input(0)
    from onnxc.ir.ops.linalg import MAX_DET_SIZE

    if x.shape[-1] > MAX_DET_SIZE and x.const is None:
        raise ctx.unsupported(f"Det of {x.shape[-1]} x {x.shape[-1]} matrices computed at run "
                              f"time is not supported (closed forms up to {MAX_DET_SIZE})")
    return ctx.add("Det", [x])
