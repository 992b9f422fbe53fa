"""precision="bf16": MatMul/Gemm/Conv with bfloat16 operands and float32 sums.

Two references per case: the exact one for what the mode computes (operands rounded to
bfloat16 by ml_dtypes, products summed in float64; only float32 summation error is allowed, so
a wrong pair layout, a lost tail or a swapped reduction step fails), and the float32 model
(numpy / onnxruntime) within a bf16 tolerance. Shapes have remainders in every dimension (row
tiles of 6, column tiles of 32, odd reductions, several column blocks), 1 and 2 threads. The
emulated kernel (no avx512_bf16) must give the native kernel's bits."""
from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc
from onnxc.backends.cpu import gemm_bf16, host_target

BF16_RTOL = 3e-2  # against float32: 8 significant bits per operand, errors partly cancel


def _bf(x: np.ndarray) -> np.ndarray:
    return x.astype(ml_dtypes.bfloat16).astype(np.float32)


def _model(nodes, inputs, inits, opset=13):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _close(got, want, rtol):
    np.testing.assert_allclose(got, want, rtol=rtol,
                               atol=rtol * max(float(np.abs(want).max()), 1.0))


# (batch, M, K, N): M % 6, N % 32, K odd, several column blocks, tiny M / K
MATMUL = [(None, 7, 33, 45), (None, 61, 301, 700), (None, 12, 17, 64), (3, 13, 40, 50),
          (None, 6, 1024, 129), (None, 100, 16, 17), (None, 5, 3, 9), (None, 64, 2, 1000),
          (None, 1, 37, 70), (2, 1, 20, 33)]  # batch-1 rows: gemm_match's min_rows=1


@pytest.mark.parametrize("shape", MATMUL, ids=str)
def test_matmul_bf16(shape):
    batch, m, k, n = shape
    rng = np.random.default_rng(sum(shape[1:]))
    x_shape = (m, k) if batch is None else (batch, m, k)
    w = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    model = _model(nodes, [("x", x_shape)], {"w": w, "b": bias})
    x = rng.standard_normal(x_shape).astype(np.float32)
    exact = np.maximum(_bf(x).astype(np.float64) @ _bf(w).astype(np.float64) + bias, 0)
    fp32 = np.maximum(x.astype(np.float64) @ w.astype(np.float64) + bias, 0)
    for threads in (1, 2):
        s = onnxc.compile(model, num_threads=threads, precision="bf16")
        got = s.run(None, {"x": x})[0]
        _close(got, exact, 1e-5)
        _close(got, fp32, BF16_RTOL)
    assert s.describe()["precision"] == "bf16"


CONV = [  # (C, M, H, W, kernel, stride, pad, residual)
    (16, 13, 9, 11, 3, 1, 1, False),  # flattened rows with pitch padding, 13 output channels
    (24, 40, 14, 14, 1, 1, 0, True),  # 1x1, residual Add in the epilogue
    (5, 64, 23, 23, 3, 2, 0, False),  # stride 2, reduction 45 (odd)
    (3, 8, 33, 31, 7, 2, 3, True),    # 7x7 stem-like, reduction 147
]


