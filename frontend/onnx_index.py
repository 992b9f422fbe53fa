"""Importers for index ops: ArgMax/ArgMin, Hardmax, TopK, CumSum, OneHot, GatherND, the
scatters, and the ops whose output shape depends on input values (NonZero, Unique), which are
evaluated at compile time when their input is known (a small graph input is specialized on)."""
from __future__ import annotations

import numpy as np

from onnxc.ir.dtypes import DType

from .host_eval import data_dependent, evaluate_node
from .importer import ImportContext, onnx_op, prod


def _int(ctx: ImportContext, k: int, what: str) -> int:
    return int(np.asarray(ctx.require_const(k, what)).reshape(-1)[0])


@onnx_op("ArgMax", "ArgMin")
def _arg(ctx: ImportContext, node):
    x = ctx.input(0)
    return ctx.add(node.op_type, [x], {
        "axis": int(ctx.attr("axis", 0)), "keepdims": int(ctx.attr("keepdims", 1)),
        "select_last_index": int(ctx.attr("select_last_index", 0))})


@onnx_op("Hardmax")
def _hardmax(ctx: ImportContext, node):
    """OneHot(ArgMax(x)) along the axis; before opset 13 over the flattened 2-D view."""
    x = ctx.input(0)
    rank = x.type.rank
    if ctx.opset >= 13:
        flat, axis = x, int(ctx.attr("axis", -1)) % max(rank, 1)
    else:
        axis = int(ctx.attr("axis", 1)) % max(rank, 1)
        flat = ctx.add1("Reshape", [x], {"shape": (prod(x.shape[:axis]), prod(x.shape[axis:]))})
        axis = 1
    arg = ctx.add1("ArgMax", [flat], {"axis": axis, "keepdims": 0})
    values = ctx.constant(np.array([0, 1], dtype=x.dtype.np))
    y = ctx.add1("OneHot", [arg, values], {"depth": flat.shape[axis], "axis": axis})
    return [y if flat is x else ctx.add1("Reshape", [y], {"shape": tuple(x.shape)})]


@onnx_op("TopK")
def _topk(ctx: ImportContext, node):
    x = ctx.input(0)
    if ctx.opset >= 10 and ctx.input(1) is not None and ctx.const(1) is None:
        raise data_dependent(ctx, node)  # K computed at run time: run on the host
    k = int(ctx.attr("k")) if ctx.opset < 10 else _int(ctx, 1, "K")
    attrs = {"k": k, "axis": int(ctx.attr("axis", -1)), "largest": int(ctx.attr("largest", 1))}
    return ctx.add("TopK", [x], attrs)


@onnx_op("CumSum", "CumProd")
def _cumsum(ctx: ImportContext, node):
    return ctx.add(node.op_type, [ctx.input(0)], {
        "axis": _int(ctx, 1, "axis"), "exclusive": int(ctx.attr("exclusive", 0)),
        "reverse": int(ctx.attr("reverse", 0))})


@onnx_op("OneHot")
def _onehot(ctx: ImportContext, node):
    idx, values = ctx.input(0), ctx.input(2)
    depth = np.asarray(ctx.require_const(1, "depth")).reshape(-1)[0]
    if idx.dtype != DType.int64:  # float indices are truncated, as the spec says
        idx = ctx.add1("Cast", [idx], {"to": "int64"})
    if values.type.rank != 1:
        values = ctx.add1("Reshape", [values], {"shape": (2,)})
    return ctx.add("OneHot", [idx, values], {"depth": int(depth),
                                             "axis": int(ctx.attr("axis", -1))})


def _int64(ctx: ImportContext, v):
    return v if v.dtype == DType.int64 else ctx.add1("Cast", [v], {"to": "int64"})


@onnx_op("GatherND")
def _gathernd(ctx: ImportContext, node):
    return ctx.add("GatherND", [ctx.input(0), _int64(ctx, ctx.input(1))],
                   {"batch_dims": int(ctx.attr("batch_dims", 0))})


@onnx_op("ScatterElements", "Scatter")
def _scatter(ctx: ImportContext, node):
    return ctx.add("ScatterElements", [ctx.input(0), _int64(ctx, ctx.input(1)), ctx.input(2)],
                   {"axis": int(ctx.attr("axis", 0)),
                    "reduction": ctx.attr("reduction", "none")})


@onnx_op("ScatterND")
def _scatternd(ctx: ImportContext, node):
    return ctx.add("ScatterND", [ctx.input(0), _int64(ctx, ctx.input(1)), ctx.input(2)],
                   {"reduction": ctx.attr("reduction", "none")})


# -- constant-only ops: shapes that depend on values -----------------------------------------
@onnx_op("NonZero")
def _nonzero(ctx: ImportContext, node):
    x = ctx.const(0)
    if x is None:
        raise data_dependent(ctx, node)  # run on the host between compiled parts
    return [ctx.constant(np.array(np.nonzero(x), dtype=np.int64), node.output[0])]


