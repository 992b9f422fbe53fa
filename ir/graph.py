"""Values, nodes and graphs: the typed SSA IR every layer of onnxc works on.

Types are computed when a node is created (``Graph.add``), from the op's shape rule in the op
registry, so a graph is always fully typed. Mutation goes through the few methods here
(``add``, ``replace_uses``, ``remove_node``, ``set_outputs``) so the use lists stay right.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from .dtypes import DType
from .errors import ModelError
from .limits import check_shape
from .types import TensorType

_ids = itertools.count()


class Value:
    """An SSA value: produced by one node (or a graph input, or a constant)."""

    def __init__(self, name: str, type: TensorType, producer: "Node | None" = None,
                 const: np.ndarray | None = None):
        self.name = name
        self.type = type
        self.producer = producer
        self.const = const
        self.uses: list[Node] = []

    @property
    def dtype(self) -> DType:
        return self.type.dtype

    @property
    def shape(self) -> tuple:
        return self.type.shape

    @property
    def is_const(self) -> bool:
        return self.const is not None

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


@dataclass(eq=False)
class Node:
    """One operation: a core op name, attributes, input and output values, optional subgraphs."""

    op: str
    inputs: list[Value | None]
    outputs: list[Value]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    subgraphs: dict[str, "Graph"] = field(default_factory=dict)
    # The ONNX nodes (name, op_type) this node stands for, for error messages and describe().
    origin: list[tuple[str, str]] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Node({self.op}, {self.name!r})"


class Graph:
    """A list of nodes in topological order, with named inputs, outputs and constants."""

    def __init__(self, name: str = "main"):
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.output_names: list[str] = []  # the model's names for the outputs, in order
        self.nodes: list[Node] = []
        self.constants: dict[str, Value] = {}
        self._names: set[str] = set()  # value names
        self._node_names: set[str] = set()  # node names: their own namespace, so a node
        # named after its ONNX output does not push that output's value to another name

    # -- naming ---------------------------------------------------------------------------
    def unique_name(self, hint: str, _taken: set[str] | None = None) -> str:
        taken = self._names if _taken is None else _taken
        name = hint or "v"
        while name in taken:
            name = f"{hint}_{next(_ids)}"
        taken.add(name)
        return name

    def unique_node_name(self, hint: str) -> str:
        return self.unique_name(hint, self._node_names)

    # -- construction ---------------------------------------------------------------------
    def rename(self, value: Value, hint: str) -> None:
        """Give a value a (unique) name close to ``hint``, e.g. its ONNX name."""
        if value.name == hint:
            return
        self._names.discard(value.name)
        value.name = self.unique_name(hint)

    def add_input(self, name: str, type: TensorType) -> Value:
        value = Value(self.unique_name(name), type)
        self.inputs.append(value)
        return value

    def add_constant(self, array: np.ndarray, name: str = "const") -> Value:
        array = _contiguous(array)
        try:
            dtype = DType.from_numpy(array.dtype)
        except ValueError as exc:
            raise ModelError(f"constant {name!r} has unsupported dtype {array.dtype}") from exc
        array.setflags(write=False)
        value = Value(self.unique_name(name), TensorType(dtype, tuple(array.shape)), const=array)
        self.constants[value.name] = value
        return value

    def add(self, op: str, inputs: Iterable[Value | None], attrs: dict[str, Any] | None = None,
            *, name: str = "", origin: list[tuple[str, str]] | None = None,
            output_names: list[str] | None = None) -> list[Value]:
        """Create a node of core op ``op``; its output types come from the op's shape rule."""
        from .ops.registry import get_op

        inputs = list(inputs)
        attrs = dict(attrs or {})
        opdef = get_op(op)
        node_name = self.unique_node_name(name or op.lower())
        node = Node(op, inputs, [], attrs, node_name, origin=list(origin or []))
        try:
            out_types = opdef.infer([v.type if v is not None else None for v in inputs], attrs,
                                    [v.const if v is not None else None for v in inputs])
        except ModelError as exc:
            if exc.node is not None or exc.op is not None:
                raise
            onnx_name, onnx_op = (origin[0] if origin else (node_name, op))
            raise ModelError(str(exc), node=onnx_name, op=onnx_op) from exc
        except (ValueError, IndexError, KeyError, TypeError, ZeroDivisionError) as exc:
            onnx_name, onnx_op = (origin[0] if origin else (node_name, op))
            raise ModelError(f"cannot infer output types: {exc}", node=onnx_name,
                             op=onnx_op) from exc
        for i, t in enumerate(out_types):
            onnx_name, onnx_op = (origin[0] if origin else (node_name, op))
            check_shape(t.shape, t.dtype.itemsize, f"output {i} ({t})", onnx_name, onnx_op)
            hint = output_names[i] if output_names and i < len(output_names) else f"{node_name}_{i}"
            node.outputs.append(Value(self.unique_name(hint), t, producer=node))
        for v in inputs:
            if v is not None:
                v.uses.append(node)
        self.nodes.append(node)
        return node.outputs

    def set_outputs(self, values: list[Value], names: list[str] | None = None) -> None:
        self.outputs = list(values)
        self.output_names = list(names) if names is not None else [v.name for v in values]

    # -- mutation -------------------------------------------------------------------------
    def replace_uses(self, old: Value, new: Value) -> None:
        """Make every consumer (and graph output) of ``old`` read ``new`` instead."""
        for node in old.uses:
            node.inputs = [new if v is old else v for v in node.inputs]
            new.uses.append(node)
        old.uses = []
        self.outputs = [new if v is old else v for v in self.outputs]

    def set_input(self, node: Node, k: int, value: Value | None) -> None:
        """Make input ``k`` of ``node`` read ``value`` (appending inputs as needed)."""
        while len(node.inputs) <= k:
            node.inputs.append(None)
        old = node.inputs[k]
        if old is not None and node in old.uses:
            old.uses.remove(node)
        node.inputs[k] = value
        if value is not None:
            value.uses.append(node)

    def remove_node(self, node: Node) -> None:
        for v in node.inputs:
            if v is not None and node in v.uses:
                v.uses.remove(node)
        self.nodes.remove(node)

    def fuse_groups(self, groups: list[list[Node]]) -> list[Node]:
        """``fuse_nodes`` for many disjoint groups at once, in time linear in the graph."""
        fused, placed, owner = [], {}, {}
        for members in groups:
            node = self._make_fused(members, rewire=False)
            fused.append(node)
            placed[id(members[-1])] = node
            owner.update((id(n), node) for n in members)
        # Use lists are rewired once per value, not once per group: a constant read by 100k
        # nodes would otherwise cost 100k steps per group. Same result as fusing one by one:
        # the other users in order, then each fused node that reads the value.
        readers: dict[int, tuple[Value, list[Node]]] = {}
        for node in fused:
            for v in node.inputs:
                readers.setdefault(id(v), (v, []))[1].append(node)
        for v, nodes in readers.values():
            v.uses = [u for u in v.uses if id(u) not in owner] + nodes
        gone = {id(n) for members in groups for n in members}
        nodes = []
        for n in self.nodes:
            if id(n) in placed:
                nodes.append(placed[id(n)])
            elif id(n) not in gone:
                nodes.append(n)
        self.nodes = nodes
        return fused

    def fuse_nodes(self, members: list[Node], name: str = "") -> Node:
        """Replace ``members`` (in topological order) by one ``Fused`` node holding them.

        The fused node's inputs are the values members read from outside; its outputs are
        member outputs used outside the group or returned by the graph.
        """
        return self._place(self._make_fused(members, name), members)

    def _place(self, fused: Node, members: list[Node]) -> Node:
        ids = {id(n) for n in members}
        position = max(k for k, n in enumerate(self.nodes) if id(n) in ids)
        self.nodes.insert(position + 1, fused)
        self.nodes = [n for n in self.nodes if id(n) not in ids]
        return fused

    def _make_fused(self, members: list[Node], name: str = "", rewire: bool = True) -> Node:
        """The Fused node for ``members``, wired into the use lists unless ``rewire`` is
        False (the caller does it), not yet placed."""
        ids = {id(n) for n in members}
        produced = {id(v) for n in members for v in n.outputs}
        inputs: list[Value] = []
        for n in members:
            for v in n.inputs:
                if v is not None and id(v) not in produced and all(v is not w for w in inputs):
                    inputs.append(v)
        graph_outs = {id(v) for v in self.outputs}
        outputs = [v for n in members for v in n.outputs
                   if id(v) in graph_outs or any(id(u) not in ids for u in v.uses)]
        body = Graph(name or members[-1].name)
        body.inputs, body.nodes = list(inputs), list(members)
        body.set_outputs(outputs)
        origin = [o for n in members for o in (n.origin or [(n.name, n.op)])]
        fused = Node("Fused", inputs, outputs, {}, self.unique_node_name(name or members[-1].name),
                     {"body": body}, origin)
        if rewire:
            for v in inputs:
                v.uses = [u for u in v.uses if id(u) not in ids] + [fused]
        for v in outputs:
            v.producer = fused
        return fused

    def prune(self) -> None:
        """Drop nodes and constants that no graph output depends on."""
        live: set[int] = {id(v) for v in self.outputs}
        kept = []
        for node in reversed(self.nodes):
            if any(id(o) in live for o in node.outputs):
                kept.append(node)
                live.update(id(v) for v in node.inputs if v is not None)
            else:
                for v in node.inputs:
                    if v is not None and node in v.uses:
                        v.uses.remove(node)
        self.nodes = list(reversed(kept))
        self.constants = {k: v for k, v in self.constants.items() if id(v) in live}

    # -- queries --------------------------------------------------------------------------
    def values(self) -> list[Value]:
        seen = list(self.inputs) + list(self.constants.values())
        for node in self.nodes:
            seen.extend(node.outputs)
        return seen

    def __str__(self) -> str:
        from .printer import print_graph

        return print_graph(self)


def _contiguous(array):
    """C-contiguous without numpy's ascontiguousarray turning 0-d arrays into 1-d ones."""
    import numpy

    array = numpy.asarray(array)
    return array if array.flags.c_contiguous else numpy.array(array, order="C")
