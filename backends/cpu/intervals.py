"""Interval arithmetic over kernel-IR index expressions: which elements a load can reach."""
from __future__ import annotations

from onnxc.ir.kernel import Ix, Var

Range = tuple[int, int]


def ix_range(ix: Ix, ranges: dict[Var, Range]) -> Range | None:
    """Smallest and largest value of ``ix`` over the variables' ranges, or None if unknown."""
    if isinstance(ix, Var):
        return ranges.get(ix)
    if ix.kind == "const":
        return ix.a, ix.a
    if ix.kind == "load":
        return None
    a, b = ix_range(ix.a, ranges), ix_range(ix.b, ranges)
    if a is None or b is None:
        return None
    if ix.kind == "add":
        return a[0] + b[0], a[1] + b[1]
    if ix.kind == "mul":
        products = [x * y for x in a for y in b]
        return min(products), max(products)
    if ix.kind in ("min", "max"):
        f = min if ix.kind == "min" else max
        return f(a[0], b[0]), f(a[1], b[1])
    if b[0] != b[1] or b[0] <= 0 or a[0] < 0:
        return None  # // and % are only used on non-negative operands
    d = b[0]
    if ix.kind == "div":
        return a[0] // d, a[1] // d
    if a[1] - a[0] < d and a[0] % d <= a[1] % d:
        return a[0] % d, a[1] % d
    return 0, d - 1


__all__ = ["Range", "ix_range"]
