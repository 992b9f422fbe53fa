"""Partitioning: cut a placed graph into per-device subgraphs joined by explicit transfers."""
from __future__ import annotations

from onnxc.ir import Graph, Node, Value
from onnxc.ir.errors import CompileError

from .manager import Pass


class PartitionGraph(Pass):
    """Group each maximal run of consecutive nodes with one ``attrs["device"]`` into a
    ``Partition`` node (members in ``subgraphs["body"]``, with the constants they read).

    Rules: a partition reads graph inputs and same-device results directly; a result made on
    another device is read through ``Transfer{src, dst}``, one per (tensor, destination
    device). Partition outputs are member results read outside it or returned by the graph.
    Runs follow the topological order, so the partition graph is acyclic; that is checked.
    """

    name = "partition"
    purpose = "cut per-device subgraphs and insert explicit transfer nodes"

    def run(self, graph: Graph) -> Graph:
        runs: list[list[Node]] = []
        for node in graph.nodes:
            if "device" not in node.attrs:
                raise CompileError(f"node {node.name!r} ({node.op}) has no device; run the "
                                   f"placement pass first")
            if runs and runs[-1][0].attrs["device"] == node.attrs["device"]:
                runs[-1].append(node)
            else:
                runs.append([node])
        home: dict[int, int] = {}  # id(value) -> run that makes it
        for r, members in enumerate(runs):
            for node in members:
                for v in node.outputs:
                    home[id(v)] = r
        graph_outs = {id(v) for v in graph.outputs}
        transfers: dict[tuple[int, str], Value] = {}
        new_nodes: list[Node] = []
        for r, members in enumerate(runs):
            device = runs[r][0].attrs["device"]
            ids = {id(n) for n in members}
            inputs: list[Value] = []
            consts: dict[str, Value] = {}
            for node in members:
                for k, v in enumerate(node.inputs):
                    if v is None or home.get(id(v)) == r:
                        continue
                    if v.is_const:
                        consts[v.name] = v
                        continue
                    src_run = home.get(id(v))
                    if src_run is not None and src_run > r:
                        raise CompileError(f"partition {r} reads %{v.name} from a later "
                                           f"partition: the graph is not in topological order")
                    src = runs[src_run][0].attrs["device"] if src_run is not None else device
                    if src != device:
                        key = (id(v), device)
                        if key not in transfers:
                            out = graph.add("Transfer", [v], {"src": src, "dst": device},
                                            name=f"transfer_{v.name}_to_{device}")[0]
                            graph.nodes.remove(out.producer)
                            new_nodes.append(out.producer)
                            transfers[key] = out
                        moved = transfers[key]
                        v.uses.remove(node)
                        node.inputs[k] = moved
                        moved.uses.append(node)
                        _rewire_body(node, v, moved)
                        v = moved
                    if all(v is not w for w in inputs):
                        inputs.append(v)
            outputs = [v for node in members for v in node.outputs
                       if id(v) in graph_outs or any(id(u) not in ids for u in v.uses)]
            body = Graph(f"partition{r}")
            body.inputs, body.nodes, body.constants = inputs, list(members), consts
            body.set_outputs(outputs)
            origin = [o for n in members for o in (n.origin or [(n.name, n.op)])]
            part = Node("Partition", list(inputs), outputs, {"device": device},
                        graph.unique_name(f"partition{r}"), {"body": body}, origin)
            for v in inputs:
                v.uses = [u for u in v.uses if id(u) not in ids] + [part]
            for v in outputs:
                v.producer = part
            new_nodes.append(part)
        for members in runs:  # the device is the partition's now; kernels take attrs as
            for node in members:  # op arguments, so none may be left over
                del node.attrs["device"]
        graph.nodes = new_nodes
        graph.constants = {}
        return graph


def _rewire_body(node: Node, old: Value, new: Value) -> None:
    """Inside a fused node, members read ``new`` where they read ``old`` (the fused node's
    own use lists stay at its level, as ``Graph.fuse_nodes`` keeps them)."""
    for body in node.subgraphs.values():
        body.inputs = [new if v is old else v for v in body.inputs]
        for member in body.nodes:
            member.inputs = [new if v is old else v for v in member.inputs]
            _rewire_body(member, old, new)


def partitions(graph: Graph) -> list[Node]:
    """The Partition nodes of a partitioned graph, in run order."""
    return [n for n in graph.nodes if n.op == "Partition"]
