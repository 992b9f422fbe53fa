"""Placement: which device runs each node, chosen for the least estimated time that fits.

The nodes, in topological order, are cut into contiguous segments and each segment is given a
device by dynamic programming over (position, device of the last segment, devices used). A
segment may go to a device only when

  1. every node in it can run there (user pins, ``Device.unsupported_ops`` and the ``supports``
     protocol by which the runtime tells what a backend refuses), and
  2. its weights plus its peak activations fit the device's memory. A device with room for
     the whole model may take several segments; any other takes at most one, so its memory
     check stays exact.

The cost of a plan is compute (FLOPs / device throughput) per segment, plus every tensor that
crosses a cut moved over the slower of the two links, plus graph inputs and outputs moved from
and to the host, plus a small fixed cost per partition (so equal plans prefer fewer cuts). A
tensor that skips over a segment is charged at each cut it crosses, an overestimate that the
final report (``Placement.estimated_time_s``) replaces with the exact transfers.

Every node gets a reason: where it went, what was ruled out and why the partition ends where it
does (``Placement.explain``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from onnxc.ir import Graph, Node
from onnxc.ir.devices import Device
from onnxc.ir.errors import CompileError

from .manager import Pass
from .placement_cost import GraphCosts

PARTITION_OVERHEAD_S = 20e-6  # launch and bookkeeping per partition
SupportFn = Callable[[Node, Device], "str | None"]  # None: supported; else why not


@dataclass
class Segment:
    """Nodes [start, stop) of the placed graph, on one device."""

    start: int
    stop: int
    device: Device
    compute_s: float = 0.0
    weight_bytes: int = 0
    activation_bytes: int = 0
    why: str = ""


@dataclass
class Placement:
    """The placer's answer: a device per node, the segments and the reasons."""

    devices: list[Device]
    assignment: dict[str, str]  # IR node name -> device name
    segments: list[Segment]
    reasons: dict[str, str]  # IR node name -> why it went there
    origins: dict[str, list[str]] = field(default_factory=dict)  # IR node -> ONNX node names
    transfer_s: float = 0.0
    estimated_time_s: float = 0.0

    def explain(self, name: str) -> str:
        """Why the node ``name`` (an IR node or an ONNX node it stands for) went where it did."""
        if name in self.reasons:
            return self.reasons[name]
        for ir_name, onnx_names in self.origins.items():
            if name in onnx_names:
                return self.reasons[ir_name]
        raise KeyError(f"no node named {name!r} in the placed graph")


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def transfer_s_per_byte(a: Device, b: Device) -> float:
    """Seconds per byte from a to b: through the host, over each side's link to it."""
    if a == b:
        return 0.0
    if a.kind == "cpu" and b.kind == "cpu":
        return 1.0 / min(a.link_bandwidth, b.link_bandwidth)
    return sum(1.0 / d.link_bandwidth for d in (a, b) if d.kind != "cpu")


def _host_s_per_byte(d: Device) -> float:
    return 0.0 if d.kind == "cpu" else 1.0 / d.link_bandwidth


def resolve_pins(graph: Graph, devices: list[Device], pins: Mapping[str, object] | None
                 ) -> dict[int, Device]:
    """{id(node): device} from user pins keyed by IR or ONNX node name."""
    by_name = {d.name: d for d in devices}
    out: dict[int, Device] = {}
    names: dict[str, Node] = {}
    for node in graph.nodes:
        names[node.name] = node
        for onnx_name, _ in node.origin:
            names.setdefault(onnx_name, node)
    unknown = [n for n in (pins or {}) if n not in names]
    if unknown:
        raise CompileError(f"placement pins unknown node(s) {unknown}; pin ONNX node names "
                           f"(after optimization a node may be folded away)")
    for name, spec in (pins or {}).items():
        dev = Device.parse(spec)
        if dev.name not in by_name:
            raise CompileError(f"placement pins node {name!r} to {dev.name}, which is not one of "
                               f"the devices {list(by_name)}")
        node = names[name]
        if id(node) in out and out[id(node)].name != dev.name:
            raise CompileError(f"placement pins ONNX nodes of one fused kernel {node.name!r} "
                               f"to {out[id(node)].name} and {dev.name}; pin them alike or "
                               f"compile with disable_passes=['fuse']")
        out[id(node)] = by_name[dev.name]
    return out


OBJECTIVES = ("time", "throughput")


def _rank(cost: tuple[float, float], throughput: bool) -> tuple[float, float]:
    return cost if throughput else (cost[1], cost[0])


