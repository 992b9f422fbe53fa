"""Ops that compute or follow indices: ArgMax/ArgMin, TopK, CumSum, OneHot, GatherND and the
scatters.

The kernel IR only gathers (each output element reads what it needs), so the scatters are
written in gather form: an output element finds the update that targets it with a reduction
over the updates (the last one wins, as in onnx's reference), which costs
O(output size x updates). TopK ranks every element against the others along the axis
(O(n^2) per row) and picks the elements of rank 0..k-1; CumSum sums a masked row (O(n^2)).
These are exact but meant for the small axes models use them on.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from ..dtypes import DType
from ..errors import ModelError
from ..kernel import (IndexValue, Ix, Load, call, cast, const, ix_load, ix_max, ix_min, reduce,
                      select, stage)
from ..types import TensorType
from .registry import OpDef, normalize_axis, register

I64 = DType.int64


def _iv(ix) -> IndexValue:
    return IndexValue(Ix.lift(ix))


def _along(v, axis: int, r):
    """The index tuple ``v`` with position ``axis`` replaced by ``r``."""
    return tuple(r if k == axis else i for k, i in enumerate(v))


def _reduced_shape(shape, axis: int, keep: bool):
    return tuple(1 if k == axis else d for k, d in enumerate(shape) if keep or k != axis)


def _full_index(v, axis: int, keep: bool):
    """Output vars of a reduction over ``axis`` -> input index with a hole (None) at axis."""
    v = list(v)
    if keep:
        v[axis] = None
    else:
        v.insert(axis, None)
    return v


def _not_nan(x):
    return call("eq", x, x)


# -- ArgMax / ArgMin ------------------------------------------------------------------------------
def _arg_infer(types, attrs, consts):
    x = types[0]
    axis = normalize_axis(attrs.get("axis", 0), x.rank)
    return [TensorType(I64, _reduced_shape(x.shape, axis, bool(attrs.get("keepdims", 1))))]


def _arg_compute(kind: str):
    def compute(ins, outs, attrs):
        x, out = ins[0], outs[0]
        axis = normalize_axis(attrs.get("axis", 0), len(x.shape))
        keep, last = bool(attrs.get("keepdims", 1)), bool(attrs.get("select_last_index", 0))
        n = x.shape[axis]
        best = f"{out.name}__best"

        def at(v, r):
            return tuple(r if i is None else i for i in _full_index(v, axis, keep))

        s_best = stage(best, out.shape, lambda *v: reduce(kind, [n], lambda r: x[at(v, r)]))

        def pick(*v):
            def term(r):
                hit = call("eq", x[at(v, r)], Load(best, tuple(v), x.dtype))
                if x.dtype.is_float:  # a NaN wins: the first (or last) NaN
                    hit = call("or", hit, call("ne", x[at(v, r)], x[at(v, r)]))
                return select(hit, _iv(r), const(-1 if last else n, I64))

            return reduce("max" if last else "min", [n], term)

        return [s_best, stage(out.name, out.shape, pick)]

    return compute


def _arg_reference(fn):
    def reference(arrays, attrs):
        x = arrays[0]
        axis = normalize_axis(attrs.get("axis", 0), x.ndim)
        if attrs.get("select_last_index", 0):
            y = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
        else:
            y = fn(x, axis=axis)
        y = y.astype(np.int64)
        return [np.expand_dims(y, axis) if attrs.get("keepdims", 1) else y]

    return reference


register(OpDef("ArgMax", _arg_infer, _arg_compute("max"), _arg_reference(np.argmax),
               kind="opaque", doc="attrs axis, keepdims, select_last_index"))
register(OpDef("ArgMin", _arg_infer, _arg_compute("min"), _arg_reference(np.argmin),
               kind="opaque", doc="attrs axis, keepdims, select_last_index"))


# -- TopK (constant k) ---------------------------------------------------------------------------
def _topk_infer(types, attrs, consts):
    x = types[0]
    axis = normalize_axis(attrs.get("axis", -1), x.rank)
    k = int(attrs["k"])
    if not 0 <= k <= x.shape[axis]:
        raise ModelError(f"TopK k={k} is out of range for axis {axis} of {x}")
    shape = _along(x.shape, axis, k)
    return [TensorType(x.dtype, shape), TensorType(I64, shape)]


def _topk_compute(ins, outs, attrs):
    """rank[r] = how many elements come before x[r] (ties: the lower index first); output
    position j holds the element of rank j. NaN inputs have no defined order here."""
    x, values, indices = ins[0], outs[0], outs[1]
    axis = normalize_axis(attrs.get("axis", -1), len(x.shape))
    n, largest = x.shape[axis], bool(attrs.get("largest", 1))
    rank = f"{indices.name}__rank"
    better = "gt" if largest else "lt"

    def rank_body(*v):
        def term(s):
            a, b = x[_along(v, axis, s)], x[v]
            tie = call("and", call("eq", a, b), call("lt", _iv(s), _iv(v[axis])))
            return cast(call("or", call(better, a, b), tie), I64)

        return reduce("sum", [n], term)

    def index_body(*v):
        return reduce("max", [n], lambda r: select(
            call("eq", Load(rank, _along(v, axis, r), I64), _iv(v[axis])), _iv(r),
            const(0, I64)))

    def value_body(*v):
        j = ix_min(ix_max(ix_load(Load(indices.name, tuple(v), I64)), 0), n - 1)
        return x[_along(v, axis, j)]

    return [stage(rank, x.shape, rank_body), stage(indices.name, indices.shape, index_body),
            stage(values.name, values.shape, value_body)]


def _topk_reference(arrays, attrs):
    x = arrays[0]
    axis = normalize_axis(attrs.get("axis", -1), x.ndim)
    k = int(attrs["k"])
    order = np.argsort(-x if attrs.get("largest", 1) else x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis).astype(np.int64)
    return [np.take_along_axis(x, idx, axis=axis), idx]


register(OpDef("TopK", _topk_infer, _topk_compute, _topk_reference, kind="opaque",
               doc="attrs k (constant), axis, largest; outputs values, indices (sorted)"))


# -- CumSum / CumProd ----------------------------------------------------------------------------
def _cumsum_infer(types, attrs, consts):
    normalize_axis(attrs["axis"], types[0].rank)
    return [types[0]]


def _cumulative(kind: str):
    def compute(ins, outs, attrs):
        x, out = ins[0], outs[0]
        axis = normalize_axis(attrs["axis"], len(x.shape))
        exclusive, reverse = bool(attrs.get("exclusive", 0)), bool(attrs.get("reverse", 0))
        cmp = {(0, 0): "le", (1, 0): "lt", (0, 1): "ge", (1, 1): "gt"}[(exclusive, reverse)]
        unit = const(0 if kind == "sum" else 1, x.dtype)

        def body(*v):
            return reduce(kind, [x.shape[axis]], lambda r: select(
                call(cmp, _iv(r), _iv(v[axis])), x[_along(v, axis, r)], unit))

        return [stage(out.name, out.shape, body)]

    return compute


def _cumulative_reference(fn, unit):
    def reference(arrays, attrs):
        x = arrays[0]
        axis = normalize_axis(attrs["axis"], x.ndim)
        if attrs.get("reverse", 0):
            x = np.flip(x, axis)
        y = fn(x, axis=axis, dtype=x.dtype)
        if attrs.get("exclusive", 0):
            y = np.concatenate([np.full_like(np.take(y, [0], axis=axis), unit),
                                np.take(y, np.arange(x.shape[axis] - 1), axis=axis)],
                               axis=axis)
        return [np.flip(y, axis) if attrs.get("reverse", 0) else y]

    return reference


register(OpDef("CumSum", _cumsum_infer, _cumulative("sum"),
               _cumulative_reference(np.cumsum, 0), kind="reduction",
               doc="attrs axis, exclusive, reverse"))
register(OpDef("CumProd", _cumsum_infer, _cumulative("prod"),
               _cumulative_reference(np.cumprod, 1), kind="reduction",
               doc="attrs axis, exclusive, reverse"))


# -- OneHot --------------------------------------------------------------------------------------
def _onehot_infer(types, attrs, consts):
    idx, values = types
    depth = int(attrs["depth"])
    axis = normalize_axis(attrs.get("axis", -1), idx.rank + 1)
    if values.shape != (2,) or depth < 1:
        raise ModelError(f"OneHot needs values of shape (2,) and depth >= 1, got {values}, "
                         f"depth {depth}")
    shape = list(idx.shape)
    shape.insert(axis, depth)
    return [TensorType(values.dtype, tuple(shape))]


def _onehot_compute(ins, outs, attrs):
    idx, values, out = ins[0], ins[1], outs[0]
    depth = int(attrs["depth"])
    axis = normalize_axis(attrs.get("axis", -1), len(out.shape))

    def body(*v):
        i = idx[tuple(v[:axis] + v[axis + 1:])]
        i = select(call("lt", i, const(0, I64)), i + const(depth, I64), i)
        return select(call("eq", i, _iv(v[axis])), values[1], values[0])

    return [stage(out.name, out.shape, body)]


register(OpDef("OneHot", _onehot_infer, _onehot_compute, kind="elementwise",
               doc="inputs int64 indices and values [off, on]; attrs depth, axis"))


# -- GatherND ------------------------------------------------------------------------------------
def _gathernd_infer(types, attrs, consts):
    data, idx = types
    b = int(attrs.get("batch_dims", 0))
    k = idx.shape[-1] if idx.rank else 0
    if idx.rank < 1 or not isinstance(k, int) or b + k > data.rank or \
            tuple(data.shape[:b]) != tuple(idx.shape[:b]):
        raise ModelError(f"GatherND indices {idx} do not fit data {data} with batch_dims {b}")
    return [TensorType(data.dtype, tuple(idx.shape[:-1]) + tuple(data.shape[b + k:]))]


def _wrap(load: Load, n: int) -> Ix:
    """An index in [-n, n) made non-negative; out-of-range values wrap (never outside)."""
    return ix_max(ix_load(load) + n, 0) % n


def _gathernd_compute(ins, outs, attrs):
    data, idx, out = ins[0], ins[1], outs[0]
    b, q, k = int(attrs.get("batch_dims", 0)), len(idx.shape) - 1, idx.shape[-1]

    def body(*v):
        lead = tuple(v[:q])
        picked = tuple(_wrap(idx[lead + (j,)], data.shape[b + j]) for j in range(k))
        return data[tuple(v[:b]) + picked + tuple(v[q:])]

    return [stage(out.name, out.shape, body)]


def _gathernd_reference(arrays, attrs):
    data, idx = arrays
    b = int(attrs.get("batch_dims", 0))
    k = idx.shape[-1]
    idx = np.where(idx < 0, idx + np.array(data.shape[b:b + k]), idx)
    if idx.size and (idx.min() < 0 or np.any(idx >= np.array(data.shape[b:b + k]))):
        raise ModelError("GatherND index out of range")
    batch = int(np.prod(data.shape[:b], dtype=np.int64))
    flat_d = data.reshape((batch,) + data.shape[b:])
    flat_i = idx.reshape((batch, -1, k))
    out = np.stack([flat_d[n][tuple(flat_i[n].T)] for n in range(batch)])
    return [out.reshape(idx.shape[:-1] + data.shape[b + k:])]


register(OpDef("GatherND", _gathernd_infer, _gathernd_compute, _gathernd_reference,
               kind="elementwise", doc="attr batch_dims; negative indices count from the end"))


# -- ScatterElements / ScatterND -----------------------------------------------------------------
REDUCTIONS = ("none", "add", "mul", "max", "min")


def _identity(kind: str, dtype: DType):
    if kind == "add":
        return const(0, dtype)
    if kind == "mul":
        return const(1, dtype)
    if dtype.is_float:
        return const(-math.inf if kind == "max" else math.inf, dtype)
    info = ml_dtypes.iinfo(dtype.np) if dtype != DType.bool else None  # int4 too
    if info is None:
        return const(kind == "min", dtype)
    return const(int(info.min if kind == "max" else info.max), dtype)


def _combine(kind: str, a, b):
    return {"add": lambda: a + b, "mul": lambda: a * b,
            "max": lambda: call("max", a, b), "min": lambda: call("min", a, b)}[kind]()


def _normalized(load: Load, n: int):
    """A scalar index with ONNX's negative-index rule applied."""
    return select(call("lt", load, const(0, load.dtype)), load + const(n, load.dtype), load)


