"""Older opset forms of the ops added for issue 3, against onnxruntime: Upsample-7/9 (scales
as attribute or input), Resize-10, TopK-1 (k attribute), Scatter-9, Hardmax-11 (2-D view),
ArgMax-11, MeanVarianceNormalization-9, CumSum-11, OneHot-11, GroupNormalization-18 (one
scale per group)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from test_ops_vs_ort import check_vs_ort, one_node_model

RNG = np.random.default_rng(21)
X = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)

CASES = [
    (7, helper.make_node("Upsample", ["x"], ["y"], mode="nearest", scales=[1.0, 1.0, 2.0, 3.0]),
     {}),
    (9, helper.make_node("Upsample", ["x", "s"], ["y"], mode="linear"),
     {"s": np.array([1, 1, 2, 2], np.float32)}),
    (10, helper.make_node("Resize", ["x", "s"], ["y"], mode="nearest"),
     {"s": np.array([1, 1, 1.5, 2], np.float32)}),
    (1, helper.make_node("TopK", ["x"], ["v", "i"], k=3, axis=3), {}),
    (9, helper.make_node("Scatter", ["x", "i", "u"], ["y"], axis=2),
     {"i": np.array([[[[3, 0, 1, 2, 3]]]] * 1, np.int64).repeat(2, 0).repeat(3, 1),
      "u": RNG.standard_normal((2, 3, 1, 5)).astype(np.float32)}),
    (11, helper.make_node("Hardmax", ["x"], ["y"], axis=2), {}),
    (11, helper.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=0), {}),
    (9, helper.make_node("MeanVarianceNormalization", ["x"], ["y"]), {}),
    (11, helper.make_node("CumSum", ["x", "a"], ["y"], reverse=1), {"a": np.array(2, np.int64)}),
    (18, helper.make_node("GroupNormalization", ["x6", "gs", "gb"], ["y"], num_groups=2),
     {"gs": RNG.standard_normal(2).astype(np.float32),
      "gb": RNG.standard_normal(2).astype(np.float32)}),
    (11, helper.make_node("OneHot", ["i", "d", "v"], ["y"], axis=0),
     {"i": np.array([[1, 3], [0, 2]], np.int64), "d": np.array([4], np.int64),
      "v": np.array([0.5, 2.0], np.float32)}),
]


@pytest.mark.parametrize("opset,node,consts", CASES, ids=lambda c: getattr(c, "op_type", None))
def test_old_opset_forms_vs_onnxruntime(opset, node, consts) -> None:
    inputs = {"x": X, "x6": RNG.standard_normal((2, 6, 3, 2)).astype(np.float32)}
    feeds = {k: v for k, v in inputs.items() if k in node.input}
    outputs = len(node.output)
    check_vs_ort(one_node_model(node, feeds, consts, opset=opset, n_outputs=outputs), feeds)
