"""LayerNormalization as one kernel: three stages (mean, variance, normalize) per row.

Decomposed into ReduceMean/Sub/Mul/... it takes five kernels and three passes over memory
more; as one op its statistics stay in small temporaries. Statistics are computed in float32
at least (ONNX's stash_type); the result is cast back to the input's type.
"""
from __future__ import annotations

from ..dtypes import DType
from ..errors import ModelError
from ..kernel import Ix, Load, call, cast, const, reduce, stage
from ..types import TensorType
from .registry import OpDef, normalize_axis, register


def _infer(types, attrs, consts):
    x, scale = types[0], types[1]
    if not x.dtype.is_float:
        raise ModelError(f"LayerNormalization needs a floating-point input, got {x}")
    normalize_axis(attrs.get("axis", -1), x.rank)
    for t in types[1:]:
        if t is not None and t.dtype != x.dtype:
            raise ModelError(f"scale and bias must have the input's type {x.dtype}, got {t}")
    return [x]


def _compute(ins, outs, attrs):
    x, scale, bias = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    out = outs[0]
    rank = len(x.shape)
    axis = normalize_axis(attrs.get("axis", -1), rank)
    extents = x.shape[axis:]
    n = 1
    for d in extents:
        n *= d
    acc = DType.float32 if x.dtype in (DType.float16, DType.float32) else x.dtype
    kept = tuple(x.shape[:axis]) + (1,) * (rank - axis)
    mean_name, var_name = f"{out.name}__mean", f"{out.name}__var"

    def row(v, r):
        return tuple(v[:axis]) + tuple(r)

    def at_row(v):
        return tuple(v[:axis]) + (Ix.lift(0),) * (rank - axis)

    def xs(index):
        return cast(x[index], acc)

    inv_n = const(1.0 / max(n, 1), acc)
    s_mean = stage(mean_name, kept, lambda *v: reduce(
        "sum", extents, lambda *r: xs(row(v, r))) * inv_n)

    def mean(v):
        return Load(mean_name, at_row(v), acc)

    def centered(index, v):
        return xs(index) - mean(v)

    s_var = stage(var_name, kept, lambda *v: reduce(
        "sum", extents, lambda *r: centered(row(v, r), v) * centered(row(v, r), v)) * inv_n)

    def final(*v):
        inv_std = const(1.0, acc) / call("sqrt", Load(var_name, at_row(v), acc) +
                                         const(float(attrs.get("epsilon", 1e-5)), acc))
        y = cast(centered(tuple(v), v) * inv_std, x.dtype)
        y = y * scale.broadcast_to(v)
        return y + bias.broadcast_to(v) if bias is not None else y

    return [s_mean, s_var, stage(out.name, out.shape, final)]


register(OpDef("LayerNormalization", _infer, _compute, kind="opaque",
               doc="attrs axis, epsilon; inputs x, scale, bias (optional)"))
