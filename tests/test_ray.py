"""executor="ray": partitions and replicas as Ray actors on a local Ray cluster started here,
checked against numpy and onnxruntime. (light_resnet50 over Ray: test_placement_resnet.py.)"""
from __future__ import annotations

import os

import numpy as np
import pytest

import onnxc
from onnxc import Device
from models import mlp, mlp_reference
from ray_cluster import start_local_cluster

SIZES = (64, 128, 128, 128, 16)
SEED = 5


@pytest.fixture(scope="module")
def ray():
    ray = start_local_cluster()
    yield ray
    ray.shutdown()


def cpus(n, memory=None):
    return [Device("cpu", k, memory_bytes=memory) for k in range(n)]


def test_partitions_run_as_actors_and_pipeline(ray):
    sess = onnxc.compile(mlp(8, SIZES, SEED), devices=cpus(3, memory=100_000), executor="ray",
                         num_threads=1)
    assert len(sess.stages) >= 2
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((8, 64)).astype(np.float32) for _ in range(4)]
    (got,) = sess.run(None, {"x": xs[0]})
    np.testing.assert_allclose(got, mlp_reference(xs[0], SIZES, SEED), rtol=1e-4, atol=1e-5)
    outs = sess.run_pipelined([{"x": x} for x in xs])
    for x, (y,) in zip(xs, outs):
        np.testing.assert_allclose(y, mlp_reference(x, SIZES, SEED), rtol=1e-4, atol=1e-5)
    where = sess.executor.where()
    assert len(where) == len(sess.stages)
    assert all(w["pid"] != os.getpid() for w in where)  # each partition in an actor process
    assert sess.describe()["executor"] == "ray"
    sess.close()


def test_micro_batches_and_data_parallel_replicas_as_actors(ray):
    model = mlp("N", SIZES, SEED)
    x = np.random.default_rng(2).standard_normal((8, 64)).astype(np.float32)
    want = mlp_reference(x, SIZES, SEED)
    piped = onnxc.compile(model, devices=cpus(3, memory=100_000), executor="ray",
                          input_shapes={"x": (8, 64)}, micro_batches=2, num_threads=1)
    np.testing.assert_allclose(piped.run(None, {"x": x})[0], want, rtol=1e-4, atol=1e-5)
    piped.close()
    data = onnxc.compile(model, devices=cpus(2), parallel="data", executor="ray",
                         num_threads=1)
    np.testing.assert_allclose(data.run(None, {"x": x[:5]})[0], want[:5], rtol=1e-4, atol=1e-5)
    data.close()


def test_missing_ray_is_a_clear_error(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    sess = onnxc.compile(mlp(2, SIZES, SEED), devices=cpus(2), executor="ray")
    with pytest.raises(onnxc.OnnxcError, match=r"onnxc\[distributed\]"):
        sess.run(None, {"x": np.zeros((2, 64), np.float32)})