@pytest.mark.parametrize("case", CONV, ids=lambda c: "x".join(map(str, c)))
def test_conv_bf16(case):
    c, m, h, w_, k, stride, pad, residual = case
    rng = np.random.default_rng(c * m + h)
    weight = (rng.standard_normal((m, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c" if residual else "r"],
                            kernel_shape=[k, k], pads=[pad] * 4, strides=[stride] * 2)
    nodes = [conv]
    inputs = [("x", (1, c, h, w_))]
    oh, ow = (h + 2 * pad - k) // stride + 1, (w_ + 2 * pad - k) // stride + 1
    if residual:
        nodes.append(helper.make_node("Add", ["c", "res"], ["r"]))
        inputs.append(("res", (1, m, oh, ow)))
    nodes.append(helper.make_node("Relu", ["r"], ["y"]))
    feeds = {"x": rng.standard_normal((1, c, h, w_)).astype(np.float32)}
    if residual:
        feeds["res"] = rng.standard_normal((1, m, oh, ow)).astype(np.float32)
    model = _model(nodes, inputs, {"w": weight, "b": bias})
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    fp32 = ref.run(None, feeds)[0]
    rounded = _model(nodes, inputs, {"w": _bf(weight), "b": bias})
    exact = ort.InferenceSession(rounded.SerializeToString(),
                                 providers=["CPUExecutionProvider"]).run(
        None, {**feeds, "x": _bf(feeds["x"])})[0]
    for threads in (1, 2):
        got = onnxc.compile(model, num_threads=threads, precision="bf16").run(None, feeds)[0]
        _close(got, exact, 1e-5)
        _close(got, fp32, BF16_RTOL)


@pytest.mark.parametrize("tile", list(gemm_bf16.TILES), ids=str)
def test_every_tile_on_remainders(tile, monkeypatch):
    """Each micro-kernel tile pinned: a last row tile of 1..MR-1 rows, a partial column tile,
    an odd reduction, a convolution with pitch padding."""
    monkeypatch.setattr(gemm_bf16, "TILES", {tile: 1.0})
    mr, nr = tile
    model, x = _matmul_model(2 * mr + 3, 37, nr * 16 + 5, seed=mr)
    w = numpy_helper.to_array(model.graph.initializer[0])
    got = onnxc.compile(model, num_threads=2, precision="bf16").run(None, {"x": x})[0]
    _close(got, _bf(x).astype(np.float64) @ _bf(w).astype(np.float64), 1e-5)
    test_conv_bf16(CONV[0])


def _matmul_model(m, k, n, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((k, n)).astype(np.float32)
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", (m, k))], {"w": w})
    return model, rng.standard_normal((m, k)).astype(np.float32)


@pytest.mark.skipif("+avx512bf16" not in host_target()["features"].split(","),
                    reason="this CPU has no avx512_bf16: nothing native to compare with")
@pytest.mark.parametrize("shape", [(13, 129, 100), (64, 33, 70), (6, 1024, 129)], ids=str)
def test_emulated_kernel_gives_the_native_bits(shape, monkeypatch):
    model, x = _matmul_model(*shape, seed=shape[1])
    x[0, :5] = [np.nan, np.inf, -np.inf, 1e-39, -3e38]  # NaN/inf/denormal/overflowing rounding
    native = onnxc.compile(model, num_threads=1, precision="bf16")
    assert "dpbf16ps" in native.llvm_ir()
    monkeypatch.setattr(gemm_bf16, "EMULATE", True)
    emulated = onnxc.compile(model, num_threads=1, precision="bf16")
    assert "dpbf16ps" not in emulated.llvm_ir() and "cvtne2ps2bf16" not in emulated.llvm_ir()
    a, b = native.run(None, {"x": x})[0], emulated.run(None, {"x": x})[0]
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("kind", ["matmul", "conv", "gemm_transb"])
def test_prepared_weights_give_the_run_time_bits(kind, monkeypatch):
    """Constant operands rounded and laid out at compile time (bf16_weights.py: b's panels
    for MatMul, a's rows for Conv / Gemm) give the bits of converting them on every run,
    NaN, infinities, denormals and overflowing rounding included."""
    from onnxc.runtime import build

    rng = np.random.default_rng(7)
    if kind == "conv":
        w = rng.standard_normal((13, 5, 3, 3)).astype(np.float32)
        node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1] * 4)
        x_shape = (2, 5, 9, 11)
    elif kind == "matmul":
        w = rng.standard_normal((41, 70)).astype(np.float32)
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
        x_shape = (19, 41)
    else:
        w = rng.standard_normal((30, 41)).astype(np.float32)
        node = helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)
        x_shape = (19, 41)
    flat = w.reshape(-1)
    flat[:5] = [np.nan, np.inf, -np.inf, 1e-39, -3.3e38]
    model = _model([node], [("x", x_shape)], {"w": w})
    x = rng.standard_normal(x_shape).astype(np.float32)
    prepared = onnxc.compile(model, num_threads=2, precision="bf16")
    exe = next(iter(prepared.executables.values()))
    assert any(c.dtype == np.uint16 for c in exe.constants)  # a prepared operand
    monkeypatch.setattr(build, "_prepare_bf16_weights", lambda plan: None)
    run_time = onnxc.compile(model, num_threads=2, precision="bf16")
    np.testing.assert_array_equal(prepared.run(None, {"x": x})[0].view(np.uint32),
                                  run_time.run(None, {"x": x})[0].view(np.uint32))


def test_avx2_width_epilogue(monkeypatch):
    """On an AVX2 host (8 float32 lanes) the 16-lane sums reach the epilogue in halves."""
    import onnxc.backends.cpu as cpu

    monkeypatch.setattr(cpu, "vector_width", lambda features: 8)
    model, x = _matmul_model(21, 50, 70, seed=9)
    w = numpy_helper.to_array(model.graph.initializer[0])
    got = onnxc.compile(model, num_threads=1, precision="bf16").run(None, {"x": x})[0]
    _close(got, _bf(x).astype(np.float64) @ _bf(w).astype(np.float64), 1e-5)


def test_emulated_kernel_matches_the_reference(monkeypatch):
    """On any host: the emulated kernel alone, against the exact reference."""
    monkeypatch.setattr(gemm_bf16, "EMULATE", True)
    model, x = _matmul_model(19, 77, 90, seed=5)
    w = numpy_helper.to_array(model.graph.initializer[0])
    got = onnxc.compile(model, num_threads=1, precision="bf16").run(None, {"x": x})[0]
    _close(got, _bf(x).astype(np.float64) @ _bf(w).astype(np.float64), 1e-5)


