"""Dynamic batch: one compile (a batch tile and batch 1) runs every batch size.

Reference: onnxruntime on the same model and feeds. "No further compile" is checked by making
the compiler raise after the first compile, and by counting the session's executables.
Models the tiling proof must refuse (a reduction over the batch, the batch size as a value, the
batch moved off axis 0) fall back to per-shape compiles and still match.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc
import onnxc.runtime.build as build
import onnxc.runtime.session as session_module

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the reference (pip install "
                                                "'onnxc[dev]')")

BATCHES = (1, 7, 64, 0)


def _model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "m", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((32, 64)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
                  [w1, b1, w2])


def _no_compiler(monkeypatch) -> None:
    """Any compile from here on fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(build, "optimize_graph", refuse)
    monkeypatch.setattr(build, "compile_graph", refuse)
    monkeypatch.setattr(session_module, "build_executable", refuse)


def _check(session, model, shape, batches=BATCHES, seed=0) -> None:
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    name = model.graph.input[0].name
    for b in batches:
        x = rng.standard_normal((b,) + tuple(shape)).astype(np.float32)
        got = session.run(None, {name: x})
        if b == 0:  # onnxruntime's kernels differ on empty batches; the shape is the contract
            assert all(g.shape[0] == 0 for g in got)
            continue
        want = ref.run(None, {name: x})
        for g, w in zip(got, want):
            assert g.shape == w.shape, (b, g.shape, w.shape)
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=f"batch {b}")


def _tiled_once(model, shape, monkeypatch, batches=BATCHES):
    session = onnxc.compile(model)
    tiling = session.describe()["batch_tiling"]
    assert len(tiling["tiled"]) == 1, tiling
    assert len(session.executables) == 2  # the tile program and the batch-1 program
    _no_compiler(monkeypatch)
    _check(session, model, shape, batches)
    assert len(session.executables) == 2
    return session


def test_mlp_runs_every_batch_from_one_compile(monkeypatch, tmp_path):
    model = _mlp()
    session = _tiled_once(model, (32,), monkeypatch, BATCHES + (16, 37))
    session.save(tmp_path / "mlp.onnxc")
    loaded = onnxc.load(tmp_path / "mlp.onnxc")  # the compiler still refuses
    assert loaded.describe()["batch_tiling"]["tiled"]
    _check(loaded, model, (32,), (5, 33), seed=1)
    assert len(loaded.executables) == 2


def _torch_model(module, example, dynamic=("batch",)) -> onnx.ModelProto:
    torch = pytest.importorskip("torch", reason="the exported models need torch")
    axes = {k: name for k, name in enumerate(dynamic)}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), buffer, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": axes, "y": axes})
    return onnx.load_from_string(buffer.getvalue())