def _scatter_infer(types, attrs, consts):
    data, idx, upd = types
    if attrs.get("reduction", "none") not in REDUCTIONS:
        raise ModelError(f"reduction must be one of {REDUCTIONS}, got {attrs['reduction']!r}")
    if idx.shape != upd.shape or idx.rank != data.rank:
        raise ModelError(f"ScatterElements needs indices and updates of one shape and the "
                         f"data's rank, got {data}, {idx}, {upd}")
    normalize_axis(attrs.get("axis", 0), data.rank)
    return [data]


def _scatter_stages(out, data, upd, kind: str, extents, match, upd_index, flat):
    """The gather form of a scatter: ``match(v, r)`` says update ``r`` targets ``v``."""
    if kind != "none":
        def body(*v):
            red = {"add": "sum", "mul": "prod"}.get(kind, kind)
            return _combine(kind, data[v], reduce(red, extents, lambda *r: select(
                match(v, r), upd[upd_index(v, r)], _identity(kind, data.dtype))))

        return [stage(out.name, out.shape, body)]
    last = f"{out.name}__last"  # the last update that targets each element, or -1
    s_last = stage(last, out.shape, lambda *v: reduce("max", extents, lambda *r: select(
        match(v, r), _iv(flat(r)), const(-1, I64))))

    def body(*v):
        j = Load(last, tuple(v), I64)
        r, rest = ix_max(ix_load(j), 0), []
        for e in reversed(extents):  # unflatten the update position
            rest.insert(0, r % e)
            r = r // e
        return select(call("ge", j, const(0, I64)), upd[upd_index(v, tuple(rest))], data[v])

    return [s_last, stage(out.name, out.shape, body)]


