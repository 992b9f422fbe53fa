"""Proof, from the kernel IR, that a program compiled at batch tile T is batch-separable.

A run at batch B then executes the tile program over contiguous slices of the feeds and the
outputs (runtime/tiling.py). The proof works on the execution plan: every stage defines every
element of its output by index expressions (ir/kernel.py), so what each element reads is known.

Every buffer gets one of three states:
  batched    dim 0 is T x rows; rows [b*rows, (b+1)*rows) hold sample b only, and every sample
             is computed by the same expressions (flat layout: sample b owns one contiguous
             block, whatever view shape a kernel reads it through)
  invariant  dim 0 is T x rows and every sample's block is equal (e.g. an Expand of a weight):
             it may be read as batched or as a weight
  unbatched  weights, constants and what is computed from them alone

A stage whose output has dim 0 = T x rows proves its output batched (or invariant) when each
of its loads of a batched or invariant buffer reads, at dim 0, a row of the stage's own sample
(index variable 0 = b*rows_out + r, the load's dim-0 index = b*rows_in + rest with rest provably
in [0, rows_in)), and the stage's variable 0 appears nowhere else: not in any other index, not
as a value, not in a load of an unbatched buffer. A stage that reads no batched buffer writes an
unbatched (or invariant) buffer. Anything else (a reduction over the batch, a gather whose
data-dependent index picks the sample, a reshape that moves the batch off dim 0) is refused,
with the stage's ONNX nodes named.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from onnxc.ir.kernel import IndexValue, Ix, Load, Var, walk

BATCHED, INVARIANT, UNBATCHED = "batched", "invariant", "unbatched"


class _NotAffine(Exception):
    pass


def _split(ix: Ix, v0: Var, rows_out: int, r: Var) -> tuple[int, Ix]:
    """(c, rest) with ix == c*b + rest for v0 = b*rows_out + r, rest free of b."""
    if isinstance(ix, Var):
        return (rows_out, r) if ix is v0 else (0, ix)
    if ix.kind == "const":
        return 0, ix
    if ix.kind == "load":
        if v0 in ix.vars():
            raise _NotAffine("a data-dependent index uses the batch variable")
        return 0, ix
    ca, ra = _split(ix.a, v0, rows_out, r)
    cb, rb = _split(ix.b, v0, rows_out, r)
    if ix.kind == "add":
        return ca + cb, ra + rb
    if ix.kind == "mul":
        if ix.a.kind == "const":
            return ix.a.a * cb, rb * ix.a.a
        if ix.b.kind == "const":
            return ix.b.a * ca, ra * ix.b.a
        if ca == 0 and cb == 0:
            return 0, ra * rb
        raise _NotAffine("a product of index variables")
    if ix.kind in ("div", "mod") and ix.b.kind == "const" and cb == 0 and ix.b.a > 0:
        k = ix.b.a
        if ca % k == 0:  # floor((k*m*b + rest) / k) = m*b + floor(rest / k), rest >= 0
            return (ca // k, ra // k) if ix.kind == "div" else (0, ra % k)
    if ca == 0 and cb == 0:
        return 0, ra._bin(ix.kind, rb)
    raise _NotAffine(f"the batch variable inside {ix.kind}")


def _direct_vars(ix: Ix) -> set[Var]:
    """The variables an index uses other than through a data-dependent index (those loads are
    checked as loads of their own tensors)."""
    if isinstance(ix, Var):
        return {ix}
    if ix.kind in ("const", "load"):
        return set()
    return _direct_vars(ix.a) | _direct_vars(ix.b)


def _range(ix: Ix, ranges: dict[Var, tuple[int, int]]) -> tuple[int, int]:
    """Inclusive bounds of an index expression over the variables' ranges (interval
    arithmetic: sound, not always tight)."""
    if isinstance(ix, Var):
        if ix not in ranges:
            raise _NotAffine(f"an index variable {ix!r} of unknown range")
        return ranges[ix]
    if ix.kind == "const":
        return ix.a, ix.a
    if ix.kind == "load":
        raise _NotAffine("a data-dependent index at dim 0")
    (a0, a1), (b0, b1) = _range(ix.a, ranges), _range(ix.b, ranges)
    if ix.kind == "add":
        return a0 + b0, a1 + b1
    if ix.kind == "mul":
        c = [a0 * b0, a0 * b1, a1 * b0, a1 * b1]
        return min(c), max(c)
    if ix.kind in ("min", "max"):
        f = min if ix.kind == "min" else max
        return f(a0, b0), f(a1, b1)
    if ix.kind in ("div", "mod") and b0 == b1 and b0 > 0 and a0 >= 0:
        return (a0 // b0, a1 // b0) if ix.kind == "div" else (0, min(a1, b0 - 1))
    raise _NotAffine(f"cannot bound {ix!r}")


def _check_stage(stage, shapes: dict[str, tuple], states: dict[str, tuple], tile: int,
                 reduce_ranges: dict[Var, tuple[int, int]]) -> tuple[tuple | None, str]:
    """((state, batch axis, shape) of the stage's output, "") or (None, why it is refused).

    The batch may sit on any axis of a buffer inside the program (a strided convolution's
    phase split puts it third); graph inputs and outputs have it on axis 0."""
    loads = [e for e in walk(stage.body) if isinstance(e, Load)]
    reads_batched = any(states.get(ld.tensor, (UNBATCHED,))[0] == BATCHED for ld in loads)
    first = ""
    for axis, n in enumerate(stage.shape):
        if n == 0 or n % tile:
            continue
        problem = _try_axis(stage, axis, loads, shapes, states, tile, reduce_ranges)
        if not problem:
            return ((BATCHED if reads_batched else INVARIANT), axis, tuple(stage.shape)), ""
        first = first or problem
    if not reads_batched:
        return (UNBATCHED, None, tuple(stage.shape)), ""
    return None, first or (f"writes {stage.out!r} of shape {list(stage.shape)}, with no dim "
                           f"a multiple of the batch tile {tile}, from batched data")


def _try_axis(stage, axis: int, loads, shapes, states, tile: int, reduce_ranges) -> str:
    """Why the stage's output is not batched along ``axis`` ("" when it is)."""
    va = stage.vars[axis]
    rows_out = stage.shape[axis] // tile
    r = Var("r")
    ranges = {v: (0, n - 1) for v, n in zip(stage.vars, stage.shape)}
    ranges.update(reduce_ranges)
    ranges[r] = (0, rows_out - 1)
    for e in walk(stage.body):
        if isinstance(e, IndexValue) and va in e.index.vars():
            return "uses the batch index as a value"
    for ld in loads:
        state, batch_axis, written = states.get(ld.tensor, (UNBATCHED, None, None))
        uses = [va in _direct_vars(i) for i in ld.index]
        if state == UNBATCHED or (state == INVARIANT and not any(uses)):
            if any(uses):
                return f"reads the unbatched tensor {ld.tensor!r} at the batch index"
            continue
        shape = tuple(shapes.get(ld.tensor, ()))
        if shape == written:
            at = batch_axis
        elif batch_axis == 0:
            at = 0  # a view: sample b owns one contiguous block whatever the view's shape
        else:
            return f"reads the batched tensor {ld.tensor!r} through a view of shape {list(shape)}"
        if at >= len(ld.index) or not shape or shape[at] % tile or \
                any(u for k, u in enumerate(uses) if k != at):
            return (f"reads the batched tensor {ld.tensor!r} (shape {list(shape)}, batch on "
                    f"axis {at}) other than through its batch axis")
        rows_in = shape[at] // tile
        try:
            c, rest = _split(ld.index[at], va, rows_out, r)
            lo, hi = _range(rest, ranges)
        except _NotAffine as exc:
            return f"reads the batched tensor {ld.tensor!r} at its batch axis through {exc}"
        if c != rows_in or lo < 0 or hi >= rows_in:
            return (f"reads the batched tensor {ld.tensor!r} at batch-axis index "
                    f"{ld.index[at]!r}, not only within its own sample")
    return ""


def _reduce_ranges(stage) -> dict[Var, tuple[int, int]]:
    from onnxc.ir.kernel import Reduce

    out = {}
    for e in walk(stage.body):
        if isinstance(e, Reduce):
            out.update({v: (0, n - 1) for v, n in e.axes})
    return out


def _invariant(array: np.ndarray, tile: int) -> bool:
    """A constant whose dim 0 is T x rows with all T blocks equal."""
    if array.ndim == 0 or array.shape[0] % tile or array.shape[0] == 0:
        return False
    blocks = array.reshape((tile, -1))
    return bool(np.all(blocks == blocks[:1]))


def prove_batch_separable(plan, batched_inputs: Iterable[int], tile: int) -> str | None:
    """None when the plan (compiled at batch ``tile``) is batch-separable and every output is
    batched on axis 0; else the first reason it is not, naming the kernel's ONNX nodes."""
    batched_inputs = set(batched_inputs)
    unbatched = (UNBATCHED, None, None)
    states: dict[str, tuple] = {}  # graph tensor (views resolved) -> (state, axis, shape)
    const_state = {k: ((INVARIANT, 0, tuple(np.shape(c))) if _invariant(np.asarray(c), tile)
                       else unbatched) for k, c in enumerate(plan.constants)}
    out_states: dict[int, tuple] = {}
    for call in plan.calls:
        kernel = call.kernel
        local: dict[str, tuple] = {}  # param name -> state, inside this kernel
        key: dict[str, str] = {}  # param name -> graph tensor
        shapes = {p.name: tuple(p.shape) for p in kernel.params}
        for p, slot, tensor in zip(kernel.params, call.slots, call.tensors):
            if p.role == "temp":
                continue
            key[p.name] = tensor
            if slot.region == "input":
                local[p.name] = (BATCHED, 0, plan.inputs[slot.index].shape) \
                    if slot.index in batched_inputs else unbatched
            elif slot.region == "const":
                local[p.name] = const_state[slot.index]
            elif p.role == "in":
                local[p.name] = states.get(tensor, unbatched)
        nodes = ", ".join(f"{n!r} ({op})" for n, op in kernel.origin) or kernel.name
        written: dict[str, tuple] = {}
        for st in kernel.stages:
            state, why = _check_stage(st, shapes, local, tile, _reduce_ranges(st))
            if state is None:
                return f"kernel {kernel.name} (nodes {nodes}) {why}"
            prev = written.get(st.out)
            if prev is not None and prev != state:
                if prev[0] in (BATCHED, INVARIANT) and state[0] in (BATCHED, INVARIANT) and \
                        prev[1:] == state[1:]:
                    state = (BATCHED,) + state[1:]
                else:
                    return (f"kernel {kernel.name} (nodes {nodes}) writes {st.out!r} from "
                            f"stages that disagree on its batch layout")
            written[st.out] = local[st.out] = state
        for p, slot in zip(kernel.params, call.slots):
            if p.role == "out" and p.name in written:
                states[key[p.name]] = written[p.name]
                if slot.region == "output":
                    out_states[slot.index] = written[p.name]
    for k, spec in enumerate(plan.outputs):
        state = out_states.get(k)
        if state is None or state[0] != BATCHED or state[1] != 0:
            why = "is not computed by a kernel" if state is None else \
                f"is {state[0]}" + ("" if state[0] != BATCHED else
                                   f" on axis {state[1]}, not 0") + \
                ("" if state[0] == BATCHED else " (it does not depend on the batched inputs)")
            return f"output {spec.name!r} {why}"
    return None
