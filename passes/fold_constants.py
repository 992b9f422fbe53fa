"""Constant folding after import: a node whose inputs are all constants becomes constants.

The importer already folds eagerly (that is what turns Shape->Gather->Concat->Reshape chains
into static shapes); this pass catches what later rewrites make constant, e.g. after CSE or
simplification. Results bigger than ``MAX_FOLD_ELEMENTS`` stay as nodes.
"""
from __future__ import annotations

from onnxc.ir import Graph
from onnxc.ir.evaluate import evaluate_node

from .manager import Pass


class FoldConstants(Pass):
    name = "fold-constants"
    purpose = "evaluate nodes whose inputs are all constants"

    def run(self, graph: Graph) -> Graph:
        for node in list(graph.nodes):
            present = [v for v in node.inputs if v is not None]
            if node.subgraphs or not present or any(v.const is None for v in present):
                continue
            if node.op.startswith("Random"):
                continue
            results = evaluate_node(node.op, node.inputs, [v.type for v in node.outputs],
                                    node.attrs)
            if results is None:
                continue
            for old, array in zip(node.outputs, results):
                graph.replace_uses(old, graph.add_constant(array, f"{old.name}_folded"))
            graph.remove_node(node)
        return graph
