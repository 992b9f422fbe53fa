"""Whole models, compiled by onnxc and checked against numpy and onnxruntime.

The nine "light" models that ship with the onnx package (alexnet, densenet121, inception v1/v2,
resnet50, shufflenet, squeezenet, vgg19, zfnet512) are checked three ways: as shipped (every
weight is ``ConstantOfShape(0.02)``), with random weights, and with random weights minus the
final Softmax (random weights can saturate a Softmax and hide errors in the logits).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import pytest

import onnxc
from models import (data_inputs, final_softmax, light_model_name, light_model_paths,
                    logits_model, mlp, mlp_reference, random_feeds, randomize_light_model)

ort = pytest.importorskip("onnxruntime")

MLP_SIZES = (32, 64, 48, 10)
MLP_SEED = 7
INPUT_SEED = 2024
WEIGHT_SEED = 11
LIGHT_PATHS = light_model_paths()


def assert_close(got: np.ndarray, ref: np.ndarray, rel: float = 1e-3,
                 atol: float = 1e-5) -> None:
    """max |got - ref| <= rel * max |ref| + atol, with matching shape and dtype."""
    assert got.shape == ref.shape, f"shape {got.shape} != reference {ref.shape}"
    assert got.dtype == ref.dtype, f"dtype {got.dtype} != reference {ref.dtype}"
    assert np.all(np.isfinite(got)), "output has NaN or inf"
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
    assert err <= rel * scale + atol, (f"max abs error {err:.3g} exceeds {rel} * {scale:.3g} "
                                       f"+ {atol}")


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


# -- MLP ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 64])
def test_mlp_matches_numpy_and_onnxruntime(batch: int) -> None:
    model = mlp(batch, MLP_SIZES, MLP_SEED)
    sess = onnxc.compile(model)
    assert [(i.name, i.shape, i.type) for i in sess.get_inputs()] == \
        [("x", [batch, MLP_SIZES[0]], "tensor(float)")]
    assert [(o.name, o.shape, o.type) for o in sess.get_outputs()] == \
        [("y", [batch, MLP_SIZES[-1]], "tensor(float)")]

    x = np.random.default_rng(INPUT_SEED).standard_normal((batch, MLP_SIZES[0]),
                                                          dtype=np.float32)
    (got,) = sess.run(None, {"x": x})
    assert_close(got, mlp_reference(x, MLP_SIZES, MLP_SEED))
    (ref,) = ort_run(model, {"x": x})
    assert_close(got, ref)
    # output_names selects (and the session can run again on the same feeds).
    (again,) = sess.run(["y"], {"x": x})
    np.testing.assert_array_equal(again, got)


# -- the light models ---------------------------------------------------------------------------
@dataclass
class Light:
    name: str
    path: str
    randomized: onnx.ModelProto
    feeds: dict[str, np.ndarray]


@pytest.fixture(scope="module", params=LIGHT_PATHS, ids=[light_model_name(p) for p in LIGHT_PATHS])
def light(request: pytest.FixtureRequest) -> Light:
    """One light model with random weights, and a seeded random input; built once per model."""
    path = request.param
    randomized = randomize_light_model(path, WEIGHT_SEED)
    return Light(light_model_name(path), path, randomized, random_feeds(randomized, INPUT_SEED))


def test_light_model_paths() -> None:
    assert len(LIGHT_PATHS) == 9, LIGHT_PATHS


def _compile_and_compare(model_or_path, reference_model: onnx.ModelProto,
                         feeds: dict[str, np.ndarray]) -> None:
    sess = onnxc.compile(model_or_path)
    assert [i.name for i in sess.get_inputs()] == [vi.name for vi in data_inputs(reference_model)]
    assert [o.name for o in sess.get_outputs()] == [o.name for o in reference_model.graph.output]
    got = sess.run(None, feeds)
    refs = ort_run(reference_model, feeds)
    assert len(got) == len(refs)
    for g, r in zip(got, refs):
        assert_close(g, r)


@pytest.mark.slow
def test_light_model_as_shipped(light: Light) -> None:
    """Compiled from the file path; every weight is ConstantOfShape(0.02)."""
    _compile_and_compare(light.path, onnx.load(light.path), light.feeds)


@pytest.mark.slow
def test_light_model_random_weights(light: Light) -> None:
    _compile_and_compare(light.randomized, light.randomized, light.feeds)


@pytest.mark.slow
def test_light_model_random_weights_logits(light: Light) -> None:
    """The input of the final Softmax, as an output declared without a shape."""
    if final_softmax(light.randomized) is None:
        pytest.skip(f"{light.name} does not end in a Softmax: its output already is the logits")
    model = logits_model(light.randomized)
    _compile_and_compare(model, model, light.feeds)
