"""Elementwise ops with numpy broadcasting: each is one scalar expression."""
from __future__ import annotations

from typing import Callable

import ml_dtypes

from ..dtypes import DType
from ..errors import ModelError
from ..kernel import Expr, bitcast, call, cast, const, maximum, minimum, select, stage
from ..types import TensorType
from .registry import OpDef, broadcast_shapes, register


def _same_dtype_infer(types, attrs, consts):
    present = [t for t in types if t is not None]
    dtypes = {t.dtype for t in present}
    if len(dtypes) != 1:
        raise ModelError(f"inputs must share one element type, got {sorted(map(str, dtypes))}")
    return [TensorType(present[0].dtype, broadcast_shapes(*(t.shape for t in present)))]


def _elementwise(name: str, fn: Callable[..., Expr], *, out_dtype: DType | None = None,
                 infer=None, doc: str = "") -> OpDef:
    def compute(ins, outs, attrs):
        out = outs[0]

        def body(*vars_):
            args = [x.broadcast_to(vars_) if x is not None else None for x in ins]
            return fn(*args, **attrs) if attrs else fn(*args)

        return [stage(out.name, out.shape, body)]

    def infer_fn(types, attrs, consts):
        (t,) = _same_dtype_infer(types, attrs, consts)
        return [TensorType(out_dtype, t.shape)] if out_dtype else [t]

    return register(OpDef(name, infer or infer_fn, compute, kind="elementwise", doc=doc))


def _zero(x: Expr) -> Expr:
    return const(0, x.dtype)


def _one(x: Expr) -> Expr:
    return const(1, x.dtype)


# Binary arithmetic ----------------------------------------------------------------------------
_elementwise("Add", lambda a, b: a + b)
_elementwise("Sub", lambda a, b: a - b)
_elementwise("Mul", lambda a, b: a * b)
_elementwise("Div", lambda a, b: a / b, doc="integer division truncates toward zero, as in C")
_elementwise("Max", maximum)
_elementwise("Min", minimum)
_elementwise("Pow", lambda a, b: call("pow", a, b))

# Activations -----------------------------------------------------------------------------------
# select(x < 0, 0, x) keeps NaN as NaN, as onnxruntime does.
_elementwise("Relu", lambda x: select(call("lt", x, _zero(x)), _zero(x), x))
_elementwise("LeakyRelu", lambda x, alpha=0.01: select(call("lt", x, _zero(x)),
                                                        x * const(alpha, x.dtype), x))
_elementwise("Sigmoid", lambda x: _one(x) / (_one(x) + call("exp", -x)))
_elementwise("Tanh", lambda x: call("tanh", x))
_elementwise("Exp", lambda x: call("exp", x))
_elementwise("Log", lambda x: call("log", x))
_elementwise("Sqrt", lambda x: call("sqrt", x))
_elementwise("Neg", lambda x: -x)
_elementwise("Abs", lambda x: call("abs", x))
_elementwise("Reciprocal", lambda x: _one(x) / x)
_elementwise("Identity", lambda x: x, doc="a copy; views of it are planned away")


def _clip(x, lo=None, hi=None):
    """Clip with optional bounds; NaN stays NaN."""
    if lo is not None:
        x = select(call("lt", x, lo), lo, x)
    if hi is not None:
        x = select(call("gt", x, hi), hi, x)
    return x


_elementwise("Clip", _clip, doc="inputs: x, optional min, optional max (scalars)")


def _cast_infer(types, attrs, consts):
    return [TensorType(DType(attrs["to"]), types[0].shape)]


_FLOAT8 = (DType.float8e4m3fn, DType.float8e4m3fnuz, DType.float8e5m2, DType.float8e5m2fnuz)


def _cast_compute(ins, outs, attrs):
    x, out = ins[0], outs[0]
    to = out.dtype
    saturate = bool(attrs.get("saturate", False))
    mode = attrs.get("round_mode")

    def body(*v):
        value = x.broadcast_to(v)
        if to in _FLOAT8 and saturate and value.dtype != DType.bool:
            return cast(_saturate(value, float(ml_dtypes.finfo(to.np).max)), to)
        if to == DType.float8e8m0 and mode is not None:
            return cast(_e8m0(value, mode, saturate), to)
        return cast(value, to)

    return [stage(out.name, out.shape, body)]


