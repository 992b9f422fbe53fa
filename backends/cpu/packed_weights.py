"""float32 weights laid out for the packed GEMM once, at compile time.

The packed GEMM (gemm_packed.py) copies each column block of its ``b`` operand into panels
``[tile][K][NR * vw]`` before the micro-kernel reads them. When ``b`` is a model constant
(MatMul's ``W[k, j]``, Gemm's ``B``), that copy gives the same bytes on every run: here it is
made once, zero-padded past the last column, as an extra float32 constant of the kernel
(``kernel.f32_prepacked``: stage output -> (parameter name, vector width)), and the run reads
the panels in place. Only the micro-kernel's columns are laid out; the few leftover columns
(gemm_tail.py) still read the original weights, which stay a constant.
"""
from __future__ import annotations

import numpy as np

from onnxc.ir.kernel import Kernel

from .codegen import gemm_schedule
from .const_operands import constant_b
from .gemm_packed import main_columns, tile_shape

ENABLED = True  # bench.ab_prepack switches it off: every run packs, as before


def prepare(kernel: Kernel, constants: dict[str, np.ndarray], vw: int
            ) -> list[tuple[str, np.ndarray]]:
    """(stage output, float32 panels) for each packed-GEMM stage of ``kernel`` whose ``b`` is
    one of ``constants`` (parameter name -> value), for vectors of ``vw`` floats."""
    if not ENABLED:
        return []
    shapes = {p.name: p.shape for p in kernel.params}
    found = []
    for st in kernel.stages:
        chosen = gemm_schedule(st, shapes, vw, "fp32")
        if chosen is None or chosen[0] != "packed":
            continue
        plan = chosen[1]
        J = main_columns(st, plan, vw)
        vals = constant_b(st, plan, constants, J)  # [K, J]
        if vals is None:
            continue
        _, NR = tile_shape(st, plan, vw)
        jtile = NR * vw
        tiles = -(-J // jtile)
        K = vals.shape[0]
        grid = np.zeros((K, tiles * jtile), np.float32)
        grid[:, :J] = vals
        panels = grid.reshape(K, tiles, jtile).transpose(1, 0, 2)
        found.append((st.out, np.ascontiguousarray(panels).reshape(-1)))
    return found


__all__ = ["prepare"]
