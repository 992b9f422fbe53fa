"""The placement issue's acceptance test: light_resnet50 (onnx's backend test data, random
weights) over four virtual CPU devices of 40 MB each is cut into at least three partitions
whose memory fits their devices, and its outputs match onnxruntime's with the local executor
and with executor="ray" (a local Ray cluster started here)."""
from __future__ import annotations

import numpy as np
import pytest

import onnxc
from models import light_model_paths, randomize_light_model
from ray_cluster import start_local_cluster

ort = pytest.importorskip("onnxruntime")
MB = 40_000_000


@pytest.fixture(scope="module")
def resnet():
    path = next(p for p in light_model_paths() if p.endswith("light_resnet50.onnx"))
    model = randomize_light_model(path, seed=3)
    # Fixed figures (not measured on this busy machine) so the placement is the same every run.
    devices = [onnxc.Device("cpu", k, memory_bytes=MB, flops=1e11, link_bandwidth=1e10)
               for k in range(4)]
    sess = onnxc.compile(model, devices=devices)
    name = sess.get_inputs()[0].name
    xs = [np.random.default_rng(k).standard_normal((1, 3, 224, 224)).astype(np.float32)
          for k in range(2)]
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess, name, xs, [ref.run(None, {name: x})[0] for x in xs]


def assert_close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))


@pytest.mark.slow
def test_resnet50_over_four_40mb_cpus_fits_and_matches_onnxruntime(resnet):
    sess, name, xs, wants = resnet
    parts = sess.describe()["partitions"]
    assert len(parts) >= 3
    assert len({p["device"] for p in parts}) == len(parts)
    for p in parts:
        assert p["weight_bytes"] <= MB and p["memory_needed_bytes"] <= MB, p
    assert sum(p["weight_bytes"] for p in parts) > 2 * MB  # it could not fit on two
    assert_close(sess.run(None, {name: xs[0]})[0], wants[0])
    outs = sess.run_pipelined([{name: x} for x in xs])
    for (got,), want in zip(outs, wants):
        assert_close(got, want)


@pytest.mark.slow
def test_resnet50_partitions_as_ray_actors_match_onnxruntime(resnet):
    sess, name, xs, wants = resnet
    ray = start_local_cluster()
    try:
        sess.set_executor("ray")
        outs = sess.run_pipelined([{name: x} for x in xs])
        for (got,), want in zip(outs, wants):
            assert_close(got, want)
        assert len(sess.executor.where()) == len(sess.stages)
    finally:
        sess.set_executor("local")
        ray.shutdown()
