"""The object-code cache: a recompile of an unchanged model reuses the object file; damaged
entries are recompiled, never loaded; ONNXC_CACHE=0 turns it off."""
from __future__ import annotations

import numpy as np
import pytest

import onnxc
from bench.models import mlp
from onnxc.backends.cpu import object_cache


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("ONNXC_CACHE", raising=False)
    return tmp_path / "objects"


def _entries(cache) -> list:
    return sorted(cache.rglob("*.o"))


def _run(model) -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    return onnxc.compile(model).run(None, {"x": x})[0]


def test_recompiling_an_unchanged_model_hits_the_cache(cache, monkeypatch) -> None:
    model = mlp(2, sizes=(16, 8, 4))
    first = _run(model)
    entries = _entries(cache)
    assert len(entries) == 1
    calls = []
    real = object_cache.cached_object

    def spy(llvm_ir, target, level, compile_fn):
        obj, hit = real(llvm_ir, target, level, compile_fn)
        calls.append(hit)
        return obj, hit
    monkeypatch.setattr("onnxc.backends.cpu.cached_object", spy)
    np.testing.assert_array_equal(_run(model), first)
    assert calls == [True]
    _run(mlp(2, sizes=(16, 8, 4), seed=1))  # other weights, same code: still a hit
    _run(mlp(2, sizes=(16, 9, 4)))  # other shapes: new code
    assert calls == [True, True, False] and len(_entries(cache)) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_a_damaged_entry_is_recompiled_not_loaded(cache, damage) -> None:
    model = mlp(2, sizes=(16, 8, 4))
    want = _run(model)
    entry = _entries(cache)[0]
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-100] ^= 0xFF
    else:
        data = bytearray()
    entry.write_bytes(bytes(data))
    np.testing.assert_array_equal(_run(model), want)
    assert object_cache._read(entry) is not None  # rewritten whole


def test_cache_can_be_turned_off(cache, monkeypatch) -> None:
    monkeypatch.setenv("ONNXC_CACHE", "0")
    _run(mlp(2, sizes=(16, 8, 4)))
    assert not cache.exists()


def test_kernels_that_differ_only_in_an_inner_cast_are_not_shared() -> None:
    """Identical kernels share one function; kernels whose text differs only in an inner
    element type (truncation through int32 vs rounding through float16) must not."""
    from onnx import TensorProto as T, helper

    nodes = [helper.make_node("Cast", ["x"], ["a"], to=T.INT32),
             helper.make_node("Cast", ["a"], ["y1"], to=T.FLOAT),
             helper.make_node("Cast", ["x"], ["b"], to=T.FLOAT16),
             helper.make_node("Cast", ["b"], ["y2"], to=T.FLOAT)]
    graph = helper.make_graph(nodes, "casts", [helper.make_tensor_value_info("x", T.FLOAT, [8])],
                              [helper.make_tensor_value_info(n, T.FLOAT, [8]) for n in ("y1", "y2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.linspace(-3.3, 3.3, 8).astype(np.float32) + np.float32(1e-4)
    y1, y2 = onnxc.compile(model).run(None, {"x": x})
    np.testing.assert_array_equal(y1, x.astype(np.int32).astype(np.float32))
    np.testing.assert_array_equal(y2, x.astype(np.float16).astype(np.float32))
