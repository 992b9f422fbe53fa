"""Latency paths for small models, against numpy and onnxruntime on random inputs.

* The few-row GEMM schedule (backends/cpu/gemv.py) for products with 1..32 output rows: one
  row with no row axis (MatMul at batch 1, an LSTM step), one register tile (<= 5 rows), row
  tiles of 4 with a remainder, batched products, column counts below, at and past the
  register block (remainders), odd and tiny reductions, fused bias/activation epilogues, a
  weight fed at run time, 1 and 2 threads (the split over column blocks must not change the
  result), and 33 rows where the packed schedule takes over.
* Session's repeat-run fast path (runtime/fastrun.py): the same results as the full path, bad
  feeds still raise InputError after it is set up, other shapes fall back, non-contiguous and
  0-size feeds, and runs from several Python threads at once.
"""
from __future__ import annotations

import threading

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc
from onnxc import InputError
from onnxc.backends.cpu import gemv


def _model(nodes, inputs, inits, opset=13, out_shape=None):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _close(got, want, rtol=1e-4):
    np.testing.assert_allclose(got, want, rtol=rtol,
                               atol=rtol * max(float(np.abs(want).max(initial=0)), 1.0))


def _uses_gemv(session) -> bool:
    return "partial" in session.llvm_ir()  # the schedule's stack buffer of partial sums


# (batch dims, M, K, N): N around the block (8 vectors of 16 or 8 floats), odd K, K = 1
MATMUL = [((), 1, 1024, 1030), ((), 1, 17, 5), ((), 1, 1, 300), ((), 2, 33, 129),
          ((), 3, 200, 257), ((), 4, 64, 16), ((), 5, 7, 100), ((3,), 1, 40, 50),
          ((2, 2), 2, 9, 33), ((), 6, 31, 70), ((), 7, 16, 45), ((), 11, 128, 200),
          ((2,), 13, 5, 65), ((), 32, 64, 1030), ((), 33, 40, 90)]


@pytest.mark.parametrize("batch,m,k,n", MATMUL)
def test_small_matmul_vs_numpy(batch, m, k, n):
    rng = np.random.default_rng(m * 1000 + k + n)
    w = rng.standard_normal((k, n)).astype(np.float32)
    x = rng.standard_normal(batch + (m, k)).astype(np.float32)
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", x.shape)], {"w": w})
    for threads in (1, 2):
        s = onnxc.compile(model, num_threads=threads)
        if m <= gemv.MAX_ROWS and n > 16 and threads == 1:
            assert _uses_gemv(s)
        _close(s.run(None, {"x": x})[0], x @ w)


@pytest.mark.parametrize("m,k,n", [(1, 784, 1024), (1, 3, 31), (2, 65, 200), (5, 128, 17)])
def test_small_gemm_relu_epilogue_vs_ort(m, k, n):
    rng = np.random.default_rng(k + n)
    inits = {"w": rng.standard_normal((k, n)).astype(np.float32),
             "b": rng.standard_normal(n).astype(np.float32)}
    model = _model([helper.make_node("MatMul", ["x", "w"], ["t"]),
                    helper.make_node("Add", ["t", "b"], ["u"]),
                    helper.make_node("Relu", ["u"], ["y"])], [("x", (m, k))], inits)
    x = rng.standard_normal((m, k)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for threads in (1, 2):
        _close(onnxc.compile(model, num_threads=threads).run(None, {"x": x})[0], want)


def test_fed_weight_and_vector_times_matrix():
    """Both operands fed at run time, and a 1-D vector times a matrix (no row axis at all)."""
    rng = np.random.default_rng(3)
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                   [("x", (1, 70)), ("w", (70, 90))], {})
    x, w = (rng.standard_normal(s).astype(np.float32) for s in ((1, 70), (70, 90)))
    _close(onnxc.compile(model, num_threads=1).run(None, {"x": x, "w": w})[0], x @ w)
    vec = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", (70,))], {"w": w})
    _close(onnxc.compile(vec, num_threads=1).run(None, {"x": x[0]})[0], x[0] @ w)


def test_zero_rows():
    w = np.ones((8, 40), np.float32)
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", (0, 8))], {"w": w})
    out = onnxc.compile(model, num_threads=2).run(None, {"x": np.zeros((0, 8), np.float32)})[0]
    assert out.shape == (0, 40)


