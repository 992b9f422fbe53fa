"""Random-input checks of ops whose ONNX node cases are thin, against onnxruntime (or onnx's
reference evaluator where onnxruntime departs from the spec): ConvTranspose with strides, pads,
groups, dilations and output padding; normalizations."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnxc

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the reference for these checks")


def one_node_model(node: onnx.NodeProto, feeds: dict[str, np.ndarray],
                   consts: dict[str, np.ndarray] | None = None, opset: int = 21,
                   n_outputs: int = 1) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(v, k) for k, v in (consts or {}).items()]
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for k, v in feeds.items()]
    outs = [helper.make_empty_tensor_value_info(name) for name in node.output[:n_outputs]]
    graph = helper.make_graph([node], "g", ins, outs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def check_vs_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray], target: str = "cpu",
                 rtol: float = 1e-4, atol: float = 1e-4, reference: bool = False) -> None:
    """Compare with onnxruntime, or with onnx's ReferenceEvaluator when ``reference``."""
    if reference:
        from onnx.reference import ReferenceEvaluator

        want = ReferenceEvaluator(model).run(None, feeds)
    else:
        sess = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        want = sess.run(None, feeds)
    got = onnxc.compile(model, target=target).run(None, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
        if w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


# -- ConvTranspose -------------------------------------------------------------------------------
CONV_TRANSPOSE = [
    # (input shape, weight shape, attributes)
    ((1, 3, 5, 5), (3, 4, 3, 3), dict(strides=[2, 2])),
    ((2, 4, 4, 6), (4, 3, 3, 2), dict(strides=[2, 3], pads=[1, 0, 0, 1], group=2)),
    ((1, 2, 5, 4), (2, 2, 3, 3), dict(dilations=[2, 1], pads=[1, 1, 2, 0])),
    ((1, 2, 4, 4), (2, 1, 4, 4), dict(strides=[2, 2], pads=[1, 1, 1, 1],
                                      output_padding=[1, 0])),
    ((1, 6, 3, 3), (6, 1, 3, 3), dict(group=6, strides=[2, 2], auto_pad="SAME_UPPER")),
    ((1, 2, 3, 4), (2, 3, 2, 2), dict(strides=[2, 2], auto_pad="SAME_LOWER")),
    ((1, 2, 3, 3), (2, 2, 3, 3), dict(strides=[3, 2], output_shape=[10, 8])),
    ((2, 3, 7), (3, 2, 4), dict(strides=[3], pads=[2, 1], dilations=[2])),
    ((1, 2, 3, 2, 3), (2, 2, 2, 3, 2), dict(strides=[2, 1, 2], pads=[0, 1, 0, 1, 0, 1])),
]


@pytest.mark.parametrize("x_shape,w_shape,attrs", CONV_TRANSPOSE)
def test_conv_transpose_vs_onnxruntime(x_shape, w_shape, attrs) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[1] * attrs.get("group", 1)).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs)
    check_vs_ort(one_node_model(node, {"x": x}, {"w": w, "b": b}), {"x": x})


def test_conv_transpose_runtime_weights_on_cuda_sim() -> None:
    from onnxc.backends.cuda.sim import find_cxx

    if find_cxx() is None:
        pytest.skip("cuda-sim needs g++ or clang++")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 3, 5)).astype(np.float32)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 0, 0, 1],
                            group=2)
    feeds = {"x": x, "w": w}
    check_vs_ort(one_node_model(node, feeds), feeds, target="cuda-sim")


# -- normalizations ------------------------------------------------------------------------------
def test_instance_and_group_norm_vs_onnxruntime() -> None:
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((2, 6, 5, 3)) * 3 + 1).astype(np.float32)
    scale, bias = (rng.standard_normal(6).astype(np.float32) for _ in range(2))
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3)
    check_vs_ort(one_node_model(node, {"x": x}, {"s": scale, "b": bias}), {"x": x})
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=3)
    check_vs_ort(one_node_model(node, {"x": x}, {"s": scale, "b": bias}), {"x": x})
    node = helper.make_node("LpNormalization", ["x"], ["y"], axis=1, p=1)
    check_vs_ort(one_node_model(node, {"x": x}), {"x": x})
    node = helper.make_node("MeanVarianceNormalization", ["x"], ["y"], axes=[1, 3])
    check_vs_ort(one_node_model(node, {"x": x}), {"x": x})


