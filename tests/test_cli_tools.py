"""The CLI's tools on the tiny MLP of test_cli: run --profile, inspect formats, bench, spinner."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxc
from onnxc.cli import main
from test_cli import _write_mlp


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return _write_mlp(tmp_path / "mlp.onnx")


@pytest.fixture
def artifact(tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    art = tmp_path / "mlp.onnxc"
    assert main(["-q", "compile", str(model), "-o", str(art)]) == 0
    capsys.readouterr()
    return art


@pytest.fixture
def dynamic_model(tmp_path: Path, model: Path) -> Path:
    """The MLP with a symbolic batch dimension "N"."""
    proto = onnx.load(str(model))
    for vi in (proto.graph.input[0], proto.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    path = tmp_path / "dyn.onnx"
    onnx.save(proto, str(path))
    return path


def _kernel_events(trace: dict) -> list[dict]:
    return [e for e in trace["traceEvents"] if e.get("ph") == "X"]


# -- run --profile / Session.profile_trace ---------------------------------------------------
def test_run_profile_writes_one_trace_event_per_kernel(
        tmp_path: Path, artifact: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace_path = tmp_path / "traces" / "trace.json"
    assert main(["-q", "run", str(artifact), "--random-inputs",
                 "--profile", str(trace_path)]) == 0
    out = capsys.readouterr().out
    kernels = onnxc.load(str(artifact)).describe()["kernels"]
    trace = json.loads(trace_path.read_text())
    events = _kernel_events(trace)
    assert [e["name"] for e in events] == [k["name"] for k in kernels]
    for event, kernel in zip(events, kernels):
        assert event["cat"] == kernel["device"] == "cpu:0"
        assert event["dur"] >= 0 and event["ts"] >= 0
        assert event["args"]["ops"] == kernel["ops"]
        assert event["args"]["nodes"] == kernel["nodes"]
        assert event["args"]["bytes"] > 0
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    # The terminal summary: one row per fused op pattern, and a total.
    assert "ops (fused)" in out and "MatMul+Add+Relu" in out and "100.0%" in out
    assert str(trace_path) in out


def test_profile_runs_repeats_the_events(tmp_path: Path, artifact: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    trace_path = tmp_path / "trace.json"
    assert main(["-q", "run", str(artifact), "--random-inputs", "--profile", str(trace_path),
                 "--profile-runs", "3"]) == 0
    events = _kernel_events(json.loads(trace_path.read_text()))
    assert len(events) == 3 * 2
    assert [e["args"]["run"] for e in events] == [0, 0, 1, 1, 2, 2]


def test_profile_trace_counts_the_bytes_each_kernel_moves(model: Path) -> None:
    session = onnxc.compile(str(model))
    trace = session.profile_trace({"x": np.ones((2, 4), np.float32)})
    first, second = _kernel_events(trace)
    # relu(x @ w1 + b1): reads x [2,4], w1 [4,8], b1 [8]; writes [2,8], all float32.
    assert first["args"]["bytes_read"] == 4 * (8 + 32 + 8)
    assert first["args"]["bytes_written"] == 4 * 16
    assert second["args"]["bytes_read"] == 4 * (16 + 24 + 3)
    assert trace["otherData"]["kernels"] == 2
    json.dumps(trace)  # JSON-able as it is


def test_profile_trace_of_an_old_artifact_has_no_bytes(artifact: Path) -> None:
    """Artifacts saved before kernels kept their tensors still profile, without traffic."""
    session = onnxc.load(str(artifact))
    for exe in session.executables.values():
        for kernel in exe.kernels:
            kernel.params = None
    events = _kernel_events(session.profile_trace({"x": np.ones((2, 4), np.float32)}))
    assert len(events) == 2 and all("bytes" not in e["args"] for e in events)


# -- inspect -----------------------------------------------------------------------------------
def test_inspect_json_is_the_description(artifact: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(artifact), "--format", "json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert len(described["kernels"]) == 2 and described["inputs"][0]["name"] == "x"


def test_inspect_model_text_is_the_ir_before_or_after_passes(
        model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "inspect", str(model)]) == 0
    before = capsys.readouterr().out
    assert "MatMul(" in before and "Fused" not in before
    assert main(["-q", "inspect", str(model), "--after-passes"]) == 0
    assert "Fused" in capsys.readouterr().out


def test_inspect_dot_of_an_artifact_draws_kernels_and_tensors(
        tmp_path: Path, artifact: Path) -> None:
    pytest.importorskip("graphviz")
    out = tmp_path / "kernels.dot"
    assert main(["-q", "inspect", str(artifact), "--format", "dot", "-o", str(out)]) == 0
    dot = out.read_text()
    assert dot.startswith("digraph")
    assert "MatMul + Add + Relu" in dot and "2×8" in dot and "cpu:0" in dot
    for edge in ("in0 -> k0", "k0 -> k1", "k1 -> out0"):
        assert edge in dot


def test_inspect_dot_of_a_model_before_passes_has_one_box_per_ir_node(
        model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("graphviz")
    assert main(["-q", "inspect", str(model), "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    assert "6 IR nodes" in dot and "n5 -> out0" in dot and "k0" not in dot
    assert main(["-q", "inspect", str(model), "--format", "dot", "--after-passes"]) == 0
    assert "2 kernels" in capsys.readouterr().out


def test_inspect_dot_needs_no_graphviz_program(tmp_path: Path, artifact: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("graphviz")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no `dot` program to be found
    assert main(["-q", "inspect", str(artifact), "-o", str(tmp_path / "g.gv")]) == 0
    assert (tmp_path / "g.gv").read_text().startswith("digraph")
    assert main(["-q", "inspect", str(artifact), "--format", "svg"]) == 2
    assert "apt-get install graphviz" in capsys.readouterr().err


def test_inspect_svg_and_png(tmp_path: Path, artifact: Path) -> None:
    pytest.importorskip("graphviz")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's `dot` program is not installed (apt-get install graphviz)")
    svg, png = tmp_path / "kernels.svg", tmp_path / "kernels.png"
    assert main(["-q", "inspect", str(artifact), "-o", str(svg)]) == 0  # format from suffix
    assert "<svg" in svg.read_text() and "MatMul + Add + Relu" in svg.read_text()
    assert main(["-q", "inspect", str(artifact), "--format", "png", "-o", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")


def test_inspect_symbolic_model_asks_for_shapes(dynamic_model: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "inspect", str(dynamic_model)]) == 0  # the IR imports as it is
    assert "[N, 4]" in capsys.readouterr().out
    # A symbolic batch alone compiles at the batch tile (batch tiling): that IR is shown.
    assert main(["-q", "inspect", str(dynamic_model), "--after-passes"]) == 0
    assert "[64, 4]" in capsys.readouterr().out


def test_kernel_graph_of_an_old_artifact_chains_kernels(artifact: Path) -> None:
    pytest.importorskip("graphviz")
    from onnxc.visualize import kernel_graph

    exe = next(iter(onnxc.load(str(artifact)).executables.values()))
    for kernel in exe.kernels:
        kernel.params = None
    dot = kernel_graph(exe).source
    assert "k0 -> k1 [style=dashed]" in dot


# -- bench -------------------------------------------------------------------------------------
def test_bench_prints_a_latency_table(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "bench", str(model), "--runs", "3", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("engine"))
    for column in ("mean ms", "p50 ms", "p90 ms", "p99 ms", "samples/s"):
        assert column in header
    assert any(line.startswith("onnxc ") for line in out.splitlines())
    assert "3 runs after 1 warm-up" in out


def test_bench_compares_with_onnxruntime(dynamic_model: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    assert main(["-q", "bench", str(dynamic_model), "--compare", "onnxruntime", "--batch", "5",
                 "--runs", "3", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "x [5, 4] float32; 1 threads" in out
    assert any(line.startswith("onnxruntime ") for line in out.splitlines())
    assert "onnxc / onnxruntime p50" in out and "max |output difference|" in out


def test_bench_batch_refuses_a_fixed_batch(model: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["-q", "bench", str(model), "--batch", "4", "--runs", "1"])
    assert exit_info.value.code == 2
    assert "fixed batch size of 2" in capsys.readouterr().err


def test_help_of_the_tools(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("bench", "inspect", "run"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--compare" in out and "--after-passes" in out and "--profile" in out


# -- progress ----------------------------------------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_spins_on_a_terminal_only() -> None:
    import time

    pytest.importorskip("rich", reason="the progress display needs rich (pip install "
                                       "'onnxc[cli]')")
    from onnxc.progress import spinner

    terminal, pipe = _Terminal(), io.StringIO()
    with spinner("compiling m.onnx", stream=terminal):
        time.sleep(0.3)
    with spinner("compiling m.onnx", stream=pipe):
        time.sleep(0.1)
    assert "compiling m.onnx" in terminal.getvalue()
    assert pipe.getvalue() == ""


def test_progress_bar_counts_and_logs_go_above_it() -> None:
    import logging

    pytest.importorskip("rich", reason="the progress display needs rich (pip install "
                                       "'onnxc[cli]')")
    from onnxc.progress import bar

    terminal = _Terminal()
    handler = logging.StreamHandler(terminal)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with bar("timing onnxc", total=4, stream=terminal) as advance:
            for _ in range(4):
                advance(1)
            logging.getLogger("onnxc.test").warning("a log line during the bar")
        assert handler.stream is terminal  # given back afterwards
    finally:
        root.removeHandler(handler)
    text = terminal.getvalue()
    assert "timing onnxc" in text and "4/4" in text
    assert "a log line during the bar" in text
    with bar("timing onnxc", total=4, stream=io.StringIO(), enabled=True) as advance:
        advance(1)  # no terminal: a no-op


def test_bench_shows_no_progress_when_not_on_a_terminal(
        model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(model), "--runs", "2", "--warmup", "0"]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "\033[" not in captured.err


@pytest.mark.parametrize("flag", ["-v", "--verbose", "-q", "--quiet"])
def test_every_subcommand_takes_verbose_and_quiet(flag: str) -> None:
    import argparse

    from onnxc.cli import _build_parser

    parser = _build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"compile", "run", "optimize", "inspect", "bench"} <= set(commands.choices)
    for name, sub in commands.choices.items():
        assert flag in sub._option_string_actions, f"onnxc {name} lacks {flag}"


def test_verbose_logs_each_kernel_and_quiet_logs_nothing(
        tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    import logging

    art = str(tmp_path / "m.onnxc")
    with caplog.at_level(logging.DEBUG, logger="onnxc"):
        assert main(["compile", str(model), "-o", art, "-v"]) == 0
        debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
        assert any(m.startswith("kernel 0 ") and "MatMul" in m for m in debug)
        caplog.clear()
        assert main(["compile", "-q", str(model), "-o", art]) == 0
        assert [r for r in caplog.records if r.levelno < logging.WARNING] == []
