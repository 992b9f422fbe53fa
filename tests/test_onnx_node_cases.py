"""The conformance runner: every ONNX backend node test case that ships with the onnx package.

Each case is a one-node model (or its function-expanded form) with reference inputs and
outputs, compared with the tolerances the case declares. Cases listed in
tests/known_failures.py must fail (strict xfail) — the list only shrinks — and every other case
must pass. The pass rate is printed at the end of the run (tests/conftest.py).
"""
from __future__ import annotations

import pytest
import onnx.backend.test

import onnxc.backend
from onnxc.runtime.hosted import host_nodes
from known_failures import NODE_KNOWN_FAILURES, NODE_RANDOM_EXPECTED

NODE_CLASS = "OnnxBackendNodeModelTest"

backend_test = onnx.backend.test.BackendTest(onnxc.backend, __name__)
_cases = backend_test.test_cases  # a property that builds new classes on every access
_node_case = _cases[NODE_CLASS]
_names = {n[len("test_"):-len("_cpu")] for n in vars(_node_case)
          if n.startswith("test_") and n.endswith("_cpu")}
for _name in [n for n in vars(_node_case) if n.startswith("test_") and not n.endswith("_cpu")]:
    delattr(_node_case, _name)  # onnxc.backend runs on the CPU (cuda-sim has its own test)

STALE = sorted(n for table in (NODE_KNOWN_FAILURES, NODE_RANDOM_EXPECTED)
               for names in table.values() for n in names if n not in _names)
for _table, _strict in ((NODE_KNOWN_FAILURES, True), (NODE_RANDOM_EXPECTED, False)):
    for _reason, _listed in _table.items():
        for _name in _listed:
            if _name in _names:
                _attr = f"test_{_name}_cpu"
                setattr(_node_case, _attr, pytest.mark.xfail(strict=_strict, reason=_reason)(
                    getattr(_node_case, _attr)))
globals()[NODE_CLASS] = _node_case
del _node_case  # a second name for the TestCase class would collect every case twice


def test_known_failure_list_names_real_cases() -> None:
    """A misspelled or removed name would otherwise sit in the list forever."""
    assert not STALE, f"not ONNX node cases (fix tests/known_failures.py): {STALE}"


@pytest.fixture(autouse=True)
def _note_host_functions(request, monkeypatch):
    """Tag a case whose model runs host functions (README: host functions) or whose values
    come from onnx's reference on the host, so the summary can give the pass rate of compiled
    code alone (tests/conftest.py)."""
    prepare = onnxc.backend.prepare

    def noting(model, device="CPU", **kwargs):
        # NonMaxSuppression's values come from onnx's reference (frontend/host_eval.py)
        if host_nodes(model) or any(n.op_type == "NonMaxSuppression" for n in model.graph.node):
            request.node.user_properties.append(("host_function", True))
        return prepare(model, device, **kwargs)

    monkeypatch.setattr(onnxc.backend, "prepare", noting)
