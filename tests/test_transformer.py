"""A transformer encoder layer (multi-head attention, LayerNormalization, an Erf-GELU
feed-forward block, residuals), as torch.onnx.export writes it, on cpu and cuda-sim vs
onnxruntime, with random weights and a symbolic batch."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import onnxc
from bench.models import encoder_layer

B, S, D, H, F = 2, 8, 32, 4, 64


@pytest.mark.parametrize("target", ["cpu", "cuda-sim"])
def test_encoder_layer_matches_onnxruntime(target):
    model = encoder_layer(seq=S, dim=D, heads=H, ffn=F)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sess = onnxc.compile(model, target=target)
    for batch in (B, 1):
        x = np.random.default_rng(batch).standard_normal((batch, S, D)).astype(np.float32)
        want = ref.run(None, {"x": x})[0]
        got = sess.run(None, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_encoder_layer_optimizes_to_standard_onnx():
    model = encoder_layer(1, seq=S, dim=D, heads=H, ffn=F)
    optimized = onnxc.optimize(model, input_shapes={"x": (B, S, D)})
    x = np.random.default_rng(5).standard_normal((B, S, D)).astype(np.float32)
    run = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
           .run(None, {"x": x})[0] for m in (model, optimized)]
    np.testing.assert_allclose(run[1], run[0], rtol=1e-4, atol=1e-5)
