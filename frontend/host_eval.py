"""One ONNX node evaluated on the host with onnx's reference implementation.

For ops whose output shape depends on values (NonMaxSuppression, NonZero, Unique, Compress):
folded at compile time when their inputs are known, else run between compiled parts of the
model at run time (runtime/staged.py). The reference is the well-kept meaning of each op.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import onnx

from onnxc.ir.errors import DataDependentShape

HOST_EVALUATED_OPS = frozenset({"NonMaxSuppression", "NonZero", "Unique", "Compress", "TopK"})
"""Ops this module may evaluate with onnx's reference: NonMaxSuppression always (folded at
compile time or run between compiled parts), the others only when cut out at run time."""


def data_dependent(ctx, node: onnx.NodeProto) -> DataDependentShape:
    """The exception that makes the session cut the model at ``node``."""
    from .importer import node_label

    return DataDependentShape(node_label(node), node.op_type, [o for o in node.output if o])


def evaluate_node(node: onnx.NodeProto, inputs: Sequence[np.ndarray | None],
                  opset: int) -> list[np.ndarray]:
    """``node``'s outputs for these inputs (None for an absent optional input)."""
    evaluator = _evaluator(node.SerializeToString(), opset)
    feeds = {name: np.asarray(v) for name, v in zip(node.input, inputs) if name}
    return [np.asarray(o) for o in evaluator.run(None, feeds)]


@lru_cache(maxsize=64)
def _evaluator(node_bytes: bytes, opset: int):
    from onnx.reference import ReferenceEvaluator

    node = onnx.NodeProto()
    node.ParseFromString(node_bytes)
    ins = [onnx.helper.make_empty_tensor_value_info(n) for n in node.input if n]
    outs = [onnx.helper.make_empty_tensor_value_info(n) for n in node.output if n]
    graph = onnx.helper.make_graph([node], "host_op", ins, outs)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    return ReferenceEvaluator(model)
