"""Sequence and optional ops, resolved at compile time (see ``containers``).

Sequences are lists of IR values, so SequenceConstruct/Insert/Erase/Length and the optional
ops only move values around; SequenceAt with a run-time position, SplitToSequence and
ConcatFromSequence become Gather/Slice/Concat; SequenceMap imports its body once per element.
"""
from __future__ import annotations

import numpy as np

from onnxc.ir import Value

from .containers import Opt, Seq
from .importer import ImportContext, onnx_op
from .onnx_control import run_body, stack
from .onnx_types import dtype_from_onnx


def seq_input(ctx: ImportContext, k: int) -> Seq:
    s = ctx.input(k)
    if isinstance(s, Opt):
        s = s.value
    if not isinstance(s, Seq):
        raise ctx.error(f"input {k} must be a sequence, got {_what(s)}")
    return s


def tensor_input(ctx: ImportContext, k: int) -> Value:
    v = ctx.input(k)
    if not isinstance(v, Value):
        raise ctx.error(f"input {k} must be a tensor, got {_what(v)}")
    return v


def _what(v) -> str:
    return "nothing" if v is None else ("a sequence" if isinstance(v, Seq) else
                                        "an optional" if isinstance(v, Opt) else "a tensor")


def _position(ctx: ImportContext, k: int, n: int, default: int, inclusive: bool) -> int:
    """A compile-time position input, normalized; the range is [-n, n) (or [-n, n])."""
    if ctx.input(k) is None:
        return default
    p = int(np.asarray(ctx.require_const(k, "position")).reshape(-1)[0])
    hi = n if inclusive else n - 1
    if not -n <= p <= hi:
        raise ctx.error(f"position {p} is out of range for a sequence of {n} elements")
    return p + n if p < 0 else p


@onnx_op("SequenceEmpty")
def _empty(ctx: ImportContext, node):
    return [Seq([], dtype_from_onnx(int(ctx.attr("dtype", 1))))]


@onnx_op("SequenceConstruct")
def _construct(ctx: ImportContext, node):
    items = [tensor_input(ctx, k) for k in range(len(node.input))]
    if len({v.dtype for v in items}) > 1:
        raise ctx.error("the tensors of a sequence must have one element type")
    return [Seq(items)]


@onnx_op("SequenceInsert")
def _insert(ctx: ImportContext, node):
    s, t = seq_input(ctx, 0), tensor_input(ctx, 1)
    if s.dtype is not None and t.dtype != s.dtype:
        raise ctx.error(f"inserts a {t.dtype.value} tensor into a sequence of {s.dtype.value}")
    items = list(s)
    items.insert(_position(ctx, 2, len(s), len(s), True), t)
    return [Seq(items, t.dtype)]


@onnx_op("SequenceErase")
def _erase(ctx: ImportContext, node):
    s = seq_input(ctx, 0)
    if not s:
        raise ctx.error("erases from an empty sequence")
    items = list(s)
    del items[_position(ctx, 1, len(s), len(s) - 1, False)]
    return [Seq(items, s.dtype)]


@onnx_op("SequenceLength")
def _length(ctx: ImportContext, node):
    return [ctx.constant(np.array(len(seq_input(ctx, 0)), dtype=np.int64), "sequence_length")]


@onnx_op("SequenceAt")
def _at(ctx: ImportContext, node):
    s, pos = seq_input(ctx, 0), tensor_input(ctx, 1)
    if not s:
        raise ctx.error("reads from an empty sequence")
    if ctx.const(1) is not None:
        return [s[_position(ctx, 1, len(s), 0, False)]]
    if len({v.type for v in s}) != 1:
        raise ctx.unsupported("the position is computed at run time and the elements differ "
                              "in shape")
    n = ctx.constant(np.array(len(s), dtype=pos.dtype.np), "sequence_length")
    wrapped = ctx.add1("Mod", [pos, n], {"fmod": 0})  # Python's remainder: -1 -> n - 1
    return [ctx.add1("Gather", [stack(ctx, list(s)), wrapped], {"axis": 0})]


