"""The narrow element types (bfloat16, float8, float4, int4/int2) against ml_dtypes, bit for bit.

Both backends' conversion helpers (backends/cpu/narrow.py, backends/cuda/narrow.py under
cuda-sim) run through Cast models on every 8- and 16-bit pattern: widening every code of each
type, and rounding every bfloat16 and float16 value (widened to float32) plus float32 values at
and around each format's rounding boundaries. The reference is numpy ``astype`` with ml_dtypes
(what onnx's reference and node cases use), and onnx.numpy_helper for saturation and e8m0's
round modes.
"""
from __future__ import annotations

import warnings

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import onnxc
from onnxc.backends.cuda.sim import find_cxx

TARGETS = ["cpu"] + (["cuda-sim"] if find_cxx() else [])

FLOATS = {  # ONNX type -> ml_dtypes type
    T.BFLOAT16: ml_dtypes.bfloat16, T.FLOAT8E4M3FN: ml_dtypes.float8_e4m3fn,
    T.FLOAT8E4M3FNUZ: ml_dtypes.float8_e4m3fnuz, T.FLOAT8E5M2: ml_dtypes.float8_e5m2,
    T.FLOAT8E5M2FNUZ: ml_dtypes.float8_e5m2fnuz, T.FLOAT4E2M1: ml_dtypes.float4_e2m1fn,
    T.FLOAT8E8M0: ml_dtypes.float8_e8m0fnu,
}
INTS = {T.INT4: ml_dtypes.int4, T.UINT4: ml_dtypes.uint4, T.INT2: ml_dtypes.int2,
        T.UINT2: ml_dtypes.uint2}
FLOAT8 = (T.FLOAT8E4M3FN, T.FLOAT8E4M3FNUZ, T.FLOAT8E5M2, T.FLOAT8E5M2FNUZ)


