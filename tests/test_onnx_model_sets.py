"""The `pytorch-converted`, `pytorch-operator` and `simple` model sets shipped with onnx:
old-opset (1–9) models exported by early PyTorch and small hand-written models, run against
their reference outputs through the ONNX backend test runner. Known failures live in
tests/known_failures.py and may only shrink."""
from __future__ import annotations

import onnx.backend.test

import onnxc.backend

import pytest

from known_failures import MODEL_KNOWN_FAILURES

SETS = ("OnnxBackendPyTorchConvertedModelTest", "OnnxBackendPyTorchOperatorModelTest",
        "OnnxBackendSimpleModelTest")

backend_test = onnx.backend.test.BackendTest(onnxc.backend, __name__)
_cases = backend_test.test_cases  # a property that builds new classes on every access
_known = {name: reason for reason, names in MODEL_KNOWN_FAILURES.items() for name in names}
_seen: set[str] = set()
for _set in SETS:
    _case = _cases[_set]
    for _attr in [n for n in vars(_case) if n.startswith("test_")]:
        if not _attr.endswith("_cpu"):
            delattr(_case, _attr)  # onnxc.backend runs on the CPU (cuda has its own tests)
            continue
        _name = _attr[len("test_"):-len("_cpu")]
        if _name in _known:
            _seen.add(_name)
            setattr(_case, _attr, pytest.mark.xfail(strict=True, reason=_known[_name])(
                getattr(_case, _attr)))
    globals()[_set] = _case
del _case  # a second name for a TestCase class would collect its cases twice


def test_known_failure_list_names_real_models() -> None:
    assert set(_known) <= _seen, f"not models of {SETS}: {sorted(set(_known) - _seen)}"
