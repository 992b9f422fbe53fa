"""Einsum, decomposed into core ops: diagonals (mask + ReduceSum), sums over letters no one
else needs (ReduceSum), and for each pair of operands one batched MatMul between Transposes and
Reshapes (batch letters stay separate dims, so MatMul broadcasts them). Operands are combined
left to right."""
from __future__ import annotations

import re

import numpy as np

from .importer import ImportContext, onnx_op, prod


def parse_equation(eq: str, ranks: list[int]) -> tuple[list[str], str]:
    """Operand subscripts and output subscripts with '...' expanded to upper-case letters."""
    eq = eq.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"equation {eq!r} has {len(terms)} operands, the node {len(ranks)}")
    ell = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t),
              default=0)
    ell_letters = "".join(chr(ord("A") + k) for k in range(ell))
    out_terms = []
    for t, r in zip(terms, ranks):
        if not re.fullmatch(r"[a-zA-Z]*(\.\.\.)?[a-zA-Z]*", t):
            raise ValueError(f"bad subscripts {t!r} in {eq!r}")
        n = r - len(t.replace("...", ""))
        t = t.replace("...", ell_letters[ell - n:]) if "..." in t else t
        if len(t) != r:
            raise ValueError(f"subscripts {t!r} do not match an operand of rank {r}")
        out_terms.append(t)
    if arrow:
        out = rhs.replace("...", ell_letters)
    else:
        counts = {c: "".join(out_terms).count(c) for c in "".join(out_terms)}
        out = ell_letters + "".join(sorted(c for c, k in counts.items()
                                           if k == 1 and c.islower()))
    return out_terms, out


def _diagonal(ctx: ImportContext, x, sub: str):
    """Fold repeated letters of one operand: keep the diagonal (x * eye, summed)."""
    while len(set(sub)) < len(sub):
        c = next(c for c in sub if sub.count(c) > 1)
        i, j = sub.index(c), sub.index(c, sub.index(c) + 1)
        n = x.shape[i]
        shape = [1] * len(sub)
        shape[i], shape[j] = n, n
        eye = ctx.constant(np.eye(n, dtype=x.dtype.np).reshape(shape), "einsum_eye")
        x = ctx.add1("ReduceSum", [ctx.add1("Mul", [x, eye])], {"axes": (j,), "keepdims": 0})
        sub = sub[:j] + sub[j + 1:]
    return x, sub


def _sum_out(ctx: ImportContext, x, sub: str, keep: set[str]):
    axes = tuple(k for k, c in enumerate(sub) if c not in keep)
    if not axes:
        return x, sub
    x = ctx.add1("ReduceSum", [x], {"axes": axes, "keepdims": 0})
    return x, "".join(c for c in sub if c in keep)


def _permute(ctx: ImportContext, x, sub: str, order: str):
    if sub == order:
        return x
    return ctx.add1("Transpose", [x], {"perm": tuple(sub.index(c) for c in order)})


def _contract(ctx: ImportContext, a, sa: str, b, sb: str, keep: set[str]):
    """a (sa) times b (sb), summing letters in both that are not in ``keep``."""
    batch = [c for c in sa if c in sb and c in keep]
    inner = [c for c in sa if c in sb and c not in keep]
    only_a = [c for c in sa if c not in sb]
    only_b = [c for c in sb if c not in sa]
    size = {**{c: a.shape[k] for k, c in enumerate(sa)}, **{c: b.shape[k] for k, c in
                                                             enumerate(sb)}}
    for c in inner:
        if a.shape[sa.index(c)] != b.shape[sb.index(c)]:
            raise ValueError(f"dimension {c!r} is {a.shape[sa.index(c)]} in one operand and "
                             f"{b.shape[sb.index(c)]} in the other")
    a = _permute(ctx, a, sa, "".join(batch + only_a + inner))
    b = _permute(ctx, b, sb, "".join(batch + inner + only_b))
    bshape_a = tuple(a.shape[:len(batch)])
    bshape_b = tuple(b.shape[:len(batch)])
    m, k, n = (prod(size[c] for c in cs) for cs in (only_a, inner, only_b))
    a = ctx.add1("Reshape", [a], {"shape": bshape_a + (m, k)})
    b = ctx.add1("Reshape", [b], {"shape": bshape_b + (k, n)})
    y = ctx.add1("MatMul", [a, b])
    out_batch = tuple(y.shape[:len(batch)])
    y = ctx.add1("Reshape", [y], {"shape": out_batch + tuple(size[c] for c in only_a + only_b)})
    return y, "".join(batch + only_a + only_b)


@onnx_op("Einsum")
def _einsum(ctx: ImportContext, node):
    xs = ctx.inputs()
    try:
        terms, out = parse_equation(ctx.attr("equation"), [x.type.rank for x in xs])
    except ValueError as exc:
        raise ctx.error(str(exc)) from None
    ops = []
    for x, sub in zip(xs, terms):
        x, sub = _diagonal(ctx, x, sub)
        ops.append((x, sub))
    acc, sacc = None, ""
    for k, (x, sub) in enumerate(ops):
        later = set(out) | {c for _, s in ops[k + 1:] for c in s}
        if acc is None:
            acc, sacc = _sum_out(ctx, x, sub, later)
            continue
        x, sub = _sum_out(ctx, x, sub, later | set(sacc))
        acc, sacc = _sum_out(ctx, acc, sacc, later | set(sub))
        acc, sacc = _contract(ctx, acc, sacc, x, sub, later)
    acc, sacc = _sum_out(ctx, acc, sacc, set(out))
    if set(sacc) != set(out):
        raise ctx.error(f"output subscripts {out!r} name letters no operand has")
    y = _permute(ctx, acc, sacc, out)
    return [y if y is not xs[0] else ctx.add1("Identity", [y])]
