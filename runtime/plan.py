"""The execution plan: which kernel runs when, and where every tensor lives.

Graph inputs, outputs and constants live in arrays the session owns; every other tensor (and
every kernel temporary) gets an offset in one arena, reused once its last reader has run.
Views (Reshape) get no kernel and no buffer: they read their source's bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from onnxc.ir import Graph, Node, Value
from onnxc.ir.compute import build_kernel
from onnxc.ir.errors import CompileError, OnnxcError
from onnxc.ir.kernel import Kernel, Reduce, index_loads, loads, same_position, walk
from onnxc.ir.ops.registry import get_op

ALIGN = 64


@dataclass(frozen=True)
class Slot:
    region: str  # "input" | "output" | "const" | "arena"
    index: int  # position for input/output/const, byte offset for arena


@dataclass
class KernelCall:
    kernel: Kernel
    slots: list[Slot]
    # Per parameter, the graph tensor it binds (views resolved; "" for temporaries), so tools
    # can draw which kernel feeds which.
    tensors: list[str] = field(default_factory=list)


@dataclass
class TensorSpec:
    name: str
    shape: tuple
    dtype: str
    # "tensor", or a model input/output of kind "sequence", "optional", "optional_sequence"
    # (frontend.containers): then shape and dtype are the (element) tensor's, shape None
    # when the model does not declare it
    kind: str = "tensor"


@dataclass
class ExecutionPlan:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    constants: list[np.ndarray]
    calls: list[KernelCall]
    arena_bytes: int
    value_bytes: int = 0  # what the arena would be without reuse
    notes: dict = field(default_factory=dict)


def _kernel_for(node: Node) -> Kernel:
    try:
        if node.op == "Fused":
            return build_kernel(node.subgraphs["body"].nodes, node.outputs)
        return build_kernel([node], node.outputs)
    except OnnxcError:
        raise
    except Exception as exc:  # a bug in onnxc or a check missing upstream: say which node
        names = ", ".join(f"{n!r} ({op})" for n, op in (node.origin or [(node.name, node.op)]))
        raise CompileError(f"cannot build the kernel for node(s) {names}: "
                           f"{type(exc).__name__}: {exc}") from exc


def make_plan(graph: Graph) -> ExecutionPlan:
    outputs = {id(v): k for k, v in enumerate(graph.outputs)}
    inputs = {id(v): k for k, v in enumerate(graph.inputs)}
    consts: list[np.ndarray] = []
    const_index: dict[int, int] = {}
    for v in graph.constants.values():
        const_index[id(v)] = len(consts)
        consts.append(v.const)

    alias: dict[int, Value] = {}  # view value -> the value whose bytes it reads
    kernels: list[tuple[Kernel, Node]] = []
    for node in graph.nodes:
        if get_op(node.op).kind == "view" and id(node.outputs[0]) not in outputs:
            src = node.inputs[0]
            alias[id(node.outputs[0])] = alias.get(id(src), src)
            continue
        kernels.append((_kernel_for(node), node))

    def root(v: Value) -> Value:
        return alias.get(id(v), v)

    # Lifetimes of arena tensors, by kernel index.
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    sizes: dict[str, int] = {}
    by_name: dict[str, Value] = {}
    for k, (kernel, node) in enumerate(kernels):
        values = {v.name: v for v in list(node.inputs) + list(node.outputs) if v is not None}
        if node.op == "Fused":
            for m in node.subgraphs["body"].nodes:
                values.update({v.name: v for v in m.inputs if v is not None})
        for p in kernel.params:
            if p.role == "temp":
                key = f"{kernel.name}#{k}:{p.name}"
                first[key], last[key] = k, k
                sizes[key] = _nbytes(p.shape, p.dtype)
                continue
            v = root(values[p.name])
            if id(v) in inputs or id(v) in outputs or id(v) in const_index:
                continue
            by_name[v.name] = v
            sizes[v.name] = v.type.nbytes()
            first.setdefault(v.name, k)
            last[v.name] = max(last.get(v.name, k), k)

    value_bytes = sum(_align(s) for s in sizes.values())  # what the arena would be without reuse
    # In-place updates: a kernel may write its output over an input that dies there.
    storage: dict[str, str] = {}
    for k, (kernel, node) in enumerate(kernels):
        pair = _in_place_pair(kernel)
        if pair is None:
            continue
        values = {v.name: v for v in list(node.inputs) + list(node.outputs) if v is not None}
        src, dst = root(values[pair[0]]).name, root(values[pair[1]]).name
        readers = [p for p in kernel.params if p.role == "in" and p.name in values and
                   root(values[p.name]).name == src]
        if len(readers) == 1 and src in last and dst in first and last[src] == k and first[dst] == k and \
                sizes[src] == sizes[dst] and src not in storage.values():
            storage[dst] = storage.get(src, src)
    for dst, src in storage.items():
        last[src] = max(last[src], last.pop(dst))
        del first[dst], sizes[dst]
    offsets, arena = _assign_offsets(first, last, sizes)
    for dst, src in storage.items():
        offsets[dst] = offsets[src]

    calls = []
    for k, (kernel, node) in enumerate(kernels):
        values = {v.name: v for v in list(node.inputs) + list(node.outputs) if v is not None}
        slots, tensors = [], []
        for p in kernel.params:
            if p.role == "temp":
                slots.append(Slot("arena", offsets[f"{kernel.name}#{k}:{p.name}"]))
                tensors.append("")
                continue
            v = root(values[p.name])
            tensors.append(v.name)
            if id(v) in inputs:
                slots.append(Slot("input", inputs[id(v)]))
            elif id(v) in outputs:
                slots.append(Slot("output", outputs[id(v)]))
            elif id(v) in const_index:
                slots.append(Slot("const", const_index[id(v)]))
            else:
                slots.append(Slot("arena", offsets[v.name]))
        calls.append(KernelCall(kernel, slots, tensors))

    spec = lambda v, name: TensorSpec(name, tuple(v.shape), v.dtype.value)  # noqa: E731
    return ExecutionPlan(
        inputs=[spec(v, v.name) for v in graph.inputs],
        outputs=[spec(v, n) for v, n in zip(graph.outputs, graph.output_names)],
        constants=consts, calls=calls, arena_bytes=arena,
        value_bytes=value_bytes,
        notes={"in_place_kernels": len(storage)})


def _in_place_pair(kernel: Kernel) -> tuple[str, str] | None:
    """(input, output) parameters such that writing the output over the input is safe: one
    output, written by the last stage, which reads that input only at the element it writes
    (never inside a reduction nor as an index); no earlier stage reads that input."""
    outs = [p for p in kernel.params if p.role == "out"]
    if len(outs) != 1 or not kernel.stages or kernel.stages[-1].out != outs[0].name or \
            any(st.out == outs[0].name for st in kernel.stages[:-1]):
        return None
    out, last = outs[0], kernel.stages[-1]
    inside_reduce = {ld.tensor for e in walk(last.body) if isinstance(e, Reduce)
                     for ld in loads(e.body)}
    indexed = {ld.tensor for ld in index_loads(last.body)}
    indexed |= {ld.tensor for st in kernel.stages[:-1] for ld in loads(st.body)}
    all_loads = loads(last.body)
    for p in kernel.params:
        if p.role != "in" or p.shape != out.shape or p.dtype.itemsize != out.dtype.itemsize or \
                p.name in inside_reduce or p.name in indexed:
            continue
        mine = [ld for ld in all_loads if ld.tensor == p.name]
        if mine and all(ld.pad is None and len(ld.index) == len(last.vars) and
                        all(same_position(i, v, n) for i, v, n in
                            zip(ld.index, last.vars, last.shape)) for ld in mine):
            return p.name, out.name
    return None


def _nbytes(shape, dtype) -> int:
    n = 1
    for d in shape:
        n *= d
    return n * dtype.itemsize


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _assign_offsets(first, last, sizes) -> tuple[dict[str, int], int]:
    """Greedy first-fit by definition order: a buffer reuses space freed before it is made."""
    live: list[tuple[int, int, str]] = []  # (offset, size, name)
    offsets: dict[str, int] = {}
    arena = 0
    for name in sorted(first, key=lambda n: (first[n], -sizes[n])):
        start = first[name]
        live = [b for b in live if last[b[2]] >= start]
        size = _align(max(sizes[name], 1))
        offset = 0
        for off, sz, _ in sorted(live):
            if offset + size <= off:
                break
            offset = max(offset, off + sz)
        offsets[name] = offset
        live.append((offset, size, name))
        arena = max(arena, offset + size)
    return offsets, arena
