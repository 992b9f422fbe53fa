"""Ops that move or reinterpret data: Reshape, Transpose, Concat, Slice, and shape-only ops."""
from __future__ import annotations

import numpy as np

from ..dtypes import DType
from ..errors import ModelError
from ..kernel import (IndexValue, Ix, Load, call, const, ix_load, ix_max, ix_min, select,
                      stage)
from ..types import TensorType, static_strides
from .registry import OpDef, broadcast_shapes, normalize_axis, register


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


def _index_value(ix: Ix) -> IndexValue:
    """The integer value of an index expression, as a scalar (see kernel.IndexValue)."""
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


# -- Expand, Tile, Pad, Trilu (static parameters) -----------------------------------------------
def _expand_infer(types, attrs, consts):
    x = types[0]
    return [TensorType(x.dtype, broadcast_shapes(x.shape, tuple(attrs["shape"])))]


def _expand_compute(ins, outs, attrs):
    x, out = ins[0], outs[0]
    return [stage(out.name, out.shape, lambda *v: x.broadcast_to(v))]


register(OpDef("Expand", _expand_infer, _expand_compute, kind="elementwise",
               doc="attr shape: broadcast x to it (numpy rules, both ways)"))


def _tile_infer(types, attrs, consts):
    x = types[0]
    repeats = tuple(attrs["repeats"])
    if len(repeats) != x.rank or min(repeats, default=0) < 0:
        raise ModelError(f"Tile repeats {list(repeats)} do not fit {x}")
    shape = tuple(d * r if isinstance(d, int) else (d if r == 1 else f"{d}*{r}")
                  for d, r in zip(x.shape, repeats))
    return [TensorType(x.dtype, shape)]


def _tile_compute(ins, outs, attrs):
    x, out = ins[0], outs[0]
    return [stage(out.name, out.shape,
                  lambda *v: x[tuple(i if r == 1 else i % n
                                     for i, n, r in zip(v, x.shape, attrs["repeats"]))])]


register(OpDef("Tile", _tile_infer, _tile_compute, kind="elementwise", doc="attr repeats"))

PAD_MODES = ("constant", "edge", "reflect", "wrap")


def _pad_infer(types, attrs, consts):
    x = types[0]
    pads, rank, mode = tuple(attrs["pads"]), x.rank, attrs.get("mode", "constant")
    if len(pads) != 2 * rank or mode not in PAD_MODES:
        raise ModelError(f"Pad needs {2 * rank} pads and a mode in {PAD_MODES}, got "
                         f"{list(pads)} and {mode!r}")
    shape = []
    for k, d in enumerate(x.shape):
        if not isinstance(d, int):
            raise ModelError(f"Pad of symbolic dimension {d!r} is not supported yet")
        begin, end = pads[k], pads[rank + k]
        n = d + begin + end
        kept = d - max(-begin, 0) - max(-end, 0)  # what is left after negative pads crop
        if n < 0 or (mode != "constant" and n > 0 and kept <= 0):
            raise ModelError(f"Pad {list(pads)} ({mode}) does not fit {x}")
        if mode == "reflect" and max(begin, end) > kept - 1 and kept > 1:
            raise ModelError(f"reflect Pad {list(pads)} is wider than the axis {k} of {x} "
                             f"minus one")
        shape.append(n)
    return [TensorType(x.dtype, tuple(shape))]


