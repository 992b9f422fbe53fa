"""A model cut at a node whose output shape depends on run-time values.

A compiled program has static shapes, so NonZero, NonMaxSuppression, Unique and Compress on
run-time tensors cannot sit inside one. The session cuts the model at such a node: the
*prefix* (the model with the node's inputs as its outputs) runs compiled, the node runs on the
host (onnx's reference implementation, frontend/host_eval.py), and the *suffix* (the model
with the node's outputs as extra graph inputs of symbolic shape) is a Session of its own, so
it is compiled per observed output shape and cached like any other shape specialization. A
suffix with another such node cuts again. Values both parts need are computed in both.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
import onnx

from onnxc.ir.errors import DataDependentShape, UnsupportedOpError


class Stage:
    """How one Session runs when its model is cut at ``need``'s node."""

    def __init__(self, model: onnx.ModelProto, need: DataDependentShape, options,
                 num_threads: int):
        g = model.graph
        index = next((k for k, n in enumerate(g.node)
                      if [o for o in n.output if o] == need.outputs), None)
        if index is None:  # inside an If/Loop/Scan body: nothing to cut at the top level
            raise UnsupportedOpError([(need.node, need.op, "its output shape depends on "
                                       "run-time values inside a control-flow body")])
        self.node = g.node[index]
        self.model, self.options, self.num_threads = model, options, num_threads
        self.opset = next((int(i.version) for i in model.opset_import
                           if i.domain in ("", "ai.onnx")), 1)
        self.initializers = {t.name: t for t in g.initializer}
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
        args = [None if not n else known[n] if n in known else
                tensor_to_array(self.initializers[n]) for n in self.node.input]
        outs = evaluate_node(self.node, args, self.opset)
        with self._lock:
            if self.suffix is None:
                self.suffix = self._session(self._suffix_model(outs))
        known.update(zip([o for o in self.node.output if o], outs))
        return self.suffix.run(None, {s.name: known[s.name] for s in self.suffix.input_specs})


def _reads(node: onnx.NodeProto) -> set[str]:
    """The names ``node`` reads, those its subgraphs read from the outer scope included."""
    names = {n for n in node.input if n}
    for a in node.attribute:
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            for inner in g.node:
                names |= _reads(inner)
    return names
