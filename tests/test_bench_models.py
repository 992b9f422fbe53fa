"""The bench set's generated models compute what onnxruntime computes, and the bench harness
runs end to end on a small model (no timing is asserted: the machines are shared)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import onnxc
from bench.__main__ import bench_model, model_path
from bench.models import lstm, mlp, mobilenet


@pytest.mark.parametrize("model", [mlp(3, sizes=(20, 33, 7)), lstm(seq=5, batch=2, size=12,
                                                                   hidden=9),
                                   mobilenet(resolution=32)], ids=["mlp", "lstm", "mobilenet"])
def test_generated_bench_model_matches_onnxruntime(model) -> None:
    inp = model.graph.input[0]
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {inp.name: x})[0]
    got = onnxc.compile(model).run(None, {inp.name: x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_bench_harness_reports_every_engine(tmp_path) -> None:
    result = bench_model("mlp_b1", threads=1, runs=2, peers=["ort"])
    assert result["onnxc_ms"] > 0 and result["ort_ms"] > 0
    assert result["onnxc_err"] < 1e-5
    assert model_path("mlp_b1", str(tmp_path)).endswith("mlp_b1.onnx")
