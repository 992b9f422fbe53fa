"""Random-input checks of the training ops (Adagrad, Adam, Momentum, BatchNormalization's
training mode) against onnx.reference, of DeformConv against onnxruntime and onnx.reference,
and of the importer's function-body fallback."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

import onnxc
from onnxc.frontend import IMPORTERS
from onnxc.frontend.importer import _register_importers
from onnxc.ir.errors import UnsupportedOpError

TRAINING = "ai.onnx.preview.training"
rng = np.random.default_rng(7)


def _model(nodes, feeds, n_out_names, opsets, outputs=None):
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for k, v in feeds.items()]
    outs = [helper.make_empty_tensor_value_info(n) for n in (outputs or n_out_names)]
    graph = helper.make_graph(nodes, "g", ins, outs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v)
                                                   for d, v in opsets.items()])


def _close(got, want, rtol=1e-5, atol=1e-6):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


_OPTIMIZERS = {
    "Adagrad": (3, dict(decay_factor=0.1, epsilon=1e-5, norm_coefficient=0.01)),
    "Momentum": (3, dict(alpha=0.9, beta=0.3, mode="standard", norm_coefficient=0.02)),
    "Nesterov": (3, dict(alpha=0.8, beta=0.5, mode="nesterov", norm_coefficient=0.0)),
    "Adam": (4, dict(alpha=0.85, beta=0.99, epsilon=1e-4, norm_coefficient=0.01,
                     norm_coefficient_post=0.05)),
}


@pytest.mark.parametrize("name", sorted(_OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizers_vs_reference(name, dtype):
    """Two tensors optimized at once; one compiled model serves the first step (T=0, its own
    rule) and later steps (T>0): T stays a run-time input."""
    per, attrs = _OPTIMIZERS[name]
    op = "Momentum" if name == "Nesterov" else name
    shapes = [(3, 4), (5,)]
    groups = "XGVH"[:per] if op != "Adagrad" else "XGH"
    names = [f"{g}{i}" for g in groups for i in range(len(shapes))]
    feeds = {"R": np.array(0.1, dtype=dtype), "T": np.array(0, dtype=np.int64)}
    for n in names:
        v = rng.standard_normal(shapes[int(n[1:])]).astype(dtype)
        feeds[n] = np.abs(v) if n[0] == "H" else v  # squared-gradient state is >= 0
    outs = [f"{n}_new" for n in names if n[0] != "G"]  # new X..., then new states
    node = helper.make_node(op, ["R", "T"] + names, outs, domain=TRAINING, **attrs)
    model = _model([node], feeds, outs, {"": 21, TRAINING: 1})
    session = onnxc.compile(model)
    ref = ReferenceEvaluator(model)
    for t in (0, 3):
        feeds["T"] = np.array(t, dtype=np.int64)
        want = [np.asarray(w, dtype=dtype) for w in ref.run(None, feeds)]
        _close(session.run(None, feeds), want, rtol=1e-5 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("shape", [(4, 3, 5, 2), (6, 2)])
def test_batchnorm_training_mode_vs_reference(shape):
    x = rng.standard_normal(shape).astype(np.float32) * 3 + 1
    c = shape[1]
    feeds = {"x": x, "s": rng.standard_normal(c).astype(np.float32),
             "b": rng.standard_normal(c).astype(np.float32),
             "mean": rng.standard_normal(c).astype(np.float32),
             "var": rng.uniform(0.5, 2, c).astype(np.float32)}
    node = helper.make_node("BatchNormalization", list(feeds), ["y", "rm", "rv"],
                            training_mode=1, momentum=0.7, epsilon=1e-3)
    model = _model([node], feeds, ["y", "rm", "rv"], {"": 15})
    _close(onnxc.compile(model).run(None, feeds), ReferenceEvaluator(model).run(None, feeds),
           rtol=1e-4, atol=1e-5)


def _deform_case(n=2, c=4, h=6, w=5, oc=6, k=(3, 2), group=2, og=2, strides=(1, 2),
                 dil=(2, 1), pads=(1, 0, 2, 1), mask=True, bias=True, scale=1.5):
    oh = (h + pads[0] + pads[2] - (k[0] - 1) * dil[0] - 1) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - (k[1] - 1) * dil[1] - 1) // strides[1] + 1
    feeds = {"X": rng.standard_normal((n, c, h, w)).astype(np.float32),
             "W": rng.standard_normal((oc, c // group, *k)).astype(np.float32),
             "offset": (rng.standard_normal((n, og * k[0] * k[1] * 2, oh, ow))
                        * scale).astype(np.float32)}
    inputs = ["X", "W", "offset"]
    if bias:
        feeds["B"] = rng.standard_normal(oc).astype(np.float32)
    inputs.append("B" if bias else "")
    if mask:
        feeds["mask"] = rng.uniform(0, 1, (n, og * k[0] * k[1], oh, ow)).astype(np.float32)
        inputs.append("mask")
    node = helper.make_node("DeformConv", inputs, ["Y"], group=group, offset_group=og,
                            kernel_shape=list(k), strides=list(strides), dilations=list(dil),
                            pads=list(pads))
    return _model([node], feeds, ["Y"], {"": 19}), feeds


@pytest.mark.parametrize("kw", [
    {}, {"mask": False, "bias": False, "group": 1, "og": 1},
    {"og": 4, "group": 1, "strides": (2, 1), "pads": (0, 0, 0, 0), "scale": 4.0},
    {"h": 1, "w": 7, "k": (1, 3), "pads": (0, 1, 0, 1), "dil": (1, 1), "strides": (1, 1)},
])
def test_deform_conv_vs_onnxruntime(kw):
    """Offsets reach outside the image (zero padding) and between pixels (bilinear)."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the reference")
    model, feeds = _deform_case(**kw)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)
    got = onnxc.compile(model).run(None, feeds)
    _close(got, want, rtol=1e-4, atol=1e-4)
    if feeds["X"].shape[2] > 1:  # onnx.reference divides by H - 1
        _close(got, ReferenceEvaluator(model).run(None, feeds), rtol=1e-4, atol=1e-4)


