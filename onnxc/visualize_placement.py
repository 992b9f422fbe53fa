"""A picture of a placed model: one colour per device, one box around each partition.

Boxes are IR nodes (fused kernels), filled with their device's colour and grouped into one
cluster per partition (labelled with its device, weights, peak activations and estimated
time); Transfer nodes are the ellipses between clusters, labelled with the bytes they move.
``onnxc inspect model.onnx --devices cpu:0,cpu:1 -o placed.svg`` draws it from the command
line; ``placement_graph(session)`` in Python.
"""
from __future__ import annotations

import html
from typing import Any

from onnxc.visualize import _IO_COLOUR, _label, _new_graph, _shape

# One fill per device, in the order the devices were given.
DEVICE_PALETTE = ["#cfe2f3", "#d9ead3", "#fce5cd", "#ead1dc", "#fff2cc", "#d0e0e3",
                  "#e6b8af", "#d9d2e9"]


def device_colours(devices: list[str]) -> dict[str, str]:
    return {d: DEVICE_PALETTE[k % len(DEVICE_PALETTE)] for k, d in enumerate(devices)}


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB"


def placement_graph(session: Any, title: str = "") -> Any:
    """The placed graph of a session compiled with ``devices=[...]``, as a graphviz Digraph."""
    from onnxc.ir.errors import OnnxcError

    graph = getattr(session, "_graph", None)
    if getattr(session, "stages", None) is None or graph is None:
        raise OnnxcError("placement_graph needs a session compiled with devices=[...]")
    names = [d.name for d in session.placement.devices]
    colours = device_colours(names)
    info = {p["name"]: p for p in session.describe()["partitions"]}
    dot = _new_graph(title or f"{len(info)} partitions on {len(names)} devices", colours)
    source: dict[int, str] = {}
    for k, v in enumerate(graph.inputs):
        dot.node(f"in{k}", f"{v.name}\n{_shape(v.shape, v.dtype.value)}", shape="ellipse",
                 style="filled", fillcolor=_IO_COLOUR)
        source[id(v)] = f"in{k}"
    edges: list[tuple[str, str, str]] = []
    for p, node in enumerate(graph.nodes):
        if node.op == "Transfer":
            v = node.outputs[0]
            label = (f"Transfer {node.attrs['src']} \u2192 {node.attrs['dst']}\n"
                     f"{v.name.split('_to_')[0].removeprefix('transfer_')} "
                     f"({_mb(v.type.nbytes())})")
            dot.node(f"t{p}", label, shape="ellipse", style="filled,dashed",
                     fillcolor=colours.get(node.attrs["dst"], _IO_COLOUR))
            edges.append((source[id(node.inputs[0])], f"t{p}", ""))
            source[id(v)] = f"t{p}"
            continue
        device = node.attrs["device"]
        part = info.get(node.name, {})
        label = (f"<<B>{html.escape(node.name)} on {html.escape(device)}</B><BR/>"
                 f"weights {_mb(part.get('weight_bytes', 0))}, peak activations "
                 f"{_mb(part.get('peak_activation_bytes', 0))}<BR/>estimated "
                 f"{part.get('estimated_time_s', 0.0) * 1e3:.3f} ms>")
        with dot.subgraph(name=f"cluster_{p}") as sub:
            sub.attr(label=label, style="rounded,filled", color="#888888",
                     fillcolor="#fafafa", fontsize="10")
            for j, member in enumerate(node.subgraphs["body"].nodes):
                ops = ([m.op for m in member.subgraphs["body"].nodes]
                       if member.op == "Fused" else [member.op])
                shapes = [_shape(v.shape, v.dtype.value) for v in member.outputs]
                sub.node(f"p{p}n{j}", _label(ops, shapes, member.name),
                         fillcolor=colours[device], tooltip=f"{member.name} on {device}")
                for v in dict.fromkeys(x for x in member.inputs if x is not None):
                    if id(v) in source:
                        edges.append((source[id(v)], f"p{p}n{j}", v.name))
                for v in member.outputs:
                    source[id(v)] = f"p{p}n{j}"
    for a, b, tooltip in edges:
        dot.edge(a, b, tooltip=tooltip)
    for k, (v, name) in enumerate(zip(graph.outputs, graph.output_names)):
        dot.node(f"out{k}", f"{name}\n{_shape(v.shape, v.dtype.value)}", shape="ellipse",
                 style="filled", fillcolor=_IO_COLOUR)
        if id(v) in source:
            dot.edge(source[id(v)], f"out{k}")
    return dot
