"""Errors are clear, typed (``onnxc.OnnxcError`` subclasses) and name what went wrong."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc
from models import mlp, mlp_reference

SIZES = (4, 8, 3)
SEED = 5


@pytest.fixture(scope="module")
def sess() -> onnxc.Session:
    """An MLP with one float32 input "x" of static shape [2, 4]."""
    return onnxc.compile(mlp(2, SIZES, SEED))


def good_x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 4), dtype=np.float32)


def test_error_hierarchy() -> None:
    for cls in (onnxc.ModelError, onnxc.UnsupportedOpError, onnxc.InputError,
                onnxc.ArtifactError):
        assert issubclass(cls, onnxc.OnnxcError)


# -- feeds --------------------------------------------------------------------------------------
def test_missing_input(sess: onnxc.Session) -> None:
    with pytest.raises(onnxc.InputError, match="missing") as info:
        sess.run(None, {})
    assert "'x'" in str(info.value)
    assert info.value.input_name == "x"


def test_unknown_input_name(sess: onnxc.Session) -> None:
    with pytest.raises(onnxc.InputError, match="unknown input") as info:
        sess.run(None, {"x": good_x(), "not_an_input": good_x()})
    assert "not_an_input" in str(info.value)
    assert info.value.input_name == "not_an_input"


def test_unknown_output_name(sess: onnxc.Session) -> None:
    with pytest.raises(onnxc.InputError, match="nope"):
        sess.run(["nope"], {"x": good_x()})


def test_wrong_dtype(sess: onnxc.Session) -> None:
    with pytest.raises(onnxc.InputError) as info:
        sess.run(None, {"x": good_x().astype(np.float64)})
    message = str(info.value)
    assert "'x'" in message and "float32" in message and "float64" in message
    assert info.value.input_name == "x"


def test_wrong_rank(sess: onnxc.Session) -> None:
    with pytest.raises(onnxc.InputError, match="rank") as info:
        sess.run(None, {"x": np.zeros((2, 4, 1), np.float32)})
    assert "'x'" in str(info.value) and "[2, 4]" in str(info.value)


def test_wrong_static_dim(sess: onnxc.Session) -> None:
    with pytest.raises(onnxc.InputError) as info:
        sess.run(None, {"x": np.zeros((2, 5), np.float32)})
    message = str(info.value)
    assert "'x'" in message and "[2, 4]" in message and "[2, 5]" in message


def test_failed_runs_leave_the_session_usable(sess: onnxc.Session) -> None:
    x = good_x()
    bad_feeds = [{}, {"x": x.astype(np.float64)}, {"x": x[:1]}, {"x": x, "y": x}]
    for feeds in bad_feeds:
        with pytest.raises(onnxc.InputError):
            sess.run(None, feeds)
        (got,) = sess.run(None, {"x": x})
        np.testing.assert_allclose(got, mlp_reference(x, SIZES, SEED), rtol=1e-5, atol=1e-5)


# -- unsupported ops ----------------------------------------------------------------------------
def test_unsupported_ops_are_all_listed_at_compile_time() -> None:
    nodes = [
        helper.make_node("FooBar", ["x"], ["t"], name="first_unknown"),
        helper.make_node("Relu", ["t"], ["u"], name="a_relu"),
        helper.make_node("BazQux", ["u"], ["y"], name="second_unknown"),
    ]
    graph = helper.make_graph(
        nodes, "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(onnxc.UnsupportedOpError) as info:
        onnxc.compile(model)
    message = str(info.value)
    assert "first_unknown" in message and "second_unknown" in message
    assert "FooBar" in message and "BazQux" in message
    assert "a_relu" not in message


# -- malformed model files ----------------------------------------------------------------------
def test_random_bytes_are_a_model_error() -> None:
    data = np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(onnxc.ModelError):
        onnxc.compile(data)


def test_empty_bytes_are_a_model_error() -> None:
    with pytest.raises(onnxc.ModelError, match="empty"):
        onnxc.compile(b"")


def test_truncated_model_file_is_a_model_error(tmp_path: Path) -> None:
    data = mlp(2, (64, 64, 8), SEED).SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(onnxc.ModelError):
        onnxc.compile(str(path))


def test_missing_model_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(onnxc.ModelError, match="absent.onnx"):
        onnxc.compile(tmp_path / "absent.onnx")


# -- external data ------------------------------------------------------------------------------
def _external_model(location: str, weight: np.ndarray) -> onnx.ModelProto:
    """y = x + w, with w's bytes declared to live in the external file ``location``."""
    w = numpy_helper.from_array(weight, "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"),
                       ("length", str(weight.nbytes))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"], name="add")], "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_external_data_inside_the_model_folder_loads(tmp_path: Path) -> None:
    weight = np.arange(4, dtype=np.float32)
    (tmp_path / "weights.bin").write_bytes(weight.tobytes())
    path = tmp_path / "model.onnx"
    onnx.save(_external_model("weights.bin", weight), str(path))
    x = np.ones(4, np.float32)
    (got,) = onnxc.compile(str(path)).run(None, {"x": x})
    np.testing.assert_array_equal(got, x + weight)


def test_external_data_outside_the_model_folder_is_refused(tmp_path: Path) -> None:
    weight = np.arange(4, dtype=np.float32)
    (tmp_path / "weights.bin").write_bytes(weight.tobytes())  # exists, but is off limits
    folder = tmp_path / "model"
    folder.mkdir()
    for location in ("../weights.bin", str(tmp_path / "weights.bin")):
        path = folder / "model.onnx"
        onnx.save(_external_model(location, weight), str(path))
        with pytest.raises(onnxc.ModelError, match="weights.bin"):
            onnxc.compile(str(path))
