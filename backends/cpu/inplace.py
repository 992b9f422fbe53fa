"""Loop versioning for kernels whose output the memory plan may lay over an input.

The plan (runtime/plan.py) writes an elementwise kernel's output over an input that dies
there, when the last stage reads that input only at the element it writes. The loop is then
safe to vectorize, but LLVM cannot see it: the two pointers come from the parameter array,
and its vectorizer guards the vector loop with a check that the input and output ranges do not
overlap — which fails exactly when they are the same buffer, so the in-place run (an LSTM
cell's state update, every step) took the scalar loop. Here such a stage is emitted twice: when
the two pointers are equal, with the input read through the output's pointer (one pointer,
dependence distance 0: the vectorizer needs no check), otherwise as before.
"""
from __future__ import annotations

from onnxc.ir.kernel import Kernel, Reduce, Stage, index_loads, loads, same_position, walk


def in_place_input(kernel: Kernel, st: Stage) -> str | None:
    """The input the plan may share with ``st``'s output (the plan's own rule), or None."""
    outs = [p for p in kernel.params if p.role == "out"]
    if len(outs) != 1 or not kernel.stages or kernel.stages[-1] is not st or \
            st.out != outs[0].name:
        return None
    out = outs[0]
    inside_reduce = {ld.tensor for e in walk(st.body) if isinstance(e, Reduce)
                     for ld in loads(e.body)}
    indexed = {ld.tensor for ld in index_loads(st.body)}
    indexed |= {ld.tensor for s in kernel.stages[:-1] for ld in loads(s.body)}
    all_loads = loads(st.body)
    for p in kernel.params:
        if p.role != "in" or p.shape != out.shape or p.dtype != out.dtype or \
                p.name in inside_reduce or p.name in indexed:
            continue
        mine = [ld for ld in all_loads if ld.tensor == p.name]
        if mine and all(ld.pad is None and len(ld.index) == len(st.vars) and
                        all(same_position(i, v, n) for i, v, n in
                            zip(ld.index, st.vars, st.shape)) for ld in mine):
            return p.name
    return None


def emit_versioned(se, emit_loops) -> None:
    """``emit_loops()`` once for an in-place run (input read through the output's pointer)
    and once for separate buffers."""
    name = in_place_input(se.kernel, se.st)
    if name is None:
        emit_loops()
        return
    b = se.b
    src, dst = se.ptr(name), se.ptr(se.st.out)
    with b.if_else(b.icmp_unsigned("==", src, dst)) as (same, apart):
        with same:
            se.ptrs[name] = dst
            emit_loops()
            se.ptrs[name] = src
        with apart:
            emit_loops()