def _torch_modules():
    torch = pytest.importorskip("torch", reason="the exported models need torch")
    nn = torch.nn

    class Cnn(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.c2, self.fc = nn.Conv2d(8, 16, 3, stride=2), nn.Linear(16 * 6 * 6, 10)

        def forward(self, x):
            x = nn.functional.max_pool2d(torch.relu(self.bn(self.c1(x))), 2)
            x = torch.relu(self.c2(x))
            return self.fc(x.view(x.size(0), -1))  # Shape -> Gather -> Concat -> Reshape

    class Block(nn.Module):
        """Multi-head self-attention + LayerNorm + GELU MLP; views use the traced sizes."""

        def __init__(self, d=32, heads=4):
            super().__init__()
            self.heads, self.qkv, self.o = heads, nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.ln = nn.LayerNorm(d)
            self.ff = nn.Sequential(nn.Linear(d, 64), nn.GELU(), nn.Linear(64, d))

        def forward(self, x):
            b, s, d = x.shape
            h = self.heads
            q, k, v = (t.view(b, s, h, d // h).transpose(1, 2)
                       for t in self.qkv(x).chunk(3, dim=-1))
            a = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, dim=-1) @ v
            x = self.ln(x + self.o(a.transpose(1, 2).reshape(b, s, d)))
            return x + self.ff(x)

    torch.manual_seed(0)
    return torch, Cnn(), Block()


def test_torch_cnn_runs_every_batch_from_one_compile(monkeypatch):
    torch, cnn, _ = _torch_modules()
    model = _torch_model(cnn, torch.randn(2, 3, 28, 28))
    _tiled_once(model, (3, 28, 28), monkeypatch)


def test_torch_transformer_block_runs_every_batch_from_one_compile(monkeypatch):
    torch, _, block = _torch_modules()
    model = _torch_model(block, torch.randn(2, 8, 32))
    _tiled_once(model, (8, 32), monkeypatch)


def test_symbolic_sequence_compiles_once_per_length_not_per_batch():
    """Batch and sequence symbolic: tile programs per sequence length, any batch."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")
    model = _model([helper.make_node("MatMul", ["x", "w"], ["m"]),
                    helper.make_node("Softmax", ["m"], ["y"], axis=1)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "seq", 16])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "seq", 8])], [w])
    session = onnxc.compile(model)
    for seq in (3, 5):
        _check(session, model, (seq, 16), (1, 7, 20))
    assert len(session.describe()["batch_tiling"]["tiled"]) == 2
    assert len(session.executables) == 4


def test_flattening_the_batch_into_an_output_still_tiles():
    """Reshape(x, [-1]): the output's dim 0 is 4 x batch, sample b owns rows 4b..4b+3."""
    model = _model([helper.make_node("Constant", [], ["shape"],
                                     value=numpy_helper.from_array(np.array([-1], np.int64))),
                    helper.make_node("Reshape", ["x", "shape"], ["f"]),
                    helper.make_node("Exp", ["f"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    session = onnxc.compile(model)
    assert session.describe()["batch_tiling"]["tiled"][0]["out_rows"] == [4]
    _check(session, model, (4,))


def _refused(model, shape, why: str) -> None:
    session = onnxc.compile(model)
    tiling = session.describe()["batch_tiling"]
    assert not tiling["tiled"] and why in tiling["not_tiled"][0]["why"], tiling
    _check(session, model, shape, (1, 7, 16, 20))
    assert len(session.executables) == 4  # today's per-shape specializations


def _io(out_shape, in_shape=("batch", 6)):
    return ([helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)])


def test_reduction_over_the_batch_falls_back():
    model = _model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)],
                   *_io([1, 6]), [numpy_helper.from_array(np.array([0], np.int64), "axes")])
    _refused(model, (6,), "not batch-separable")


def test_batch_size_as_a_value_falls_back():
    """y = x / batch, the batch from Shape: a tile would divide by its tile size."""
    one = numpy_helper.from_array(np.array([0], np.int64), "zero")
    model = _model([helper.make_node("Shape", ["x"], ["s"]),
                    helper.make_node("Gather", ["s", "zero"], ["b"]),
                    helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
                    helper.make_node("Div", ["x", "bf"], ["y"])], *_io(["batch", 6]), [one])
    _refused(model, (6,), "batch size as a value")


def test_shape_output_falls_back():
    x, y = _io(["batch", 6])
    model = _model([helper.make_node("Relu", ["x"], ["y"]),
                    helper.make_node("Shape", ["x"], ["s"])],
                   x, y + [helper.make_tensor_value_info("s", TensorProto.INT64, [2])])
    _refused(model, (6,), "output 's' depends on the batch size as a value")


def test_batch_moved_off_axis_0_falls_back():
    model = _model([helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
                    helper.make_node("Relu", ["t"], ["y"])], *_io([6, "batch"]))
    _refused(model, (6,), "on axis 1, not 0")


def test_mixing_samples_falls_back():
    """Each row minus the batch's first row: a gather across the batch."""
    zero = numpy_helper.from_array(np.array([0], np.int64), "zero")
    model = _model([helper.make_node("Gather", ["x", "zero"], ["first"], axis=0),
                    helper.make_node("Sub", ["x", "first"], ["y"])], *_io(["batch", 6]), [zero])
    _refused(model, (6,), "not batch-separable")


def test_shape_preserving_cross_sample_reads_fall_back():
    """Reversing the batch and a running sum over it keep every shape: only the index
    expressions show that sample b reads other samples."""
    ints = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)  # noqa: E731
    reverse = _model([helper.make_node("Slice", ["x", "st", "en", "ax", "step"], ["y"])],
                     *_io(["batch", 6]), [ints("st", [-1]), ints("en", [-2**62]),
                                           ints("ax", [0]), ints("step", [-1])])
    _refused(reverse, (6,), "not only within its own sample")
    cumsum = _model([helper.make_node("CumSum", ["x", "axis"], ["y"])], *_io(["batch", 6]),
                    [numpy_helper.from_array(np.array(0, np.int64), "axis")])
    _refused(cumsum, (6,), "not batch-separable")