def place(graph: Graph, devices: list[Device], pins: Mapping[str, object] | None = None,
          supports: SupportFn | None = None, objective: str = "time") -> Placement:
    """Assign every node of ``graph`` to one of ``devices`` (their figures resolved).

    objective "time": the least estimated time of one run (compute plus transfers);
    "throughput": the fastest slowest partition, for pipelining micro-batches through them.
    """
    if objective not in OBJECTIVES:
        raise CompileError(f"unknown placement objective {objective!r}; use one of "
                           f"{', '.join(OBJECTIVES)}")
    if not devices:
        raise CompileError("placement needs at least one device")
    if len({d.name for d in devices}) != len(devices):
        raise CompileError(f"devices are listed twice: {[d.name for d in devices]}")
    for d in devices:
        if not d.resolved:
            raise CompileError(f"device {d.name} has unresolved figures; resolve it first")
    costs = GraphCosts(graph)
    nodes, n, nd = costs.nodes, len(costs.nodes), len(devices)
    pinned = resolve_pins(graph, devices, pins)
    blocked: list[dict[int, str]] = []  # per node: device index -> why it cannot go there
    for node in nodes:
        why: dict[int, str] = {}
        for b, dev in enumerate(devices):
            if id(node) in pinned and pinned[id(node)] != dev:
                why[b] = f"pinned to {pinned[id(node)].name}"
            elif node.op in dev.unsupported_ops:
                why[b] = f"{dev.name} is configured not to run {node.op}"
            elif supports is not None:
                reason = supports(node, dev)
                if reason:
                    why[b] = reason
        if len(why) == nd:
            raise CompileError(f"node {node.name!r} ({node.op}) can run on none of the devices: "
                               + "; ".join(f"{devices[b].name}: {r}" for b, r in why.items()))
        blocked.append(why)

    total = costs.weight_bytes(0, n) + costs.activation_peak(0, n) if n else 0
    roomy = [d.memory_bytes >= total for d in devices]
    bit = [0 if roomy[b] else 1 << b for b in range(nd)]
    crossing = [sum(costs.nbytes(v) for v in costs.crossing(j)) for j in range(n + 1)]

    # Feasible segments per (start, device): list of (stop, cost, weights, activations).
    segs: dict[tuple[int, int], list[tuple[int, float, int, int]]] = {}
    biggest = max(d.memory_bytes for d in devices)
    for i in range(n):
        rows: list[list] = [[] for _ in devices]
        open_ = set(range(nd))
        weights: dict[int, int] = {}
        flops = 0.0
        for j in range(i + 1, n + 1):
            weights.update(costs.weights[j - 1])
            flops += costs.flops[j - 1]
            w = sum(weights.values())
            open_ -= {b for b in open_ if b in blocked[j - 1] or w > devices[b].memory_bytes}
            if not open_ or w > biggest:
                break
            a = costs.activation_peak(i, j)
            io = costs.input_bytes(i, j) + costs.output_bytes(i, j)
            for b in open_:
                dev = devices[b]
                if w + a <= dev.memory_bytes:
                    t = flops / dev.flops + PARTITION_OVERHEAD_S + io * _host_s_per_byte(dev)
                    rows[b].append((j, t, w, a))
        for b in range(nd):
            segs[(i, b)] = rows[b]

    # best[(j, last device, mask)] = ((slowest stage, total), previous state, segment). The
    # "time" objective compares totals; "throughput" the slowest stage (with its incoming
    # transfers) first, which is what bounds a pipeline.
    throughput = objective == "throughput"
    best: dict[tuple, tuple] = {(0, -1, 0): ((0.0, 0.0), None, None)}
    for i in range(n):
        states = [(k, v) for k, v in best.items() if k[0] == i]
        for (pos, a, mask), ((slowest, total_s), _, _) in states:
            for b, dev in enumerate(devices):
                if b == a or (mask & bit[b]):
                    continue
                move = crossing[i] * (transfer_s_per_byte(devices[a], dev) if a >= 0 else 0.0)
                for j, t, w, act in segs[(i, b)]:
                    key = (j, b, mask | bit[b])
                    cost = (max(slowest, move + t), total_s + move + t)
                    rank = cost if throughput else (cost[1], cost[0])
                    if key not in best or rank < _rank(best[key][0], throughput):
                        best[key] = (cost, (pos, a, mask), (i, j, b, t, w, act))
    finals = [(_rank(v[0], throughput), k) for k, v in best.items() if k[0] == n and n > 0]
    if not finals:
        raise CompileError(_infeasible_message(costs, devices, blocked))
    _, key = min(finals, key=lambda x: x[0])
    chosen = []
    while key is not None and best[key][2] is not None:
        _, prev, (i, j, b, t, w, act) = best[key]
        chosen.append(Segment(i, j, devices[b], t - PARTITION_OVERHEAD_S, w, act))
        key = prev
    chosen.reverse()
    return _report(graph, costs, devices, chosen, blocked, pinned, objective)


