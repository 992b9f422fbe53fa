"""Graphviz pictures of a model as onnxc sees it: compiled kernels, or IR nodes before passes.

Each box is a kernel (labelled with the ONNX ops it fuses, its output shape and its device,
and coloured by device) or an IR node; edges are the tensors between them. Weights are left
out: a ResNet has more weight tensors than kernels and they would bury the data flow.

The ``graphviz`` Python package builds the DOT text; rendering SVG or PNG also needs Graphviz's
``dot`` program. Both are optional (``pip install 'onnxc[viz]'``), so they load on first use.
"""
from __future__ import annotations

import html
from typing import Any, Iterable

from onnxc.ir.errors import OnnxcError

FORMATS = ("dot", "svg", "png")

# One fill colour per device kind (the part before ':'), then a cycle for anything else.
_DEVICE_COLOURS = {"cpu": "#cfe2f3", "cuda": "#d9ead3", "cuda-sim": "#fce5cd"}
_SPARE_COLOURS = ["#ead1dc", "#fff2cc", "#d0e0e3", "#e6b8af", "#d9d2e9"]
# IR nodes have no device yet: colour them by op kind instead.
_KIND_COLOURS = {"elementwise": "#fff2cc", "reduction": "#cfe2f3", "view": "#eeeeee",
                 "opaque": "#d9d2e9", "fused": "#d9ead3"}
_IO_COLOUR = "#f3f3f3"
_LINE_CHARS = 40  # wrap a kernel's op list beyond this, so boxes stay narrow


class VisualizeError(OnnxcError):
    """Drawing needs something that is not installed (the graphviz package or program)."""


def _graphviz() -> Any:
    try:
        import graphviz
    except ImportError:
        raise VisualizeError("drawing graphs needs the 'graphviz' Python package: "
                             "pip install 'onnxc[viz]' (or pip install graphviz)") from None
    return graphviz


def _new_graph(title: str, legend: dict[str, str]) -> Any:
    """A top-to-bottom digraph with compact spacing (a ResNet-50 is ~60 kernels deep)."""
    dot = _graphviz().Digraph(name="onnxc")
    dot.attr(rankdir="TB", nodesep="0.2", ranksep="0.25", fontname="Helvetica", fontsize="11",
             labelloc="t")
    dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="10",
             margin="0.08,0.03", height="0.3", penwidth="0.8")
    dot.attr("edge", arrowsize="0.5", penwidth="0.8", color="#555555")
    cells = "".join(f'<TD BGCOLOR="{colour}" BORDER="1">{html.escape(name)}</TD>'
                    for name, colour in legend.items())
    dot.attr(label=f'<<TABLE BORDER="0" CELLSPACING="4"><TR><TD><B>{html.escape(title)}</B>'
                   f'</TD>{cells}</TR></TABLE>>')
    return dot


def _shape(shape: Iterable, dtype: str = "float32") -> str:
    text = "\u00d7".join(str(d) for d in shape) or "scalar"
    return text if dtype in ("float32", "float") else f"{text} {dtype}"


def _ops_label(ops: list[str]) -> str:
    """Fused ops, repeats of a run folded ('Mul\u00d73'), wrapped so boxes stay narrow."""
    runs: list[list] = []
    for op in ops:
        if runs and runs[-1][0] == op:
            runs[-1][1] += 1
        else:
            runs.append([op, 1])
    lines = [""]
    for op, n in runs:
        part = op if n == 1 else f"{op}\u00d7{n}"
        if lines[-1] and len(lines[-1]) + 3 + len(part) > _LINE_CHARS:
            lines.append("")
        lines[-1] += f" + {part}" if lines[-1] else part
    return "<BR/>".join(f"<B>{html.escape(line)}</B>" for line in lines)


def _label(ops: list[str], shapes: list[str], note: str) -> str:
    rows = [_ops_label(ops)] + [html.escape(s) for s in shapes]
    if note:
        rows.append(f'<FONT POINT-SIZE="8" COLOR="#666666">{html.escape(note)}</FONT>')
    return "<" + "<BR/>".join(rows) + ">"


def _device_colour(device: str, legend: dict[str, str]) -> str:
    if device not in legend:
        kind = device.split(":")[0]
        spare = _SPARE_COLOURS[len(legend) % len(_SPARE_COLOURS)]
        legend[device] = _DEVICE_COLOURS.get(kind, spare)
    return legend[device]


def _nodes_note(nodes: list[str]) -> str:
    return nodes[0] if len(nodes) == 1 else f"{nodes[0]} \u2026 {nodes[-1]}" if nodes else ""


