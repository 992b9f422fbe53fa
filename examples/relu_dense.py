"""The lecture's dataflow-graph example, h = ReLU(Wx + b), compiled with onnxc and checked.

The lecture writes it in TensorFlow 1::

    b = tf.Variable(tf.zeros((100,)))
    W = tf.Variable(tf.random_uniform((784, 100), -1, 1))
    x = tf.placeholder(tf.float32, (1, 784))
    h = tf.nn.relu(tf.matmul(x, W) + b)

Here the same graph is an nn.Linear(784, 100) + ReLU in PyTorch, with W drawn from U(-1, 1)
and b = 0, handed to ``onnxc.compile`` with an example input. onnxc fuses MatMul, Add and
Relu into one kernel; its output is compared with PyTorch's. With ``--keras`` the Keras
version, keras.layers.Dense(100, activation="relu"), goes through ``model.export(...,
format="onnx")`` (Keras 3 on its torch backend; on TensorFlow that call uses tf2onnx).

    pip install 'onnxc[torch]'          # or 'onnxc[keras]' for --keras
    python examples/relu_dense.py [--keras]
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

IN, OUT = 784, 100


def with_torch(x: np.ndarray, w: np.ndarray) -> float:
    """nn.Linear + ReLU in PyTorch -> onnxc; returns the largest difference from PyTorch."""
    import torch

    class Dense(torch.nn.Module):
        """h = ReLU(Wx + b)."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(IN, OUT)
            with torch.no_grad():  # the lecture's initial values: W ~ U(-1, 1), b = 0
                self.linear.weight.copy_(torch.from_numpy(w.T))
                self.linear.bias.zero_()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.linear(x))

    module = Dense()
    session = onnxc.compile(module, example_inputs=(torch.from_numpy(x),))
    (h,) = session.run(None, {"x": x})
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    return _report("PyTorch nn.Linear + ReLU", session, h, expected)


def with_keras(x: np.ndarray, w: np.ndarray) -> float:
    """keras.layers.Dense(relu) -> ONNX (model.export) -> onnxc; the difference from Keras."""
    os.environ.setdefault("KERAS_BACKEND", "torch")  # must be set before keras is imported
    import keras

    inputs = keras.Input((IN,), batch_size=1)
    dense = keras.layers.Dense(OUT, activation="relu")
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([w, np.zeros(OUT, np.float32)])
    expected = keras.ops.convert_to_numpy(model(x))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Keras internals
        path = Path(tmp) / "relu_dense.onnx"
        model.export(str(path), format="onnx", verbose=False)
        import onnx

        name = onnx.load(str(path)).graph.input[0].name
        session = onnxc.compile(str(path), input_shapes={name: x.shape})
        (h,) = session.run(None, {name: x})
    return _report(f"Keras {keras.__version__} Dense ({keras.backend.backend()} backend)",
                   session, h, expected)


def _report(what: str, session: onnxc.Session, h: np.ndarray, expected: np.ndarray) -> float:
    kernels = session.describe()["kernels"]
    print(f"{what}: {len(kernels)} onnxc kernel(s)")
    for k in kernels:
        print(f"  {k['name']}: {' + '.join(k['ops'])}")
    error = float(np.abs(h - expected).max())
    print(f"  h: shape {list(h.shape)}, {int((h > 0).sum())} of {h.size} units active, "
          f"max |onnxc - framework| = {error:.2e}")
    np.testing.assert_allclose(h, expected, rtol=1e-4, atol=1e-4)
    return error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keras", action="store_true", help="also compile the Keras layer")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.random((1, IN), dtype=np.float32)
    w = rng.uniform(-1, 1, (IN, OUT)).astype(np.float32)
    with_torch(x, w)
    if args.keras:
        with_keras(x, w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
