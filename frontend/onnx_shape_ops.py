"""Importers for shape ops with static parameters: Expand, Tile, Pad, Split, Range, ..."""
from __future__ import annotations

import numpy as np

from onnxc.ir.dtypes import DType

from .importer import ImportContext, onnx_op, prod


def _ints(array) -> list[int]:
    return [int(v) for v in np.asarray(array).reshape(-1)]


@onnx_op("Expand")
def _expand(ctx: ImportContext, node):
    shape = _ints(ctx.require_const(1, "shape"))
    return ctx.add("Expand", [ctx.input(0)], {"shape": tuple(shape)})


@onnx_op("Tile")
def _tile(ctx: ImportContext, node):
    x = ctx.input(0)
    if ctx.opset < 6:
        raise ctx.unsupported("Tile before opset 6 (tiles/axis inputs) is not supported")
    repeats = _ints(ctx.require_const(1, "repeats"))
    if len(repeats) != x.type.rank:
        raise ctx.error(f"repeats {repeats} must have one entry per axis of {x.type}")
    return ctx.add("Tile", [x], {"repeats": tuple(repeats)})


@onnx_op("Pad")
def _pad(ctx: ImportContext, node):
    x = ctx.input(0)
    rank = x.type.rank
    mode = ctx.attr("mode", "constant")
    if ctx.opset < 11:
        pads = list(ctx.attr("pads" if ctx.opset >= 2 else "paddings"))
        value = float(ctx.attr("value", 0.0))
    else:
        pads = _ints(ctx.require_const(1, "pads"))
        value = ctx.const(2)
        if ctx.input(2) is not None and value is None:
            raise ctx.unsupported("constant_value computed at run time is not supported yet")
        value = 0 if value is None else value.reshape(-1)[0].item()
        axes = ctx.const(3)
        if ctx.input(3) is not None and axes is None:
            raise ctx.unsupported("axes computed at run time are not supported yet")
        if axes is not None:
            axes = [a % rank for a in _ints(axes)]
            if len(pads) != 2 * len(axes):
                raise ctx.error(f"pads {pads} must have two entries per axis of {axes}")
            full = [0] * (2 * rank)
            for k, a in enumerate(axes):
                full[a], full[rank + a] = pads[k], pads[len(axes) + k]
            pads = full
    if len(pads) != 2 * rank:
        raise ctx.error(f"pads {pads} must have {2 * rank} entries for {x.type}")
    return ctx.add("Pad", [x], {"pads": tuple(pads), "mode": mode, "value": value})


@onnx_op("Split")
def _split(ctx: ImportContext, node):
    x = ctx.input(0)
    axis = int(ctx.attr("axis", 0)) % max(x.type.rank, 1)
    n, count = x.shape[axis], len(node.output)
    if ctx.opset >= 13:
        split = ctx.const(1)
        if ctx.input(1) is not None and split is None:
            raise ctx.unsupported("split sizes computed at run time are not supported yet")
        split = None if split is None else _ints(split)
    else:
        split = ctx.attr("split")
        split = None if split is None else [int(s) for s in split]
    if split is None:
        parts = int(ctx.attr("num_outputs", count))
        if parts != count:
            raise ctx.error(f"num_outputs is {parts} but the node has {count} outputs")
        chunk = -(-n // parts)  # the last part may be smaller (opset 18)
        split = [min(chunk, max(n - k * chunk, 0)) for k in range(parts)]
    if len(split) != count or sum(split) != n or min(split, default=0) < 0:
        raise ctx.error(f"split {split} does not cut axis {axis} of {x.type} into {count} parts")
    outs, start = [], 0
    for size in split:
        outs.append(ctx.add1("Slice", [x], {"starts": (start,), "ends": (start + size,),
                                            "axes": (axis,), "steps": None}))
        start += size
    return outs


@onnx_op("DepthToSpace", "SpaceToDepth")
def _depth_space(ctx: ImportContext, node):
    """The spec's own definition: reshape to 6-D, transpose, reshape back."""
    x = ctx.input(0)
    if x.type.rank != 4:
        raise ctx.error(f"{node.op_type} needs a 4-D (N, C, H, W) input, got {x.type}")
    b = int(ctx.attr("blocksize"))
    n, c, h, w = x.shape
    if node.op_type == "DepthToSpace":
        if c % (b * b):
            raise ctx.error(f"channels {c} are not divisible by blocksize^2 = {b * b}")
        if ctx.attr("mode", "DCR") == "DCR":
            shape, perm = (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2)
        else:
            shape, perm = (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3)
        out = (n, c // (b * b), h * b, w * b)
    else:
        if h % b or w % b:
            raise ctx.error(f"spatial dims {h}x{w} are not divisible by blocksize {b}")
        shape = (n, c, h // b, b, w // b, b)
        perm = (0, 3, 5, 1, 2, 4) if ctx.attr("mode", "DCR") == "DCR" else (0, 1, 3, 5, 2, 4)
        out = (n, c * b * b, h // b, w // b)
    y = ctx.add1("Reshape", [x], {"shape": shape})
    y = ctx.add1("Transpose", [y], {"perm": perm})
    return [ctx.add1("Reshape", [y], {"shape": out})]


@onnx_op("Range")
def _range(ctx: ImportContext, node):
    start, limit, delta = (ctx.require_const(k, name).reshape(())
                           for k, name in enumerate(("start", "limit", "delta")))
    if delta == 0:
        raise ctx.error("delta must not be 0")
    count = max(int(np.ceil((limit - start) / delta)), 0)
    ctx.check_alloc((count,), start.dtype.itemsize, "its output")
    wide = np.float64 if DType.from_numpy(start.dtype).is_float else np.int64  # bfloat16 too
    values = start.astype(wide) + np.arange(count, dtype=wide) * delta.astype(wide)
    return [ctx.constant(values.astype(start.dtype), node.output[0])]


@onnx_op("Size")
def _size(ctx: ImportContext, node):
    x = ctx.input(0)
    if not x.type.is_static:
        raise ctx.unsupported(f"Size of a symbolic shape {x.type} is not supported yet")
    return [ctx.constant(np.array(prod(x.shape), dtype=np.int64), node.output[0])]


@onnx_op("Trilu")
def _trilu(ctx: ImportContext, node):
    k = ctx.const(1)
    if ctx.input(1) is not None and k is None:
        raise ctx.unsupported("k computed at run time is not supported yet")
    k = 0 if k is None else int(np.asarray(k).reshape(-1)[0])
    return ctx.add("Trilu", [ctx.input(0)], {"upper": int(ctx.attr("upper", 1)), "k": k})
