"""ONNX model conversion: onnxc.optimize writes standard ONNX that onnxruntime runs, with the
same outputs as the original model."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxc

from models import light_model_paths, randomize_light_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _ort(model) -> ort.InferenceSession:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _compare(original, optimized, seed=0):
    a, b = _ort(original), _ort(optimized)
    rng = np.random.default_rng(seed)
    feeds = {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in b.get_inputs()}
    for want, got in zip(a.run(None, feeds), b.run(None, feeds)):
        scale = max(float(np.abs(want).max()), 1e-6)
        assert float(np.abs(want - got).max()) <= 1e-4 * scale + 1e-6


def test_tiny_cnn_round_trip():
    original = onnx.load(str(EXAMPLES / "tiny_cnn.onnx"))
    optimized = onnxc.optimize(original, input_shapes={"image": (2, 3, 32, 32)})
    onnx.checker.check_model(optimized, full_check=True)
    assert all(n.domain in ("", "ai.onnx") for n in optimized.graph.node)
    assert "BatchNormalization" not in {n.op_type for n in optimized.graph.node}
    fixed = onnx.load(str(EXAMPLES / "tiny_cnn.onnx"))
    for d, v in zip(fixed.graph.input[0].type.tensor_type.shape.dim, (2, 3, 32, 32)):
        d.dim_value = v
    _compare(fixed, optimized)


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in light_model_paths()
                                  if any(k in str(p) for k in ("resnet50", "inception_v2",
                                                               "shufflenet", "densenet"))],
                         ids=lambda p: Path(p).stem)
def test_light_models_with_random_weights(path):
    original = randomize_light_model(path, seed=1)
    optimized = onnxc.optimize(original)
    onnx.checker.check_model(optimized, full_check=True)
    assert len(optimized.graph.node) < len(original.graph.node)
    _compare(original, optimized)


def test_cli_optimize(tmp_path):
    out = tmp_path / "opt.onnx"
    result = subprocess.run([sys.executable, "-m", "onnxc", "-q", "optimize",
                             str(EXAMPLES / "mlp.onnx"), "-o", str(out),
                             "--input-shape", "x=3,64"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert _ort(model).run(None, {"x": np.ones((3, 64), np.float32)})[0].shape == (3, 10)


def test_cli_optimize_external_data_and_names(tmp_path):
    out = tmp_path / "opt.onnx"
    result = subprocess.run([sys.executable, "-m", "onnxc", "-q", "optimize",
                             str(EXAMPLES / "tiny_cnn.onnx"), "-o", str(out), "--external-data",
                             "--input-shape", "image=2,3,32,32"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "opt.onnx.data").stat().st_size > 1000
    assert out.stat().st_size < 10_000  # the weights live in the .data file
    onnx.checker.check_model(str(out), full_check=True)
    original, optimized = onnx.load(str(EXAMPLES / "tiny_cnn.onnx")), onnx.load(str(out))
    assert [i.name for i in optimized.graph.input] == [i.name for i in original.graph.input]
    assert [o.name for o in optimized.graph.output] == [o.name for o in original.graph.output]
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_ort(optimized).run(None, {"image": x})[0],
                               _ort(original).run(None, {"image": x})[0], rtol=1e-4, atol=1e-5)


def test_models_past_the_protobuf_limit_are_saved_with_external_data(tmp_path, monkeypatch):
    from onnxc.frontend import exporter

    monkeypatch.setattr(exporter, "PROTOBUF_LIMIT", 10_000)  # the same path as at 2 GiB
    model = onnxc.optimize(str(EXAMPLES / "tiny_cnn.onnx"), input_shapes={"image": (1, 3, 32,
                                                                                   32)})
    assert exporter.needs_external_data(model)
    exporter.save_model(model, str(tmp_path / "big.onnx"))
    assert (tmp_path / "big.onnx.data").exists()
    onnx.checker.check_model(str(tmp_path / "big.onnx"), full_check=True)
