"""A readable text form of graphs and kernels, for --print-after and debugging."""
from __future__ import annotations

from .graph import Graph, Node
from .kernel import Const, Expr, IndexValue, Kernel, Load, Op, Reduce


def _attrs(node: Node) -> str:
    if not node.attrs:
        return ""
    parts = []
    for k, v in node.attrs.items():
        parts.append(f"{k}={list(v) if isinstance(v, tuple) else v}")
    return "{" + ", ".join(parts) + "}"


def print_graph(graph: Graph, indent: str = "") -> str:
    lines = [f"{indent}graph {graph.name}("
             + ", ".join(f"%{v.name}: {v.type}" for v in graph.inputs) + ") {"]
    for c in graph.constants.values():
        lines.append(f"{indent}  %{c.name}: {c.type} = constant")
    for node in graph.nodes:
        outs = ", ".join(f"%{v.name}: {v.type}" for v in node.outputs)
        ins = ", ".join(f"%{v.name}" if v is not None else "_" for v in node.inputs)
        lines.append(f"{indent}  {outs} = {node.op}{_attrs(node)}({ins})")
        for name, sub in node.subgraphs.items():
            lines.append(f"{indent}    {name}:")
            lines.append(print_graph(sub, indent + "      "))
    lines.append(f"{indent}  return " + ", ".join(f"%{v.name}" for v in graph.outputs))
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def print_expr(e: Expr) -> str:
    if isinstance(e, Const):
        return repr(e.value)
    if isinstance(e, Load):
        pad = f" pad {e.pad}" if e.pad is not None else ""
        return f"{e.tensor}[{', '.join(map(repr, e.index))}{pad}]"
    if isinstance(e, IndexValue):
        return f"index({e.index!r})"
    if isinstance(e, Op):
        return f"{e.name}({', '.join(print_expr(a) for a in e.args)})"
    if isinstance(e, Reduce):
        axes = ", ".join(f"{v!r}<{n}" for v, n in e.axes)
        return f"{e.kind}[{axes}]({print_expr(e.body)})"
    return repr(e)


def print_kernel(kernel: Kernel) -> str:
    lines = [f"kernel {kernel.name}(" + ", ".join(
        f"{p.role} {p.name}: {p.dtype}{list(p.shape)}" for p in kernel.params) + ") {"]
    for st in kernel.stages:
        idx = ", ".join(repr(v) for v in st.vars)
        lines.append(f"  {st.out}[{idx}] = {print_expr(st.body)}")
    lines.append("}")
    return "\n".join(lines)