def _flat(r, extents) -> Ix:
    f = Ix.lift(0)
    for var, e in zip(r, extents):
        f = f * e + var
    return f


def _scatter_compute(ins, outs, attrs):
    data, idx, upd, out = ins[0], ins[1], ins[2], outs[0]
    axis = normalize_axis(attrs.get("axis", 0), len(data.shape))
    n, m = data.shape[axis], idx.shape[axis]

    def clamp(v):  # updates cover a box that may be smaller than the data off the axis
        return tuple(i if k == axis or idx.shape[k] == data.shape[k] else
                     ix_min(i, idx.shape[k] - 1) for k, i in enumerate(v))

    def match(v, r):
        hit = call("eq", _normalized(idx[clamp(_along(v, axis, r[0]))], n), _iv(v[axis]))
        for k, d in enumerate(idx.shape):
            if k != axis and d != data.shape[k]:
                hit = call("and", hit, call("lt", _iv(v[k]), const(d, I64)))
        return hit

    return _scatter_stages(out, data, upd, attrs.get("reduction", "none"), [m], match,
                           lambda v, r: clamp(_along(v, axis, r[0])), lambda r: r[0])


def _scatter_reference(arrays, attrs):
    data, idx, upd = arrays
    axis = normalize_axis(attrs.get("axis", 0), data.ndim)
    n = data.shape[axis]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise ModelError(f"ScatterElements index out of range [{-n}, {n - 1}]")
    idx = np.where(idx < 0, idx + n, idx)
    out = data.copy()
    kind = attrs.get("reduction", "none")
    for pos in np.ndindex(*idx.shape):
        target = _along(pos, axis, idx[pos])
        out[target] = upd[pos] if kind == "none" else {
            "add": np.add, "mul": np.multiply, "max": np.maximum,
            "min": np.minimum}[kind](out[target], upd[pos])
    return [out]


