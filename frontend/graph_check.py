"""Structural checks of an ONNX graph before import: names, dangling inputs, cycles, order.

ONNX asks for nodes in topological order; exporters mostly comply, but onnxruntime sorts
graphs itself, so onnxc does too (stable: a sorted graph keeps its order). Everything here is
linear in the graph's size, so a 100k-node model is checked in well under a second.
"""
from __future__ import annotations

import heapq

import onnx

from onnxc.ir.errors import ModelError


def _label(node: onnx.NodeProto) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


def check_and_sort(g: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The graph's nodes in topological order; ModelError for duplicate value names,
    inputs that nothing produces and cycles, naming the nodes involved."""
    defined: dict[str, str] = {}  # value name -> what defines it, for messages
    for t in g.initializer:
        if t.name in defined:
            raise ModelError(f"initializer {t.name!r} is defined twice")
        defined[t.name] = "an initializer"
    inits = set(defined)
    for vi in g.input:
        if vi.name in defined and vi.name not in inits:
            raise ModelError(f"graph input {vi.name!r} is declared twice")
        defined.setdefault(vi.name, "a graph input")
    producer: dict[str, int] = {}
    for k, node in enumerate(g.node):
        for name in node.output:
            if not name:
                continue
            if name in defined or name in producer:
                first = defined.get(name) or (f"node {_label(g.node[producer[name]])!r} "
                                              f"({g.node[producer[name]].op_type})")
                raise ModelError(f"value {name!r} is produced twice: also by {first}",
                                 node=_label(node), op=node.op_type)
            producer[name] = k

    waiting = [0] * len(g.node)
    readers: dict[int, list[int]] = {}
    sorted_already = True
    for k, node in enumerate(g.node):
        deps = set()
        for i, name in enumerate(node.input):
            if not name or name in defined:
                continue
            if name not in producer:
                raise ModelError(f"input {i} {name!r} is not produced by any node, initializer "
                                 f"or graph input", node=_label(node), op=node.op_type)
            deps.add(producer[name])
        deps.update(producer[name] for name in _attribute_reads(node) if name in producer)
        sorted_already = sorted_already and all(d < k for d in deps)
        waiting[k] = len(deps)
        for d in deps:
            readers.setdefault(d, []).append(k)
    if sorted_already:
        return list(g.node)
    # Kahn's algorithm, taking the earliest ready node first so the order stays close to
    # the file's.
    ready = [k for k in range(len(g.node)) if waiting[k] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for r in readers.get(k, ()):
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, r)
    if len(order) < len(g.node):
        raise ModelError(_cycle_message(g, waiting, producer, defined))
    return [g.node[k] for k in order]


def _attribute_reads(node: onnx.NodeProto) -> list[str]:
    """Values a node reads by name in an attribute: Gradient differentiates its ``y``."""
    if node.op_type != "Gradient":
        return []
    return [onnx.helper.get_attribute_value(a).decode() for a in node.attribute if a.name == "y"]


def _cycle_message(g: onnx.GraphProto, waiting: list[int], producer: dict[str, int],
                   defined: dict[str, str]) -> str:
    """Walk back from a stuck node through stuck producers until a node repeats."""
    stuck = {k for k, w in enumerate(waiting) if w > 0}
    k, path, seen = min(stuck), [], {}
    while k not in seen:
        seen[k] = len(path)
        path.append(k)
        node = g.node[k]
        k = next(producer[n] for n in node.input
                 if n and n not in defined and producer[n] in stuck)
    cycle = path[seen[k]:] + [k]
    cycle.reverse()  # walked from readers to producers: show data-flow order
    steps = " -> ".join(f"{_label(g.node[i])!r} ({g.node[i].op_type})" for i in cycle)
    return f"the graph has a cycle: {steps}; ONNX graphs must be acyclic"
