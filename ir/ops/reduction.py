"""Reductions over axes, and Softmax / LogSoftmax (three stages: max, sum of exp, normalize)."""
from __future__ import annotations

from ..errors import ModelError
from ..kernel import Ix, Var, call, const, reduce, stage
from ..types import TensorType
from .registry import OpDef, normalize_axis, register


def _reduce_axes(rank: int, attrs) -> list[int]:
    axes = attrs.get("axes")
    if axes is None or len(axes) == 0:
        return [] if attrs.get("noop_with_empty_axes") else list(range(rank))
    return sorted({normalize_axis(a, rank) for a in axes})


def _reduce_infer(types, attrs, consts):
    x = types[0]
    axes = _reduce_axes(x.rank, attrs)
    keep = attrs.get("keepdims", 1)
    shape = []
    for k, d in enumerate(x.shape):
        if k in axes:
            if keep:
                shape.append(1)
        else:
            shape.append(d)
    return [TensorType(x.dtype, tuple(shape))]


def _make_reduce(name: str, kind: str, mean: bool = False) -> None:
    def compute(ins, outs, attrs):
        x, out = ins[0], outs[0]
        axes = _reduce_axes(len(x.shape), attrs)
        keep = attrs.get("keepdims", 1)
        extents = [x.shape[a] for a in axes]
        count = 1
        for e in extents:
            count *= e

        def body(*v):
            kept = iter(v)
            outer = []
            for k in range(len(x.shape)):
                if k in axes:
                    if keep:
                        next(kept)
                    outer.append(None)
                else:
                    outer.append(next(kept))

            def term(*r):
                rr = iter(r)
                return x[tuple(next(rr) if o is None else o for o in outer)]

            total = reduce(kind, extents, term)
            return total / const(count, x.dtype) if mean else total

        return [stage(out.name, out.shape, body)]

    register(OpDef(name, _reduce_infer, compute, kind="reduction",
                   doc="attrs axes (list; empty = all unless noop_with_empty_axes), keepdims"))


_make_reduce("ReduceSum", "sum")
_make_reduce("ReduceMean", "sum", mean=True)
_make_reduce("ReduceMax", "max")
_make_reduce("ReduceMin", "min")
_make_reduce("ReduceProd", "prod")


def _softmax_infer(types, attrs, consts):
    x = types[0]
    normalize_axis(attrs.get("axis", -1), x.rank)
    if not x.dtype.is_float:
        raise ModelError(f"Softmax needs a floating-point input, got {x}")
    return [x]


def _softmax_stages(ins, outs, attrs, log: bool):
    x, out = ins[0], outs[0]
    axis = normalize_axis(attrs.get("axis", -1), len(x.shape))
    n = x.shape[axis]
    kept_shape = tuple(1 if k == axis else d for k, d in enumerate(x.shape))
    max_name, sum_name = f"{out.name}__max", f"{out.name}__sum"

    def along(v, r):
        return tuple(r if k == axis else v[k] for k in range(len(v)))

    def at_kept(v):
        return tuple(Ix.lift(0) if k == axis else v[k] for k in range(len(v)))

    from ..kernel import Load

    def m_load(v):
        return Load(max_name, at_kept(v), x.dtype)

    s_max = stage(max_name, kept_shape, lambda *v: reduce("max", [n], lambda r: x[along(v, r)]))
    s_sum = stage(sum_name, kept_shape, lambda *v: reduce(
        "sum", [n], lambda r: call("exp", x[along(v, r)] - m_load(v))))

    def final(*v):
        shifted = x[tuple(v)] - m_load(v)
        s = Load(sum_name, at_kept(v), x.dtype)
        return shifted - call("log", s) if log else call("exp", shifted) / s

    return [s_max, s_sum, stage(out.name, out.shape, final)]


register(OpDef("Softmax", _softmax_infer, lambda i, o, a: _softmax_stages(i, o, a, False),
               kind="opaque", doc="attr axis: softmax along one axis (opset-13 meaning)"))
register(OpDef("LogSoftmax", _softmax_infer, lambda i, o, a: _softmax_stages(i, o, a, True),
               kind="opaque", doc="attr axis: log-softmax along one axis (opset-13 meaning)"))

__all__ = ["Var"]
