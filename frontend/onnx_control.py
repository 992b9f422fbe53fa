"""If, Loop and Scan, imported inline: the graph IR has no control flow of its own.

If with a compile-time condition imports the chosen branch (a graph-input condition is
specialized on); with a run-time condition both branches are imported and each output is a
Where over them (valid because ONNX branches have no side effects), which needs outputs of
one shape and type. Loop and Scan are unrolled, which needs a compile-time trip count (and
loop conditions that fold to constants), at most MAX_UNROLL iterations.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx

from onnxc.ir import Value

from .containers import Opt, Seq
from .importer import ImportContext, import_nodes, onnx_op
from .onnx_types import tensor_to_array

MAX_UNROLL = 1024
_CONCAT_FAN_IN = 8


def run_body(ctx: ImportContext, body: onnx.GraphProto, bind: Sequence[Value]) -> list[Value]:
    """Import ``body`` with its inputs bound to ``bind``; it sees the enclosing scope. Names
    it defines do not leak out."""
    node, saved = ctx.node, dict(ctx.values)
    try:
        if len(bind) != len(body.input):
            raise ctx.error(f"the body {body.name!r} takes {len(body.input)} inputs, "
                            f"{len(bind)} are given")
        for vi, v in zip(body.input, bind):
            ctx.values[vi.name] = v
        for t in body.initializer:
            ctx.values[t.name] = ctx.constant(tensor_to_array(t), t.name)
        import_nodes(ctx, body.node)
        outs = []
        for vi in body.output:
            if vi.name not in ctx.values:
                raise ctx.error(f"body output {vi.name!r} is not produced")
            outs.append(ctx.values[vi.name])
        return outs
    finally:
        ctx.node, ctx.values = node, saved


def _scalar_const(v: Value | None):
    return None if v is None or v.const is None else np.asarray(v.const).reshape(-1)[0]


@onnx_op("If")
def _if(ctx: ImportContext, node):
    c = ctx.input(0)
    # A graph-input condition is specialized on; a computed one is not (both branches run).
    cond = ctx.const(0) if c.producer is None else c.const
    then_g, else_g = ctx.attr("then_branch"), ctx.attr("else_branch")
    if cond is not None:
        return run_body(ctx, then_g if bool(np.asarray(cond).reshape(-1)[0]) else else_g, [])
    a, b = run_body(ctx, then_g, []), run_body(ctx, else_g, [])
    if c.type.rank:
        c = ctx.add1("Reshape", [c], {"shape": ()})
    return [_select(ctx, c, x, y, k) for k, (x, y) in enumerate(zip(a, b))]


def _select(ctx: ImportContext, c: Value, x, y, k: int):
    """Where(c, x, y) over an If's outputs; sequences element by element."""
    if isinstance(x, Opt) and isinstance(y, Opt) and (x.value is None) == (y.value is None):
        return x if x.value is None else Opt(_select(ctx, c, x.value, y.value, k))
    if isinstance(x, Seq) and isinstance(y, Seq) and len(x) == len(y):
        return Seq([_select(ctx, c, u, v, k) for u, v in zip(x, y)], x.dtype)
    if not (isinstance(x, Value) and isinstance(y, Value)):
        raise ctx.unsupported(f"the condition is computed at run time and the branches' "
                              f"output {k} differs in structure (sequence length or optional "
                              f"presence)")
    if x.type != y.type:
        raise ctx.unsupported(f"the condition is computed at run time and the branches' "
                              f"output {k} differs ({x.type} vs {y.type})")
    return ctx.add1("Where", [c, x, y])


def stack(ctx: ImportContext, parts: list[Value], axis: int = 0) -> Value:
    """Concatenate per-iteration values along a new axis (a tree of small Concats)."""
    items = []
    for p in parts:
        shape = list(p.shape)
        shape.insert(axis, 1)
        items.append(ctx.add1("Reshape", [p], {"shape": tuple(shape)}))
    while len(items) > 1:
        items = [group[0] if len(group) == 1 else ctx.add1("Concat", group, {"axis": axis})
                 for group in (items[k:k + _CONCAT_FAN_IN]
                               for k in range(0, len(items), _CONCAT_FAN_IN))]
    return items[0] if parts[0] is not items[0] else ctx.add1("Identity", [items[0]])


