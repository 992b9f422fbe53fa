"""onnxc bisect: every step judged by onnxruntime, and a wrong pass is named."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onnxc.bisect import bisect
from onnxc.passes import Pass, pipeline

pytest.importorskip("onnxruntime")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class ScaleOneConvWeight(Pass):
    """A deliberately wrong pass: scales the first Conv's weights by 1.01."""

    name = "wrong-pass"

    def run(self, graph):
        for node in graph.nodes:
            if node.op == "Conv":
                w = node.inputs[1]
                graph.set_input(node, 1, graph.add_constant(w.const * np.float32(1.01), "w"))
                break
        return graph


def test_clean_model_every_step_agrees():
    report = bisect(str(EXAMPLES / "tiny_cnn.onnx"), input_shapes={"image": (2, 3, 32, 32)})
    assert report.first_bad is None
    stages = [s.stage for s in report.steps]
    assert stages == ["import"] + [p.name for p in pipeline(2)] + ["codegen:cpu"]
    assert all(s.error is not None and s.error < 1e-5 for s in report.steps)


def test_a_wrong_pass_is_named():
    passes = pipeline(2)
    passes.insert(3, ScaleOneConvWeight())
    report = bisect(str(EXAMPLES / "tiny_cnn.onnx"), passes=passes, compile=False)
    assert report.first_bad is not None and report.first_bad.stage == "wrong-pass"
    assert "first step that changes the outputs: wrong-pass" in str(report)


def test_cli_bisect_exit_status_and_table(tmp_path):
    out = subprocess.run([sys.executable, "-m", "onnxc", "bisect", str(EXAMPLES / "mlp.onnx"),
                          "--no-codegen", "-O", "1"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "every step agrees with the reference" in out.stdout
    assert "fold-batchnorm" in out.stdout and "codegen" not in out.stdout
