"""Suite-wide pytest settings."""
from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Under ``pytest -n N``, keep each ``xdist_group``'s tests on one worker, so an expensive
    module fixture (a ResNet-50 compile, torch's exporter warming up) runs once, not per worker.
    Tests without the mark are spread one by one as before."""
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"


_NODE_CASES = "test_onnx_node_cases.py::OnnxBackendNodeModelTest::"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Print the ONNX node-case pass rate (the conformance figure issue 3 tracks), and the
    same without the cases that run host functions (README: host functions), i.e. the
    figure for compiled code alone."""
    passed = failed = host_passed = host_failed = 0
    for key in ("passed", "failed", "xfailed", "xpassed"):
        for report in terminalreporter.stats.get(key, []):
            if _NODE_CASES in getattr(report, "nodeid", "") and report.when == "call":
                host = ("host_function", True) in getattr(report, "user_properties", [])
                if key == "passed":
                    passed += 1
                    host_passed += host
                else:
                    failed += 1
                    host_failed += host
    if passed + failed:
        terminalreporter.write_line(
            f"ONNX node cases on cpu: {passed} of {passed + failed} pass "
            f"({100.0 * passed / (passed + failed):.1f}%)")
        compiled_passed = passed - host_passed
        compiled_total = passed + failed - host_passed - host_failed
        if compiled_total:
            terminalreporter.write_line(
                f"ONNX node cases on cpu without the {host_passed + host_failed} that run host "
                f"functions: {compiled_passed} of {compiled_total} pass "
                f"({100.0 * compiled_passed / compiled_total:.1f}%)")
    for key in ("passed", "failed"):  # test_cuda_codegen.py records the cuda-sim figure
        for report in terminalreporter.stats.get(key, []):
            for name, value in getattr(report, "user_properties", ()):
                if name == "cuda_sim_node_cases" and report.when == "call":
                    ok, total = value
                    terminalreporter.write_line(f"ONNX node cases on cuda-sim: {ok} of {total} "
                                                f"pass ({100.0 * ok / total:.1f}%)")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compiled objects go to a per-run cache directory, not the user's ~/.cache (each xdist
    worker inherits the controller's setting)."""
    import os
    import tempfile

    if "ONNXC_CACHE_DIR" not in os.environ:
        os.environ["ONNXC_CACHE_DIR"] = tempfile.mkdtemp(prefix="onnxc-test-cache-")