def test_deform_conv_with_zero_offsets_is_conv():
    model, feeds = _deform_case(mask=False)
    feeds["offset"][:] = 0
    conv = helper.make_node("Conv", ["X", "W", "B"], ["Y"], group=2, kernel_shape=[3, 2],
                            strides=[1, 2], dilations=[2, 1], pads=[1, 0, 2, 1])
    plain = _model([conv], {k: feeds[k] for k in ("X", "W", "B")}, ["Y"], {"": 19})
    want = onnxc.compile(plain).run(None, {k: feeds[k] for k in ("X", "W", "B")})
    _close(onnxc.compile(model).run(None, feeds), want, rtol=1e-4, atol=1e-4)


# -- the function-body fallback ------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _importers_registered():
    _register_importers()  # so that monkeypatch.delitem below is not undone by registration


def test_op_without_importer_is_expanded_into_its_function_body(monkeypatch):
    """HardSigmoid has an importer and a fixed ONNX function body; without the importer the
    body (with the node's alpha and the schema's default beta) is imported instead."""
    monkeypatch.delitem(IMPORTERS, "HardSigmoid")
    x = rng.standard_normal((3, 7)).astype(np.float32) * 4
    node = helper.make_node("HardSigmoid", ["x"], ["y"], alpha=0.3)
    model = _model([node], {"x": x}, ["y"], {"": 21})
    want = np.clip(0.3 * x + 0.5, 0, 1).astype(np.float32)
    _close(onnxc.compile(model).run(None, {"x": x}), [want])


def test_unsupported_ops_are_listed_at_once(monkeypatch):
    """Truly unsupported ops (no importer, no function body) are reported together, also one
    inside a function body, while an op with a usable body passes the check."""
    monkeypatch.delitem(IMPORTERS, "HardSigmoid")
    monkeypatch.delitem(IMPORTERS, "Max")  # HardSigmoid's body uses Max
    x = np.ones((2, 2), dtype=np.float32)
    nodes = [helper.make_node("HardSigmoid", ["x"], ["a"]),
             helper.make_node("NoSuchOp", ["a"], ["b"]),
             helper.make_node("Foo", ["b"], ["c"], domain="com.example"),
             helper.make_node("Selu", ["c"], ["y"])]
    model = _model(nodes, {"x": x}, ["y"], {"": 21, "com.example": 1})
    with pytest.raises(UnsupportedOpError) as info:
        onnxc.compile(model)
    ops = [p[1] for p in info.value.problems]
    assert "Max" in ops and "NoSuchOp" in ops and "com.example::Foo" in ops, ops
    assert "Selu" not in ops and "HardSigmoid" not in ops


def _local_function_model(recursive: bool = False):
    """y = LeakyScale(x, alpha=0.2): a model-local function (custom domain) with an attribute
    reference and a default attribute, calling ONNX ops, one of them (Selu) with attributes."""
    alpha = onnx.AttributeProto()
    alpha.name, alpha.type, alpha.ref_attr_name = "alpha", onnx.AttributeProto.FLOAT, "alpha"
    gamma = onnx.AttributeProto()
    gamma.name, gamma.type, gamma.ref_attr_name = "gamma", onnx.AttributeProto.FLOAT, "gamma"
    selu = helper.make_node("Selu", ["t"], ["u"])
    selu.attribute.extend([alpha, gamma])
    body = [helper.make_node("Sub", ["x", "x2"], ["t"]), selu,
            helper.make_node("LeakyScale" if recursive else "Add", ["u", "x"], ["y"],
                             **({"domain": "my.fn"} if recursive else {}))]
    body.insert(0, helper.make_node("Constant", [], ["x2"], value_float=0.5))
    fn = helper.make_function("my.fn", "LeakyScale", ["x"], ["y"], body,
                              [helper.make_opsetid("", 21)], attributes=["alpha"])
    fn.attribute_proto.append(helper.make_attribute("gamma", 2.0))
    x = (rng.standard_normal((4, 5)) * 2).astype(np.float32)
    call = helper.make_node("LeakyScale", ["x"], ["y"], domain="my.fn", alpha=0.2)
    model = _model([call], {"x": x}, ["y"], {"": 21, "my.fn": 1})
    model.functions.append(fn)
    return model, {"x": x}


def test_model_local_function_is_imported_as_its_body():
    model, feeds = _local_function_model()
    x = feeds["x"]
    t = x - np.float32(0.5)  # Selu with alpha from the call, gamma from the default (2.0)
    want = np.where(t > 0, 2.0 * t, 2.0 * 0.2 * (np.exp(t) - 1)) + x
    _close(onnxc.compile(model).run(None, feeds), [want.astype(np.float32)], rtol=1e-5)


def test_recursive_model_function_is_refused():
    model, _ = _local_function_model(recursive=True)
    with pytest.raises(UnsupportedOpError, match="calls itself"):
        onnxc.compile(model)
