"""Ops that move or reinterpret data: Reshape, Transpose, Concat, Slice, and shape-only ops."""
from __future__ import annotations

import numpy as np

from ..dtypes import DType
from ..errors import ModelError
from ..kernel import Ix, Load, select, call, const, stage
from ..types import TensorType, static_strides
from .registry import OpDef, normalize_axis, register


# -- Reshape: a view of the same bytes ---------------------------------------------------------
def _reshape_infer(types, attrs, consts):
    x = types[0]
    shape = tuple(attrs["shape"])
    if x.is_static and all(isinstance(d, int) for d in shape):
        if int(np.prod(shape, dtype=np.int64)) != x.numel():
            raise ModelError(f"cannot reshape {x} ({x.numel()} elements) to {list(shape)}")
    return [TensorType(x.dtype, shape)]


def _reshape_compute(ins, outs, attrs):
    x, out = ins[0], outs[0]
    in_strides = static_strides(x.shape)
    out_strides = static_strides(out.shape)

    def body(*v):
        flat = Ix.lift(0)
        for var, s in zip(v, out_strides):
            flat = flat + var * s
        idx = tuple((flat // s) % d if k else flat // s
                    for k, (s, d) in enumerate(zip(in_strides, x.shape)))
        return x[idx] if x.shape else x[()]

    return [stage(out.name, out.shape, body)]


register(OpDef("Reshape", _reshape_infer, _reshape_compute,
               lambda arrays, attrs: [arrays[0].reshape(attrs["shape"])], kind="view",
               doc="attr shape: the static target shape (resolved by the frontend)"))


# -- Transpose ----------------------------------------------------------------------------------
def _transpose_infer(types, attrs, consts):
    x = types[0]
    perm = list(attrs.get("perm") or reversed(range(x.rank)))
    if sorted(perm) != list(range(x.rank)):
        raise ModelError(f"perm {perm} is not a permutation of the {x.rank} axes of {x}")
    return [TensorType(x.dtype, tuple(x.shape[p] for p in perm))]


def _transpose_compute(ins, outs, attrs):
    x, out = ins[0], outs[0]
    perm = list(attrs.get("perm") or reversed(range(len(x.shape))))

    def body(*v):
        idx = [None] * len(perm)
        for k, p in enumerate(perm):
            idx[p] = v[k]
        return x[tuple(idx)]

    return [stage(out.name, out.shape, body)]


register(OpDef("Transpose", _transpose_infer, _transpose_compute,
               lambda arrays, attrs: [np.transpose(arrays[0], attrs.get("perm"))],
               kind="elementwise",
               doc="attr perm"))


# -- Concat -------------------------------------------------------------------------------------
def _concat_infer(types, attrs, consts):
    first = types[0]
    axis = normalize_axis(attrs["axis"], first.rank)
    total: int | str = 0
    for t in types:
        if t.rank != first.rank or t.dtype != first.dtype:
            raise ModelError(f"Concat inputs differ in rank or type: {first} and {t}")
        for k in range(t.rank):
            if k != axis and isinstance(t.shape[k], int) and isinstance(first.shape[k], int) \
                    and t.shape[k] != first.shape[k]:
                raise ModelError(f"Concat inputs differ off the axis {axis}: {first} and {t}")
        d = t.shape[axis]
        total = total + d if isinstance(total, int) and isinstance(d, int) else f"concat_{axis}"
    shape = list(first.shape)
    shape[axis] = total
    return [TensorType(first.dtype, tuple(shape))]


def _concat_compute(ins, outs, attrs):
    out = outs[0]
    axis = normalize_axis(attrs["axis"], len(out.shape))

    def body(*v):
        # Select among inputs by where the axis index falls; loads are clamped in range.
        offsets, off = [], 0
        for x in ins:
            offsets.append(off)
            off += x.shape[axis]
        expr = None
        for x, start in reversed(list(zip(ins, offsets))):
            if x.shape[axis] == 0:
                continue
            idx = tuple(v[k] - start if k == axis else v[k] for k in range(len(v)))
            load = Load(x.name, idx, x.dtype, pad=0)
            if expr is None:
                expr = load
            else:
                end = start + x.shape[axis]
                cond = call("lt", _index_value(v[axis]), const(end, DType.int64))
                expr = select(cond, load, expr)
        return expr

    return [stage(out.name, out.shape, body)]


def _index_value(ix: Ix) -> Load:
    """The integer value of an index expression, as a scalar (see kernel.IndexValue)."""
    from ..kernel import IndexValue

    return IndexValue(ix)


register(OpDef("Concat", _concat_infer, _concat_compute,
               lambda arrays, attrs: [np.concatenate(arrays, axis=attrs["axis"])],
               kind="elementwise", doc="attr axis"))


# -- Slice (static) -----------------------------------------------------------------------------
def slice_ranges(shape, starts, ends, axes, steps):
    """Per-dimension (start, step, length) of an ONNX Slice with clamping."""
    rank = len(shape)
    out = [(0, 1, d) for d in shape]
    axes = list(axes) if axes is not None else list(range(len(starts)))
    steps = list(steps) if steps is not None else [1] * len(starts)
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = normalize_axis(a, rank)
        d = shape[a]
        if st == 0:
            raise ModelError("Slice step cannot be 0")
        if not isinstance(d, int):
            raise ModelError(f"Slice along symbolic dimension {d!r} is not supported yet")
        s = s + d if s < 0 else s
        e = e + d if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), d), min(max(e, 0), d)
            n = max(0, -(-(e - s) // st))
        else:
            s, e = min(max(s, -1), d - 1), min(max(e, -1), d - 1)
            n = max(0, -(-(s - e) // -st))
        out[a] = (s, st, n)
    return out


def _slice_infer(types, attrs, consts):
    x = types[0]
    ranges = slice_ranges(x.shape, attrs["starts"], attrs["ends"], attrs.get("axes"),
                          attrs.get("steps"))
    return [TensorType(x.dtype, tuple(n for _, _, n in ranges))]


def _slice_compute(ins, outs, attrs):
    x, out = ins[0], outs[0]
    ranges = slice_ranges(x.shape, attrs["starts"], attrs["ends"], attrs.get("axes"),
                          attrs.get("steps"))
    return [stage(out.name, out.shape,
                  lambda *v: x[tuple(s + var * st for var, (s, st, _) in zip(v, ranges))])]


register(OpDef("Slice", _slice_infer, _slice_compute, kind="elementwise",
               doc="attrs starts, ends, axes, steps (constants)"))


# -- Shape-only ops, evaluated while importing when their inputs are known ----------------------
def _shape_infer(types, attrs, consts):
    return [TensorType(DType.int64, (types[0].rank,))]


def _gather_infer(types, attrs, consts):
    data, idx = types
    axis = normalize_axis(attrs.get("axis", 0), data.rank)
    return [TensorType(data.dtype, data.shape[:axis] + idx.shape + data.shape[axis + 1:])]


def _gather_reference(arrays, attrs):
    data, idx = arrays
    axis = normalize_axis(attrs.get("axis", 0), data.ndim)
    n = data.shape[axis]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise ModelError(f"Gather index out of range [{-n}, {n - 1}]")
    return [np.take(data, np.where(idx < 0, idx + n, idx), axis=axis)]


register(OpDef("Shape", _shape_infer, None,
               lambda arrays, attrs: [np.array(arrays[0].shape, dtype=np.int64)],
               doc="the input's shape; folded to a constant when the shape is static"))
register(OpDef("Gather", _gather_infer, None, _gather_reference,
               doc="attr axis; evaluated at compile time when data and indices are constant"))
