"""The caller-runs thread pool (backends/cpu/pool.py) and the team's chunk claiming (team.py):
a team's results are bit-equal to one thread's whatever threads show up — all of them, fewer
than asked (a worker that never starts), none (a busy pool, a forked child) — and runs from
several Python threads at once stay correct."""
from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest
from onnxc.backends.cpu import codegen, pool

import onnxc
from bench.models import lstm, mlp

pytestmark = pytest.mark.skipif(not pool.supported(), reason="the pool needs Linux futexes")


@pytest.fixture
def team_everywhere(monkeypatch):
    """Every stage with some work parallel and every run a team, so small models use the pool."""
    monkeypatch.setattr(codegen, "TEAM_MIN_WORK", 0)
    monkeypatch.setattr(codegen, "TEAM_MIN_STAGE_WORK", 0)
    monkeypatch.setattr(codegen, "PARALLEL_MIN_WORK", 1 << 10)


def _models():
    return {"mlp": (mlp(3, sizes=(40, 200, 130, 7)), {"x": (3, 40)}),
            "lstm": (lstm(seq=5, batch=2, size=24, hidden=40), {"x": (5, 2, 24)})}


def _feeds(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def _raw_run(session, feeds, nthreads):
    """The executable's entry point called with ``nthreads`` (no thread choice)."""
    exe = session._fast.exe if session._fast is not None else None
    assert exe is not None
    return exe.run([feeds[i.name] for i in session.get_inputs()], nthreads)


@pytest.mark.parametrize("name", ["mlp", "lstm"])
@pytest.mark.parametrize("threads", [2, 3, 5])
def test_team_equals_one_thread(team_everywhere, name, threads):
    model, shapes = _models()[name]
    session = onnxc.compile(model, num_threads=threads)
    feeds = _feeds(shapes)
    session.run(None, feeds)
    assert "onnxc_team" in session._fast.exe.llvm_ir, "the team path must be under test"
    want = _raw_run(session, feeds, 1)
    for _ in range(20):
        got = _raw_run(session, feeds, threads)
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g, w)
    ref = onnxc.compile(model, num_threads=1, opt_level=0).run(None, feeds)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-5)


def test_team_without_libgomp(team_everywhere, monkeypatch):
    """Without libgomp (a slim container image) a run still gets the pool's team; no kernel
    calls libgomp and the artifact does not need it."""
    import onnxc.backends.cpu as cpu

    monkeypatch.setattr(cpu, "openmp_library", lambda: None)
    model, shapes = _models()["mlp"]
    session = onnxc.compile(model, num_threads=2)
    feeds = _feeds(shapes, 3)
    want = session.run(None, feeds)
    exe = session._fast.exe
    assert "onnxc_team" in exe.llvm_ir and "GOMP_parallel" not in exe.llvm_ir
    assert not exe.needs_openmp
    for _ in range(10):
        np.testing.assert_array_equal(_raw_run(session, feeds, 2)[0], want[0])


def test_workers_that_never_start(team_everywhere, monkeypatch):
    """No worker (the caller posts to nobody), and a team wider than the workers there are:
    the caller runs the unclaimed chunks itself."""
    model, shapes = _models()["lstm"]
    session = onnxc.compile(model, num_threads=2)
    feeds = _feeds(shapes, 1)
    want = session.run(None, feeds)
    rt = pool.runtime()
    started = rt._started.value
    try:
        rt._started.value = 0
        np.testing.assert_array_equal(_raw_run(session, feeds, 2)[0], want[0])
    finally:
        rt._started.value = started
    np.testing.assert_array_equal(_raw_run(session, feeds, 16)[0], want[0])


def test_concurrent_runs_share_the_pool(team_everywhere):
    """Several Python threads run team models at once: one holds the pool, the others run
    alone; every result is right."""
    model, shapes = _models()["mlp"]
    session = onnxc.compile(model, num_threads=2)
    feeds = [_feeds(shapes, seed) for seed in range(4)]
    want = [session.run(None, f)[0] for f in feeds]
    errors = []

    def work(k):
        try:
            for _ in range(200):
                np.testing.assert_array_equal(session.run(None, feeds[k])[0], want[k])
        except AssertionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def _child(session, feeds, queue):
    first = session.run(None, feeds)[0]
    queue.put((first, pool.runtime()._started.value))


def test_forked_child_starts_its_own_workers(team_everywhere):
    model, shapes = _models()["lstm"]
    session = onnxc.compile(model, num_threads=2)
    feeds = _feeds(shapes, 2)
    want = session.run(None, feeds)[0]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(session, feeds, queue))
    proc.start()
    got, workers = queue.get(timeout=120)
    proc.join(timeout=60)
    assert proc.exitcode == 0
    np.testing.assert_array_equal(got, want)
    assert workers == 1, "the child's first team run starts its own worker"


def test_runtime_module_is_valid_ir():
    """Both supported machines' runtime modules parse and verify (only the host's runs)."""
    import llvmlite.binding as llvm

    for machine in ("x86_64", "aarch64"):
        llvm.parse_assembly(str(pool.build_runtime(machine))).verify()


def test_spin_count(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert pool.spin_count(2, 2) == pool.SPINS
    assert pool.spin_count(3, 2) == pool.THROTTLED_SPINS  # more threads than processors
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert pool.spin_count(2, 2) == 0
