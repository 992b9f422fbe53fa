"""A readable text form of graphs and kernels, for --print-after and debugging."""
from __future__ import annotations

from .graph import Graph, Node
from .kernel import Const, Expr, IndexValue, Kernel, Load, Op, Reduce, walk


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


def _parents(root: Expr) -> dict[int, int]:
    counts: dict[int, int] = {}
    for e in walk(root):
        children = e.args if isinstance(e, Op) else (e.body,) if isinstance(e, Reduce) else ()
        for c in children:
            counts[id(c)] = counts.get(id(c), 0) + 1
    return counts


def print_expr(e: Expr) -> str:
    """Text of an expression DAG: a sub-expression used twice prints once as ``$k=...`` and
    then as ``$k`` (fusion shares sub-expressions; printing them as a tree could explode)."""
    counts = _parents(e)
    labels: dict[int, str] = {}

    def text(x: Expr) -> str:
        if id(x) in labels:
            return labels[id(x)]
        body = node(x)
        if counts.get(id(x), 0) > 1 and not isinstance(x, (Const, Load)):
            labels[id(x)] = f"${len(labels)}"
            return f"{labels[id(x)]}={body}"
        return body

    def node(x: Expr) -> str:
        if isinstance(x, Const):
            return repr(x.value)
        if isinstance(x, Load):
            pad = f" pad {x.pad}" if x.pad is not None else ""
            return f"{x.tensor}[{', '.join(map(repr, x.index))}{pad}]"
        if isinstance(x, IndexValue):
            return f"index({x.index!r})"
        if isinstance(x, Op):
            return f"{x.name}({', '.join(text(a) for a in x.args)})"
        if isinstance(x, Reduce):
            axes = ", ".join(f"{v!r}<{n}" for v, n in x.axes)
            return f"{x.kind}[{axes}]({text(x.body)})"
        return repr(x)

    return text(e)


def print_kernel(kernel: Kernel) -> str:
    lines = [f"kernel {kernel.name}(" + ", ".join(
        f"{p.role} {p.name}: {p.dtype}{list(p.shape)}" for p in kernel.params) + ") {"]
    for st in kernel.stages:
        idx = ", ".join(repr(v) for v in st.vars)
        lines.append(f"  {st.out}[{idx}] = {print_expr(st.body)}")
    lines.append("}")
    return "\n".join(lines)
