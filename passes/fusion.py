"""Fusion: a reduction (MatMul, Conv, pooling, ...) with its elementwise epilogue, and chains
of elementwise ops, each become one kernel.

Rule: y = E(p, ...) joins p's group when E is elementwise, p has exactly one use and is not a
graph output, y has p's shape (so nothing is recomputed), and the merged group holds at most
one reduction. MatMul+Add+Relu and Conv+Add(+Relu) are instances of this rule.
"""
from __future__ import annotations

from onnxc.ir import Graph, Node
from onnxc.ir.ops.registry import get_op

from .manager import Pass

FUSABLE_PRODUCERS = {"elementwise", "reduction"}
MAX_GROUP = 24  # nodes per kernel: keeps fused expressions (and compile time) bounded


class FuseElementwise(Pass):
    name = "fuse"
    purpose = "fuse elementwise epilogues and chains into one kernel"

    def run(self, graph: Graph) -> Graph:
        outputs = {id(v) for v in graph.outputs}
        group_of: dict[int, list[Node]] = {}
        for node in graph.nodes:
            group_of[id(node)] = [node]
        for node in graph.nodes:
            if get_op(node.op).kind != "elementwise" or len(node.outputs) != 1:
                continue
            for v in node.inputs:
                p = v.producer if v is not None else None
                if p is None or p.op == "Fused" or len(p.outputs) != 1:
                    continue
                if get_op(p.op).kind not in FUSABLE_PRODUCERS:
                    continue
                if len(v.uses) != 1 or id(v) in outputs or v.shape != node.outputs[0].shape:
                    continue
                mine, theirs = group_of[id(node)], group_of[id(p)]
                if mine is theirs:
                    continue
                reductions = sum(get_op(n.op).kind == "reduction" for n in mine + theirs)
                if reductions > 1 or len(mine) + len(theirs) > MAX_GROUP:
                    continue
                merged = theirs + mine
                for n in merged:
                    group_of[id(n)] = merged
        done: set[int] = set()
        order = {id(n): k for k, n in enumerate(graph.nodes)}
        groups = []
        for node in graph.nodes:
            group = group_of[id(node)]
            if len(group) > 1 and id(group[0]) not in done:
                done.add(id(group[0]))
                groups.append(sorted(group, key=lambda n: order[id(n)]))
        if groups:
            graph.fuse_groups(groups)
        return graph
