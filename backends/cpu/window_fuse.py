"""Reading a window stage's input straight from its source instead of through a copy.

Conv with strides puts a stride-phase copy before its window (``phases[a, b, n, c, i, j] =
xpad[n, c, i*s + a, j*s + b]``) so that a GEMM reads it with unit stride. A depthwise or grouped
convolution is no GEMM: window.py reads stride-2 columns itself (two vector loads and a
shuffle), so the copy is one more pass over memory for nothing. Here a kernel's temporary stage
that is a single load is substituted into its readers when every reader is then a window
stage (never into a reader the GEMM schedule takes: a dense strided convolution, such as a
3-channel 7x7 stem, runs ~5x faster as a packed GEMM over the copy than as a window). The copy
pads reads past its source with zeros; the substitution keeps that only where
interval arithmetic over the index expressions cannot prove the read inside its tensor, and
window.py declines padded reads, so a copy whose padding is really used stays.
"""
from __future__ import annotations

from onnxc.ir.kernel import Kernel, Load, Reduce, Stage, Var, inline, loads, rewrite, walk

from onnxc.backends.gemm_match import match_gemm

from .intervals import Range, ix_range
from .window import match_window



def drop_safe_pads(st: Stage, shapes: dict) -> Stage:
    """``st`` with the padding removed from loads that provably stay inside their tensor."""
    ranges: dict[Var, Range] = {v: (0, n - 1) for v, n in zip(st.vars, st.shape)}
    for e in walk(st.body):
        if isinstance(e, Reduce):
            ranges.update({v: (0, n - 1) for v, n in e.axes})

    def inside(ld: Load) -> bool:
        shape = shapes.get(ld.tensor)
        if shape is None:
            return False
        for ix, n in zip(ld.index, shape):
            r = ix_range(ix, ranges)
            if r is None or r[0] < 0 or r[1] >= n:
                return False
        return True

    def fn(e):
        if isinstance(e, Load) and e.pad is not None and inside(e):
            return Load(e.tensor, e.index, e.dtype, None)
        return None

    body = rewrite(st.body, fn)
    return st if body is st.body else Stage(st.out, st.shape, st.vars, body)


def inline_window_copies(kernel: Kernel) -> list[Stage]:
    """The kernel's stages with single-load temporaries substituted into window readers."""
    shapes = {p.name: p.shape for p in kernel.params}
    dtypes = {p.name: p.dtype for p in kernel.params}
    temps = {p.name for p in kernel.params if p.role == "temp"}
    stages = list(kernel.stages)
    changed = True
    while changed:
        changed = False
        for producer in stages:
            if producer.out not in temps or not _is_copy(producer):
                continue
            readers = [s for s in stages if s is not producer and
                       any(ld.tensor == producer.out for ld in loads(s.body))]
            new = {}
            for r in readers:
                if any(ld.tensor == producer.out and ld.pad is not None for ld in loads(r.body)):
                    break
                if match_gemm(r, shapes) is not None:
                    break  # a dense strided conv: the packed GEMM needs the unit-stride copy
                cand = drop_safe_pads(Stage(r.out, r.shape, r.vars, inline(r.body, producer)),
                                      shapes)
                plan = match_window(cand, shapes, dtypes)
                if plan is None or plan.red is None:
                    break
                new[id(r)] = cand
            else:
                if readers:
                    stages = [new.get(id(s), s) for s in stages if s is not producer]
                    changed = True
                    break
    return stages


def _is_copy(st: Stage) -> bool:
    return isinstance(st.body, Load) and not any(ix.loads() for ix in st.body.index)


__all__ = ["ix_range", "drop_safe_pads", "inline_window_copies"]