def _model(nodes, inputs, outputs, opset=25):
    graph = helper.make_graph(nodes, "narrow", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _casts(src: int, n: int, targets: dict[str, tuple[int, dict]]) -> onnx.ModelProto:
    """One input of ``src`` type, one Cast output per name -> (ONNX type, attributes)."""
    nodes = [helper.make_node("Cast", ["x"], [name], to=to, **attrs)
             for name, (to, attrs) in targets.items()]
    outs = [helper.make_tensor_value_info(name, to, [n]) for name, (to, _) in targets.items()]
    return _model(nodes, [helper.make_tensor_value_info("x", src, [n])], outs)


def _multi_casts(feeds: dict[str, tuple[int, np.ndarray]],
                 casts: list[tuple[str, str, int, dict]]) -> onnx.ModelProto:
    """One model for many casts (one compile, one g++ call under cuda-sim): inputs name ->
    (ONNX type, feed), casts (input, output, ONNX type, attributes)."""
    nodes = [helper.make_node("Cast", [i], [o], to=to, **attrs) for i, o, to, attrs in casts]
    ins = [helper.make_tensor_value_info(n, t, [len(x)]) for n, (t, x) in feeds.items()]
    outs = [helper.make_tensor_value_info(o, to, [len(feeds[i][1])]) for i, o, to, _ in casts]
    return _model(nodes, ins, outs)


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(f"u{a.dtype.itemsize}")


def _float32_inputs() -> np.ndarray:
    """Every bfloat16 and float16 value widened, and float32 values around the rounding
    boundaries (halfway points and one float32 ulp either side) of every format."""
    every16 = np.arange(1 << 16, dtype=np.uint32)
    parts = [(every16 << 16).view(np.float32),
             every16.astype(np.uint16).view(np.float16).astype(np.float32)]
    for t in FLOATS.values():
        if np.dtype(t).itemsize == 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v = np.unique(np.arange(256, dtype=np.uint8).view(t).astype(np.float32))
        v = v[np.isfinite(v)]
        mid = ((v[1:].astype(np.float64) + v[:-1]) / 2).astype(np.float32)
        for m in (mid, v, v * np.float32(1.25), v * np.float32(3)):
            b = m.view(np.uint32)
            parts += [m, (b + 1).view(np.float32), (b - 1).view(np.float32), -m]
    rng = np.random.default_rng(0)
    parts.append(rng.integers(0, 1 << 32, 1 << 15, dtype=np.uint64).astype(np.uint32)
                 .view(np.float32))
    return np.concatenate(parts).astype(np.float32)


@pytest.fixture(scope="module")
def f32_inputs() -> np.ndarray:
    return _float32_inputs()


@pytest.mark.parametrize("target", TARGETS)
def test_widen_every_code(target):
    """Every code of every narrow type, widened to float32 (bits, NaNs included) and, for the
    integers, to int32."""
    feeds, casts = {}, []
    for k, (onnx_type, t) in enumerate({**FLOATS, **INTS}.items()):
        n = 1 << (8 * np.dtype(t).itemsize)
        codes = np.arange(n, dtype=np.uint32).astype(f"u{np.dtype(t).itemsize}")
        if onnx_type == T.FLOAT4E2M1:
            codes = codes[:16]  # ml_dtypes reads float4 from the low 4 bits
        feeds[f"x{k}"] = (onnx_type, codes.view(t))
        casts.append((f"x{k}", f"y{k}", T.INT32 if onnx_type in INTS else T.FLOAT, {}))
    sess = onnxc.compile(_multi_casts(feeds, casts), target=target)
    got = sess.run(None, {n: x for n, (_, x) in feeds.items()})
    for (name, (onnx_type, x)), y in zip(feeds.items(), got):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = x.astype(np.int32 if onnx_type in INTS else np.float32)
        np.testing.assert_array_equal(_bits(y), _bits(want), err_msg=str(x.dtype))


@pytest.mark.parametrize("target", TARGETS)
def test_round_float32_to_every_format(target, f32_inputs):
    """float32 -> each narrow float: ml_dtypes' astype (non-saturating), bit for bit."""
    x = f32_inputs
    targets = {f"y{k}": (t, {"saturate": 0} if t in FLOAT8 else {})
               for k, t in enumerate(FLOATS) if t != T.FLOAT8E8M0}
    sess = onnxc.compile(_casts(T.FLOAT, len(x), targets), target=target)
    got = sess.run(None, {"x": x})
    for (name, (t, _)), y in zip(targets.items(), got):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = x.astype(FLOATS[t])
        bad = np.flatnonzero(_bits(y) != _bits(want))
        assert not len(bad), (FLOATS[t].__name__, [(hex(int(x.view(np.uint32)[i])),
                                                   hex(int(_bits(y)[i])),
                                                   hex(int(_bits(want)[i]))) for i in bad[:5]])


@pytest.mark.parametrize("target", TARGETS)
def test_saturate_and_e8m0_round_modes(target, f32_inputs):
    """Cast's saturate=1 (clamp to the largest finite value, onnx's saturate_cast) for float8,
    and float8e8m0's three round modes with and without saturation (to_float8e8m0)."""
    x = f32_inputs
    targets = {f"s{k}": (t, {"saturate": 1}) for k, t in enumerate(FLOAT8)}
    modes = [(mode, sat) for mode in ("up", "down", "nearest") for sat in (0, 1)]
    targets.update({f"e{mode}{sat}": (T.FLOAT8E8M0, {"round_mode": mode, "saturate": sat})
                    for mode, sat in modes})
    sess = onnxc.compile(_casts(T.FLOAT, len(x), targets), target=target)
    got = dict(zip(targets, sess.run(None, {"x": x})))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, t in enumerate(FLOAT8):
            want = numpy_helper.saturate_cast(x, FLOATS[t])
            np.testing.assert_array_equal(_bits(got[f"s{k}"]), _bits(want),
                                          err_msg=FLOATS[t].__name__)
        for mode, sat in modes:
            want = numpy_helper.to_float8e8m0(x, bool(sat), mode)
            np.testing.assert_array_equal(_bits(got[f"e{mode}{sat}"]), _bits(want),
                                          err_msg=f"e8m0 {mode} saturate={sat}")


@pytest.mark.parametrize("target", TARGETS)
def test_integers_to_int4_and_int2(target):
    """Floats and int32s to int4/uint4/int2/uint2: ml_dtypes truncates through int32 and keeps
    the low bits (NaN and values past int32 give 0)."""
    x = np.concatenate([np.arange(-40, 40, 0.25), [np.nan, np.inf, -np.inf, 3e9, -3e9, 2.0 ** 31,
                                                   -2.0 ** 31, 1e30]]).astype(np.float32)
    feeds = {"f": (T.FLOAT, x), "i": (T.INT32, np.arange(-300, 300, dtype=np.int32)),
             "d": (T.DOUBLE, x.astype(np.float64) + 0.5)}
    casts = [(n, f"{n}{k}", t, {}) for n in feeds for k, t in enumerate(INTS)]
    sess = onnxc.compile(_multi_casts(feeds, casts), target=target)
    for (n, _, t, _), y in zip(casts, sess.run(None, {n: v for n, (_, v) in feeds.items()})):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = feeds[n][1].astype(INTS[t])
        np.testing.assert_array_equal(_bits(y), _bits(want), err_msg=INTS[t].__name__)


@pytest.mark.parametrize("target", TARGETS)
def test_bfloat16_computes_in_float32_and_rounds_at_the_store(target):
    """Add and Mul in bfloat16 give float32 arithmetic on the widened inputs, rounded once."""
    rng = np.random.default_rng(1)
    a, b, c = (rng.standard_normal(4096).astype(ml_dtypes.bfloat16) for _ in range(3))
    info = lambda n: helper.make_tensor_value_info(n, T.BFLOAT16, [4096])  # noqa: E731
    model = _model([helper.make_node("Mul", ["a", "b"], ["t"]),
                    helper.make_node("Add", ["t", "c"], ["y"])],
                   [info("a"), info("b"), info("c")], [info("y")])
    (got,) = onnxc.compile(model, target=target).run(None, {"a": a, "b": b, "c": c})
    f = lambda v: v.astype(np.float32)  # noqa: E731
    fused = (f(a) * f(b) + f(c)).astype(ml_dtypes.bfloat16)
    stepwise = (f((f(a) * f(b)).astype(ml_dtypes.bfloat16)) + f(c)).astype(ml_dtypes.bfloat16)
    assert got.dtype == ml_dtypes.bfloat16
    # Fused into one kernel (opt level 2) the product is not rounded before the Add.
    assert np.array_equal(_bits(got), _bits(fused)) or np.array_equal(_bits(got), _bits(stepwise))


def test_matmul_and_reduce_in_bfloat16():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((8, 32)).astype(ml_dtypes.bfloat16)
    w = rng.standard_normal((32, 16)).astype(ml_dtypes.bfloat16)
    model = _model([helper.make_node("MatMul", ["a", "w"], ["y"])],
                   [helper.make_tensor_value_info("a", T.BFLOAT16, [8, 32])],
                   [helper.make_tensor_value_info("y", T.BFLOAT16, [8, 16])])
    model.graph.initializer.append(numpy_helper.from_array(w, "w"))
    (got,) = onnxc.compile(model).run(None, {"a": a})
    want = (a.astype(np.float32) @ w.astype(np.float32)).astype(ml_dtypes.bfloat16)
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2 ** -7,
                               atol=1e-6)


