"""onnxc.compile on torch.nn.Modules (both torch exporters), and the two lecture examples.

The reference is the framework itself: the module's own forward pass on the same inputs.
"""
from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import onnxc

torch = pytest.importorskip("torch", reason="the torch entry point needs torch "
                                            "(pip install 'onnxc[torch]')")
from onnxc import frameworks  # noqa: E402

# One worker takes them all under pytest -n: torch's exporter warms up once (~5 s).
pytestmark = pytest.mark.xdist_group("torch")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _exporters() -> list:
    """Both exporters; the default (dynamo) one only where onnxscript is installed."""
    try:
        import onnxscript  # noqa: F401
        dynamo = pytest.param("dynamo")
    except ImportError:
        dynamo = pytest.param("dynamo", marks=pytest.mark.skip(
            reason="torch's dynamo exporter needs onnxscript (pip install 'onnxc[torch]')"))
    return [dynamo, "torchscript"]


class _Classifier(torch.nn.Module):
    """Conv + BatchNorm + ReLU + Dropout + Linear: eval-mode semantics matter here."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.drop = torch.nn.Dropout(0.5)
        self.fc = torch.nn.Linear(8 * 6 * 6, 5)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h = self.drop(torch.relu(self.bn(self.conv(image))))
        return self.fc(torch.flatten(h, 1))


def _trained_classifier() -> _Classifier:
    torch.manual_seed(0)
    module = _Classifier()
    with torch.no_grad():  # non-trivial running statistics, so eval mode is visible
        module.bn.running_mean.uniform_(-0.5, 0.5)
        module.bn.running_var.uniform_(0.5, 2.0)
    return module


@pytest.mark.parametrize("exporter", _exporters())
def test_module_compiles_and_matches_torch(exporter: str) -> None:
    module = _trained_classifier()  # left in training mode on purpose
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    proto = frameworks.torch_to_onnx(module, (torch.from_numpy(x),), exporter=exporter)
    assert module.training, "the module's mode is restored after export"
    session = onnxc.compile(proto)
    assert [i.name for i in session.get_inputs()] == ["image"]  # forward's parameter name
    (ours,) = session.run(None, {"image": x})
    module.eval()
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("exporter", _exporters())
def test_rnn_module_matches_torch(exporter: str) -> None:
    torch.manual_seed(2)
    rnn = torch.nn.RNN(5, 3, nonlinearity="tanh", batch_first=True).eval()
    x = np.random.default_rng(2).standard_normal((4, 6, 5)).astype(np.float32)
    proto = frameworks.torch_to_onnx(rnn, (x,), input_names=["seq"], exporter=exporter)
    ops = {n.op_type for n in proto.graph.node}
    # The TorchScript exporter keeps the ONNX RNN op; dynamo unrolls it into plain ops.
    assert ("RNN" in ops) == (exporter == "torchscript")
    outputs = onnxc.compile(proto).run(None, {"seq": x})
    with torch.no_grad():
        expected = [t.numpy() for t in rnn(torch.from_numpy(x))]
    for ours, theirs in zip(outputs, expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


class _Recurrent(torch.nn.Module):
    """A torch RNN/LSTM/GRU fed initial states, returning every output it has."""

    def __init__(self, kind: str, **kwargs):
        super().__init__()
        self.kind = kind
        self.rnn = getattr(torch.nn, kind)(6, 5, **kwargs)

    def forward(self, x, h0, c0):
        if self.kind == "LSTM":
            y, (h, c) = self.rnn(x, (h0, c0))
            return y, h, c
        y, h = self.rnn(x, h0)
        return y, h


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("layers,bidirectional,batch_first", [(1, True, False), (2, True, True)])
def test_torch_recurrent_layers_match_onnxruntime_and_torch(kind, layers, bidirectional,
                                                            batch_first) -> None:
    """torch.onnx.export writes nn.RNN/LSTM/GRU as the ONNX RNN/LSTM/GRU ops (plus the
    Transposes/Reshapes around them for layers, directions and batch_first)."""
    import onnxruntime as ort

    torch.manual_seed(4)
    module = _Recurrent(kind, num_layers=layers, bidirectional=bidirectional,
                        batch_first=batch_first).eval()
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 7, 6) if batch_first else (7, 3, 6)).astype(np.float32)
    state = rng.standard_normal((layers * (2 if bidirectional else 1), 3, 5)).astype(np.float32)
    feeds = {"x": x, "h0": state, "c0": state * 0.5}
    proto = frameworks.torch_to_onnx(module, tuple(feeds.values()), exporter="torchscript",
                                     input_names=list(feeds))
    assert kind in {n.op_type for n in proto.graph.node}
    names = {i.name for i in proto.graph.input}
    feeds = {k: v for k, v in feeds.items() if k in names}  # GRU/RNN do not read c0
    ours = onnxc.compile(proto).run(None, feeds)
    theirs = ort.InferenceSession(proto.SerializeToString(),
                                  providers=["CPUExecutionProvider"]).run(None, feeds)
    with torch.no_grad():
        reference = module(*(torch.from_numpy(feeds.get(k, state)) for k in ("x", "h0", "c0")))
    for got, want, truth in zip(ours, theirs, reference):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got, truth.numpy(), rtol=1e-5, atol=1e-6)


def test_compile_takes_a_module_and_example_inputs() -> None:
    torch.manual_seed(3)
    module = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU())
    x = torch.randn(3, 16)
    session = onnxc.compile(module, example_inputs=(x,))
    name = session.get_inputs()[0].name
    (ours,) = session.run(None, {name: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(ours, module(x).numpy(), rtol=1e-5, atol=1e-6)
    kernels = session.describe()["kernels"]
    assert len(kernels) == 1 and "Relu" in kernels[0]["ops"]  # one fused kernel


def test_module_without_example_inputs_says_what_to_pass() -> None:
    with pytest.raises(onnxc.OnnxcError, match="example_inputs"):
        onnxc.compile(torch.nn.ReLU())


def test_example_inputs_with_an_onnx_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(onnxc.OnnxcError, match="torch.nn.Module"):
        onnxc.compile(str(tmp_path / "m.onnx"), example_inputs=(np.zeros(3),))


def test_unknown_exporter_is_refused() -> None:
    with pytest.raises(onnxc.OnnxcError, match="unknown exporter"):
        frameworks.torch_to_onnx(torch.nn.ReLU(), torch.zeros(2), exporter="tf2onnx")


class _Broken(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this model cannot be traced")


def test_failed_export_names_the_module_and_the_way_out() -> None:
    with pytest.raises(onnxc.ModelError) as info:
        frameworks.torch_to_onnx(_Broken(), torch.zeros(2), exporter="torchscript")
    message = str(info.value)
    assert "_Broken" in message and "cannot be traced" in message
    assert "exporter='dynamo'" in message and len(message.splitlines()) == 1


class _Branchy(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: torch.export refuses it
            return x * 2
        return x - 1


def test_dynamo_failure_points_at_the_other_exporter_and_its_caveat() -> None:
    pytest.importorskip("onnxscript", reason="torch's dynamo exporter needs onnxscript")
    with pytest.raises(onnxc.ModelError) as info:
        frameworks.torch_to_onnx(_Branchy(), torch.ones(3), exporter="dynamo")
    message = str(info.value)
    assert "_Branchy" in message and "exporter='torchscript'" in message
    assert "data-dependent branches" in message and len(message.splitlines()) == 1


def test_other_models_never_import_torch() -> None:
    code = ("import sys, onnxc; from onnxc import frameworks; "
            "assert not frameworks.is_torch_module(object()); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- the lecture's examples ------------------------------------------------------------------
def _example(name: str) -> dict:
    return runpy.run_path(str(EXAMPLES / name), run_name="example")


@pytest.mark.parametrize("name", ["simple_rnn.py", "relu_dense.py"])
def test_lecture_example_with_torch(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _example(name)["main"]([]) == 0  # asserts onnxc matches torch itself
    assert "max |onnxc - framework|" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["simple_rnn.py", "relu_dense.py"])
def test_lecture_example_with_keras(name: str, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "torch")  # Keras 3 without TensorFlow
    pytest.importorskip("keras", reason="the Keras route needs keras (pip install "
                                        "'onnxc[keras]')")
    pytest.importorskip("onnxscript", reason="Keras's torch export needs onnxscript")
    module = _example(name)
    inputs = np.random.default_rng(0)
    if name == "simple_rnn.py":
        module["with_keras"](inputs.random((32, 10, 8)).astype(np.float32))
    else:
        module["with_keras"](inputs.random((1, 784), dtype=np.float32),
                             inputs.uniform(-1, 1, (784, 100)).astype(np.float32))
    assert "Keras" in capsys.readouterr().out
