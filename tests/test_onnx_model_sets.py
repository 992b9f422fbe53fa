"""The `pytorch-converted` and `pytorch-operator` model sets shipped with onnx: old-opset
(1–9) models exported by early PyTorch, run against their reference outputs through the ONNX
backend test runner. KNOWN_FAILURES may only shrink."""
from __future__ import annotations

import onnx.backend.test

import onnxc.backend

KNOWN_FAILURES: dict[str, list[str]] = {}
SETS = ("OnnxBackendPyTorchConvertedModelTest", "OnnxBackendPyTorchOperatorModelTest")

backend_test = onnx.backend.test.BackendTest(onnxc.backend, __name__)
for patterns in KNOWN_FAILURES.values():
    for name in patterns:
        backend_test.exclude(f"^{name}$")

_cases = backend_test.test_cases  # a property that builds new classes on every access
for _case in _cases.values():
    for _name in [n for n in vars(_case) if n.startswith("test_") and n.endswith("_cuda")]:
        delattr(_case, _name)  # onnxc.backend runs on the CPU (the cuda target has its tests)
del _case  # a loop variable holding a TestCase class would be collected twice
globals().update({name: case for name, case in _cases.items() if name in SETS})
