"""Winograd F(2x2, 3x3) convolution (passes/winograd.py, ir/ops/winograd.py) and the cpu
backend's phase-split inner loops (backends/cpu/phase_split.py) that make its output transform
vectorize: random convolutions with fused epilogues vs onnxruntime, the transform ops' kernel
IR vs their numpy references, and the shape rule that picks Winograd only where it wins."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc
from onnxc.ir.compute import build_kernel
from onnxc.ir.dtypes import DType
from onnxc.ir.graph import Node, Value
from onnxc.ir.interp import run_kernel
from onnxc.ir.kernel import stage, TensorRef
from onnxc.ir.ops.registry import get_op
from onnxc.ir.ops.winograd import transform_weights
from onnxc.ir.types import TensorType
from onnxc.passes import pipeline
from onnxc.passes import winograd as wpass
from onnxc.backends.cpu.phase_split import phases


def _model(n, c, k, h, w, pads, *, bias=True, bn=False, relu=True, residual=False, seed=0):
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(
        (rng.standard_normal((k, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32), "W")]
    conv_in = ["x", "W"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(k).astype(np.float32), "B"))
        conv_in.append("B")
    nodes = [helper.make_node("Conv", conv_in, ["y"], pads=list(pads), kernel_shape=[3, 3])]
    out = "y"
    if bn:
        for name, arr in (("scale", rng.uniform(0.5, 1.5, k)), ("shift", rng.standard_normal(k)),
                          ("mean", rng.standard_normal(k) * 0.1),
                          ("var", rng.uniform(0.5, 2.0, k))):
            inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        nodes.append(helper.make_node("BatchNormalization", [out, "scale", "shift", "mean", "var"],
                                      ["bn"]))
        out = "bn"
    ho, wo = h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, c, h, w])]
    if residual:
        inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [n, k, ho, wo]))
        nodes.append(helper.make_node("Add", [out, "r"], ["sum"]))
        out = "sum"
    if relu:
        nodes.append(helper.make_node("Relu", [out], ["o"]))
        out = "o"
    graph = helper.make_graph(nodes, "conv3x3", inputs,
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), (ho, wo)


CASES = [  # N, C, K, H, W, pads (top, left, bottom, right), epilogue
    (1, 64, 64, 20, 20, (1, 1, 1, 1), dict(bn=True, relu=True)),
    (2, 5, 7, 9, 11, (1, 1, 1, 1), dict(residual=True)),
    (1, 32, 40, 13, 10, (0, 0, 0, 0), dict(bias=False, relu=False)),
    (2, 16, 24, 7, 7, (1, 1, 1, 1), dict(bn=True, residual=True)),
    (1, 3, 16, 5, 6, (1, 0, 2, 1), dict()),
    (1, 8, 8, 3, 3, (0, 0, 0, 0), dict(relu=False)),  # a single output pixel
    (3, 12, 6, 15, 8, (2, 2, 2, 2), dict(residual=True, relu=False)),
]


@pytest.fixture
def always(monkeypatch):
    """Winograd for every eligible conv, whatever the shape rule says."""
    monkeypatch.setattr(wpass, "winograd_wins", lambda *shape: True)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:5])) + str(c[5]))
def test_winograd_conv_matches_onnxruntime(case, always):
    n, c, k, h, w, pads, epi = case
    model, (ho, wo) = _model(n, c, k, h, w, pads, **epi)
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((n, c, h, w)).astype(np.float32)}
    if epi.get("residual"):
        feeds["r"] = rng.standard_normal((n, k, ho, wo)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    for threads in (1, 2):
        sess = onnxc.compile(model, num_threads=threads)
        assert "WinogradOutput" in sess.ir_text() and "Conv(" not in sess.ir_text()
        got = sess.run(None, feeds)[0]
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err < 1e-5, err  # F(2x2, 3x3) in float32: ~1e-7 relative


def test_weight_transform_and_reference_ops_match_direct_convolution():
    """U = G g G^T, V = B^T d B and Y = A^T (U * V) A by the ops' numpy references (and by
    their kernel IR through the interpreter) equal a direct 3x3 convolution."""
    rng = np.random.default_rng(3)
    n, c, k, h, w, pads = 2, 3, 4, 7, 6, [1, 0, 1, 2]
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    g = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ho, wo = xp.shape[2] - 2, xp.shape[3] - 2
    direct = np.zeros((n, k, ho, wo))
    for a in range(3):
        for b in range(3):
            direct += np.einsum("nchw,kc->nkhw", xp[:, :, a:a + ho, b:b + wo], g[:, :, a, b])
    direct += bias.reshape(1, -1, 1, 1)
    for grid_w in (0, 8):  # a widened tile grid computes extra tiles that are dropped
        attrs_in = {"pads": pads, "grid_w": grid_w}
        v = _both("WinogradInput", [x], attrs_in)
        th, tw = v.shape[4], v.shape[5]
        assert tw == max(-(-wo // 2), grid_w)
        m = np.matmul(transform_weights(g), v.reshape(n, 16, c, th * tw))
        y = _both("WinogradOutput", [m, bias], {"out_hw": [ho, wo], "grid_w": grid_w})
        np.testing.assert_allclose(y, direct, rtol=1e-4, atol=1e-4)


def _both(op: str, arrays: list[np.ndarray], attrs: dict) -> np.ndarray:
    """The op's numpy reference; asserts its kernel IR (interpreted) gives the same."""
    opdef = get_op(op)
    want = opdef.reference(arrays, attrs)[0]
    ins = [Value(f"in{k}", TensorType(DType.float32, a.shape), const=a)
           for k, a in enumerate(arrays)]
    out_type = opdef.infer([v.type for v in ins], attrs, arrays)[0]
    assert out_type.shape == want.shape
    outs = [Value("out", out_type)]
    got = run_kernel(build_kernel([Node(op, ins, outs, attrs, "t")], outs),
                     {v.name: v.const for v in ins})["out"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    return want


@pytest.mark.parametrize("attrs", [dict(group=2), dict(strides=[2, 2]),
                                   dict(dilations=[2, 2])], ids=str)
def test_ineligible_convs_stay_direct(attrs, always):
    rng = np.random.default_rng(4)
    wt = rng.standard_normal((8, 8 // attrs.get("group", 1), 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1], **attrs)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 9, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(wt, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert "WinogradOutput" not in onnxc.compile(model).ir_text()


def test_shape_rule_and_targets():
    wins = wpass.winograd_wins
    assert wins(64, 64, 56, 56) and wins(128, 128, 28, 28) and wins(256, 256, 14, 14)
    assert wins(512, 512, 7, 7) and wins(160, 320, 7, 7)
    assert not wins(128, 32, 56, 56)  # DenseNet's growth convs: the transforms cost more
    assert not wins(64, 64, 14, 14) and not wins(128, 128, 7, 7) and not wins(16, 16, 56, 56)
    names = lambda target: [p.name for p in pipeline(2, target)]  # noqa: E731
    assert "winograd" in names("cpu")
    assert "winograd" not in names("cuda") and "winograd" not in names("cuda-sim")
    assert "winograd" not in [p.name for p in pipeline(1)]


def test_phase_split_detection():
    """Stages reading x // d and x % d (and nothing else of x) split; others do not."""
    x = TensorRef("x", (4, 9), DType.float32)
    split = stage("a", (4, 18), lambda i, j: x[i, j // 2] * 2.0)
    mixed = stage("b", (4, 18), lambda i, j: x[i, j // 2] + x[i, j % 9])
    plain = stage("c", (4, 9), lambda i, j: x[i, j])
    assert phases(split) == 2 and phases(mixed) is None and phases(plain) is None


def test_output_transform_uses_the_phase_split_loop(always, monkeypatch):
    """The output transform (odd width: a tail phase) is emitted by the phase-split loop;
    test_winograd_conv_matches_onnxruntime checks its numbers."""
    from onnxc.backends.cpu import codegen

    seen = []
    monkeypatch.setattr(codegen, "phases", lambda st: seen.append(phases(st)) or seen[-1])
    model, _ = _model(1, 4, 4, 9, 11, (1, 1, 1, 1))
    onnxc.compile(model)
    assert 2 in seen


def test_symbolic_batch_still_tiles(always):
    """The batch stays the leading axis of the transforms, so batch tiling's proof holds."""
    model, (ho, wo) = _model(1, 6, 8, 7, 9, (1, 1, 1, 1), residual=True)
    for v in list(model.graph.input):
        v.type.tensor_type.shape.dim[0].dim_param = "batch"
    session = onnxc.compile(model, batch_tile=4)
    rng = np.random.default_rng(6)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for b in (1, 5):
        feeds = {"x": rng.standard_normal((b, 6, 7, 9)).astype(np.float32),
                 "r": rng.standard_normal((b, 8, ho, wo)).astype(np.float32)}
        want = ref.run(None, feeds)[0]
        np.testing.assert_allclose(session.run(None, feeds)[0], want, rtol=1e-5,
                                   atol=1e-5 * float(np.abs(want).max()))
    assert session.describe()["batch_tiling"]["tiled"]
    assert "WinogradOutput" in session.ir_text()


def test_optimize_writes_standard_onnx_without_winograd(always):
    """onnxc.optimize exports ONNX: the Winograd ops have no ONNX form, so it skips them."""
    model, _ = _model(1, 8, 8, 10, 10, (1, 1, 1, 1), bn=True)
    out = onnxc.optimize(model)
    assert {n.op_type for n in out.graph.node} <= {"Conv", "Relu"}
    feeds = {"x": np.random.default_rng(7).standard_normal((1, 8, 10, 10)).astype(np.float32)}
    run = lambda m: ort.InferenceSession(  # noqa: E731
        m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(run(out), run(model), rtol=1e-4, atol=1e-5)