# -- Resize --------------------------------------------------------------------------------------
RESIZE = [
    # (mode, coordinate mode, extra attributes, scales or None, sizes or None)
    ("nearest", "asymmetric", {"nearest_mode": "floor"}, [1, 1, 2.0, 3.0], None),
    ("nearest", "half_pixel", {"nearest_mode": "round_prefer_ceil"}, [1, 1, 0.7, 1.6], None),
    ("nearest", "align_corners", {"nearest_mode": "round_prefer_floor"}, None, [2, 3, 7, 4]),
    ("nearest", "pytorch_half_pixel", {"nearest_mode": "ceil"}, None, [2, 3, 3, 11]),
    ("linear", "half_pixel", {}, [1, 1, 2.0, 2.0], None),
    ("linear", "pytorch_half_pixel", {}, None, [2, 3, 1, 9]),
    ("linear", "align_corners", {}, [1, 1, 0.6, 1.5], None),
    ("linear", "half_pixel_symmetric", {}, [1, 1, 1.3, 0.7], None),
    ("linear", "half_pixel", {"antialias": 1}, [1, 1, 0.4, 0.6], None),
    ("cubic", "half_pixel", {}, [1, 1, 1.6, 2.5], None),
    ("cubic", "asymmetric", {"cubic_coeff_a": -0.5, "exclude_outside": 1}, [1, 1, 0.7, 1.4],
     None),
    ("cubic", "half_pixel", {"antialias": 1}, None, [2, 3, 3, 2]),
]


@pytest.mark.parametrize("mode,coord,attrs,scales,sizes", RESIZE)
def test_resize_vs_onnxruntime(mode, coord, attrs, scales, sizes) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    consts = {"roi": np.zeros(0, np.float32)}
    if scales is not None:
        consts["scales"] = np.array(scales, np.float32)
        inputs = ["x", "roi", "scales"]
    else:
        consts["sizes"] = np.array(sizes, np.int64)
        inputs = ["x", "roi", "", "sizes"]
    node = helper.make_node("Resize", inputs, ["y"], mode=mode,
                            coordinate_transformation_mode=coord, **attrs)
    check_vs_ort(one_node_model(node, {"x": x}, consts), {"x": x})


@pytest.mark.parametrize("mode,coord,scales", [("nearest", "half_pixel", [1, 1, 0.6, 1.7]),
                                               ("linear", "align_corners", [1, 1, 0.5, 1.5])])
def test_resize_fractional_output_length_vs_reference(mode, coord, scales) -> None:
    """With scales whose output length is not whole (5 * 0.6 = 3, 5 * 0.5 = 2.5), the spec
    maps coordinates with the unrounded length; onnxruntime uses the rounded one."""
    x = np.random.default_rng(5).standard_normal((1, 2, 5, 6)).astype(np.float32)
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode,
                            coordinate_transformation_mode=coord)
    model = one_node_model(node, {"x": x}, {"scales": np.array(scales, np.float32)})
    check_vs_ort(model, {"x": x}, reference=True)


def test_resize_integer_nearest_and_crop_and_resize() -> None:
    rng = np.random.default_rng(4)
    x = rng.integers(0, 255, (1, 2, 4, 5)).astype(np.uint8)
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")
    check_vs_ort(one_node_model(node, {"x": x}, {"scales": np.array([1, 1, 2.5, 1.5],
                                                                     np.float32)}), {"x": x})
    xf = rng.standard_normal((1, 2, 6, 5)).astype(np.float32)
    roi = np.array([0, 0, -0.2, 0.3, 1, 1, 0.8, 1.3], np.float32)
    node = helper.make_node("Resize", ["x", "roi", "", "sizes"], ["y"], mode="linear",
                            coordinate_transformation_mode="tf_crop_and_resize",
                            extrapolation_value=-3.0)
    check_vs_ort(one_node_model(node, {"x": xf}, {"roi": roi, "sizes": np.array(
        [1, 2, 7, 4], np.int64)}), {"x": xf})


