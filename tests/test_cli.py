"""End-to-end tests of the ``onnxc`` command line on a tiny MLP.

The run step goes through ``python -m onnxc`` in a fresh process, so the artifact is proven to be
self-contained: nothing compiled in this process can leak into the run.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxc.cli import main

SEED = 1234


def _weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    return {
        "w1": rng.standard_normal((4, 8)).astype(np.float32),
        "b1": rng.standard_normal(8).astype(np.float32),
        "w2": rng.standard_normal((8, 3)).astype(np.float32),
        "b2": rng.standard_normal(3).astype(np.float32),
    }


def _reference(x: np.ndarray) -> np.ndarray:
    """The same MLP in numpy: relu(relu(x @ w1 + b1) @ w2 + b2)."""
    w = _weights()
    hidden = np.maximum(x @ w["w1"] + w["b1"], 0.0)
    return np.maximum(hidden @ w["w2"] + w["b2"], 0.0)


def _write_mlp(path: Path) -> Path:
    """Two MatMul+Add+Relu layers; float32 input "x" of shape [2, 4], output "y" of [2, 3]."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["mm1"], name="mm1"),
        helper.make_node("Add", ["mm1", "b1"], ["add1"], name="add1"),
        helper.make_node("Relu", ["add1"], ["h"], name="relu1"),
        helper.make_node("MatMul", ["h", "w2"], ["mm2"], name="mm2"),
        helper.make_node("Add", ["mm2", "b2"], ["add2"], name="add2"),
        helper.make_node("Relu", ["add2"], ["y"], name="relu2"),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[numpy_helper.from_array(a, name) for name, a in _weights().items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _onnxc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m onnxc`` in a fresh interpreter with this test's environment."""
    return subprocess.run([sys.executable, "-m", "onnxc", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return _write_mlp(tmp_path / "mlp.onnx")


@pytest.fixture
def x(tmp_path: Path) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32))
    return path


def test_compile_then_run_in_fresh_process(tmp_path: Path, model: Path, x: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    art = tmp_path / "mlp.onnxc"
    assert main(["compile", str(model), "-o", str(art)]) == 0
    assert art.is_file() and art.stat().st_size > 0
    assert "kernels" in capsys.readouterr().out

    done = _onnxc("run", str(art), "--input", f"x={x}", "--output-dir", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "y" in done.stdout and "float32" in done.stdout
    got = np.load(tmp_path / "out" / "y.npy")
    expected = _reference(np.load(x))
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_run_model_directly_with_random_inputs(tmp_path: Path, model: Path) -> None:
    done = _onnxc("run", str(model), "--random-inputs", "--seed", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "shape=[2, 3]" in done.stdout


def test_inspect_artifact_prints_json(tmp_path: Path, model: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    art = tmp_path / "mlp.onnxc"
    assert main(["-q", "compile", str(model), "-o", str(art)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(art)]) == 0
    assert '"kernels"' in capsys.readouterr().out


def test_help_exits_zero(tmp_path: Path) -> None:
    for args in ([], ["compile"], ["run"], ["inspect"]):
        done = _onnxc(*args, "--help", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "usage: onnxc" in done.stdout and "examples:" in done.stdout


def test_missing_input_file_is_a_clean_error(tmp_path: Path, model: Path) -> None:
    art = tmp_path / "mlp.onnxc"
    assert main(["compile", str(model), "-o", str(art)]) == 0
    done = _onnxc("run", str(art), "--input", "x=nope.npy", cwd=tmp_path)
    assert done.returncode == 2
    assert "onnxc: error:" in done.stderr and "nope.npy" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_model_is_a_clean_error(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(tmp_path / "absent.onnx"), "-o", str(tmp_path / "a")]) == 2
    assert "onnxc: error:" in capsys.readouterr().err


def test_bad_model_is_a_clean_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf \xff\xfe\x00 at all")
    done = _onnxc("compile", str(bad), "-o", "bad.onnxc", cwd=tmp_path)
    assert done.returncode == 2
    assert "onnxc: error:" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "bad.onnxc").exists()


@pytest.mark.parametrize("shape", ["x=1,a", "x", "=1,2", "x=-1"])
def test_bad_input_shape_is_an_argparse_error(tmp_path: Path, model: Path, shape: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["compile", str(model), "-o", str(tmp_path / "a"), "--input-shape", shape])
    assert exit_info.value.code == 2
    assert "--input-shape" in capsys.readouterr().err