@onnx_op("SplitToSequence")
def _split(ctx: ImportContext, node):
    x = tensor_input(ctx, 0)
    axis = int(ctx.attr("axis", 0)) % max(x.type.rank, 1)
    size = x.shape[axis]
    if not isinstance(size, int):
        raise ctx.unsupported("splits along a symbolic dimension")
    split = ctx.const(1) if ctx.input(1) is not None else None
    if ctx.input(1) is not None and split is None:
        raise ctx.unsupported("the split sizes are computed at run time")
    if split is None:
        sizes = [1] * size
    elif np.ndim(split) == 0:
        step = int(split)
        if step <= 0:
            raise ctx.error(f"split {step} must be positive")
        sizes = [min(step, size - a) for a in range(0, size, step)]
    else:
        sizes = [int(v) for v in np.asarray(split).reshape(-1)]
        if sum(sizes) != size or min(sizes, default=0) < 0:
            raise ctx.error(f"split sizes {sizes} do not add up to dimension {axis} ({size})")
    squeeze = split is None and not int(ctx.attr("keepdims", 1))
    items, start = [], 0
    for n in sizes:
        part = ctx.add1("Slice", [x], {"starts": (start,), "ends": (start + n,),
                                       "axes": (axis,), "steps": None})
        if squeeze:
            shape = tuple(d for k, d in enumerate(x.shape) if k != axis)
            part = ctx.add1("Reshape", [part], {"shape": shape})
        items.append(part)
        start += n
    return [Seq(items, x.dtype)]


@onnx_op("ConcatFromSequence")
def _concat(ctx: ImportContext, node):
    s = seq_input(ctx, 0)
    if not s:
        raise ctx.unsupported("concatenates an empty sequence (its result type is unknown)")
    new_axis = int(ctx.attr("new_axis", 0))
    rank = s[0].type.rank + new_axis
    axis = int(ctx.attr("axis"))
    if not -rank <= axis < rank:
        raise ctx.error(f"axis {axis} is out of range for rank {rank}")
    axis %= rank
    if new_axis:
        return [stack(ctx, list(s), axis)]
    return [ctx.add1("Concat", list(s), {"axis": axis}) if len(s) > 1
            else ctx.add1("Identity", [s[0]])]


@onnx_op("SequenceMap")
def _map(ctx: ImportContext, node):
    body = ctx.attr("body")
    ins = [ctx.input(k) for k in range(len(node.input))]
    seqs = [v for v in ins if isinstance(v, Seq)]
    n = len(seqs[0]) if seqs else 0
    if any(len(v) != n for v in seqs):
        raise ctx.error(f"the input sequences differ in length: {[len(v) for v in seqs]}")
    outs = [[] for _ in node.output]
    for i in range(n):
        got = run_body(ctx, body, [v[i] if isinstance(v, Seq) else v for v in ins])
        for acc, v in zip(outs, got):
            acc.append(v)
    dtypes = [dtype_from_onnx(vi.type.sequence_type.elem_type.tensor_type.elem_type)
              if vi.type.HasField("sequence_type") else None for vi in body.output]
    return [Seq(acc, dt) for acc, dt in zip(outs, dtypes)]


@onnx_op("Optional")
def _optional(ctx: ImportContext, node):
    return [Opt(ctx.input(0))]


@onnx_op("OptionalHasElement")
def _has_element(ctx: ImportContext, node):
    v = ctx.input(0)
    present = v is not None and not (isinstance(v, Opt) and v.value is None)
    return [ctx.constant(np.array(present), "has_element")]


@onnx_op("OptionalGetElement")
def _get_element(ctx: ImportContext, node):
    v = ctx.input(0)
    if isinstance(v, Opt):
        if v.value is None:
            raise ctx.error("reads an empty optional")
        v = v.value
    if v is None:
        raise ctx.error("input 0 is required")
    return [v]
