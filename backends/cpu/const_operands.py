"""A GEMM stage's constant operand evaluated as a matrix, for laying it out at compile time
(bf16_weights.py for precision="bf16", packed_weights.py for float32)."""
from __future__ import annotations

import math

import numpy as np

from onnxc.ir.interp import _ix

from ..gemm_match import GemmPlan


def reads_only(load, allowed, plan: GemmPlan) -> bool:
    """``load``'s index uses no variable but ``allowed`` and the reduction's (and no loads)."""
    names = set(allowed) | {v for v, _ in plan.red.axes}
    return all(not ix.loads() and ix.vars() <= names for ix in load.index)


def reduction_grid(plan: GemmPlan) -> tuple[int, dict]:
    """(K, reduction variable values over the flattened reduction, row-major, as 1-d arrays)."""
    K = math.prod(n for _, n in plan.red.axes)
    env, rest = {}, np.arange(K, dtype=np.int64)
    for var, extent in reversed(plan.red.axes):
        env[var] = rest % extent
        rest = rest // extent
    return K, env


def operand_values(load, env, const: np.ndarray) -> np.ndarray:
    """``const`` read at ``load``'s index for every point of ``env`` (broadcast arrays)."""
    idx = np.broadcast_arrays(*[np.asarray(_ix(i, env, {}), dtype=np.int64)
                                for i in load.index])
    return const[tuple(idx)]


def constant_b(st, plan: GemmPlan, constants: dict[str, np.ndarray], J: int
               ) -> np.ndarray | None:
    """``b`` as a [K, J] matrix (its first ``J`` columns) when it is one of ``constants`` and
    depends only on the stage's column and the reduction, else None."""
    if (plan.b.tensor not in constants or plan.merged
            or not reads_only(plan.b, {st.vars[-1]}, plan)):
        return None
    _, renv = reduction_grid(plan)
    env = {v: x[:, None] for v, x in renv.items()}
    env[st.vars[-1]] = np.arange(J, dtype=np.int64)[None, :]
    return operand_values(plan.b, env, constants[plan.b.tensor])


__all__ = ["constant_b", "operand_values", "reads_only", "reduction_grid"]
