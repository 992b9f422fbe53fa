"""The lecture's recurrent layer, keras.layers.SimpleRNN, compiled with onnxc and checked.

The lecture runs::

    inputs = np.random.random([32, 10, 8]).astype(np.float32)
    simple_rnn = tf.keras.layers.SimpleRNN(4, return_sequences=True, return_state=True)
    whole_sequence_output, final_state = simple_rnn(inputs)   # [32, 10, 4] and [32, 4]

that is h_t = tanh(W x_t + U h_(t-1) + b) over 10 time steps. Here the same layer is built in
PyTorch (nn.RNN with tanh), handed to ``onnxc.compile`` as a module with example inputs, and
onnxc's outputs are compared with PyTorch's own. With ``--keras`` the Keras layer itself goes
the same way: Keras 3 on its torch backend exports it with ``model.export(..., format="onnx")``
(on the TensorFlow backend that call uses tf2onnx; see docs/frameworks.md).

    pip install 'onnxc[torch]'          # or 'onnxc[keras]' for --keras
    python examples/simple_rnn.py [--keras]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

import onnxc

BATCH, STEPS, FEATURES, UNITS = 32, 10, 8, 4


def with_torch(inputs: np.ndarray) -> float:
    """nn.RNN(tanh) in PyTorch -> onnxc; returns the largest difference from PyTorch."""
    import torch

    class SimpleRNN(torch.nn.Module):
        """keras.layers.SimpleRNN(UNITS, return_sequences=True, return_state=True)."""

        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.RNN(FEATURES, UNITS, nonlinearity="tanh", batch_first=True)

        def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            whole_sequence_output, final_state = self.rnn(inputs)
            return whole_sequence_output, final_state[0]

    torch.manual_seed(0)
    module = SimpleRNN().eval()
    session = onnxc.compile(module, example_inputs=(torch.from_numpy(inputs),))
    ours = session.run(None, {"inputs": inputs})
    with torch.no_grad():
        theirs = [t.numpy() for t in module(torch.from_numpy(inputs))]
    return _report("PyTorch nn.RNN", session, ours, theirs)


def with_keras(inputs: np.ndarray) -> float:
    """keras.layers.SimpleRNN -> ONNX (model.export) -> onnxc; the difference from Keras."""
    os.environ.setdefault("KERAS_BACKEND", "torch")  # must be set before keras is imported
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((STEPS, FEATURES), batch_size=BATCH)
    whole_sequence_output, final_state = keras.layers.SimpleRNN(
        UNITS, return_sequences=True, return_state=True)(x)
    model = keras.Model(x, [whole_sequence_output, final_state])
    theirs = [keras.ops.convert_to_numpy(t) for t in model(inputs)]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Keras internals
        path = Path(tmp) / "simple_rnn.onnx"
        model.export(str(path), format="onnx", verbose=False)
        session = onnxc.compile(str(path), input_shapes={_input_name(path): inputs.shape})
        ours = session.run(None, {_input_name(path): inputs})
    return _report(f"Keras {keras.__version__} SimpleRNN ({keras.backend.backend()} backend)",
                   session, ours, theirs)


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path)).graph.input[0].name


def _report(what: str, session: onnxc.Session, ours: list, theirs: list) -> float:
    kernels = session.describe()["kernels"]
    print(f"{what}: {len(kernels)} onnxc kernels")
    for k in kernels[:4]:
        print(f"  {k['name']}: {' + '.join(k['ops'])}")
    if len(kernels) > 4:
        print(f"  ... and {len(kernels) - 4} more")
    for name, a, b in zip(("whole_sequence_output", "final_state"), ours, theirs):
        print(f"  {name}: shape {list(a.shape)}, first row {np.round(a.reshape(-1, UNITS)[0], 4)}")
    error = max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs))
    print(f"  max |onnxc - framework| = {error:.2e}")
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-4, atol=1e-5)
    return error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keras", action="store_true", help="also compile the Keras layer")
    args = parser.parse_args(argv)
    inputs = np.random.default_rng(0).random((BATCH, STEPS, FEATURES)).astype(np.float32)
    with_torch(inputs)
    if args.keras:
        with_keras(inputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
