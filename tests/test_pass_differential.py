"""Differential tests of every pass: the graph after the import and after each pass of -O2 is
written back as ONNX and run on onnxruntime (onnx.reference where onnxruntime lacks a kernel);
each must give the reference outputs. ``onnxc.bisect`` does the stepping.

Inputs: every ONNX node case of the supported ops (with the case's own data and expected
outputs), the light conv nets with random weights (logits, so no Softmax hides an error), the
torch-exported BatchNorm models and the examples.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from models import (final_softmax, light_model_name, light_model_paths, logits_model,
                    random_feeds, randomize_light_model)
from onnxc.bisect import bisect
from onnxc.passes import pipeline
from known_failures import NODE_KNOWN_NAMES

pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parent.parent
# vgg19, alexnet and zfnet512 carry 60-140M-parameter dense layers: writing them out after
# every pass takes minutes on two cores. Their passes are the ones exercised here; their
# compiled outputs are checked against onnxruntime in test_models.py.
HEAVY = {"vgg19", "bvlc_alexnet", "zfnet512"}
CONV_NETS = [p for p in light_model_paths() if light_model_name(p) not in HEAVY]


# Core ops that standard ONNX of the exporter's opsets (17-20) cannot say: a case using one
# cannot be judged step by step (its compiled outputs are still checked by the node-case test).
EXPORT_LIMITS = ("BitCast", "CumProd", "RoiAlign", "GridSample 'Y' on a 5-D input",
                 "BitShift 'z' on int")


def _array(x) -> np.ndarray:
    return numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else np.asarray(x)


def _node_cases():
    from onnx.backend.test.loader import load_node_model_tests

    from onnxc.runtime.hosted import host_nodes

    # host-function cases are not one compiled graph: the passes see only their compiled parts
    return sorted((c for c in load_node_model_tests()
                   if c.name[len("test_"):] not in NODE_KNOWN_NAMES and _tensors_only(c.model)
                   and not host_nodes(c.model)), key=lambda c: c.name)


def _tensors_only(model: onnx.ModelProto) -> bool:
    """bisect feeds and compares tensors: cases with sequence or optional inputs/outputs are
    test_onnx_node_cases.py's (and test_sequences.py's) alone."""
    return all(vi.type.WhichOneof("value") in ("tensor_type", None)
               for vi in list(model.graph.input) + list(model.graph.output))


def _assert_every_step_agrees(report) -> None:
    unjudged = [(s.stage, s.note) for s in report.steps if s.error is None]
    assert not unjudged, unjudged
    assert report.first_bad is None, str(report)


def test_every_pass_keeps_every_node_case():
    cases = _node_cases()
    assert len(cases) > 500
    failures, unjudged = [], []
    for case in cases:
        model = case.model
        inits = {t.name for t in model.graph.initializer}
        names = [i.name for i in model.graph.input if i.name not in inits]
        inputs, outputs = case.data_sets[0]
        report = bisect(model, feeds=dict(zip(names, map(_array, inputs))),
                        expected=[_array(o) for o in outputs], compile=False)
        if any(s.error is None and any(op in s.note for op in EXPORT_LIMITS)
               for s in report.steps):
            unjudged.append(case.name)
            continue
        bad = [s for s in report.steps if s.error is None or not s.error <= report.tolerance]
        if bad:
            failures.append(f"{case.name}: {bad[0].stage} {bad[0].error} {bad[0].note}")
    assert not failures, "\n".join(failures)
    assert len(unjudged) < 60, unjudged  # the export limits above, and nothing else


def _exportable_passes(opt_level: int = 2):
    """-O2 less winograd: its transforms are a cpu lowering with no ONNX form, so the graph
    after it cannot be run on onnxruntime step by step (test_winograd.py and the compiled
    light models in test_models.py check it)."""
    return [p for p in pipeline(opt_level) if p.name != "winograd"]


@pytest.mark.parametrize("path", CONV_NETS, ids=[light_model_name(p) for p in CONV_NETS])
def test_every_pass_keeps_light_conv_nets(path):
    model = randomize_light_model(path, seed=3)
    if final_softmax(model) is not None:
        model = logits_model(model)
    _assert_every_step_agrees(bisect(model, feeds=random_feeds(model, 1), compile=False,
                                     passes=_exportable_passes()))


@pytest.mark.parametrize("path", ["tests/data/torch_conv_bn.onnx", "tests/data/torch_bn_first.onnx",
                                  "examples/tiny_cnn.onnx", "examples/mlp.onnx"])
@pytest.mark.parametrize("opt_level", [1, 2])
def test_every_pass_keeps_small_models(path, opt_level):
    _assert_every_step_agrees(bisect(str(ROOT / path), opt_level=opt_level, seed=opt_level))