# -- Einsum --------------------------------------------------------------------------------------
EINSUM = [
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (3, 4, 2)]),
    ("ii->", [(4, 4)]),
    ("iij->j", [(3, 3, 2)]),
    ("ij,ij->", [(3, 4), (3, 4)]),
    ("i,j->ij", [(3,), (5,)]),
    ("bij,bjk,bkl->bil", [(2, 3, 4), (2, 4, 5), (2, 5, 3)]),
    ("ijk->kji", [(2, 3, 4)]),
    ("abc,cd->abd", [(2, 3, 4), (4, 5)]),
    ("ab,b->a", [(3, 4), (4,)]),
    ("nchw,kc->nkhw", [(1, 3, 2, 2), (4, 3)]),
]


@pytest.mark.parametrize("equation,shapes", EINSUM)
def test_einsum_vs_numpy(equation, shapes) -> None:
    rng = np.random.default_rng(6)
    feeds = {f"x{k}": rng.standard_normal(s).astype(np.float32) for k, s in enumerate(shapes)}
    node = helper.make_node("Einsum", list(feeds), ["y"], equation=equation)
    got = onnxc.compile(one_node_model(node, feeds, opset=12)).run(None, feeds)[0]
    want = np.einsum(equation, *feeds.values())
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# -- small compositions --------------------------------------------------------------------------
def test_lppool_reversesequence_centercroppad_vs_onnxruntime() -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    for p, attrs in ((2, dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1])),
                     (3, dict(kernel_shape=[2, 3], dilations=[2, 1])),
                     (1, dict(kernel_shape=[3, 3], auto_pad="SAME_UPPER"))):
        node = helper.make_node("LpPool", ["x"], ["y"], p=p, **attrs)
        check_vs_ort(one_node_model(node, {"x": x}, opset=18), {"x": x})
    seq = rng.standard_normal((5, 3, 4)).astype(np.float32)
    node = helper.make_node("ReverseSequence", ["x", "n"], ["y"], batch_axis=1, time_axis=0)
    lens = np.array([5, 0, 3], np.int64)
    check_vs_ort(one_node_model(node, {"x": seq, "n": lens}), {"x": seq, "n": lens})
    node = helper.make_node("CenterCropPad", ["x", "s"], ["y"], axes=[2, 3])
    check_vs_ort(one_node_model(node, {"x": x}, {"s": np.array([4, 9], np.int64)}, opset=18),
                 {"x": x}, reference=True)


