"""From graph nodes to kernel IR: one node, or a fused group of nodes, becomes one ``Kernel``.

Inside a fused group, a stage whose result is used only inside the group is inlined into the
stages that read it when that does not repeat work; otherwise it stays as a temporary buffer.
"""
from __future__ import annotations

import re

from .errors import ModelError
from .graph import Node, Value
from .kernel import (Kernel, Load, Param, Reduce, Stage, TensorRef, has_reduce, index_loads,
                     inline, loads, same_position, walk)
from .ops.registry import get_op


def _ref(v: Value) -> TensorRef:
    if not v.type.is_static:
        raise ModelError(f"value {v.name!r} has symbolic shape {v.type}; give concrete input "
                         f"shapes to compile it")
    return TensorRef(v.name, v.shape, v.dtype)


def node_stages(node: Node) -> list[Stage]:
    opdef = get_op(node.op)
    if opdef.compute is None:
        raise ModelError(f"core op {node.op} has no compute description", node=node.name,
                         op=node.op)
    ins = [_ref(v) if v is not None else None for v in node.inputs]
    outs = [_ref(v) for v in node.outputs]
    return opdef.compute(ins, outs, node.attrs)


def kernel_name(origin: list[tuple[str, str]], fallback: str) -> str:
    """A readable symbol: the fused ONNX ops and the first node's name."""
    if not origin:
        return re.sub(r"[^A-Za-z0-9_]", "_", fallback)
    ops = "_".join(dict.fromkeys(op for _, op in origin))
    first = re.sub(r"[^A-Za-z0-9_]", "_", origin[0][0])[:40]
    return f"{ops}__{first}" if first else ops


def build_kernel(nodes: list[Node], outputs: list[Value], name: str | None = None) -> Kernel:
    """One kernel computing ``outputs`` from the given nodes (in topological order)."""
    produced = {id(v) for n in nodes for v in n.outputs}
    stages: list[Stage] = []
    for n in nodes:
        stages.extend(node_stages(n))
    out_names = {v.name for v in outputs}
    stages = _inline_internal(stages, out_names)

    params: list[Param] = []
    seen: set[str] = set()
    for n in nodes:
        for v in n.inputs:
            if v is not None and id(v) not in produced and v.name not in seen:
                seen.add(v.name)
                params.append(Param(v.name, tuple(v.shape), v.dtype, "in"))
    for v in outputs:
        params.append(Param(v.name, tuple(v.shape), v.dtype, "out"))
        seen.add(v.name)
    for st in stages:
        if st.out not in seen:
            seen.add(st.out)
            params.append(Param(st.out, st.shape, st.body.dtype, "temp"))
    used = {ld.tensor for st in stages for ld in loads(st.body)}
    params = [p for p in params if p.role != "in" or p.name in used]
    origin = [o for n in nodes for o in (n.origin or [(n.name, n.op)])]
    return Kernel(name or kernel_name(origin, nodes[0].name), params, stages, origin)


def _inline_internal(stages: list[Stage], keep: set[str]) -> list[Stage]:
    """Inline single-use internal stages into their readers where that repeats no work.

    Stages are immutable, so what each one reads and whether a producer may be inlined into a
    reader are computed once per stage object (a fused group of m nodes would otherwise walk
    its expressions O(m^3) times)."""
    result = list(stages)
    reads: dict[int, tuple[Stage, set[str]]] = {}
    verdicts: dict[tuple[int, int], tuple[Stage, Stage, bool]] = {}

    def tensors_read(st: Stage) -> set[str]:
        hit = reads.get(id(st))
        if hit is None:
            hit = reads[id(st)] = (st, {ld.tensor for ld in loads(st.body)})
        return hit[1]

    def can_inline(producer: Stage, reader: Stage) -> bool:
        key = (id(producer), id(reader))
        hit = verdicts.get(key)
        if hit is None:
            hit = verdicts[key] = (producer, reader, _can_inline(producer, reader))
        return hit[2]

    changed = True
    while changed:
        changed = False
        for producer in result:
            if producer.out in keep:
                continue
            readers = [s for s in result if s is not producer and
                       producer.out in tensors_read(s)]
            if readers and all(can_inline(producer, r) for r in readers):
                result = [s if s not in readers else
                          Stage(s.out, s.shape, s.vars, inline(s.body, producer))
                          for s in result if s is not producer]
                changed = True
                break
    return result


def _can_inline(producer: Stage, reader: Stage) -> bool:
    reads = [ld for ld in loads(reader.body) if ld.tensor == producer.out]
    if any(ld.pad is not None for ld in reads):
        return False
    if any(ld.tensor == producer.out for ld in index_loads(reader.body)):
        return False  # a data-dependent index reads the producer's buffer
    # A read inside a reduction would recompute the producer for every reduction step.
    for e in walk(reader.body):
        if isinstance(e, Reduce) and any(ld.tensor == producer.out for ld in loads(e.body)):
            return False
    if has_reduce(producer.body):
        # Only fold a reduction into an epilogue that reads it once per output element.
        return (len(reads) == 1 and reader.shape == producer.shape and
                all(same_position(ix, v, n) for ix, v, n in
                    zip(reads[0].index, reader.vars, reader.shape)))
    return True


__all__ = ["build_kernel", "node_stages", "kernel_name", "Load"]
