"""Activation functions and elementwise math: each is one scalar expression.

Compositions of these (HardSwish, Mish, Celu) are decomposed by the frontend. Branches
are written as ``select`` on a comparison that is false for NaN, so NaN inputs stay NaN, as in
onnxruntime.
"""
from __future__ import annotations

import math

from ..dtypes import DType
from ..kernel import Expr, call, const, maximum, select
from .elementwise import _elementwise, _one, _zero


def _k(value, like: Expr) -> Expr:
    return const(value, like.dtype)


def _lt(a: Expr, b: Expr) -> Expr:
    return call("lt", a, b)


def _gt(a: Expr, b: Expr) -> Expr:
    return call("gt", a, b)


def _softplus(x: Expr) -> Expr:
    """log(1 + exp(x)), as max(x, 0) + log(1 + exp(-|x|)) so large x does not overflow."""
    return maximum(x, _zero(x)) + call("log", _one(x) + call("exp", -call("abs", x)))


def _hard_sigmoid(x: Expr, alpha: float = 0.2, beta: float = 0.5) -> Expr:
    y = x * _k(alpha, x) + _k(beta, x)
    return select(_lt(y, _zero(x)), _zero(x), select(_gt(y, _one(x)), _one(x), y))


def _shrink(x: Expr, bias: float = 0.0, lambd: float = 0.5) -> Expr:
    return select(_lt(x, _k(-lambd, x)), x + _k(bias, x),
                  select(_gt(x, _k(lambd, x)), x - _k(bias, x), _zero(x)))


def _sign(x: Expr) -> Expr:
    """1, -1, or x itself (0, -0 or NaN)."""
    if x.dtype.is_unsigned_int or x.dtype == DType.bool:
        return select(_gt(x, _zero(x)), _one(x), x)
    return select(_gt(x, _zero(x)), _one(x), select(_lt(x, _zero(x)), _k(-1, x), x))


def _is_inf(x: Expr, detect_negative: int = 1, detect_positive: int = 1) -> Expr:
    pos, neg = call("eq", x, _k(math.inf, x)), call("eq", x, _k(-math.inf, x))
    if detect_negative and detect_positive:
        return call("or", pos, neg)
    if detect_positive:
        return pos
    return neg if detect_negative else call("ne", _zero(x), _zero(x))


def _mod(a: Expr, b: Expr, fmod: int = 0) -> Expr:
    """fmod=1: C's remainder (sign of a); fmod=0: Python's (sign of b, -0.0 for zero over b < 0)."""
    r = call("mod", a, b)
    if fmod or a.dtype.is_unsigned_int:
        return r
    zero = _zero(a)
    nonzero = call("ne", r, zero)
    fixed = select(call("xor", _lt(r, zero), _lt(b, zero)), r + b, r)
    if a.dtype.is_float:
        return select(nonzero, fixed, select(_lt(b, zero), _k(-0.0, a), zero))
    return select(nonzero, fixed, r)


_elementwise("PRelu", lambda x, slope: select(_lt(x, _zero(x)), x * slope, x),
             doc="inputs: x, slope (broadcast to x)")
_elementwise("Elu", lambda x, alpha=1.0: select(_lt(x, _zero(x)),
                                                _k(alpha, x) * (call("exp", x) - _one(x)), x))
_elementwise("Selu", lambda x, alpha=1.6732632, gamma=1.050701: select(
    call("le", x, _zero(x)), _k(gamma, x) * (_k(alpha, x) * call("exp", x) - _k(alpha, x)),
    _k(gamma, x) * x))
_elementwise("Softplus", _softplus)
_elementwise("Softsign", lambda x: x / (_one(x) + call("abs", x)))
_elementwise("HardSigmoid", _hard_sigmoid, doc="max(0, min(1, alpha * x + beta))")
_elementwise("ThresholdedRelu", lambda x, alpha=1.0: select(call("le", x, _k(alpha, x)),
                                                            _zero(x), x))
_elementwise("Shrink", _shrink)
_elementwise("Sign", _sign)
_elementwise("Erf", lambda x: call("erf", x))


def _gelu(x: Expr, approximate: str = "none") -> Expr:
    """0.5 x (1 + erf(x / sqrt 2)), or 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).

    One op rather than its decomposition: x has one use, so Gelu fuses into the MatMul or
    Conv before it (the decomposition reads x twice, which stops fusion)."""
    if approximate == "tanh":
        inner = call("tanh", (x + x * x * x * _k(0.044715, x)) * _k(math.sqrt(2 / math.pi), x))
    else:
        inner = call("erf", x * _k(1 / math.sqrt(2), x))
    return _k(0.5, x) * x * (_one(x) + inner)


_elementwise("Gelu", _gelu, doc="attr approximate: none | tanh")
_elementwise("Floor", lambda x: call("floor", x))
_elementwise("Ceil", lambda x: call("ceil", x))
_elementwise("Round", lambda x: call("round", x), doc="halves round to even")
_elementwise("Sin", lambda x: call("sin", x))
_elementwise("Cos", lambda x: call("cos", x))
_elementwise("IsNaN", lambda x: call("ne", x, x), out_dtype=DType.bool)
_elementwise("IsInf", _is_inf, out_dtype=DType.bool)
_elementwise("Mod", _mod, doc="attr fmod: 1 for C's remainder, 0 for Python's")
for _name in ("Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh"):
    _elementwise(_name, lambda x, _f=_name.lower(): call(_f, x))


def _bitwise_not(x: Expr) -> Expr:
    """x xor all-ones (for unsigned types all-ones is the type's maximum)."""
    ones = int(x.dtype.np.type(-1).item()) if x.dtype.is_signed_int else \
        int((1 << (8 * x.dtype.itemsize)) - 1)
    return call("xor", x, _k(ones, x))


_elementwise("BitwiseNot", _bitwise_not, doc="integers only; And/Or/Xor are bitwise on integers")


def _bit_shift(x: Expr, y: Expr, left: int = 1) -> Expr:
    """Shift amounts outside [0, width) give 0, or -1 for a right shift of a negative value."""
    width = 8 * x.dtype.itemsize
    inside = call("lt", y, _k(width, y))
    if x.dtype.is_signed_int:
        inside = call("and", inside, call("ge", y, _zero(y)))
    shifted = call("shl" if left else "shr", x, select(inside, y, _zero(y)))
    if left or not x.dtype.is_signed_int:
        outside = _zero(x)
    else:
        outside = select(_lt(x, _zero(x)), _k(-1, x), _zero(x))
    return select(inside, shifted, outside)


_elementwise("BitShift", _bit_shift, doc="attr left (1: <<, 0: >>); integers of one type")
