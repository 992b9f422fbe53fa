"""Weights for ``precision="bf16"``, rounded and laid out once, at compile time.

A GEMM stage (gemm_bf16.py) whose operand is a model constant reads it in the layout its
micro-kernel wants instead of converting it on every run:

* ``b`` constant (MatMul's ``W[k, j]``): the whole panel set ``[tile][K/2][NR*16]`` of bf16
  pairs, every column block's panels one after another (the run-time copy disappears);
* ``a`` constant (Conv's ``w[co, ci, kh, kw]``, Gemm's weights): rows ``[P rounded up to MR]
  [2*KA]`` of bf16, zero-padded (the per-row-tile conversion disappears).

Half the bytes of the float32 weights are read per run. Rounding is the instruction's
(``round_bits``: nearest even, denormals to signed zero, NaN quietened), so prepared and
run-time-converted operands give the same bits. The runtime adds each array to the plan's
constants as a uint16 parameter and records it in ``kernel.bf16_prepacked``.
"""
from __future__ import annotations

import numpy as np

from onnxc.ir.kernel import Kernel

from ..gemm_match import match_gemm
from .const_operands import constant_b, operand_values, reads_only, reduction_grid
from .gemm_bf16 import L, _blocking, tile_shape, use_bf16


def round_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16) as vcvtne2ps2bf16 rounds."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    mag = bits & 0x7FFFFFFF
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF
    out = np.where(mag < 0x800000, (bits >> 16) & 0x8000, rounded)
    out = np.where(mag > 0x7F800000, ((bits | 0x400000) >> 16) & 0xFFFF, out)
    return out.astype(np.uint16)


def prepare(kernel: Kernel, constants: dict[str, np.ndarray]) -> list[tuple[str, str, np.ndarray]]:
    """(stage output, "a" | "b", uint16 array) for each constant GEMM operand of ``kernel``
    that gemm_bf16 can read prepared. ``constants``: parameter name -> value."""
    shapes = {p.name: p.shape for p in kernel.params}
    found = []
    for st in kernel.stages:
        plan = match_gemm(st, shapes, min_rows=1)
        if plan is None or not use_bf16(st, plan, shapes):
            continue
        MR, NR = tile_shape(st, plan)
        K, renv = reduction_grid(plan)
        KP = -(-K // 2)
        KA = -(-KP // L) * L
        if plan.a.tensor in constants and reads_only(plan.a, {plan.p}, plan):
            P = st.shape[plan.p_index]
            env = {**renv, plan.p: np.arange(P, dtype=np.int64)[:, None]}
            env = {v: (x[None, :] if v is not plan.p else x) for v, x in env.items()}
            vals = operand_values(plan.a, env, constants[plan.a.tensor])  # [P, K]
            rows = np.zeros((-(-P // MR) * MR, 2 * KA), np.uint16)
            rows[:P, :K] = round_bits(vals)
            found.append((st.out, "a", rows.reshape(-1)))
        J = st.shape[-1]
        vals = constant_b(st, plan, constants, J)  # [K, J]
        if vals is not None:
            jtile = NR * L
            NC, jblocks, _, _, _ = _blocking(st, plan)
            tiles = jblocks * (NC // jtile)  # every block's tiles, the last block padded
            grid = np.zeros((2 * KP, tiles * jtile), np.uint16)
            grid[:K, :J] = round_bits(vals)
            panels = grid.reshape(KP, 2, tiles, jtile).transpose(2, 0, 3, 1)
            found.append((st.out, "b", np.ascontiguousarray(panels).reshape(-1)))
    return found


__all__ = ["prepare", "round_bits"]