register(OpDef("ScatterElements", _scatter_infer, _scatter_compute, _scatter_reference,
               kind="opaque", doc="attrs axis, reduction (none: the last update wins)"))


def _scatternd_infer(types, attrs, consts):
    data, idx, upd = types
    if attrs.get("reduction", "none") not in REDUCTIONS:
        raise ModelError(f"reduction must be one of {REDUCTIONS}, got {attrs['reduction']!r}")
    k = idx.shape[-1] if idx.rank else -1
    if not 0 <= k <= data.rank or tuple(upd.shape) != tuple(idx.shape[:-1]) + \
            tuple(data.shape[k:]):
        raise ModelError(f"ScatterND shapes do not fit: data {data}, indices {idx}, "
                         f"updates {upd}")
    return [data]


def _scatternd_compute(ins, outs, attrs):
    data, idx, upd, out = ins[0], ins[1], ins[2], outs[0]
    lead, k = list(idx.shape[:-1]), idx.shape[-1]

    def match(v, r):
        hit = None
        for j in range(k):
            eq = call("eq", _normalized(idx[tuple(r) + (j,)], data.shape[j]), _iv(v[j]))
            hit = eq if hit is None else call("and", hit, eq)
        return hit if hit is not None else call("eq", _iv(0), _iv(0))

    return _scatter_stages(out, data, upd, attrs.get("reduction", "none"), lead, match,
                           lambda v, r: tuple(r) + tuple(v[k:]), lambda r: _flat(r, lead))


def _scatternd_reference(arrays, attrs):
    data, idx, upd = arrays
    k = idx.shape[-1]
    out = data.copy()
    kind = attrs.get("reduction", "none")
    for pos in np.ndindex(*idx.shape[:-1]):
        target = tuple(int(i) + (data.shape[j] if i < 0 else 0) for j, i in enumerate(idx[pos]))
        if any(not 0 <= t < data.shape[j] for j, t in enumerate(target)):
            raise ModelError("ScatterND index out of range")
        out[target] = upd[pos] if kind == "none" else {
            "add": np.add, "mul": np.multiply, "max": np.maximum,
            "min": np.minimum}[kind](out[target], upd[pos])
    del k
    return [out]


register(OpDef("ScatterND", _scatternd_infer, _scatternd_compute, _scatternd_reference,
               kind="opaque", doc="attr reduction (none: the last update wins)"))
