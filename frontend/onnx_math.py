"""Importers for activation functions and elementwise math (core ops in ir/ops/activations.py).

HardSwish, Mish, Gelu and Celu are compositions of core ops and are decomposed here; fusion puts
the pieces back into one kernel.
"""
from __future__ import annotations

import math

import numpy as np

from .importer import ImportContext, onnx_op

_PLAIN = ("Softplus", "Softsign", "Sign", "Erf", "Floor", "Ceil", "Round", "Sin", "Cos", "IsNaN")

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
    """0.5 x (1 + erf(x / sqrt 2)), or with approximate="tanh"
    0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    x = ctx.input(0)
    approximate = ctx.attr("approximate", "none")
    if approximate == "none":
        inner = ctx.add1("Erf", [ctx.add1("Mul", [x, _scalar(ctx, 1 / math.sqrt(2), x)])])
    elif approximate == "tanh":
        cube = ctx.add1("Mul", [ctx.add1("Mul", [x, x]), x])
        poly = ctx.add1("Add", [x, ctx.add1("Mul", [cube, _scalar(ctx, 0.044715, x)])])
        inner = ctx.add1("Tanh", [ctx.add1("Mul", [poly, _scalar(ctx, math.sqrt(2 / math.pi),
                                                                   x)])])
    else:
        raise ctx.error(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    half_x = ctx.add1("Mul", [x, _scalar(ctx, 0.5, x)])
    return [ctx.add1("Mul", [half_x, ctx.add1("Add", [inner, _scalar(ctx, 1.0, x)])])]
