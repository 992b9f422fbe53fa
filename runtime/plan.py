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
from onnxc.ir.kernel import Kernel
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

    offsets, arena = _assign_offsets(first, last, sizes)

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
        value_bytes=sum(_align(s) for s in sizes.values()))


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