def _pad_index(v: Ix, begin: int, n: int, mode: str) -> Ix:
    """The input index read for output index ``v`` along one axis (edge/reflect/wrap)."""
    j = v - begin
    if mode == "edge" or n == 1:
        return ix_max(ix_min(j, n - 1), 0)
    period = n if mode == "wrap" else 2 * (n - 1)
    m = (j + period * (max(begin, 0) // period + 1)) % period  # j mod period, operands >= 0
    if mode == "wrap":
        return m
    return (n - 1) - ix_max(m - (n - 1), (n - 1) - m)  # fold [n, 2n-2) back onto [n-2, 0]


def _pad_compute(ins, outs, attrs):
    x, out = ins[0], outs[0]
    pads, mode, rank = attrs["pads"], attrs.get("mode", "constant"), len(x.shape)
    if mode == "constant":
        value = attrs.get("value", 0)
        return [stage(out.name, out.shape,
                      lambda *v: x.padded([i - pads[k] for k, i in enumerate(v)], value))]

    def index(k: int, i: Ix) -> Ix:
        # Negative pads crop first; the cropped window [lo, lo + n) is then padded (as in ORT).
        begin, end = pads[k], pads[rank + k]
        if begin == 0 and end == 0:
            return i
        lo = max(-begin, 0)
        n = x.shape[k] - lo - max(-end, 0)
        return lo + _pad_index(i, max(begin, 0), n, mode)

    return [stage(out.name, out.shape, lambda *v: x[tuple(index(k, i) for k, i in enumerate(v))])]


register(OpDef("Pad", _pad_infer, _pad_compute, kind="elementwise",
               doc="attrs pads (begins then ends, negative crops), mode, value (constant mode)"))


def _trilu_infer(types, attrs, consts):
    x = types[0]
    if x.rank < 2:
        raise ModelError(f"Trilu needs rank >= 2, got {x}")
    return [x]


def _trilu_compute(ins, outs, attrs):
    """Keep x[..., i, j] where j - i >= k (upper) or j - i <= k (lower), else 0."""
    x, out = ins[0], outs[0]
    k, upper = int(attrs.get("k", 0)), bool(attrs.get("upper", 1))

    def body(*v):
        diag = IndexValue(v[-1] - v[-2])
        keep = call("ge" if upper else "le", diag, const(k, DType.int64))
        return select(keep, x[v], const(0, x.dtype))

    return [stage(out.name, out.shape, body)]


register(OpDef("Trilu", _trilu_infer, _trilu_compute, kind="elementwise", doc="attrs upper, k"))


# -- Shape-only ops, evaluated while importing when their inputs are known ----------------------
def _shape_infer(types, attrs, consts):
    return [TensorType(DType.int64, (types[0].rank,))]


def _gather_infer(types, attrs, consts):
    data, idx = types
    axis = normalize_axis(attrs.get("axis", 0), data.rank)
    return [TensorType(data.dtype, data.shape[:axis] + idx.shape + data.shape[axis + 1:])]


def _checked_indices(arrays, attrs, op: str):
    """(data, indices with ONNX's negative-index rule applied, axis); out of range -> error."""
    data, idx = arrays
    axis = normalize_axis(attrs.get("axis", 0), data.ndim)
    n = data.shape[axis]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise ModelError(f"{op} index out of range [{-n}, {n - 1}]")
    return data, np.where(idx < 0, idx + n, idx), axis


def _gather_reference(arrays, attrs):
    data, idx, axis = _checked_indices(arrays, attrs, "Gather")
    return [np.take(data, idx, axis=axis)]


def _wrapped(load: Load, n: int) -> Ix:
    """A gather index in [-n, n) made non-negative; out-of-range values are clamped into the
    tensor, so a bad index at run time reads a wrong element, never outside memory."""
    return ix_max(ix_load(load) + n, 0) % n


def _gather_compute(ins, outs, attrs):
    data, idx, out = ins[0], ins[1], outs[0]
    axis = normalize_axis(attrs.get("axis", 0), len(data.shape))
    q, n = len(idx.shape), data.shape[axis]

    def body(*v):
        k = _wrapped(idx[tuple(v[axis:axis + q])], n)
        return data[tuple(v[:axis]) + (k,) + tuple(v[axis + q:])]

    return [stage(out.name, out.shape, body)]


def _gather_elements_infer(types, attrs, consts):
    data, idx = types
    normalize_axis(attrs.get("axis", 0), data.rank)
    if idx.rank != data.rank:
        raise ModelError(f"GatherElements needs indices of the data's rank, got {data} and {idx}")
    return [TensorType(data.dtype, idx.shape)]


def _gather_elements_compute(ins, outs, attrs):
    data, idx, out = ins[0], ins[1], outs[0]
    axis = normalize_axis(attrs.get("axis", 0), len(data.shape))
    n = data.shape[axis]
    return [stage(out.name, out.shape, lambda *v: data[tuple(
        _wrapped(idx[v], n) if k == axis else i for k, i in enumerate(v))])]


def _gather_elements_reference(arrays, attrs):
    data, idx, axis = _checked_indices(arrays, attrs, "GatherElements")
    return [np.take_along_axis(data, idx, axis=axis)]


register(OpDef("Shape", _shape_infer, None,
               lambda arrays, attrs: [np.array(arrays[0].shape, dtype=np.int64)],
               doc="the input's shape; folded to a constant when the shape is static"))
register(OpDef("Gather", _gather_infer, _gather_compute, _gather_reference, kind="elementwise",
               doc="attr axis; negative indices count from the end"))
register(OpDef("GatherElements", _gather_elements_infer, _gather_elements_compute,
               _gather_elements_reference, kind="elementwise",
               doc="attr axis; out[i] = data[i with i[axis] replaced by indices[i]]"))
