"""Concurrency and endurance: one Session shared by many threads gives one thread's answers,
``run`` releases the GIL for the native call, thousands of runs (good and failing) do not grow
memory, and a failed run leaves the session usable. No timing assertions.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc

from models import mlp, mlp_reference

SIZES = (16, 32, 32, 8)


def _embedding_mlp() -> "onnx.ModelProto":  # noqa: F821
    """ids [batch, 4] -> Gather from a table -> MatMul -> Relu -> ReduceSum: an arena with
    several intermediates, a symbolic batch and a run-time index check."""
    rng = np.random.default_rng(7)
    table = numpy_helper.from_array(rng.standard_normal((50, 16)).astype(np.float32), "table")
    w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
             helper.make_node("MatMul", ["e", "w"], ["m"], name="mm"),
             helper.make_node("Relu", ["m"], ["r"], name="relu"),
             helper.make_node("ReduceSum", ["r", "axes"], ["y"], name="sum", keepdims=0)]
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    graph = helper.make_graph(
        nodes, "emb", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])], [table, w, axes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _embedding_reference(ids: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(7)
    table = rng.standard_normal((50, 16)).astype(np.float32)
    w = rng.standard_normal((16, 8)).astype(np.float32)
    return np.maximum(table[ids] @ w, 0).sum(axis=1)


@pytest.fixture(scope="module")
def emb_session():
    # batch_tile=0: one specialization per batch size, so compiles race with runs (the
    # batch-tiled path has its own threads test in test_dynamic_batch.py)
    return onnxc.compile(_embedding_mlp(), num_threads=1, batch_tile=0)


def test_native_entry_point_is_a_gil_releasing_cfunctype() -> None:
    sess = onnxc.compile(mlp(2, SIZES, 0))
    exe = next(iter(sess.executables.values()))
    exe.load()
    main = exe._loaded.main
    assert isinstance(main, ctypes._CFuncPtr)
    assert not main._flags_ & ctypes._FUNCFLAG_PYTHONAPI  # PYFUNCTYPE would keep the GIL


def test_run_releases_the_gil_while_native_code_runs() -> None:
    """With a huge switch interval Python never preempts a thread: the main thread gets the
    GIL back while the worker is inside ``run`` only if ``run`` releases it."""
    sess = onnxc.compile(mlp(64, (256, 256, 256, 256), 1), num_threads=1)
    x = np.ones((64, 256), np.float32)
    sess.run(None, {"x": x})
    state = {"inside": False, "done": False, "seen": False}

    def worker():
        state["inside"] = True
        for _ in range(2000):  # until the main thread has run during a run (or give up)
            if state["seen"]:
                break
            sess.run(None, {"x": x})
        state["inside"] = False
        state["done"] = True

    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        while not state["done"]:
            threading.Event().wait(0.0005)  # blocks: hands the GIL to the worker
            if state["inside"] and not state["done"]:
                state["seen"] = True  # only reachable if the worker let go of the GIL
        thread.join()
    finally:
        sys.setswitchinterval(old)
    assert state["seen"]


def test_one_session_many_threads_gives_one_threads_answers(emb_session) -> None:
    """Batches of different sizes (so specializations compile while other threads run),
    distinct ids per call, and bad feeds mixed in; every answer is the reference's."""
    rng = np.random.default_rng(0)
    cases = [rng.integers(-50, 50, size=(1 + k % 5, 4)) for k in range(120)]
    single = [emb_session.run(None, {"ids": ids})[0] for ids in cases[:10]]
    for ids, got in zip(cases, single):
        np.testing.assert_allclose(got, _embedding_reference(ids), rtol=1e-5, atol=1e-4)

    def work(k: int):
        if k % 7 == 3:
            with pytest.raises(onnxc.InputError, match="out of range"):
                emb_session.run(None, {"ids": np.full((2, 4), 50, np.int64)})
        if k % 11 == 5:
            with pytest.raises(onnxc.InputError, match="dtype"):
                emb_session.run(None, {"ids": np.zeros((2, 4), np.int32)})
        ids = cases[k % len(cases)]
        return k, emb_session.run(None, {"ids": ids})[0]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(400)))
    for k, got in results:
        want = _embedding_reference(cases[k % len(cases)])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert len(emb_session.executables) == 5  # one specialization per batch size


def test_threads_with_openmp_teams_agree() -> None:
    """Several Python threads each starting OpenMP teams in the same executable."""
    sess = onnxc.compile(mlp(32, (64, 128, 128, 16), 3), num_threads=2)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((32, 64)).astype(np.float32) for _ in range(16)]
    want = [mlp_reference(x, (64, 128, 128, 16), 3) for x in xs]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda k: sess.run(None, {"x": xs[k % 16]})[0], range(64)))
    for k, g in enumerate(got):
        np.testing.assert_allclose(g, want[k % 16], rtol=1e-4, atol=1e-4)


def _rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * int(__import__("os").sysconf("SC_PAGE_SIZE"))


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_thousands_of_runs_do_not_grow_resident_memory(emb_session) -> None:
    ids = np.arange(12, dtype=np.int64).reshape(3, 4)
    bad = np.full((3, 4), 99, np.int64)

    def burst(n: int) -> None:
        for k in range(n):
            emb_session.run(None, {"ids": ids})
            if k % 10 == 0:
                with pytest.raises(onnxc.InputError):
                    emb_session.run(None, {"ids": bad})
                with pytest.raises(onnxc.InputError):
                    emb_session.run(None, {"wrong": ids})

    burst(300)  # warm up: specialization, allocator pools
    before = _rss_bytes()
    burst(4000)
    grown = _rss_bytes() - before
    assert grown < 8 << 20, f"resident memory grew by {grown / 2**20:.1f} MiB over 4000 runs"
    np.testing.assert_allclose(emb_session.run(None, {"ids": ids})[0],
                               _embedding_reference(ids), rtol=1e-5, atol=1e-4)


def test_fed_indices_do_not_trigger_recompiles(emb_session) -> None:
    """Gather indices are data: new index values reuse the compiled code."""
    before = len(emb_session.executables)
    for k in range(20):
        emb_session.run(None, {"ids": np.full((3, 4), k, np.int64)})
    assert len(emb_session.executables) == max(before, 1)
