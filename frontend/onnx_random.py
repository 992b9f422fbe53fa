"""Random number generators: RandomUniform(Like), RandomNormal(Like), Bernoulli, Multinomial
and Dropout's training mode.

The draws are made on the host at compile time with numpy's ``RandomState``, seeded with the
node's ``seed`` (fresh OS entropy without one), exactly as ``onnx.reference`` draws them, and
enter the graph as constants; whatever depends on run-time data (Multinomial's probabilities,
Bernoulli's p, Dropout's input) is still computed at run time from those draws. Why not a
counter-based generator (Philox) in generated code: the IR has no state that survives a run,
so a kernel could only hash (seed, element index), which gives the same fixed-per-compile
stream with more code in two backends, and no more fidelity to a reference. The consequence,
documented in the README: a compiled session returns the same draw on every run (reseed by
compiling again), whereas onnxruntime advances its generator from run to run.
"""
from __future__ import annotations

import numpy as np

from onnxc.ir import Value
from onnxc.ir.dtypes import DType

from .importer import ImportContext, onnx_op
from .onnx_types import dtype_from_onnx

MAX_DRAW_ELEMENTS = 1 << 24  # a bigger draw would be a huge constant; refused


def random_state(ctx: ImportContext) -> np.random.RandomState:
    """numpy's legacy generator seeded like onnx.reference (int(seed)), or from entropy."""
    seed = ctx.attr("seed")
    if seed is None:
        return np.random.RandomState()
    if not np.isfinite(seed) or not 0 <= int(seed) < 2 ** 32:
        raise ctx.error(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return np.random.RandomState(int(seed))


def _shape(ctx: ImportContext, shape, what: str) -> tuple[int, ...]:
    shape = tuple(shape)
    if not all(isinstance(d, (int, np.integer)) for d in shape):
        raise ctx.unsupported(f"the {what} must be static (got {list(shape)}); pass "
                              f"input_shapes to compile")
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise ctx.error(f"the {what} {list(shape)} has a negative dimension")
    n = int(np.prod(shape, dtype=np.int64))
    if n > MAX_DRAW_ELEMENTS:
        raise ctx.unsupported(f"draws {n} random numbers at compile time; at most "
                              f"{MAX_DRAW_ELEMENTS} are supported")
    ctx.check_alloc(shape, 8, "its random draw")
    return shape


def _float_dtype(ctx: ImportContext, default: DType) -> DType:
    code = ctx.attr("dtype")
    dtype = default if code is None or code == 0 else dtype_from_onnx(
        int(code), f"{ctx.node.op_type}'s dtype: ")
    if dtype not in (DType.float16, DType.float32, DType.float64):
        raise ctx.error(f"dtype must be a float type, got {dtype.value}")
    return dtype


def _uniform(ctx: ImportContext, shape, dtype: DType) -> Value:
    """onnx.reference's RandomUniform: rand(*shape) scaled to [low, high) in ``dtype``."""
    low, high = float(ctx.attr("low", 0.0)), float(ctx.attr("high", 1.0))
    res = random_state(ctx).rand(*shape).astype(dtype.np)
    res *= high - low
    res += low
    return ctx.constant(res.astype(dtype.np), "random_uniform")


def _normal(ctx: ImportContext, shape, dtype: DType) -> Value:
    """onnx.reference's RandomNormal: randn(*shape) * scale + mean in ``dtype``."""
    mean, scale = float(ctx.attr("mean", 0.0)), float(ctx.attr("scale", 1.0))
    res = random_state(ctx).randn(*shape).astype(dtype.np)
    res *= scale
    res += mean
    return ctx.constant(res.astype(dtype.np), "random_normal")


@onnx_op("RandomUniform", "RandomNormal")
def _random(ctx: ImportContext, node):
    shape = ctx.attr("shape")
    if shape is None:
        raise ctx.error("the shape attribute is required")
    shape = _shape(ctx, shape, "shape attribute")
    draw = _uniform if node.op_type == "RandomUniform" else _normal
    return [draw(ctx, shape, _float_dtype(ctx, DType.float32))]


@onnx_op("RandomUniformLike", "RandomNormalLike")
def _random_like(ctx: ImportContext, node):
    x = ctx.input(0)
    shape = _shape(ctx, x.shape, "input's shape")
    dtype = _float_dtype(ctx, x.dtype if x.dtype.is_float else DType.float32)
    draw = _uniform if node.op_type == "RandomUniformLike" else _normal
    return [draw(ctx, shape, dtype)]


@onnx_op("Bernoulli")
def _bernoulli(ctx: ImportContext, node):
    """1 with probability p: uniform draw < p. (ONNX's function body for Bernoulli computes
    Greater(draw, p), which is 1 with probability 1 - p; onnx.reference's Bernoulli, numpy's
    binomial, agrees with the spec, and so does this.)"""
    p = ctx.input(0)
    shape = _shape(ctx, p.shape, "input's shape")
    code = ctx.attr("dtype")
    out = p.dtype if code is None else dtype_from_onnx(int(code), "Bernoulli's dtype: ")
    u = random_state(ctx).rand(*shape).astype(p.dtype.np)
    hit = ctx.add1("Less", [ctx.constant(u, "bernoulli_draw"), p])
    return [ctx.add1("Cast", [hit], {"to": out.value})]


@onnx_op("Multinomial")
def _multinomial(ctx: ImportContext, node):
    """Per batch row, sample_size class indices from softmax(input): the number of CDF
    entries at or below a uniform draw (the inverse CDF), clipped to the last class."""
    x = ctx.input(0)
    if x.type.rank != 2:
        raise ctx.error(f"input must be [batch_size, class_size], got {x.type}")
    batch, classes = _shape(ctx, x.shape, "input's shape")
    n = int(ctx.attr("sample_size", 1))
    if n < 1:
        raise ctx.error(f"sample_size must be >= 1, got {n}")
    out = dtype_from_onnx(int(ctx.attr("dtype", 6)), "Multinomial's dtype: ")
    if out not in (DType.int32, DType.int64):
        raise ctx.error(f"dtype must be int32 or int64, got {out.value}")
    _shape(ctx, (batch, n), "output shape")
    u = random_state(ctx).rand(batch, n, 1).astype(x.dtype.np)
    cdf = ctx.add1("CumSum", [ctx.add1("Softmax", [x], {"axis": -1})],
                   {"axis": 1, "exclusive": 0, "reverse": 0})
    cdf = ctx.add1("Reshape", [cdf], {"shape": (batch, 1, classes)})
    below = ctx.add1("LessOrEqual", [cdf, ctx.constant(u, "multinomial_draw")])
    count = ctx.add1("ReduceSum", [ctx.add1("Cast", [below], {"to": out.value})],
                     {"axes": (2,), "keepdims": 0, "noop_with_empty_axes": 0})
    last = ctx.constant(np.array(classes - 1, dtype=out.np))
    return [ctx.add1("Min", [count, last])]


def dropout_training(ctx: ImportContext, x: Value, ratio: float) -> tuple[Value, Value]:
    """Dropout in training mode as onnx.reference draws it: keep where
    uniform(0, 1) >= ratio, scaled by 1 / (1 - ratio); the mask is a compile-time draw."""
    if not 0.0 <= ratio < 1.0:
        raise ctx.error(f"ratio must be in [0, 1) in training mode, got {ratio}")
    shape = _shape(ctx, x.shape, "input's shape")
    keep = random_state(ctx).uniform(0, 1.0, shape) >= ratio
    scale = (keep * (1.0 / (1.0 - ratio))).astype(x.dtype.np)
    y = ctx.add1("Mul", [x, ctx.constant(scale, "dropout_scale")])
    return y, ctx.constant(keep, "dropout_mask")
