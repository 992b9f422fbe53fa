"""Errors a person can act on: the node (name and op), the model's file, what was expected and
found, and the fix; through the Python API and through the CLI."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

import onnxc
from onnxc.cli import main


def _save(path: Path, nodes: list, inputs: list, outputs: list, domains=()) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    opsets = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, 1) for d in domains]
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path


@pytest.fixture
def bad_conv(tmp_path: Path) -> Path:
    """A Conv whose weight expects 5 input channels, fed 3."""
    return _save(tmp_path / "bad_conv.onnx",
                 [helper.make_node("Conv", ["x", "w"], ["y"], name="stem_conv",
                                   kernel_shape=[3, 3])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
                  helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 5, 3, 3])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])


@pytest.fixture
def symbolic(tmp_path: Path) -> Path:
    """Relu on x [N, 3]: N is only known at run time."""
    return _save(tmp_path / "symbolic.onnx", [helper.make_node("Relu", ["x"], ["y"], name="r")],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])


def test_shape_error_names_node_op_and_file(bad_conv: Path) -> None:
    with pytest.raises(onnxc.ModelError) as info:
        onnxc.compile(str(bad_conv))
    message = str(info.value)
    assert message.startswith(f"{bad_conv}: node 'stem_conv' (Conv): ")
    assert "3 channels" in message and "expects 5" in message
    assert info.value.node == "stem_conv" and info.value.op == "Conv"


def test_cli_prints_the_same_message(bad_conv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "compile", str(bad_conv), "-o", str(bad_conv.with_suffix(".c"))]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"onnxc: error: {bad_conv}: node 'stem_conv' (Conv): ")


def test_unsupported_ops_of_a_symbolic_model_are_found_at_compile(tmp_path: Path) -> None:
    path = _save(tmp_path / "custom.onnx",  # an op of a custom domain: no importer, no body
                 [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                  helper.make_node("Frobnicate", ["r"], ["y"], name="tfidf",
                                   domain="com.example")],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                 [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
                 domains=["com.example"])
    with pytest.raises(onnxc.UnsupportedOpError) as info:
        onnxc.compile(str(path))  # before: accepted here, failing only on the first run
    message = str(info.value)
    assert message.startswith(f"{path}: 1 node(s)") and "node 'tfidf': com.example::Frobnicate" in message
    assert "relu" not in message


def test_compiling_a_symbolic_model_says_how_to_fix_the_shapes(
        tmp_path: Path, symbolic: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """A symbolic batch alone compiles now (batch tiling); other symbolic dims wait."""
    assert main(["compile", str(symbolic), "-o", str(tmp_path / "s.onnxc")]) == 0
    assert "compiled for any batch (batch tile" in capsys.readouterr().out
    wide = _save(tmp_path / "wide.onnx", [helper.make_node("Relu", ["x"], ["y"], name="r")],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "M"])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "M"])])
    assert main(["compile", str(wide), "-o", str(tmp_path / "w.onnxc")]) == 0
    assert "not compiled yet (symbolic shapes)" in capsys.readouterr().out
    warning = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "{'x': ['N', 'M']}" in warning and "--input-shape x=1,1" in warning


def test_random_inputs_for_a_symbolic_dim_ask_for_input_shape(
        symbolic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["-q", "run", str(symbolic), "--random-inputs"])
    assert exit_info.value.code == 2
    assert "give one with --input-shape x=D0,D1,..." in capsys.readouterr().err
    assert main(["-q", "run", str(symbolic), "--random-inputs", "--input-shape", "x=2,3"]) == 0