def test_light_model_bf16_close_to_onnxruntime():
    """The bench's MobileNet v1 (its 1x1 convolutions and the classifier in bf16; depthwise
    ones keep float32), BatchNorm folded, against onnxruntime float32."""
    from bench.models import mobilenet

    model = mobilenet(resolution=64)
    inp = model.graph.input[0]
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {inp.name: x})[0]
    s = onnxc.compile(model, num_threads=2, precision="bf16")
    got = s.run(None, {inp.name: x})[0]
    err = float(np.abs(got - want).max() / np.abs(want).max())
    assert 1e-6 < err < BF16_RTOL  # rounded (not float32) and still close
    assert "dpbf16ps" in s.llvm_ir() or "+avx512bf16" not in host_target()["features"]


def test_bench_harness_times_onnxc_bf16():
    from bench.__main__ import bench_model

    r = bench_model("mlp_b64", threads=1, runs=2, peers=["ort", "onnxc_bf16"])
    assert r["onnxc_bf16_ms"] > 0 and 1e-6 < r["onnxc_bf16_err"] < BF16_RTOL


def test_artifact_keeps_precision(tmp_path: Path):
    model, x = _matmul_model(32, 96, 80, seed=2)
    bf16 = onnxc.compile(model, num_threads=1, precision="bf16")
    fp32 = onnxc.compile(model, num_threads=1)
    path = tmp_path / "m.onnxc"
    bf16.save(str(path))
    loaded = onnxc.load(str(path), num_threads=1)
    assert loaded.describe()["precision"] == "bf16"
    got = loaded.run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, bf16.run(None, {"x": x})[0])
    assert not np.array_equal(got, fp32.run(None, {"x": x})[0])


def test_artifact_with_symbolic_batch_compiles_later_in_bf16(tmp_path: Path):
    """A model compiled on first run after loading uses the recorded precision too."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((40, 50)).astype(np.float32)
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", ("n", 40))],
                   {"w": w})
    for tile in (0, None):  # compiled per batch size / batch tile + batch-1 program
        s = onnxc.compile(model, num_threads=1, precision="bf16", batch_tile=tile)
        path = tmp_path / "m.onnxc"
        s.save(str(path))
        loaded = onnxc.load(str(path), num_threads=1)
        for n in (1, 7, 70):  # every row in bf16, whichever program computes it
            x = rng.standard_normal((n, 40)).astype(np.float32)
            got = loaded.run(None, {"x": x})[0]
            _close(got, _bf(x).astype(np.float64) @ _bf(w).astype(np.float64), 1e-5)


@pytest.mark.parametrize("precision", ["fp16", "BF16", "", None, "int8"])
def test_bad_precision_is_an_onnxc_error(precision):
    model, _ = _matmul_model(8, 16, 16)
    with pytest.raises(onnxc.OnnxcError, match="precision"):
        onnxc.compile(model, precision=precision)


def test_bf16_on_a_gpu_target_is_refused():
    model, _ = _matmul_model(8, 16, 16)
    with pytest.raises(onnxc.OnnxcError, match="target='cpu' only"):
        onnxc.compile(model, target="cuda-sim", precision="bf16")


def test_cli_compile_with_bf16_records_it(tmp_path: Path, capsys):
    from onnxc.cli import main

    model, x = _matmul_model(12, 64, 40, seed=4)
    src, art = tmp_path / "m.onnx", tmp_path / "m.onnxc"
    src.write_bytes(model.SerializeToString())
    assert main(["-q", "compile", str(src), "-o", str(art), "--precision", "bf16"]) == 0
    assert onnxc.load(str(art)).describe()["precision"] == "bf16"
    with pytest.raises(SystemExit):
        main(["-q", "compile", str(src), "-o", str(art), "--precision", "fp8"])


def test_constant_on_either_side_of_a_matmul():
    """The same constant as a's rows in one product and as b's panels in the other: each
    kernel reads the operand it prepared (the structural key tells them apart)."""
    rng = np.random.default_rng(0)
    c = rng.standard_normal((16, 16)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["c", "x"], ["y1"]),
         helper.make_node("MatMul", ["x", "c"], ["y2"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 16])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y1", "y2")],
        [numpy_helper.from_array(c, "c")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = rng.standard_normal((16, 16)).astype(np.float32)
    y1, y2 = onnxc.compile(model, num_threads=1, precision="bf16").run(None, {"x": x})
    cb, xb = _bf(c).astype(np.float64), _bf(x).astype(np.float64)
    _close(y1, cb @ xb, 1e-5)
    _close(y2, xb @ cb, 1e-5)
