"""Phase splitting of a point stage's inner loop: ``x = d*u + r`` with the phase ``r`` unrolled.

A stage that reads its inputs only at ``x // d`` and ``x % d`` along its inner axis (Winograd's
output transform reads tile ``x // 2`` at position ``x % 2``; a nearest 2x upsample reads
``x // 2``) does not vectorize as written: ``x // d`` is not affine in ``x``. Emitting the loop
over ``u`` with one copy of the body per phase ``r`` (where ``x // d`` is ``u`` and ``x % d``
the constant ``r``) leaves unit-stride loads and ``d`` interleaved stores, which LLVM
vectorizes.
"""
from __future__ import annotations

from onnxc.ir.kernel import Expr, IndexValue, Ix, Load, Reduce, Stage, Var, rewrite, walk

MAX_PHASES = 4


def _uses(ix: Ix, x: Var, found: set) -> bool:
    """Collect the d of every ``x // d`` and ``x % d`` in ``ix``; False if x appears otherwise."""
    if isinstance(ix, Var):
        return ix is not x
    if ix.kind == "const":
        return True
    if ix.kind == "load":
        return all(_uses(i, x, found) for i in ix.a.index)
    if ix.kind in ("div", "mod") and ix.a is x and ix.b.kind == "const":
        found.add(ix.b.a)
        return True
    return _uses(ix.a, x, found) and _uses(ix.b, x, found)


def phases(st: Stage) -> int | None:
    """The phase count ``d`` if the stage's inner variable is read only through // d, % d."""
    if not st.shape or any(isinstance(e, Reduce) for e in walk(st.body)):
        return None
    x = st.vars[-1]
    found: set[int] = set()
    for e in walk(st.body):
        index = e.index if isinstance(e, Load) else (e.index,) if isinstance(e, IndexValue) \
            else ()
        if not all(_uses(i, x, found) for i in index):
            return None
    if len(found) != 1:
        return None
    d = found.pop()
    return d if 2 <= d <= MAX_PHASES and st.shape[-1] >= 2 * d else None


def _subst(ix: Ix, x: Var, u: Var, r: int, d: int) -> Ix:
    if isinstance(ix, Var):
        return u * d + r if ix is x else ix
    if ix.kind == "const":
        return ix
    if ix.kind == "load":
        ld = ix.a
        return Ix("load", Load(ld.tensor, tuple(_subst(i, x, u, r, d) for i in ld.index),
                               ld.dtype, ld.pad))
    if ix.kind in ("div", "mod") and ix.a is x and ix.b.kind == "const" and ix.b.a == d:
        return u if ix.kind == "div" else Ix.lift(r)
    return _subst(ix.a, x, u, r, d)._bin(ix.kind, _subst(ix.b, x, u, r, d))


def specialize(st: Stage, u: Var, r: int, d: int) -> Expr:
    """The stage body at ``x = d*u + r``, with ``x // d`` = u and ``x % d`` = r folded."""
    x = st.vars[-1]

    def fn(e: Expr):
        if isinstance(e, Load):
            return Load(e.tensor, tuple(_subst(i, x, u, r, d) for i in e.index), e.dtype, e.pad)
        if isinstance(e, IndexValue):
            return IndexValue(_subst(e.index, x, u, r, d))
        return None

    return rewrite(st.body, fn)


__all__ = ["phases", "specialize"]
