"""Attention (opsets 23-25), decomposed into core ops as onnx's reference computes it.

Q and K are scaled by sqrt(scale) each, K/V heads are repeated for grouped-query attention,
an additive bias collects the attention mask, the causal and sliding-window masks (constants
unless their offset comes from ``nonpad_kv_seqlen`` at run time) and the key padding mask, and
rows whose bias is -inf everywhere give zeros instead of NaN.
"""
from __future__ import annotations

import math

import numpy as np

from onnxc.ir.dtypes import DType

from .importer import ImportContext, onnx_op
from .onnx_types import dtype_from_onnx


def _to_4d(ctx: ImportContext, x, heads: int):
    b, s, hidden = x.shape
    if hidden % heads:
        raise ctx.error(f"hidden size {hidden} of {x.type} is not divisible by {heads} heads")
    x = ctx.add1("Reshape", [x], {"shape": (b, s, heads, hidden // heads)})
    return ctx.add1("Transpose", [x], {"perm": (0, 2, 1, 3)})


def _add(ctx: ImportContext, a, b):
    return b if a is None else ctx.add1("Add", [a, b])


def _allowed_bias(ctx: ImportContext, diff_ok: np.ndarray | None, dtype, runtime=None):
    """Where(allowed, 0, -inf) as a constant, or from a run-time boolean value."""
    zero = ctx.constant(np.array(0, dtype=dtype.np))
    ninf = ctx.constant(np.array(-np.inf, dtype=dtype.np))
    if runtime is None:
        return ctx.constant(np.where(diff_ok, 0, -np.inf).astype(dtype.np), "attention_mask")
    return ctx.add1("Where", [runtime, zero, ninf])


def _frontier(ctx: ImportContext, sq: int, kv: int, nonpad, dtype, allowed_fn):
    """The bias of a mask defined on diff = (i + offset) - j: a constant [sq, kv] for a
    scalar offset, or [B, 1, sq, kv] computed from nonpad_kv_seqlen (offset = nonpad - sq)."""
    i = np.arange(sq).reshape(sq, 1)
    j = np.arange(kv).reshape(1, kv)
    if not isinstance(nonpad, (int, np.integer)):
        b = nonpad.shape[0]
        off = ctx.add1("Sub", [ctx.add1("Reshape", [nonpad], {"shape": (b, 1, 1, 1)}),
                               ctx.constant(np.array(sq, dtype=np.int64))])
        diff = ctx.add1("Add", [off, ctx.constant((i - j).astype(np.int64).reshape(
            1, 1, sq, kv))])
        return _allowed_bias(ctx, None, dtype, allowed_fn(ctx, diff))
    return _allowed_bias(ctx, allowed_fn(None, (i + int(nonpad)) - j), dtype)


def _causal(ctx, diff):
    """Key j is visible from query i when j <= i + offset: diff >= 0 (numpy when ctx is
    None, else a core op)."""
    if ctx is None:
        return diff >= 0
    return ctx.add1("GreaterOrEqual", [diff, ctx.constant(np.array(0, dtype=np.int64))])


def _window(left: int, right: int):
    def fn(ctx, diff):
        if ctx is None:
            ok = np.ones(diff.shape, dtype=bool)
            if left >= 0:
                ok &= diff <= left
            if right >= 0:
                ok &= -diff <= right
            return ok
        ok = None
        for bound, sign in ((left, 1), (right, -1)):
            if bound < 0:
                continue
            d = diff if sign > 0 else ctx.add1("Neg", [diff])
            c = ctx.add1("LessOrEqual", [d, ctx.constant(np.array(bound, dtype=np.int64))])
            ok = c if ok is None else ctx.add1("And", [ok, c])
        return ok
    return fn


def _softmax_guarded(ctx: ImportContext, scores, bias, precision):
    """Softmax over the keys; rows whose bias is -inf everywhere become zeros."""
    s = scores if precision is None or precision == scores.dtype else \
        ctx.add1("Cast", [scores], {"to": precision.value})
    p = ctx.add1("Softmax", [s], {"axis": -1})
    if bias is not None:
        top = ctx.add1("ReduceMax", [bias], {"axes": (-1,), "keepdims": 1})
        dead = ctx.add1("Equal", [top, ctx.constant(np.array(-np.inf, dtype=top.dtype.np))])
        p = ctx.add1("Where", [dead, ctx.constant(np.array(0, dtype=p.dtype.np)), p])
    return p


@onnx_op("Attention")
def _attention(ctx: ImportContext, node):
    q, k, v, mask, past_k, past_v = (ctx.input(i) for i in range(6))
    nonpad = ctx.input(6)
    rank = q.type.rank
    if rank not in (3, 4) or k.type.rank != rank or v.type.rank != rank:
        raise ctx.error(f"Q, K, V must all be 3-D or 4-D, got {q.type}, {k.type}, {v.type}")
    if (past_k is None) != (past_v is None):
        raise ctx.error("past_key and past_value must be given together")
    if rank == 3:
        qh, kvh = int(ctx.attr("q_num_heads", 0)), int(ctx.attr("kv_num_heads", 0))
        if qh < 1 or kvh < 1:
            raise ctx.error("3-D inputs need the q_num_heads and kv_num_heads attributes")
        q, k, v = _to_4d(ctx, q, qh), _to_4d(ctx, k, kvh), _to_4d(ctx, v, kvh)
    dtype = q.dtype
    scale = ctx.attr("scale")
    scale = 1 / math.sqrt(q.shape[3]) if scale is None else float(scale)
    root = ctx.constant(np.array(np.sqrt(scale), dtype=dtype.np))
    if past_k is not None:
        k = ctx.add1("Concat", [past_k, k], {"axis": 2})
        v = ctx.add1("Concat", [past_v, v], {"axis": 2})
    present_k, present_v = k, v
    sq, kv = q.shape[2], k.shape[2]

    bias = None
    if mask is not None:
        if mask.dtype == DType.bool:
            mask = _allowed_bias(ctx, None, dtype, mask)
        elif mask.dtype != dtype:
            mask = ctx.add1("Cast", [mask], {"to": dtype.value})
        short = kv - mask.shape[-1]
        if short > 0:  # a shorter mask leaves the extra keys masked
            pads = [0] * (2 * mask.type.rank)
            pads[-1] = short
            mask = ctx.add1("Pad", [mask], {"pads": tuple(pads), "mode": "constant",
                                            "value": -np.inf})
        bias = mask
    offset = nonpad if past_k is None and nonpad is not None else \
        (past_k.shape[2] if past_k is not None else 0)
    if ctx.attr("is_causal", 0):
        bias = _add(ctx, bias, _frontier(ctx, sq, kv, offset, dtype, _causal))
    left, right = int(ctx.attr("left_window_size", -1)), int(ctx.attr("right_window_size", -1))
    if left >= 0 or right >= 0:
        bias = _add(ctx, bias, _frontier(ctx, sq, kv, offset, dtype, _window(left, right)))
    if nonpad is not None:
        keys = ctx.constant(np.arange(kv, dtype=np.int64).reshape(1, kv))
        lens = ctx.add1("Reshape", [nonpad], {"shape": (nonpad.shape[0], 1)})
        pad = _allowed_bias(ctx, None, dtype, ctx.add1("Less", [keys, lens]))
        bias = _add(ctx, bias, ctx.add1("Reshape", [pad], {"shape": (nonpad.shape[0], 1, 1,
                                                                      kv)}))

    heads, kv_heads = q.shape[1], k.shape[1]
    if heads != kv_heads:
        if heads % kv_heads or v.shape[1] != kv_heads:
            raise ctx.error(f"{heads} query heads cannot share {kv_heads} key/value heads")
        g = heads // kv_heads
        b = k.shape[0]
        k, v = (ctx.add1("Reshape", [ctx.add1("Expand", [
            ctx.add1("Reshape", [t], {"shape": (b, kv_heads, 1, *t.shape[2:])})],
            {"shape": (b, kv_heads, g, *t.shape[2:])})], {"shape": (b, heads, *t.shape[2:])})
            for t in (k, v))

    qs = ctx.add1("Mul", [q, root])
    ks = ctx.add1("Transpose", [ctx.add1("Mul", [k, root])], {"perm": (0, 1, 3, 2)})
    scores = ctx.add1("MatMul", [qs, ks])
    softcap = float(ctx.attr("softcap", 0.0))
    if softcap > 0:
        c = ctx.constant(np.array(softcap, dtype=dtype.np))
        scores = ctx.add1("Mul", [ctx.add1("Tanh", [ctx.add1("Div", [scores, c])]), c])
    qk_out = scores
    if bias is not None:
        scores = ctx.add1("Add", [scores, bias])
    mode = int(ctx.attr("qk_matmul_output_mode", 0))
    if mode == 2:
        qk_out = scores
    precision = ctx.attr("softmax_precision")
    precision = None if precision is None else dtype_from_onnx(precision, "softmax_precision: ")
    probs = _softmax_guarded(ctx, scores, bias, precision)
    if mode == 3:
        qk_out = probs
    if qk_out.dtype != dtype:
        qk_out = ctx.add1("Cast", [qk_out], {"to": dtype.value})
    if probs.dtype != dtype:
        probs = ctx.add1("Cast", [probs], {"to": dtype.value})
    y = ctx.add1("MatMul", [probs, v])
    if rank == 3:
        y = ctx.add1("Transpose", [y], {"perm": (0, 2, 1, 3)})
        y = ctx.add1("Reshape", [y], {"shape": (y.shape[0], y.shape[1],
                                               y.shape[2] * y.shape[3])})
    return [y, present_k, present_v, qk_out]


@onnx_op("RotaryEmbedding")
def _rotary(ctx: ImportContext, node):
    """Rotate pairs of the first rotary_embedding_dim features of each head by cos/sin of
    the position: halves (x1 | x2) or interleaved pairs (x1, x2, x1, x2, ...)."""
    x, cos, sin, pos = (ctx.input(i) for i in range(4))
    shape = tuple(x.shape)
    if x.type.rank == 4:  # (B, H, S, D) -> (B, S, H, D)
        x = ctx.add1("Transpose", [x], {"perm": (0, 2, 1, 3)})
    elif x.type.rank == 3:
        heads = int(ctx.attr("num_heads", 0))
        if heads < 1 or shape[2] % heads:
            raise ctx.error(f"3-D input {x.type} needs num_heads dividing its hidden size")
        x = ctx.add1("Reshape", [x], {"shape": (shape[0], shape[1], heads, shape[2] // heads)})
    else:
        raise ctx.error(f"input must be 3-D or 4-D, got {x.type}")
    b, s, h, d = x.shape
    rot = int(ctx.attr("rotary_embedding_dim", 0)) or d
    half = rot // 2
    if pos is not None:
        cos, sin = (ctx.add1("Gather", [c, pos], {"axis": 0}) for c in (cos, sin))
    if cos.shape[-1] != half or sin.shape[-1] != half:
        raise ctx.error(f"cos/sin caches must end in rotary_embedding_dim / 2 = {half}, got "
                        f"{cos.type} and {sin.type}")
    cos, sin = (ctx.add1("Reshape", [c], {"shape": tuple(c.shape[:-1]) + (1, half)})
                for c in (cos, sin))

    def cut(t, start, end, step=1):
        return ctx.add1("Slice", [t], {"starts": (start,), "ends": (end,), "axes": (3,),
                                       "steps": (step,)})

    interleaved = bool(ctx.attr("interleaved", 0))
    x1, x2 = (cut(x, 0, rot, 2), cut(x, 1, rot, 2)) if interleaved else \
        (cut(x, 0, half), cut(x, half, rot))
    real = ctx.add1("Sub", [ctx.add1("Mul", [cos, x1]), ctx.add1("Mul", [sin, x2])])
    imag = ctx.add1("Add", [ctx.add1("Mul", [sin, x1]), ctx.add1("Mul", [cos, x2])])
    if interleaved:
        pair = (b, s, h, half, 1)
        y = ctx.add1("Concat", [ctx.add1("Reshape", [real], {"shape": pair}),
                                ctx.add1("Reshape", [imag], {"shape": pair})], {"axis": 4})
        y = ctx.add1("Reshape", [y], {"shape": (b, s, h, rot)})
    else:
        y = ctx.add1("Concat", [real, imag], {"axis": 3})
    if rot < d:
        y = ctx.add1("Concat", [y, cut(x, rot, d)], {"axis": 3})
    if len(shape) == 4:
        return [ctx.add1("Transpose", [y], {"perm": (0, 2, 1, 3)})]
    return [ctx.add1("Reshape", [y], {"shape": shape})]
