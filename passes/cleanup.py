"""Small cleanups: identity elimination and output materialization."""
from __future__ import annotations

from onnxc.ir import Graph

from .manager import Pass


class EliminateIdentity(Pass):
    """Identity (and inference Dropout, imported as Identity) forwards its input.

    Rule: uses of y = Identity(x) read x instead, unless y is a graph output (then the copy is
    the output's own buffer).
    """

    name = "eliminate-identity"
    purpose = "remove Identity nodes whose result is not a graph output"

    def run(self, graph: Graph) -> Graph:
        outputs = {id(v) for v in graph.outputs}
        for node in list(graph.nodes):
            if node.op == "Identity" and id(node.outputs[0]) not in outputs:
                graph.replace_uses(node.outputs[0], node.inputs[0])
                graph.remove_node(node)
        return graph


class MaterializeOutputs(Pass):
    """Give every graph output a buffer of its own.

    Rule: an output that is a graph input, a constant, or listed twice becomes Identity(x), so
    the runtime can write each output into the array it returns.
    """

    name = "materialize-outputs"
    purpose = "copy graph outputs that are inputs, constants or repeated"

    def run(self, graph: Graph) -> Graph:
        seen: set[int] = set()
        outputs = []
        for v in graph.outputs:
            if v.producer is None or id(v) in seen:
                v = graph.add("Identity", [v], name=f"{v.name}_copy")[0]
            seen.add(id(v))
            outputs.append(v)
        graph.set_outputs(outputs, graph.output_names)
        return graph


class DeadCodeElimination(Pass):
    """Drop nodes and constants no output depends on."""

    name = "dce"
    purpose = "remove nodes whose results are never used"

    def run(self, graph: Graph) -> Graph:
        graph.prune()
        return graph