def test_lstm_vs_ort_at_two_threads():
    """An LSTM's steps are one-row products with a gathered-input epilogue."""
    from bench.models import lstm

    model = lstm(seq=5, batch=1, size=24, hidden=40)
    x = np.random.default_rng(0).standard_normal((5, 1, 24)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for threads in (1, 2):
        _close(onnxc.compile(model, num_threads=threads).run(None, {"x": x})[0], want)


# -- the repeat-run fast path ----------------------------------------------------------------
def _relu_model(shape):
    return _model([helper.make_node("Relu", ["x"], ["t"]),
                   helper.make_node("Mul", ["t", "x"], ["y"])], [("x", shape)], {})


def test_fast_path_same_results_and_fresh_outputs():
    s = onnxc.compile(_relu_model((3, 5)), num_threads=1)
    rng = np.random.default_rng(1)
    first = None
    for _ in range(4):
        x = rng.standard_normal((3, 5)).astype(np.float32)
        out = s.run(None, {"x": x})[0]
        _close(out, np.maximum(x, 0) * x)
        assert out is not first
        first = out
    assert s._fast is not None  # set up by the first run
    assert s.run(["y"], {"x": x})[0].shape == (3, 5)


def test_fast_path_still_rejects_bad_feeds():
    s = onnxc.compile(_relu_model((3, 5)), num_threads=1)
    good = np.ones((3, 5), np.float32)
    s.run(None, {"x": good})
    with pytest.raises(InputError, match="dtype"):
        s.run(None, {"x": good.astype(np.float64)})
    with pytest.raises(InputError, match="shape"):
        s.run(None, {"x": np.ones((3, 6), np.float32)})
    with pytest.raises(InputError, match="unknown input"):
        s.run(None, {"x": good, "z": good})
    with pytest.raises(InputError, match="missing"):
        s.run(None, {})
    with pytest.raises(InputError, match="unknown output"):
        s.run(["nope"], {"x": good})
    # a strided view goes the whole way and still gives the right answer
    wide = np.arange(30, dtype=np.float32).reshape(3, 10) - 15
    view = wide[:, ::2]
    _close(s.run(None, {"x": view})[0], np.maximum(view, 0) * view)


def test_fast_path_follows_shape_changes():
    s = onnxc.compile(_relu_model(("n", 4)), num_threads=1, batch_tile=0)
    for n in (2, 5, 2, 0, 5):
        x = np.random.default_rng(n).standard_normal((n, 4)).astype(np.float32)
        _close(s.run(None, {"x": x})[0], np.maximum(x, 0) * x)


def test_fast_path_from_several_python_threads():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((64, 300)).astype(np.float32)
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", (1, 64))], {"w": w})
    s = onnxc.compile(model, num_threads=1)
    xs = [rng.standard_normal((1, 64)).astype(np.float32) for _ in range(4)]
    s.run(None, {"x": xs[0]})
    errors = []

    def worker(x):
        try:
            for _ in range(50):
                _close(s.run(None, {"x": x})[0], x @ w)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(x,)) for x in xs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_vectorized_erf_vs_math_erf():
    """float32 Erf is a rational function now (backends/cpu/fastmath.py), no libm call."""
    import math

    g = helper.make_graph([helper.make_node("Erf", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    s = onnxc.compile(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
                      num_threads=1)
    assert "erff" not in s.llvm_ir()
    x = np.concatenate([np.linspace(-6, 6, 20001), np.geomspace(1e-30, 6, 2001),
                        -np.geomspace(1e-30, 6, 2001), [0.0, -0.0, np.inf, -np.inf]]
                       ).astype(np.float32)
    got = s.run(None, {"x": x})[0].astype(np.float64)
    want = np.array([math.erf(float(v)) for v in x])
    assert np.all(np.abs(got - want) <= 4e-7 * np.maximum(np.abs(want), 1e-30) + 1e-45)
    assert np.isnan(s.run(None, {"x": np.array([np.nan], np.float32)})[0]).all()


def _drive(choice, runs: int, seconds) -> list[int]:
    """Run ``choice`` for ``runs`` picks, each timed ``seconds(team, previous pick)``; the
    picks."""
    picks = []
    for _ in range(runs):
        k = choice.pick()
        choice.record(k, seconds(choice.options[k] > 1, picks[-1] if picks else None, k))
        picks.append(k)
    return picks


def test_thread_choice_follows_the_faster_count():
    from onnxc.runtime.fastrun import ThreadChoice

    choice = ThreadChoice(2)
    picks = _drive(choice, 200, lambda team, _, __: 1.0 if team else 0.5)  # one thread faster
    first = 2 * ThreadChoice.WINDOW
    assert picks[:first].count(0) == ThreadChoice.WINDOW  # both counts tried at first
    assert picks[first:].count(1) > 150 and picks[first:].count(0) >= 10  # the other probed
    _drive(choice, 100, lambda team, _, __: 0.2 if team else 0.5)  # the load goes away
    assert choice.options[choice.best] == 2


def test_thread_choice_probes_rarely_when_the_team_is_far_ahead():
    from onnxc.runtime.fastrun import ThreadChoice

    choice = ThreadChoice(2)
    picks = _drive(choice, 266, lambda team, _, __: 0.4 if team else 1.0)  # team 2.5x faster
    probes = picks[2 * ThreadChoice.WINDOW:].count(1)
    assert 2 <= probes <= 4  # two runs every PROBE_FAR, not every PROBE


def test_thread_choice_probe_skips_the_waking_run():
    """A probe of the team after a loaded spell: its first run wakes the sleeping workers and
    is slow, the second shows the team's speed; the team must win back."""
    from onnxc.runtime.fastrun import ThreadChoice

    choice = ThreadChoice(2)
    _drive(choice, 60, lambda team, _, __: 1.0 if team else 0.5)  # loaded: the team is slower
    assert choice.options[choice.best] == 1
    # idle again, but each probe's first team run waits for a wake-up
    _drive(choice, 120, lambda team, prev, k: (5.0 if prev != k else 0.2) if team else 0.5)
    assert choice.options[choice.best] == 2


def test_two_thread_session_same_results_every_run():
    """Runs alternate between the team and one thread; the results must not change."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((256, 512)).astype(np.float32)
    model = _model([helper.make_node("MatMul", ["x", "w"], ["t"]),
                    helper.make_node("Relu", ["t"], ["y"])], [("x", (64, 256))], {"w": w})
    s = onnxc.compile(model, num_threads=2)
    x = rng.standard_normal((64, 256)).astype(np.float32)
    first = s.run(None, {"x": x})[0]
    _close(first, np.maximum(x @ w, 0))
    for _ in range(30):
        np.testing.assert_array_equal(s.run(None, {"x": x})[0], first)


@pytest.mark.parametrize("m", [1, 3, 8])
def test_gathered_row_in_a_product_epilogue(m):
    """``table[idx] + x @ w`` with a fed scalar index (negative too): the epilogue reads the
    index once per vector of columns."""
    rng = np.random.default_rng(m)
    table = rng.standard_normal((5, m, 70)).astype(np.float32)
    w = rng.standard_normal((33, 70)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["g"], axis=0),
         helper.make_node("MatMul", ["x", "w"], ["t"]), helper.make_node("Add", ["g", "t"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, 33]),
              helper.make_tensor_value_info("idx", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, 70])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(w, "w")])
    s = onnxc.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
                      num_threads=1)
    x = rng.standard_normal((m, 33)).astype(np.float32)
    for idx in (0, 3, -1, -5):
        got = s.run(None, {"x": x, "idx": np.array(idx, np.int64)})[0]
        _close(got, table[idx] + x @ w)
    with pytest.raises(InputError, match="out of range"):
        s.run(None, {"x": x, "idx": np.array(5, np.int64)})


def test_in_place_elementwise_kernels_vs_ort():
    """An LSTM's cell update writes its output over the previous cell state (the memory plan's
    in-place rule); that loop is emitted twice (backends/cpu/inplace.py) and the in-place
    version must give the same results."""
    from bench.models import lstm

    model = lstm(seq=6, batch=2, size=20, hidden=35)
    s = onnxc.compile(model, num_threads=1)
    exe = next(iter(s.executables.values()))
    in_place = [k for k in exe.kernels if len(set(k.slots)) < len(k.slots)]
    assert in_place  # the plan shares a buffer somewhere, so the in-place version runs
    x = np.random.default_rng(1).standard_normal((6, 2, 20)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    _close(s.run(None, {"x": x})[0], want)
