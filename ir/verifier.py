"""Structural checks of a graph: SSA, topological order, uses and types agree."""
from __future__ import annotations

from .errors import ModelError
from .graph import Graph


def verify(graph: Graph) -> None:
    """Raise ModelError when the graph is malformed (run after every pass in tests)."""
    defined: set[int] = {id(v) for v in graph.inputs} | {id(v) for v in graph.constants.values()}
    for node in graph.nodes:
        for k, v in enumerate(node.inputs):
            if v is not None and id(v) not in defined:
                raise ModelError(f"input {k} %{v.name} is used before it is defined",
                                 node=node.name, op=node.op)
            if v is not None and node not in v.uses:
                raise ModelError(f"use list of %{v.name} misses this node", node=node.name,
                                 op=node.op)
        for v in node.outputs:
            if id(v) in defined:
                raise ModelError(f"%{v.name} is defined twice", node=node.name, op=node.op)
            if v.producer is not node:
                raise ModelError(f"%{v.name} does not name its producer", node=node.name,
                                 op=node.op)
            defined.add(id(v))
    for v in graph.outputs:
        if id(v) not in defined:
            raise ModelError(f"graph output %{v.name} is never defined")