def test_float16_matmul_widened_by_cast_is_not_a_float32_gemm() -> None:
    """Regression: fusion put Cast(float16 -> float32) after a float16 MatMul into one kernel
    whose float32 output made the GEMM template read the float16 operands as float32."""
    from onnx import TensorProto

    rng = np.random.default_rng(9)
    a = rng.standard_normal((2, 8, 16)).astype(np.float16)
    b = rng.standard_normal((16, 6)).astype(np.float16)
    nodes = [helper.make_node("MatMul", ["a", "b"], ["s"]),
             helper.make_node("Cast", ["s"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "g", [
        helper.make_tensor_value_info("a", TensorProto.FLOAT16, a.shape),
        helper.make_tensor_value_info("b", TensorProto.FLOAT16, b.shape)],
        [helper.make_empty_tensor_value_info("y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    check_vs_ort(model, {"a": a, "b": b}, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("inverse,onesided,length,complex_in", [
    (0, 0, None, False), (0, 1, 12, False), (1, 0, 6, True), (1, 1, 14, True), (0, 0, 9, True)])
def test_dft_vs_numpy_fft(inverse, onesided, length, complex_in) -> None:
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 8, 3, 2 if complex_in else 1)).astype(np.float32)
    node = helper.make_node("DFT", ["x", "n", "axis"], ["y"], inverse=inverse,
                            onesided=onesided)
    consts = {"axis": np.array(1, np.int64)}
    if length is not None:
        consts["n"] = np.array(length, np.int64)
    else:
        node.input[1] = ""
    got = onnxc.compile(one_node_model(node, {"x": x}, consts, opset=20)).run(None, {"x": x})[0]
    z = x[..., 0] + 1j * x[..., 1] if complex_in else x[..., 0]
    if inverse and onesided:
        want = np.fft.irfft(z, n=length, axis=1)[..., None]
    else:
        f = np.fft.ifft if inverse else np.fft.fft
        want = f(z, n=length, axis=1)
        if onesided:
            want = want[:, :(length or 8) // 2 + 1]
        want = np.stack([want.real, want.imag], axis=-1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align", [0, 1])
def test_grid_sample_vs_onnxruntime(mode, padding, align) -> None:
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    grid = rng.uniform(-1.4, 1.4, (2, 4, 7, 2)).astype(np.float32)
    node = helper.make_node("GridSample", ["x", "g"], ["y"], mode=mode, padding_mode=padding,
                            align_corners=align)
    feeds = {"x": x, "g": grid}
    # onnxruntime clamps cubic taps differently for border padding; onnx's reference (which
    # the node cases come from) is the reference there
    check_vs_ort(one_node_model(node, feeds, opset=20), feeds,
                 reference=(mode, padding) == ("cubic", "border"))


def test_col2im_vs_onnxruntime() -> None:
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 3 * 2 * 3, 9)).astype(np.float32)  # C=3, block 2x3, 3x3 blocks
    node = helper.make_node("Col2Im", ["x", "image", "block"], ["y"], strides=[2, 1],
                            dilations=[1, 2], pads=[1, 0, 0, 1])
    consts = {"image": np.array([5, 6], np.int64), "block": np.array([2, 3], np.int64)}
    check_vs_ort(one_node_model(node, {"x": x}, consts, opset=18), {"x": x})


@pytest.mark.parametrize("shape,attrs", [
    ((2, 3, 7, 6), dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1])),
    ((1, 2, 6, 7), dict(kernel_shape=[2, 3], dilations=[2, 1], storage_order=1)),
    ((2, 2, 9), dict(kernel_shape=[3], strides=[2], pads=[1, 1])),
    ((1, 2, 4, 5, 4), dict(kernel_shape=[2, 2, 2], strides=[1, 2, 2])),
])
def test_maxpool_indices_vs_onnxruntime(shape, attrs) -> None:
    x = np.random.default_rng(15).standard_normal(shape).astype(np.float32)
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], **attrs)
    check_vs_ort(one_node_model(node, {"x": x}, n_outputs=2), {"x": x})


@pytest.mark.parametrize("n", [1, 2, 3])
def test_det_vs_numpy(n) -> None:
    x = np.random.default_rng(16).standard_normal((4, 2, n, n)).astype(np.float32)
    node = helper.make_node("Det", ["x"], ["y"])
    got = onnxc.compile(one_node_model(node, {"x": x})).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, np.linalg.det(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode,coord", [("avg", "half_pixel"), ("avg", "output_half_pixel"),
                                        ("max", "half_pixel")])
def test_roi_align_vs_onnxruntime(mode, coord) -> None:
    rng = np.random.default_rng(17)
    x = rng.standard_normal((2, 3, 12, 10)).astype(np.float32)
    corners = rng.uniform(-2, 13, (5, 4)).astype(np.float32)
    rois = np.concatenate([np.minimum(corners[:, :2], corners[:, 2:]),
                           np.maximum(corners[:, :2], corners[:, 2:])], axis=1)
    batch = np.array([0, 1, 1, 0, 1], np.int64)
    node = helper.make_node("RoiAlign", ["x", "rois", "b"], ["y"], mode=mode,
                            coordinate_transformation_mode=coord, output_height=3,
                            output_width=4, sampling_ratio=2, spatial_scale=0.8)
    feeds = {"x": x, "rois": rois, "b": batch}
    check_vs_ort(one_node_model(node, feeds, opset=16), feeds)
