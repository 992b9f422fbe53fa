"""The main job end to end: compile a bundled model to native code, run it, check the numbers.

    python examples/quickstart.py [MODEL.onnx]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from onnx.reference import ReferenceEvaluator

import onnxc

model = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "tiny_cnn.onnx"

start = time.perf_counter()
session = onnxc.compile(str(model), input_shapes={"image": (4, 3, 32, 32)}
                        if model.name == "tiny_cnn.onnx" else None)
print(f"compiled {model.name} in {time.perf_counter() - start:.2f}s")
for k in session.describe()["kernels"]:
    print(f"  kernel {k['name']}: {' + '.join(k['ops'])}")

rng = np.random.default_rng(0)
feeds = {}
for i in session.get_inputs():
    shape = [d if isinstance(d, int) else 4 for d in i.shape]
    feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
start = time.perf_counter()
outputs = session.run(None, feeds)
print(f"ran in {1000 * (time.perf_counter() - start):.2f} ms")
for o, value in zip(session.get_outputs(), outputs):
    print(f"  output {o.name}: shape {list(value.shape)}, first row {np.round(value[0][:5], 4)}")

reference = ReferenceEvaluator(str(model)).run(None, feeds)
error = max(float(np.abs(a - b).max()) for a, b in zip(outputs, reference))
print(f"max difference from onnx.reference: {error:.2e}")

with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "model.onnxc"
    session.save(path)
    again = onnxc.load(path).run(None, feeds)
    print(f"saved and reloaded the artifact ({path.stat().st_size // 1024} KiB): "
          f"{'same outputs' if all(np.array_equal(a, b) for a, b in zip(outputs, again)) else 'DIFFERENT OUTPUTS'}")
sys.exit(0 if error < 1e-4 else 1)
