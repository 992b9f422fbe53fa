"""Elementwise ops with numpy broadcasting: each is one scalar expression."""
from __future__ import annotations

from typing import Callable

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


def _cast_compute(ins, outs, attrs):
    x, out = ins[0], outs[0]
    return [stage(out.name, out.shape, lambda *v: cast(x.broadcast_to(v), out.dtype))]


register(OpDef("Cast", _cast_infer, _cast_compute, kind="elementwise",
               doc="attrs: to (a DType value name)"))


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
    if x.dtype.itemsize != to.itemsize or DType.float16 in (x.dtype, to):
        raise ModelError(f"BitCast needs element types of one size (not float16), got "
                         f"{x.dtype} to {to}")
    return [TensorType(to, x.shape)]


def _bitcast_compute(ins, outs, attrs):
    x, out = ins[0], outs[0]
    return [stage(out.name, out.shape, lambda *v: bitcast(x.broadcast_to(v), out.dtype))]


register(OpDef("BitCast", _bitcast_infer, _bitcast_compute, kind="elementwise",
               doc="attr to: the same bytes as another type of the same size"))