def _saturate(x: Expr, limit: float) -> Expr:
    """x clamped to [-limit, limit] in float32 (float64 for float64); NaN stays NaN."""
    wide = DType.float64 if x.dtype == DType.float64 else DType.float32
    x = cast(x, wide)
    hi, lo = const(limit, wide), const(-limit, wide)
    return select(call("gt", x, hi), hi, select(call("lt", x, lo), lo, x))


def _e8m0(x: Expr, mode: str, saturate: bool) -> Expr:
    """ONNX's float32 -> float8e8m0 rounding (numpy_helper.to_float8e8m0) on the exponent
    bits, as the float32 power of two it rounds to: cast to float8e8m0 is then exact."""
    i32 = DType.int32
    bits = bitcast(cast(x, DType.float32), i32)
    k = lambda v: const(v, i32)  # noqa: E731
    exp = call("and", call("shr", bits, k(23)), k(0xFF))
    frac = call("and", bits, k(0x7FFFFF))
    nonzero = lambda v: call("ne", v, k(0))  # noqa: E731
    if mode == "up":
        up = nonzero(frac)
    elif mode == "nearest":
        up = call("and", nonzero(call("and", frac, k(0x400000))),
                  call("or", nonzero(call("and", frac, k(0x3FFFFF))), call("gt", exp, k(0))))
    elif mode == "down":
        up = None
    else:
        raise ModelError(f"Cast round_mode must be up, down or nearest, got {mode!r}")
    if up is not None and saturate:
        up = call("and", up, call("ne", exp, k(0xFE)))
    code = exp if up is None else exp + select(up, k(1), k(0))
    f32 = DType.float32
    power = bitcast(call("shl", code, k(23)), f32)
    power = select(call("eq", code, k(0)), const(2.0 ** -127, f32), power)
    return select(call("eq", exp, k(0xFF)) if up is None else call("ge", code, k(0xFF)),
                  const(float("nan"), f32), power)


register(OpDef("Cast", _cast_infer, _cast_compute, kind="elementwise",
               doc="attrs: to (a DType value name); saturate (float8: clamp to the largest "
                   "finite value first); round_mode (float8e8m0: up, down or nearest, "
                   "with saturate keeping 2**127 from rounding to NaN)"))


# Comparisons and logic ---------------------------------------------------------------------------
def _compare_infer(types, attrs, consts):
    (t,) = _same_dtype_infer(types, attrs, consts)
    return [TensorType(DType.bool, t.shape)]


for _name, _cmp in (("Less", "lt"), ("LessOrEqual", "le"), ("Greater", "gt"),
                    ("GreaterOrEqual", "ge"), ("Equal", "eq")):
    _elementwise(_name, lambda a, b, _c=_cmp: call(_c, a, b), infer=_compare_infer)

_elementwise("And", lambda a, b: call("and", a, b))
_elementwise("Or", lambda a, b: call("or", a, b))
_elementwise("Xor", lambda a, b: call("xor", a, b))
_elementwise("Not", lambda a: call("not", a))


def _where_infer(types, attrs, consts):
    cond, a, b = types
    if cond.dtype != DType.bool or a.dtype != b.dtype:
        raise ModelError(f"Where needs a bool condition and two inputs of one type, got "
                         f"{cond}, {a}, {b}")
    return [TensorType(a.dtype, broadcast_shapes(cond.shape, a.shape, b.shape))]


_elementwise("Where", select, infer=_where_infer)


def _bitcast_infer(types, attrs, consts):
    x, to = types[0], DType(attrs["to"])
    if x.dtype.itemsize != to.itemsize:
        raise ModelError(f"BitCast needs element types of one size, got {x.dtype} to {to}")
    return [TensorType(to, x.shape)]


def _bitcast_compute(ins, outs, attrs):
    x, out = ins[0], outs[0]
    return [stage(out.name, out.shape, lambda *v: bitcast(x.broadcast_to(v), out.dtype))]


register(OpDef("BitCast", _bitcast_infer, _bitcast_compute, kind="elementwise",
               doc="attr to: the same bytes as another type of the same size"))