@onnx_op("Unique")
def _unique(ctx: ImportContext, node):
    x = ctx.const(0)
    if x is None:
        raise data_dependent(ctx, node)  # run on the host between compiled parts
    axis = ctx.attr("axis")
    flat = x.reshape(-1) if axis is None else x
    values, first, inverse, counts = np.unique(flat, return_index=True, return_inverse=True,
                                               return_counts=True, axis=axis)
    if not ctx.attr("sorted", 1):  # order of first occurrence
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        values = np.take(values, order, axis=0 if axis is None else axis)
        first, counts, inverse = first[order], counts[order], rank[inverse.reshape(-1)]
    outs = [values, first, inverse.reshape(-1), counts]
    return [ctx.constant(np.asarray(o, dtype=x.dtype if k == 0 else np.int64), name)
            if name else None for k, (o, name) in enumerate(zip(outs, list(node.output)))]


@onnx_op("EyeLike")
def _eyelike(ctx: ImportContext, node):
    x = ctx.input(0)
    if x.type.rank != 2 or not x.type.is_static:
        raise ctx.error(f"input must be a static 2-D tensor, got {x.type}")
    dtype = ctx.attr("dtype")
    if dtype is None:
        np_dtype = x.dtype.np
    else:
        from .onnx_types import dtype_from_onnx

        np_dtype = dtype_from_onnx(dtype, "EyeLike: ").np
    eye = np.eye(x.shape[0], x.shape[1], k=int(ctx.attr("k", 0)), dtype=np_dtype)
    return [ctx.constant(eye, node.output[0])]


@onnx_op("HannWindow", "HammingWindow", "BlackmanWindow")
def _window(ctx: ImportContext, node):
    """A constant: the window's formula as onnx's reference evaluates it."""
    from .onnx_types import dtype_from_onnx

    size = _int(ctx, 0, "size")
    dtype = dtype_from_onnx(ctx.attr("output_datatype", 1), f"{node.op_type}: ").np
    n = size if ctx.attr("periodic", 1) == 1 else size - 1
    i = np.arange(size, dtype=np.float64)
    if node.op_type == "HannWindow":
        w = np.sin(i * np.pi / n) ** 2
    elif node.op_type == "HammingWindow":
        w = 25 / 46 - np.cos(i * np.pi * 2 / n) * (1 - 25 / 46)
    else:
        w = 0.42 - 0.5 * np.cos(i * np.pi * 2 / n) + 0.08 * np.cos(i * np.pi * 4 / n)
    return [ctx.constant(w.astype(dtype), node.output[0])]


@onnx_op("TensorScatter")
def _tensor_scatter(ctx: ImportContext, node):
    """Write ``update`` into the cache along ``axis`` from write_indices[batch] on (wrapping
    around in circular mode). In gather form each cache slot reads update[slot - start] when
    that lies in the update, else keeps its value: O(1) per element."""
    cache, update, start = ctx.input(0), ctx.input(1), ctx.input(2)
    rank = cache.type.rank
    axis = int(ctx.attr("axis", -2)) % rank
    mode = ctx.attr("mode", "linear")
    if mode not in ("linear", "circular") or axis == 0:
        raise ctx.error(f"mode must be linear or circular and axis not the batch axis, got "
                        f"{mode!r}, axis {axis}")
    size, seq = cache.shape[axis], update.shape[axis]
    i64 = np.int64
    slot_shape = [1] * rank
    slot_shape[axis] = size
    slot = ctx.constant(np.arange(size, dtype=i64).reshape(slot_shape), "cache_slot")
    if start is None:
        offset = slot
    else:
        batch = [1] * rank
        batch[0] = cache.shape[0]
        begin = ctx.add1("Reshape", [_int64(ctx, start)], {"shape": tuple(batch)})
        offset = ctx.add1("Sub", [slot, begin])
    if mode == "circular":
        offset = ctx.add("Mod", [offset, ctx.constant(np.array(size, i64))], {"fmod": 0})[0]
    inside = ctx.add1("And", [
        ctx.add1("GreaterOrEqual", [offset, ctx.constant(np.array(0, i64))]),
        ctx.add1("Less", [offset, ctx.constant(np.array(seq, i64))])])
    index = ctx.add1("Clip", [offset, ctx.constant(np.array(0, i64)),
                              ctx.constant(np.array(seq - 1, i64))])
    index = ctx.add1("Expand", [index], {"shape": tuple(cache.shape)})
    picked = ctx.add1("GatherElements", [update, index], {"axis": axis})
    inside = ctx.add1("Expand", [inside], {"shape": tuple(cache.shape)})
    return [ctx.add1("Where", [inside, picked, cache])]


@onnx_op("NonMaxSuppression")
def _nms(ctx: ImportContext, node):
    """Folded when boxes and scores are known at compile time (small graph inputs are
    specialized on); else run on the host between compiled parts of the model."""
    present = [k for k in range(len(node.input)) if ctx.input(k) is not None]
    values = [ctx.const(k) if k in present else None for k in range(len(node.input))]
    if any(values[k] is None for k in present):
        raise data_dependent(ctx, node)
    return [ctx.constant(evaluate_node(node, values, ctx.opset)[0], "selected_indices")]