def kernel_graph(exe: Any, title: str = "") -> Any:
    """The kernels of an ``Executable`` in run order, with tensor edges between them.

    Artifacts saved before kernels recorded their tensors get dashed run-order edges instead.
    """
    kernels = list(exe.kernels)
    legend: dict[str, str] = {}
    fills = [_device_colour(k.device, legend) for k in kernels]
    dot = _new_graph(f"{title} \u2014 {len(kernels)} kernels" if title
                     else f"{len(kernels)} kernels", legend)
    have_tensors = all(getattr(k, "params", None) for k in kernels)
    producer: dict[str, str] = {}  # tensor -> the node that makes it
    for spec_index, spec in enumerate(exe.inputs):
        node = f"in{spec_index}"
        dot.node(node, f"{spec.name}\n{_shape(spec.shape, spec.dtype)}", shape="ellipse",
                 style="filled", fillcolor=_IO_COLOUR)
        producer[f"input:{spec_index}"] = node
        if not have_tensors and kernels:
            dot.edge(node, "k0", style="dashed")
    for k, (kernel, fill) in enumerate(zip(kernels, fills)):
        node = f"k{k}"
        params = list(kernel.params or [])
        slots = list(kernel.slots or [])
        outs = [_shape(shape, dtype) for role, _, shape, dtype in params if role == "out"]
        note = f"#{k} {_nodes_note(list(kernel.nodes))} \u00b7 {kernel.device}"
        dot.node(node, _label(list(kernel.ops), outs, note),
                 fillcolor=fill, tooltip=f"{kernel.name}: {', '.join(kernel.ops)}")
        if not have_tensors:
            if k:
                dot.edge(f"k{k - 1}", node, style="dashed")
            continue
        seen = set()
        for (role, tensor, shape, dtype), slot in zip(params, slots):
            key = _tensor_key(tensor, slot)
            if role == "in" and key in producer and key not in seen:
                seen.add(key)
                dot.edge(producer[key], node, tooltip=f"{tensor}: {_shape(shape, dtype)}")
            elif role == "out":
                producer[key] = node
    for spec_index, spec in enumerate(exe.outputs):
        node = f"out{spec_index}"
        dot.node(node, f"{spec.name}\n{_shape(spec.shape, spec.dtype)}", shape="ellipse",
                 style="filled", fillcolor=_IO_COLOUR)
        if have_tensors and f"output:{spec_index}" in producer:
            dot.edge(producer[f"output:{spec_index}"], node)
        elif not have_tensors and kernels:
            dot.edge(f"k{len(kernels) - 1}", node, style="dashed")
    return dot


def _tensor_key(tensor: str, slot: Any) -> str:
    """Graph inputs and outputs by position (their slot), other tensors by name."""
    region, index = slot
    return f"{region}:{index}" if region in ("input", "output") else f"t:{tensor}"


def ir_graph(graph: Any, title: str = "") -> Any:
    """One box per node of an IR ``Graph`` (before passes: one per imported ONNX node)."""
    from onnxc.ir.ops.registry import get_op

    kinds = [get_op(node.op).kind for node in graph.nodes]
    legend = {kind: _KIND_COLOURS.get(kind, _SPARE_COLOURS[0]) for kind in dict.fromkeys(kinds)}
    dot = _new_graph(f"{title} \u2014 {len(graph.nodes)} IR nodes" if title
                     else f"{len(graph.nodes)} IR nodes", legend)
    source: dict[int, str] = {}  # id(value) -> the node that makes it
    for k, value in enumerate(graph.inputs):
        dot.node(f"in{k}", f"{value.name}\n{_shape(value.shape, value.dtype.value)}",
                 shape="ellipse", style="filled", fillcolor=_IO_COLOUR)
        source[id(value)] = f"in{k}"
    for k, (node, kind) in enumerate(zip(graph.nodes, kinds)):
        if node.op == "Fused":
            ops = [m.op for m in node.subgraphs["body"].nodes]
        else:
            ops = [node.op]
        onnx_ops = list(dict.fromkeys(op for _, op in node.origin))
        note = node.name if onnx_ops in ([], ops) else f"{node.name} ({', '.join(onnx_ops)})"
        shapes = [_shape(v.shape, v.dtype.value) for v in node.outputs]
        dot.node(f"n{k}", _label(ops, shapes, note), fillcolor=legend[kind],
                 style="rounded,filled,dashed" if kind == "view" else "rounded,filled")
        for value in dict.fromkeys(v for v in node.inputs if v is not None):
            if id(value) in source:
                dot.edge(source[id(value)], f"n{k}", tooltip=value.name)
        for value in node.outputs:
            source[id(value)] = f"n{k}"
    for k, (value, name) in enumerate(zip(graph.outputs, graph.output_names)):
        dot.node(f"out{k}", f"{name}\n{_shape(value.shape, value.dtype.value)}",
                 shape="ellipse", style="filled", fillcolor=_IO_COLOUR)
        if id(value) in source:
            dot.edge(source[id(value)], f"out{k}")
    return dot


def render(dot: Any, fmt: str) -> bytes:
    """The picture in ``fmt``: DOT text needs only the package, svg/png the ``dot`` program."""
    if fmt == "dot":
        return dot.source.encode()
    if fmt not in FORMATS:
        raise VisualizeError(f"unknown picture format {fmt!r}; choose one of {FORMATS}")
    graphviz = _graphviz()
    try:
        return dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise VisualizeError(f"rendering {fmt} needs Graphviz's 'dot' program, which is not on "
                             f"PATH: install it (apt-get install graphviz, brew install "
                             f"graphviz, conda install graphviz), or use --format dot") from None
    except graphviz.CalledProcessError as exc:
        raise VisualizeError(f"Graphviz failed to render {fmt}: {exc}") from None
