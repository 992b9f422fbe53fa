"""What the placer needs to know about a graph in topological order: work and bytes.

FLOPs per node: MatMul 2*M*N*K and Conv 2*out*(C/group*kh*kw) from shapes, pooling out*window,
reductions the elements read, everything else the elements written; a fused node is the sum of
its members. Bytes: weights (constants, each counted once per segment) and activations, whose
peak over a contiguous segment [i, j) comes from a liveness sweep in the same order the runtime
runs kernels. Views (Reshape) alias their source and cost nothing.
"""
from __future__ import annotations

import math

from onnxc.ir import Graph, Node, Value
from onnxc.ir.ops.registry import get_op


def _numel(v: Value | None) -> int:
    if v is None or not v.type.is_static:
        return 0
    return v.type.numel()


def node_flops(node: Node) -> float:
    """Floating-point operations of one node (estimated from its input/output shapes)."""
    if node.op == "Fused":
        return float(sum(node_flops(m) for m in node.subgraphs["body"].nodes))
    out = sum(_numel(v) for v in node.outputs)
    if node.op == "MatMul":
        a = node.inputs[0]
        return 2.0 * out * (a.shape[-1] if isinstance(a.shape[-1], int) else 1)
    if node.op == "Conv":
        w = node.inputs[1]
        return 2.0 * out * math.prod(int(d) for d in w.shape[1:])
    if node.op in ("MaxPool", "AveragePool"):
        return float(out * math.prod(node.attrs.get("kernel_shape", (1,))))
    kind = get_op(node.op).kind
    if kind == "view":
        return 0.0
    if kind == "reduction":
        return float(max(out, sum(_numel(v) for v in node.inputs if v is not None)))
    return float(out)


def _temp_bytes(node: Node) -> int:
    """Bytes of the scratch buffers the node's kernel needs (0 for views)."""
    from onnxc.ir.compute import build_kernel

    if get_op(node.op).kind == "view":
        return 0
    members = node.subgraphs["body"].nodes if node.op == "Fused" else [node]
    try:
        kernel = build_kernel(members, node.outputs)
    except Exception:  # no kernel description (e.g. folded shape ops): no scratch
        return 0
    return int(sum(math.prod(p.shape) * p.dtype.itemsize
                   for p in kernel.params if p.role == "temp"))


class GraphCosts:
    """Per-node FLOPs, weights and the activation liveness of a graph, by node position."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes = list(graph.nodes)
        self.flops = [node_flops(n) for n in self.nodes]
        self.position = {id(n): k for k, n in enumerate(self.nodes)}
        self._alias: dict[int, Value] = {}
        for node in self.nodes:
            if get_op(node.op).kind == "view" and node.inputs and node.inputs[0] is not None:
                src = node.inputs[0]
                self._alias[id(node.outputs[0])] = self._alias.get(id(src), src)
        self.inputs = {id(v) for v in graph.inputs}
        self.outputs = {id(self.root(v)) for v in graph.outputs}
        # Per node: constants read {id: bytes}; activation roots read / written.
        self.weights: list[dict[int, int]] = []
        self.reads: list[list[Value]] = []
        self.writes: list[list[Value]] = []
        self.uses: dict[int, list[int]] = {}  # id(root) -> node positions reading it
        self.producer: dict[int, int] = {}  # id(root) -> producing node position
        self.temps = [_temp_bytes(n) for n in self.nodes]
        for k, node in enumerate(self.nodes):
            consts, reads = {}, []
            for v in node.inputs:
                if v is None:
                    continue
                if v.is_const:
                    consts[id(v)] = v.type.nbytes()
                    continue
                r = self.root(v)
                if all(r is not w for w in reads):
                    reads.append(r)
                    self.uses.setdefault(id(r), []).append(k)
            self.weights.append(consts)
            self.reads.append(reads)
            own = [v for v in node.outputs if id(v) not in self._alias]
            self.writes.append(own)
            for v in own:
                self.producer[id(v)] = k

    def root(self, v: Value) -> Value:
        return self._alias.get(id(v), v)

    def nbytes(self, v: Value) -> int:
        return v.type.nbytes() if v.type.is_static else 0

    # -- segment figures ----------------------------------------------------------------------
    def segment_flops(self, i: int, j: int) -> float:
        return float(sum(self.flops[i:j]))

    def weight_bytes(self, i: int, j: int) -> int:
        seen: dict[int, int] = {}
        for k in range(i, j):
            seen.update(self.weights[k])
        return int(sum(seen.values()))

    def activation_peak(self, i: int, j: int) -> int:
        """Peak bytes of activations live at once while nodes [i, j) run, counting the
        segment's inputs (until their last use) and outputs (until the segment ends)."""
        intervals: dict[int, tuple[int, int, int]] = {}
        for k in range(i, j):
            for v in self.reads[k]:
                start = max(i, self.producer.get(id(v), i))
                _, _, end = intervals.get(id(v), (0, start, start))
                intervals[id(v)] = (self.nbytes(v), start, max(end, k))
            for v in self.writes[k]:
                _, _, end = intervals.get(id(v), (0, k, k))
                intervals[id(v)] = (self.nbytes(v), k, end)
        delta = [0] * (j - i + 1)
        for k in range(i, j):  # kernel temporaries (padding, phases) live while it runs
            delta[k - i] += self.temps[k]
            delta[k - i + 1] -= self.temps[k]
        for vid, (size, start, end) in intervals.items():
            if self._ends_after_id(vid, j):
                end = j - 1
            delta[start - i] += size
            delta[end - i + 1] -= size
        peak = live = 0
        for d in delta:
            live += d
            peak = max(peak, live)
        return peak

    def _ends_after_id(self, vid: int, j: int) -> bool:
        return vid in self.outputs or any(u >= j for u in self.uses.get(vid, ()))

    def input_bytes(self, i: int, j: int) -> int:
        """Bytes of graph inputs that nodes [i, j) read (they come from the host)."""
        seen = {id(v): self.nbytes(v) for k in range(i, j) for v in self.reads[k]
                if id(v) in self.inputs}
        return int(sum(seen.values()))

    def output_bytes(self, i: int, j: int) -> int:
        """Bytes of graph outputs that nodes [i, j) produce (they go to the host)."""
        return int(sum(self.nbytes(v) for k in range(i, j) for v in self.writes[k]
                       if id(v) in self.outputs))

    def crossing(self, j: int) -> list[Value]:
        """Activations made before position j and read at or after it: what a cut at j moves."""
        out = []
        for k in range(j):
            for v in self.writes[k]:
                if any(u >= j for u in self.uses.get(id(v), ())):
                    out.append(v)
        return out