def _embedding() -> onnx.ModelProto:
    """ids [batch, 4] -> Gather from a table (a data-dependent index into a weight) -> MatMul."""
    rng = np.random.default_rng(7)
    table = numpy_helper.from_array(rng.standard_normal((50, 16)).astype(np.float32), "table")
    w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")
    return _model([helper.make_node("Gather", ["table", "ids"], ["e"]),
                   helper.make_node("MatMul", ["e", "w"], ["y"])],
                  [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 4])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8])],
                  [table, w])


def test_tiles_from_many_threads_and_both_remainder_paths(monkeypatch):
    """An embedding lookup tiles (the index is read at its own sample); 8 threads run mixed
    batch sizes; remainders run both as batch-1 programs and as a zero-padded tile."""
    import concurrent.futures

    model = _embedding()
    session = onnxc.compile(model, num_threads=1, batch_tile=4)
    (tiling,) = session.tilings.values()
    assert tiling.tile == 4
    _no_compiler(monkeypatch)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    cases = [rng.integers(-50, 50, size=(k % 11, 4)) for k in range(60)]
    want = [ref.run(None, {"ids": ids})[0] for ids in cases]
    for cost_tile, cost_one in ((1.0, 2.0), (10.0, 1.0)):  # always pad; never (r < 4)
        tiling.cost_tile, tiling.cost_one = cost_tile, cost_one
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda ids: session.run(None, {"ids": ids})[0], cases))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    with pytest.raises(onnxc.InputError, match="out of range"):
        session.run(None, {"ids": np.full((6, 4), 50, np.int64)})
    assert len(session.executables) == 2


def test_batch_tile_option():
    assert not onnxc.compile(_mlp(), batch_tile=0).describe()["batch_tiling"]["tiled"]
    with pytest.raises(onnxc.OnnxcError, match="batch_tile"):
        onnxc.compile(_mlp(), batch_tile=1)


def test_padded_remainder_cannot_divide_by_zero(monkeypatch):
    """Integer division by a batched input: the padding repeats real samples (zeros would
    trap the process)."""
    ints = [helper.make_tensor_value_info(n, TensorProto.INT32, ["batch", 4]) for n in "ad"]
    model = _model([helper.make_node("Div", ["a", "d"], ["y"])], ints,
                   [helper.make_tensor_value_info("y", TensorProto.INT32, ["batch", 4])])
    session = onnxc.compile(model, batch_tile=8)
    (tiling,) = session.tilings.values()
    tiling.cost_tile, tiling.cost_one = 1.0, 2.0  # every remainder runs as a padded tile
    _no_compiler(monkeypatch)
    rng = np.random.default_rng(0)
    for b in (3, 11):
        a = rng.integers(-100, 100, (b, 4)).astype(np.int32)
        d = rng.integers(1, 9, (b, 4)).astype(np.int32)
        want = ort.InferenceSession(model.SerializeToString()).run(None, {"a": a, "d": d})[0]
        np.testing.assert_array_equal(session.run(None, {"a": a, "d": d})[0], want)


def test_batch_size_as_a_slice_bound_falls_back():
    """y = sum(x[:, :batch]): the batch size picks data on another axis (every shape still
    scales with the batch, so only the value analysis can tell)."""
    ints = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)  # noqa: E731
    model = _model([helper.make_node("Shape", ["x"], ["s"]),
                    helper.make_node("Slice", ["s", "zero", "one"], ["b"]),
                    helper.make_node("Slice", ["x", "zero", "b", "one"], ["part"]),
                    helper.make_node("ReduceSum", ["part", "one"], ["y"], keepdims=1)],
                   *_io(["batch", 1], ("batch", 32)), [ints("zero", [0]), ints("one", [1])])
    _refused(model, (32,), "batch size as a value")


def test_cli_batch_tile(tmp_path, capsys):
    from onnxc.cli import main

    onnx.save(_mlp(), str(tmp_path / "mlp.onnx"))
    assert main(["compile", str(tmp_path / "mlp.onnx"), "-o", str(tmp_path / "a.onnxc"),
                 "--batch-tile", "8"]) == 0
    assert "compiled for any batch (batch tile 8)" in capsys.readouterr().out
    assert onnxc.load(str(tmp_path / "a.onnxc")).describe()["batch_tiling"]["tiled"]


def test_profiling_a_tiled_model_compiles_nothing(monkeypatch):
    session = onnxc.compile(_mlp(), batch_tile=8)
    _no_compiler(monkeypatch)
    for b in (3, 20):
        timings = session.profile({"x": np.ones((b, 32), np.float32)})
        assert timings and all(t >= 0 for _, t in timings)
    assert session.profile_trace({"x": np.ones((9, 32), np.float32)})["traceEvents"]
