"""A numpy interpreter for the kernel IR: the living spec of every core op.

It evaluates stages with broadcast index grids, so it is exact but memory-hungry: onnxc uses it
for constant folding of small tensors and as a reference in tests, never at run time.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .dtypes import DType
from .errors import ModelError
from .kernel import Const, Expr, IndexValue, Ix, Kernel, Load, Op, Reduce, Stage, Var

_UNARY = {
    "neg": np.negative, "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh,
    "abs": np.abs, "floor": np.floor, "ceil": np.ceil, "round": np.rint,
    "not": np.logical_not, "sin": np.sin, "cos": np.cos, "erf": np.frompyfunc(math.erf, 1, 1),
    "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh,
    "cosh": np.cosh, "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh,
}
_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "max": np.maximum,
    "min": np.minimum, "pow": np.power, "and": np.bitwise_and, "or": np.bitwise_or,
    "xor": np.bitwise_xor, "shl": np.left_shift, "shr": np.right_shift, "lt": np.less, "le": np.less_equal, "gt": np.greater,
    "ge": np.greater_equal, "eq": np.equal, "ne": np.not_equal,
}
_REDUCE = {"sum": np.sum, "max": np.max, "min": np.min, "prod": np.prod}


def _ix(ix: Ix, env: dict[Var, np.ndarray], tensors: dict[str, np.ndarray]) -> np.ndarray:
    if isinstance(ix, Var):
        return env[ix]
    if ix.kind == "const":
        return np.int64(ix.a)
    if ix.kind == "load":
        return np.asarray(_load(ix.a, env, tensors), dtype=np.int64)
    a, b = _ix(ix.a, env, tensors), _ix(ix.b, env, tensors)
    return {"add": np.add, "mul": np.multiply, "div": np.floor_divide, "mod": np.mod,
            "min": np.minimum, "max": np.maximum}[ix.kind](a, b)


def _div(a: np.ndarray, b: np.ndarray, dtype: DType) -> np.ndarray:
    if dtype.is_float:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.true_divide(a, b)
    if np.any(b == 0):
        raise ModelError("integer division by zero")
    q = np.abs(a) // np.abs(b)  # C semantics: truncate toward zero
    return np.where((a < 0) ^ (b < 0), -q, q)


def _mod(a: np.ndarray, b: np.ndarray, dtype: DType) -> np.ndarray:
    if not dtype.is_float and np.any(b == 0):
        raise ModelError("integer modulo by zero")
    return np.fmod(a, b)  # C semantics: the result takes the dividend's sign


def _load(e: Load, env: dict[Var, np.ndarray], tensors: dict[str, np.ndarray]) -> np.ndarray:
    data = tensors[e.tensor]
    idx = np.broadcast_arrays(*[np.asarray(_ix(i, env, tensors), dtype=np.int64)
                                for i in e.index])
    if not e.index:
        return data.reshape(())
    if e.pad is None:
        return data[tuple(idx)]
    inside = np.ones(idx[0].shape, dtype=bool)
    clipped = []
    for i, n in zip(idx, data.shape):
        inside &= (i >= 0) & (i < n)
        clipped.append(np.clip(i, 0, max(n - 1, 0)))
    return np.where(inside, data[tuple(clipped)], np.asarray(e.pad, dtype=data.dtype))


def _eval(e: Expr, env: dict[Var, np.ndarray], tensors: dict[str, np.ndarray], rank: int,
          memo: dict | None = None):
    """Evaluate with memoization: fused expressions are DAGs with shared sub-expressions."""
    memo = {} if memo is None else memo
    key = (id(e), id(env))
    if key not in memo:
        memo[key] = (_eval_node(e, env, tensors, rank, memo), env, e)
    return memo[key][0]


def _eval_node(e: Expr, env: dict[Var, np.ndarray], tensors: dict[str, np.ndarray], rank: int,
               memo: dict):
    if isinstance(e, Const):
        return np.asarray(e.value, dtype=e.dtype.np)
    if isinstance(e, IndexValue):
        return np.asarray(_ix(e.index, env, tensors), dtype=np.int64)
    if isinstance(e, Load):
        return _load(e, env, tensors)
    if isinstance(e, Op):
        args = [_eval(a, env, tensors, rank, memo) for a in e.args]
        with np.errstate(all="ignore"):
            if e.name == "select":
                out = np.where(args[0], args[1], args[2])
            elif e.name == "cast":
                out = args[0].astype(e.dtype.np)
            elif e.name == "bitcast":
                out = np.ascontiguousarray(args[0]).view(e.dtype.np)
            elif e.name == "div":
                out = _div(args[0], args[1], e.dtype)
            elif e.name == "mod":
                out = _mod(args[0], args[1], e.dtype)
            elif e.name in _UNARY:
                out = _UNARY[e.name](args[0])
            else:
                out = _BINARY[e.name](args[0], args[1])
        return np.asarray(out).astype(e.dtype.np, copy=False)
    if isinstance(e, Reduce):
        m = len(e.axes)
        inner = {v: np.reshape(a, np.shape(a) + (1,) * m) for v, a in env.items()}
        for k, (var, extent) in enumerate(e.axes):
            shape = [1] * (rank + m)
            shape[rank + k] = extent
            inner[var] = np.arange(extent, dtype=np.int64).reshape(shape)
        body = _eval(e.body, inner, tensors, rank + m, memo)
        body = np.broadcast_to(body, np.broadcast_shapes(np.shape(body), (1,) * rank +
                                                          tuple(n for _, n in e.axes)))
        with np.errstate(all="ignore"):
            return _REDUCE[e.kind](body, axis=tuple(range(rank, rank + m))).astype(e.dtype.np)
    raise TypeError(f"cannot evaluate {e!r}")


def eval_stage(st: Stage, tensors: dict[str, np.ndarray]) -> np.ndarray:
    rank = len(st.shape)
    env = {}
    for k, (var, extent) in enumerate(zip(st.vars, st.shape)):
        shape = [1] * rank
        shape[k] = extent
        env[var] = np.arange(extent, dtype=np.int64).reshape(shape)
    out = _eval(st.body, env, tensors, rank)
    return _contiguous(np.broadcast_to(out, st.shape)).astype(st.body.dtype.np)


def run_kernel(kernel: Kernel, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate every stage; returns all tensors (inputs, temporaries, outputs) by name."""
    tensors: dict[str, Any] = dict(arrays)
    for st in kernel.stages:
        tensors[st.out] = eval_stage(st, tensors)
    return tensors


def _contiguous(array):
    """C-contiguous without numpy's ascontiguousarray turning 0-d arrays into 1-d ones."""
    import numpy

    array = numpy.asarray(array)
    return array if array.flags.c_contiguous else numpy.array(array, order="C")