def _infeasible_message(costs: GraphCosts, devices: list[Device], blocked) -> str:
    caps = ", ".join(f"{d.name} {_mb(d.memory_bytes)}" for d in devices)
    for k, node in enumerate(costs.nodes):
        need = costs.weight_bytes(k, k + 1) + costs.activation_peak(k, k + 1)
        room = [d.memory_bytes for b, d in enumerate(devices) if b not in blocked[k]]
        if need > max(room):
            return (f"node {node.name!r} ({node.op}) alone needs {_mb(need)} (weights and "
                    f"activations) but the largest device that can run it has "
                    f"{_mb(max(room))}; devices: {caps}")
    n = len(costs.nodes)
    return (f"the model ({_mb(costs.weight_bytes(0, n))} of weights) does not fit the devices "
            f"({caps}) when cut into contiguous partitions, one per device of limited memory; "
            f"add devices or memory")


def _report(graph: Graph, costs: GraphCosts, devices: list[Device], segments: list[Segment],
            blocked, pinned, objective: str) -> Placement:
    nodes = costs.nodes
    assignment, reasons = {}, {}
    device_of: dict[int, Device] = {}
    for s, seg in enumerate(segments):
        dev = seg.device
        for k in range(seg.start, seg.stop):
            device_of[k] = dev
        fit = (f"weights {_mb(seg.weight_bytes)} + peak activations "
               f"{_mb(seg.activation_bytes)} of {dev.name}'s {_mb(dev.memory_bytes)}")
        if seg.stop == len(nodes):
            end = "it ends with the graph"
        else:
            nxt = nodes[seg.stop]
            if devices.index(dev) in blocked[seg.stop]:
                end = f"{nxt.name!r} cannot run on {dev.name} " \
                      f"({blocked[seg.stop][devices.index(dev)]})"
            else:
                more = costs.weight_bytes(seg.start, seg.stop + 1) + \
                    costs.activation_peak(seg.start, seg.stop + 1)
                if more > dev.memory_bytes:
                    end = (f"taking {nxt.name!r} too would need {_mb(more)}, more than "
                           f"{dev.name}'s {_mb(dev.memory_bytes)}")
                else:
                    end = (f"of the plans that fit, cutting before {nxt.name!r} (and moving on "
                           f"to {segments[s + 1].device.name}) gives the least estimated "
                           + ("time of its slowest partition" if objective == "throughput"
                              else "time"))
        seg.why = (f"partition {s} on {dev.name}: {fit}; estimated compute "
                   f"{seg.compute_s * 1e3:.3f} ms; it ends here because {end}")
        for k in range(seg.start, seg.stop):
            node = nodes[k]
            ruled_out = "; ".join(f"not {devices[b].name}: {r}" for b, r in blocked[k].items())
            pin = f"pinned to {dev.name}; " if id(node) in pinned else ""
            assignment[node.name] = dev.name
            reasons[node.name] = (f"{node.name!r} ({node.op}) on {dev.name}: {pin}"
                                  + (f"{ruled_out}; " if ruled_out else "") + seg.why)
    # Exact transfers: each activation moves once to each other device that reads it.
    transfer = 0.0
    for k, node in enumerate(nodes):
        for v in costs.writes[k]:
            readers = {device_of[u] for u in costs.uses.get(id(v), ())} - {device_of[k]}
            transfer += sum(costs.nbytes(v) * transfer_s_per_byte(device_of[k], d)
                            for d in readers)
    host = sum((costs.input_bytes(s.start, s.stop) + costs.output_bytes(s.start, s.stop))
               * _host_s_per_byte(s.device) for s in segments)
    origins = {node.name: [o for o, _ in node.origin] for node in nodes}
    total = sum(s.compute_s for s in segments) + transfer + host
    return Placement(devices, assignment, segments, reasons, origins, transfer + host, total)


class PlaceNodes(Pass):
    """Write each node's device into ``node.attrs["device"]`` (see ``place``).

    The full report (segments, reasons, estimates) is ``self.placement`` after ``run``.
    """

    name = "place"
    purpose = "choose a device per node: pins, backend support, memory, estimated time"

    def __init__(self, devices: list[Device], pins: Mapping[str, object] | None = None,
                 supports: SupportFn | None = None, objective: str = "time"):
        self.devices, self.pins, self.supports = devices, pins, supports
        self.objective = objective
        self.placement: Placement | None = None

    def run(self, graph: Graph) -> Graph:
        self.placement = place(graph, self.devices, self.pins, self.supports, self.objective)
        for node in graph.nodes:
            node.attrs["device"] = self.placement.assignment[node.name]
        return graph
