"""Warp-per-row reductions: Softmax, LayerNorm, Reduce*, pooling over large windows.

A stage whose value needs a ``Reduce`` over many elements gives each output element to one
warp instead of one thread: the 32 lanes split the (flattened) reduction box, each folds its
share into a register, and a butterfly of ``__shfl_xor_sync`` combines the 32 partial results
so that every lane holds the total. The lanes then evaluate the rest of the expression
together (it is cheap and keeps them converged) and lane 0 stores. Nested reductions (a
``Reduce`` inside another one's body) stay sequential per lane: only the outermost ones are
split, so every shuffle is reached by all 32 lanes of the warp.
"""
from __future__ import annotations

import math

from onnxc.ir.kernel import Reduce, Stage, walk

from .cexpr import StageWriter, combine, reduce_init, value_type

WARP = 32
WARP_MIN_EXTENT = 32  # below this one thread per output element is as fast and simpler
WARPS_PER_BLOCK = 8
MAX_BLOCKS = 65535


def outer_reduces(st: Stage) -> list[Reduce]:
    """The reductions of the stage's body that are not inside another reduction."""
    inner: set[int] = set()
    for e in walk(st.body):
        if isinstance(e, Reduce):
            inner |= {id(x) for x in walk(e.body) if isinstance(x, Reduce)}
    return [e for e in walk(st.body) if isinstance(e, Reduce) and id(e) not in inner]


def wants_warp(st: Stage) -> bool:
    """Use a warp per output element when some outer reduction covers at least a warp."""
    return any(math.prod(n for _, n in r.axes) >= WARP_MIN_EXTENT for r in outer_reduces(st))


def warp_launch(total: int) -> tuple[int, int]:
    """(grid, block): WARPS_PER_BLOCK output elements per block, grid-stride past the cap."""
    return max(1, min(-(-total // WARPS_PER_BLOCK), MAX_BLOCKS)), WARP * WARPS_PER_BLOCK


class WarpStageWriter(StageWriter):
    """A StageWriter whose outermost reductions are split over the lanes of a warp."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.nesting = 0

    def reduce(self, e: Reduce, depth: int) -> str:
        if self.nesting:
            self.nesting += 1
            try:
                return super().reduce(e, depth)
            finally:
                self.nesting -= 1
        acc = self.temp("_acc")
        t = value_type(e.dtype)
        total = math.prod(n for _, n in e.axes)
        self.emit(depth, f"{t} {acc} = {reduce_init(e.kind, e.dtype)};")
        self.emit(depth, f"for (i64 _f = _lane; _f < {total}LL; _f += {WARP}) {{")
        rest = self.temp("_f")
        self.emit(depth + 1, f"i64 {rest} = _f;")
        for k in range(len(e.axes) - 1, -1, -1):
            v, n = e.axes[k]
            self.extents[v] = n
            tail = f" {rest} /= {n};" if k else ""
            value = f"{rest} % {n}" if k else rest
            self.emit(depth + 1, f"const i64 {self.var(v)} = {value};{tail}")
        self.nesting += 1
        self.scopes.append({})
        body = self.expr(e.body, depth + 1)
        self.scopes.pop()
        self.nesting -= 1
        self.emit(depth + 1, f"{acc} = {combine(e.kind, e.dtype, acc, body)};")
        self.emit(depth, "}")
        self.emit(depth, "#pragma unroll")
        self.emit(depth, f"for (int _o = {WARP // 2}; _o > 0; _o >>= 1)  // butterfly: every "
                         "lane gets the total")
        self.emit(depth + 1, f"{acc} = {combine(e.kind, e.dtype, acc, f'ox_shfl_xor({acc}, _o)')};")
        return acc


__all__ = ["WarpStageWriter", "wants_warp", "warp_launch", "outer_reduces", "WARP_MIN_EXTENT"]
