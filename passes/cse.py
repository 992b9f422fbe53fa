"""Common-subexpression elimination: equal constants and equal nodes are computed once.

Rule: two nodes with the same op, attributes and input values compute the same outputs, so the
later one's uses read the earlier one's outputs. Constants with the same dtype, shape and bytes
are merged first, so nodes reading copies of one initializer also match. Nodes with subgraphs
and random ops are left alone.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from onnxc.ir import Graph, Value

from .manager import Pass


def _frozen(x: Any) -> Any:
    """A hashable stand-in for an attribute value."""
    if isinstance(x, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(_frozen(v) for v in x)
    if isinstance(x, np.ndarray):
        return (x.dtype.str, x.dtype.name, x.shape, x.tobytes())
    if isinstance(x, float) and x != x:
        return ("nan",)
    return x


def _digest(a: np.ndarray) -> bytes:
    """sha256 of the array's bytes, read in place (weights can be hundreds of MB)."""
    if a.size == 0:
        return b""
    flat = np.ascontiguousarray(a).reshape(-1)
    return hashlib.sha256(memoryview(flat.view(np.uint8))).digest()


class CommonSubexpressionElimination(Pass):
    name = "cse"
    purpose = "compute equal constants and equal nodes only once"

    def run(self, graph: Graph) -> Graph:
        self._merge_constants(graph)
        seen: dict[tuple, list[Value]] = {}
        for node in list(graph.nodes):
            if node.subgraphs or node.op.startswith("Random"):
                continue
            key = (node.op, _frozen(node.attrs),
                   tuple(id(v) if v is not None else None for v in node.inputs))
            earlier = seen.get(key)
            if earlier is None:
                seen[key] = node.outputs
                continue
            for old, new in zip(node.outputs, earlier):
                graph.replace_uses(old, new)
            graph.remove_node(node)
        return graph

    @staticmethod
    def _merge_constants(graph: Graph) -> None:
        first: dict[tuple, Value] = {}
        for value in list(graph.constants.values()):
            a = value.const
            key = (a.dtype.str, a.dtype.name, a.shape, _digest(a))
            keep = first.setdefault(key, value)
            if keep is not value and value.uses:
                graph.replace_uses(value, keep)
