"""Random ops: values cannot match another generator, so the checks are on what is fixed —
shape, dtype, range, moments and frequencies of a large draw, deterministic edge cases — and,
with a seed, on the exact stream onnx.reference draws (numpy's RandomState(seed))."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import onnxc

rng = np.random.default_rng(3)


def _model(node, feeds, opset=22):
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for k, v in feeds.items()]
    outs = [helper.make_empty_tensor_value_info(n) for n in node.output]
    graph = helper.make_graph([node], "g", ins, outs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(node, feeds=None, opset=22):
    feeds = feeds or {}
    model = _model(node, feeds, opset)
    return onnxc.compile(model).run(None, feeds), model


N = 40_000  # moments of N draws: standard errors ~0.005 for unit variance


@pytest.mark.parametrize("dtype,code", [(np.float32, TensorProto.FLOAT),
                                        (np.float64, TensorProto.DOUBLE),
                                        (np.float16, TensorProto.FLOAT16)])
def test_random_uniform_distribution(dtype, code):
    node = helper.make_node("RandomUniform", [], ["y"], shape=[200, N // 200], low=-2.0,
                            high=3.0, dtype=code)
    (y,), _ = _run(node)
    assert y.shape == (200, N // 200) and y.dtype == dtype
    assert y.min() >= -2.0 and y.max() <= 3.0
    assert abs(y.astype(np.float64).mean() - 0.5) < 0.05
    assert abs(y.astype(np.float64).var() - 25 / 12) < 0.1
    assert len(np.unique(y)) > (1000 if dtype == np.float16 else N // 10)  # not a constant


def test_random_normal_like_distribution():
    x = np.zeros((N // 100, 100), dtype=np.float64)
    node = helper.make_node("RandomNormalLike", ["x"], ["y"], mean=1.5, scale=2.0)
    (y,), _ = _run(node, {"x": x})
    assert y.shape == x.shape and y.dtype == np.float64
    assert abs(y.mean() - 1.5) < 0.05 and abs(y.std() - 2.0) < 0.05
    z = (y - 1.5) / 2.0  # normal tails: about 4.55% beyond 2 sigma
    assert 0.035 < np.mean(np.abs(z) > 2) < 0.056


@pytest.mark.parametrize("op,attrs,like", [
    ("RandomUniform", dict(shape=[3, 4], low=1.0, high=2.0), False),
    ("RandomNormal", dict(shape=[5, 2], mean=-1.0, scale=0.5), False),
    ("RandomUniformLike", dict(dtype=TensorProto.DOUBLE), True),
    ("RandomNormalLike", {}, True),
])
def test_seeded_random_ops_draw_onnx_reference_stream(op, attrs, like):
    feeds = {"x": rng.standard_normal((4, 3)).astype(np.float32)} if like else {}
    node = helper.make_node(op, ["x"] if like else [], ["y"], seed=11.0, **attrs)
    (y,), model = _run(node, feeds)
    (want,) = ReferenceEvaluator(model).run(None, feeds)
    assert y.dtype == want.dtype and y.shape == want.shape
    np.testing.assert_array_equal(y, want)


def test_unseeded_draws_differ_between_compiles():
    node = helper.make_node("RandomUniform", [], ["y"], shape=[64])
    (a,), _ = _run(node)
    (b,), _ = _run(node)
    assert not np.array_equal(a, b)


def test_bernoulli_distribution_and_deterministic_edges():
    """p = 0 and p = 1 give fixed values; elsewhere the mean of many draws is p."""
    p = np.concatenate([np.zeros(100), np.ones(100), np.full(N, 0.3)]).astype(np.float32)
    node = helper.make_node("Bernoulli", ["p"], ["y"], dtype=TensorProto.INT32)
    (y,), _ = _run(node, {"p": p})
    assert y.dtype == np.int32 and y.shape == p.shape
    assert set(np.unique(y)) <= {0, 1}
    assert (y[:100] == 0).all() and (y[100:200] == 1).all()
    assert abs(y[200:].mean() - 0.3) < 0.015


def test_multinomial_frequencies():
    """Each row's sample frequencies follow softmax(row); the output is [batch, sample_size]."""
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]])
    logits = np.log(probs).astype(np.float32) + 3.0  # unnormalized log-probabilities
    node = helper.make_node("Multinomial", ["x"], ["y"], sample_size=20_000,
                            dtype=TensorProto.INT64, seed=5.0)
    (y,), _ = _run(node, {"x": logits})
    assert y.shape == (2, 20_000) and y.dtype == np.int64
    for row, want in zip(y, probs):
        freq = np.bincount(row, minlength=3) / row.size
        np.testing.assert_allclose(freq, want, atol=0.015)
    node = helper.make_node("Multinomial", ["x"], ["y"])  # defaults: int32, one sample
    (y,), _ = _run(node, {"x": np.array([[-1e4, 0.0, -1e4]], dtype=np.float32)})
    assert y.dtype == np.int32 and y.tolist() == [[1]]


def test_dropout_training_unseeded_keeps_and_scales():
    x = rng.uniform(1, 2, (N,)).astype(np.float32)
    node = helper.make_node("Dropout", ["x", "r", "t"], ["y", "mask"])
    feeds = {"x": x, "r": np.array(0.25, dtype=np.float32), "t": np.array(True)}
    (y, mask), _ = _run(node, feeds)
    assert mask.dtype == np.bool_ and abs(mask.mean() - 0.75) < 0.015
    np.testing.assert_allclose(y[mask], x[mask] / 0.75, rtol=1e-6)
    assert (y[~mask] == 0).all()


def test_dropout_training_seeded_matches_reference():
    x = rng.standard_normal((6, 7)).astype(np.float32)
    node = helper.make_node("Dropout", ["x", "r", "t"], ["y", "mask"], seed=3)
    feeds = {"x": x, "r": np.array(0.4, dtype=np.float32), "t": np.array(True)}
    got, model = _run(node, feeds)
    for g, w in zip(got, ReferenceEvaluator(model).run(None, feeds)):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-6)
