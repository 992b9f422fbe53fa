"""A model cut at a node whose output shape depends on run-time values.

A compiled program has static shapes, so NonZero, NonMaxSuppression, Unique and Compress on
run-time tensors cannot sit inside one. The session cuts the model at such a node: the
*prefix* (the model with the node's inputs as its outputs) runs compiled, the node runs on the
host (onnx's reference implementation, frontend/host_eval.py), and the *suffix* (the model
with the node's outputs as extra graph inputs of symbolic shape) is a Session of its own, so
it is compiled per observed output shape and cached like any other shape specialization. A
suffix with another such node cuts again. Values both parts need are computed in both.

The same cut serves a small value that a node needs at compile time but that is computed at
run time (a Loop's trip count, Range's limit, a Reshape's shape from tensor contents): the
prefix computes it, and the suffix reads it as a small graph input, so it specializes on its
value (one compile per distinct value, cached).
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
import onnx

from onnxc.ir.errors import DataDependentShape, UnsupportedOpError


def check_cut(model: onnx.ModelProto, need: DataDependentShape) -> int | None:
    """The index of the top-level node to cut at (None for a value cut), or the
    UnsupportedOpError when the node or value is inside an If/Loop/Scan body."""
    g = model.graph
    if need.value is not None:
        if not any(need.value in n.output for n in g.node):
            raise UnsupportedOpError([(need.node, need.op, f"needs the value of "
                                       f"{need.value!r} at compile time, and it is computed "
                                       f"at run time inside a control-flow body")])
        return None
    index = next((k for k, n in enumerate(g.node)
                  if [o for o in n.output if o] == need.outputs), None)
    if index is None:
        raise UnsupportedOpError([(need.node, need.op, "its output shape depends on run-time "
                                   "values inside a control-flow body")])
    return index


class Stage:
    """How one Session runs when its model is cut at ``need``'s node."""

    def __init__(self, model: onnx.ModelProto, need: DataDependentShape, options,
                 num_threads: int):
        g = model.graph
        self.model, self.options, self.num_threads = model, options, num_threads
        self.opset = next((int(i.version) for i in model.opset_import
                           if i.domain in ("", "ai.onnx")), 1)
        self.initializers = {t.name: t for t in g.initializer}
        # need.value: a small value a node needs at compile time (a Loop's trip count, a
        # Reshape's shape...): computed by the prefix, the suffix specializes on it.
        self.value = need.value
        self.node = None
        index = check_cut(model, need)
        if self.value is not None:
            self.computed = [self.value]
        else:
            self.node = g.node[index]
            graph_inputs = {vi.name for vi in g.input}
            self.computed = [n for n in dict.fromkeys(self.node.input)
                             if n and n not in self.initializers and n not in graph_inputs]
        self.prefix = self._session(self._prefix_model()) if self.computed else None
        self.suffix = None  # built on the first run, when the outputs' types are known
        self._lock = threading.Lock()

    def _prefix_model(self) -> onnx.ModelProto:
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        needed, keep = set(self.computed), []
        for n in reversed(list(m.graph.node)):  # only the nodes the cut node's inputs need
            if any(o in needed for o in n.output):
                keep.append(n)
                needed.update(_reads(n))
        del m.graph.node[:]
        m.graph.node.extend(reversed(keep))
        del m.graph.output[:]
        m.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n)
                              for n in self.computed)
        return m

    def _suffix_model(self, outs: list[np.ndarray]) -> onnx.ModelProto:
        from onnxc.frontend.onnx_types import dtype_to_onnx
        from onnxc.ir.dtypes import DType

        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        if self.value is not None:  # the value's readers read a new graph input instead
            staged = f"{self.value}.staged"
            for n in m.graph.node:
                _rename_reads(n, self.value, staged)
            m.graph.input.append(onnx.helper.make_tensor_value_info(
                staged, dtype_to_onnx(DType(outs[0].dtype.name)), list(outs[0].shape)))
            return m
        nodes = [n for n in m.graph.node if list(n.output) != list(self.node.output)]
        del m.graph.node[:]
        m.graph.node.extend(nodes)
        for name, value in zip([o for o in self.node.output if o], outs):
            dims = [f"{name}_d{k}" for k in range(value.ndim)]
            m.graph.input.append(onnx.helper.make_tensor_value_info(
                name, dtype_to_onnx(DType(value.dtype.name)), dims))
        return m

    def _session(self, model: onnx.ModelProto):
        from onnxc.runtime.build import declared_inputs, declared_output
        from onnxc.runtime.session import Session

        outputs = [declared_output(vi) for vi in model.graph.output]
        return Session(declared_inputs(model, None), outputs, self.options, model=model,
                       num_threads=self.num_threads)

    def run(self, feeds: dict[str, Any]) -> list:
        """The model's outputs: prefix, host node, suffix."""
        from onnxc.frontend.host_eval import evaluate_node
        from onnxc.frontend.onnx_types import tensor_to_array

        known = dict(feeds)
        if self.prefix is not None:
            names = [s.name for s in self.prefix.input_specs]
            known.update(zip(self.computed, self.prefix.run(None, {n: feeds[n] for n in names})))
        if self.node is None:
            outs = [np.asarray(known[self.value])]
            names = [f"{self.value}.staged"]
        else:
            args = [None if not n else known[n] if n in known else
                    tensor_to_array(self.initializers[n]) for n in self.node.input]
            outs = evaluate_node(self.node, args, self.opset)
            names = [o for o in self.node.output if o]
        with self._lock:
            if self.suffix is None:
                self.suffix = self._session(self._suffix_model(outs))
        known.update(zip(names, outs))
        return self.suffix.run(None, {s.name: known[s.name] for s in self.suffix.input_specs})


def _reads(node: onnx.NodeProto) -> set[str]:
    """The names ``node`` reads, those its subgraphs read from the outer scope included."""
    names = {n for n in node.input if n}
    for a in node.attribute:
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            for inner in g.node:
                names |= _reads(inner)
    return names


def _rename_reads(node: onnx.NodeProto, old: str, new: str) -> None:
    """``node`` (and its subgraphs) read ``new`` wherever they read ``old``."""
    for k, name in enumerate(node.input):
        if name == old:
            node.input[k] = new
    for a in node.attribute:
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            for inner in g.node:
                _rename_reads(inner, old, new)