@onnx_op("Loop")
def _loop(ctx: ImportContext, node):
    body = ctx.attr("body")
    trip = ctx.const(0)
    cond_in = ctx.input(1)
    if ctx.input(0) is not None and trip is None:
        raise ctx.value_needed(0, "trip count")  # the session computes it and specializes
    if cond_in is not None and ctx.const(1) is None:
        raise ctx.value_needed(1, "initial condition")
    limit = MAX_UNROLL if trip is None else int(np.asarray(trip).reshape(-1)[0])
    if limit > MAX_UNROLL:
        raise ctx.unsupported(f"{limit} iterations; onnxc unrolls at most {MAX_UNROLL}")
    going = True if cond_in is None else bool(_scalar_const(cond_in))
    carried = [ctx.input(k) for k in range(2, len(node.input))]
    n_carried = len(carried)
    scans: list[list[Value]] = []
    i = 0
    while going and i < limit:
        it = ctx.constant(np.array(i, dtype=np.int64), "loop_iteration")
        flag = ctx.constant(np.array(True), "loop_condition")
        outs = run_body(ctx, body, [it, flag] + carried)
        cond_out, carried, scan_out = outs[0], outs[1:1 + n_carried], outs[1 + n_carried:]
        scans.append(scan_out)
        going = _scalar_const(cond_out)
        if going is None:
            raise ctx.unsupported("the loop condition is computed at run time")
        going = bool(going)
        i += 1
        if trip is None and going and i == MAX_UNROLL:
            raise ctx.unsupported(f"the loop runs past {MAX_UNROLL} iterations")
    n_scan = len(node.output) - n_carried
    if n_scan and not scans:
        raise ctx.unsupported("a loop with scan outputs that runs zero times is not supported")
    return list(carried) + [stack(ctx, [s[k] for s in scans]) for k in range(n_scan)]


def _take(ctx: ImportContext, x: Value, j: int, axis: int) -> Value:
    """x[..., j, ...] along ``axis``, the axis dropped."""
    part = ctx.add1("Slice", [x], {"starts": (j,), "ends": (j + 1,), "axes": (axis,),
                                   "steps": None})
    shape = tuple(d for k, d in enumerate(x.shape) if k != axis)
    return ctx.add1("Reshape", [part], {"shape": shape})


@onnx_op("Scan")
def _scan(ctx: ImportContext, node):
    body = ctx.attr("body")
    n_in = int(ctx.attr("num_scan_inputs"))
    if ctx.opset < 9:
        return _scan8(ctx, node, body, n_in)
    ins = [ctx.input(k) for k in range(len(node.input))]
    states, xs = ins[:len(ins) - n_in], ins[len(ins) - n_in:]
    n_out = len(node.output) - len(states)
    return _scan_steps(ctx, body, states, xs, list(ctx.attr("scan_input_axes", [0] * n_in)),
                       list(ctx.attr("scan_input_directions", [0] * n_in)),
                       list(ctx.attr("scan_output_axes", [0] * n_out)),
                       list(ctx.attr("scan_output_directions", [0] * n_out)))


def _scan8(ctx: ImportContext, node, body, n_in: int) -> list[Value]:
    """Scan-8: every input has a leading batch axis (the scan axis is 1) and an optional
    ``sequence_lens``; each batch entry is scanned on its own and the results stacked."""
    ins = [ctx.input(k) for k in range(1, len(node.input))]
    states, xs = ins[:len(ins) - n_in], ins[len(ins) - n_in:]
    n_out = len(node.output) - len(states)
    batch = xs[0].shape[0] if xs else states[0].shape[0]
    if not isinstance(batch, int) or any(v.shape[0] != batch for v in states + xs):
        raise ctx.error("the inputs differ in their batch dimension (axis 0)")
    steps = {x.shape[1] for x in xs}
    if ctx.input(0) is not None:
        lens = ctx.require_const(0, "sequence_lens")
        if any(int(n) not in steps for n in np.asarray(lens).reshape(-1)):
            raise ctx.unsupported("sequence_lens shorter than the scan inputs is not supported "
                                  "(every sequence must have the full length)")
    dirs = list(ctx.attr("directions", [0] * n_in))
    per_batch = []
    for b in range(batch):
        per_batch.append(_scan_steps(
            ctx, body, [_take(ctx, v, b, 0) for v in states], [_take(ctx, x, b, 0) for x in xs],
            [0] * n_in, dirs, [0] * n_out, [0] * n_out))
    return [stack(ctx, [r[k] for r in per_batch]) for k in range(len(node.output))]


def _scan_steps(ctx: ImportContext, body, states: list[Value], xs: list[Value],
                in_axes: list[int], in_dirs: list[int], out_axes: list[int],
                out_dirs: list[int]) -> list[Value]:
    """Unrolled Scan-9+: final states, then the scan outputs stacked along their axes."""
    n_out = len(out_axes)
    in_axes = [a % x.type.rank for a, x in zip(in_axes, xs)]
    lengths = {x.shape[a] for x, a in zip(xs, in_axes)}
    if len(lengths) != 1:
        raise ctx.error(f"scan inputs differ in length: {sorted(lengths)}")
    steps = lengths.pop()
    if steps > MAX_UNROLL:
        raise ctx.unsupported(f"{steps} iterations; onnxc unrolls at most {MAX_UNROLL}")
    if steps == 0 and n_out:
        raise ctx.unsupported("a Scan of zero iterations is not supported")
    per_step: list[list[Value]] = []
    for t in range(steps):
        slices = [_take(ctx, x, steps - 1 - t if rev else t, a)
                  for x, a, rev in zip(xs, in_axes, in_dirs)]
        outs = run_body(ctx, body, states + slices)
        states, ys = outs[:len(states)], outs[len(states):]
        per_step.append(ys)
    results = list(states)
    for k in range(n_out):
        parts = [s[k] for s in per_step]
        if out_dirs[k]:
            parts = parts[::-1]
        rank = parts[0].type.rank + 1
        results.append(stack(ctx, parts, out_axes[k] % rank))
    return results