def _quant_model() -> onnx.ModelProto:
    """Weights of several narrow types (packed int4 in the file) dequantized and combined."""
    rng = np.random.default_rng(3)
    w4 = rng.integers(-8, 8, (4, 6)).astype(ml_dtypes.int4)
    w8 = rng.standard_normal((4, 6)).astype(ml_dtypes.float8_e4m3fn)
    wb = rng.standard_normal((4, 6)).astype(ml_dtypes.bfloat16)
    inits = [numpy_helper.from_array(w4, "w4"), numpy_helper.from_array(w8, "w8"),
             numpy_helper.from_array(wb, "wb"),
             numpy_helper.from_array(np.array(0.5, np.float32), "s")]
    nodes = [helper.make_node("DequantizeLinear", ["w4", "s"], ["d4"]),
             helper.make_node("DequantizeLinear", ["w8", "s"], ["d8"]),
             helper.make_node("Cast", ["wb"], ["db"], to=T.FLOAT),
             helper.make_node("Add", ["d4", "d8"], ["t"]),
             helper.make_node("Add", ["t", "db"], ["u"]),
             helper.make_node("Mul", ["u", "x"], ["v"]),
             helper.make_node("Cast", ["v"], ["y"], to=T.BFLOAT16),
             helper.make_node("QuantizeLinear", ["v", "s"], ["q"], output_dtype=T.INT4)]
    graph = helper.make_graph(
        nodes, "q", [helper.make_tensor_value_info("x", T.FLOAT, [4, 6])],
        [helper.make_tensor_value_info("y", T.BFLOAT16, [4, 6]),
         helper.make_tensor_value_info("q", T.INT4, [4, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def test_narrow_constants_through_artifacts_and_export(tmp_path):
    """Narrow initializers survive an artifact round trip and onnxc.optimize's export (checked
    by onnx's checker and its reference evaluator)."""
    from onnx.reference import ReferenceEvaluator

    model = _quant_model()
    x = np.random.default_rng(4).standard_normal((4, 6)).astype(np.float32)
    want = ReferenceEvaluator(model).run(None, {"x": x})
    sess = onnxc.compile(model, opt_level=0)
    got = sess.run(None, {"x": x})
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(_bits(g), _bits(w))
    path = tmp_path / "m.onnxc"
    sess.save(str(path))
    for g, w in zip(onnxc.load(str(path)).run(None, {"x": x}), want):
        np.testing.assert_array_equal(_bits(g), _bits(w))
    exported = onnxc.optimize(model, opt_level=0)
    onnx.checker.check_model(exported, full_check=True)
    for g, w in zip(ReferenceEvaluator(exported).run(None, {"x": x}), want):
        np.testing.assert_array_equal(_bits(np.asarray(g)), _bits(w))


def test_packed_tensor_of_the_wrong_size_is_refused():
    t = numpy_helper.from_array(np.arange(5).astype(ml_dtypes.int4), "w")
    t.raw_data = t.raw_data + b"\0"  # 5 int4 take 3 bytes, not 4
    model = _model([helper.make_node("Cast", ["w"], ["y"], to=T.INT8)], [],
                   [helper.make_tensor_value_info("y", T.INT8, [5])])
    model.graph.initializer.append(t)
    with pytest.raises(onnxc.ModelError, match="needs 3"):
        onnxc.compile(model)


def test_session_reports_narrow_types():
    model = _casts(T.FLOAT, 4, {"y": (T.FLOAT8E4M3FN, {})})
    sess = onnxc.compile(model)
    assert sess.get_outputs()[0].type == "tensor(float8e4m3fn)"


PAIR_TYPES = {**FLOATS, **INTS, T.FLOAT: np.float32, T.FLOAT16: np.float16,
              T.DOUBLE: np.float64, T.INT8: np.int8, T.UINT8: np.uint8, T.INT32: np.int32,
              T.BOOL: np.bool_}


def _pair_inputs(t) -> np.ndarray:
    """Every code of a byte-sized type, else a spread of values with the special ones."""
    dt = np.dtype(t)
    if dt.itemsize == 1 and dt != np.bool_:
        codes = np.arange(16 if t is ml_dtypes.float4_e2m1fn else 256, dtype=np.uint8)
        return codes.view(t) if t not in (np.int8, np.uint8) else codes.astype(t)
    if dt == np.bool_:
        return np.array([True, False])
    v = np.concatenate([np.linspace(-300, 300, 1201), [0.1, -0.3, 1e-3, 0.0, -0.0]])
    if np.issubdtype(dt, np.floating) or dt.kind == "V":
        v = np.concatenate([v, [np.nan, np.inf, -np.inf, 1e6, -1e6]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return v.astype(np.float32).astype(t)


@pytest.mark.parametrize("target", TARGETS)
def test_cast_between_every_pair(target):
    """Cast from every type to every other among the narrow types and a few standard ones,
    against ml_dtypes' astype (float8 with saturate=0, e8m0 with onnx's defaults); casts to
    integers are compared where the value is finite and fits (else undefined)."""
    feeds, casts = {}, []
    for k, (src, st) in enumerate(PAIR_TYPES.items()):
        feeds[f"x{k}"] = (src, _pair_inputs(st))
        casts += [(f"x{k}", f"y{k}_{j}", dst, {"saturate": 0} if dst in FLOAT8 else {})
                  for j, dst in enumerate(PAIR_TYPES) if dst != src]
    # opt_level 0: LLVM's optimizer would take most of the time over 300 small kernels.
    sess = onnxc.compile(_multi_casts(feeds, casts), target=target, opt_level=0)
    got = sess.run(None, {n: x for n, (_, x) in feeds.items()})
    for (name, _, dst, _), y in zip(casts, got):
        x, dt = feeds[name][1], PAIR_TYPES[dst]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dst == T.FLOAT8E8M0:
                want = numpy_helper.to_float8e8m0(x.astype(np.float32))
            else:
                try:
                    want = x.astype(dt)
                except TypeError:  # no direct cast in ml_dtypes (e8m0 <-> float8)
                    want = x.astype(np.float32).astype(dt)
            keep = np.ones(len(x), bool)
            f = x.astype(np.float64)
            if np.issubdtype(np.dtype(dt), np.integer):
                info = np.iinfo(dt)
                keep = np.isfinite(f) & (f >= info.min) & (f <= info.max)
            elif dst in INTS:  # ml_dtypes differs by source type for inf and NaN
                keep = np.isfinite(f)
        err = f"{x.dtype.name} -> {np.dtype(dt).name}"
        if dt is ml_dtypes.bfloat16 or (np.dtype(dt).kind == "f" and np.dtype(dt).itemsize >= 2):
            # NaN payloads are not specified: compare NaN-ness, then the other bits.
            nan = np.isnan(want.astype(np.float32))
            np.testing.assert_array_equal(np.isnan(y.astype(np.float32)), nan, err_msg=err)
            keep &= ~nan
        np.testing.assert_array_equal(_bits(y[keep]), _bits(want[keep]), err_msg=err)
