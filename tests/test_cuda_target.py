"""The cuda targets through the public API: cuda-sim runs real models and matches onnxruntime;
target "cuda" cross-compiles without a GPU and fails cleanly at run time when there is none."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import onnxc
from onnxc.backends.cuda import find_nvcc

from models import light_model_paths, randomize_light_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HAS_PYCUDA = importlib.util.find_spec("pycuda") is not None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["squeezenet", "resnet50"])
def test_cuda_sim_light_model_random_weights_matches_onnxruntime(name):
    path = next(p for p in light_model_paths() if name in p)
    model = randomize_light_model(path, seed=3)
    sess = onnxc.compile(model, target="cuda-sim")
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    got = sess.run(None, {name: x})[0]
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {name: x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))
    assert all(k["device"] == "cuda-sim" for k in sess.describe()["kernels"])


@pytest.mark.skipif(find_nvcc() is None, reason="nvcc is not installed")
@pytest.mark.skipif(HAS_PYCUDA, reason="pycuda is installed: the GPU scripts cover this case")
def test_cuda_artifact_cross_compiles_here_and_fails_cleanly_without_a_gpu(tmp_path):
    artifact = tmp_path / "mlp_cuda.onnxc"
    build = subprocess.run([sys.executable, "-m", "onnxc", "-q", "compile",
                            str(EXAMPLES / "mlp.onnx"), "-o", str(artifact), "--target", "cuda",
                            "--input-shape", "x=2,64"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    sess = onnxc.load(artifact)
    assert sess.describe()["kernels"][0]["device"] == "cuda:0"
    with pytest.raises(onnxc.OnnxcError, match="pycuda|driver|GPU"):
        sess.run(None, {"x": np.ones((2, 64), np.float32)})
    run = subprocess.run([sys.executable, "-m", "onnxc", "run", str(artifact),
                          "--random-inputs"], capture_output=True, text=True)
    assert run.returncode == 2 and "onnxc: error:" in run.stderr
    assert "Traceback" not in run.stderr
