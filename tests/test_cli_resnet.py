"""Every CLI tool on onnx's light_resnet50 (53 convolutions): compile, inspect, run --profile,
bench, and the errors a wrong feed gives.

ResNet-50 compiles once, for real, through ``onnxc compile``. The commands that take the
``.onnx`` file and would compile it again (``inspect --after-passes``, ``bench --compare``)
get that artifact from ``onnxc.compile`` instead, so the module costs one compile; the
model-to-compile path itself is covered on small models in test_cli*.py.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxc
from models import LIGHT_DIR
from onnxc.cli import main

RESNET = os.path.join(LIGHT_DIR, "light_resnet50.onnx")
INPUT = "gpu_0/data_0"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("resnet50-cli")]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resnet") / "resnet50.onnxc"
    assert main(["-q", "compile", RESNET, "-o", str(path)]) == 0
    return path


@pytest.fixture
def compiled_once(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``onnxc.compile`` of light_resnet50 answered with the artifact compiled above."""
    calls: list[str] = []

    def compile_(model: str, **options: object) -> onnxc.Session:
        assert os.path.samefile(model, RESNET), model
        calls.append(model)
        return onnxc.load(str(artifact), num_threads=options.get("num_threads"))

    monkeypatch.setattr(onnxc, "compile", compile_)
    return calls


def _compute_nodes() -> int:
    model = onnx.load(RESNET, load_external_data=False)
    return sum(n.op_type != "ConstantOfShape" for n in model.graph.node)


def test_compile_fuses_resnet50(artifact: Path) -> None:
    kernels = onnxc.load(str(artifact)).describe()["kernels"]
    # Conv+BN+Relu(+Sum) became one kernel; a Winograd conv (passes/winograd.py) is four
    # kernels (pad, input transform, product, output transform + epilogue) of one ONNX Conv.
    groups = {k["nodes"][0] for k in kernels}
    assert 0 < len(groups) < _compute_nodes() / 2
    assert len({k["nodes"][0] for k in kernels if "Conv" in k["ops"]}) == 53


@pytest.mark.skipif(shutil.which("dot") is None,
                    reason="svg needs Graphviz's dot program (apt-get install graphviz)")
def test_inspect_draws_every_kernel_readably(tmp_path: Path, artifact: Path) -> None:
    pytest.importorskip("graphviz", reason="drawing needs the graphviz package")
    svg = tmp_path / "resnet50.svg"
    assert main(["-q", "inspect", str(artifact), "-o", str(svg)]) == 0
    root = ET.parse(svg).getroot()
    ns = {"svg": "http://www.w3.org/2000/svg"}
    boxes = [g for g in root.iterfind(".//svg:g[@class='node']", ns)
             if g.findtext("svg:title", namespaces=ns, default="").startswith("k")]
    kernels = onnxc.load(str(artifact)).describe()["kernels"]
    assert len(boxes) == len(kernels)
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "Conv + BatchNormalization + Relu" in texts and "1\u00d72048\u00d77\u00d77" in texts
    assert texts.count("cpu:0") == len(kernels) + 1  # each box and the legend
    # Readable: one column of boxes, not a 50-wide sprawl that shrinks the text to nothing.
    width_pt = float(re.match(r"[\d.]+", root.get("width")).group())
    assert width_pt < 1200, f"{width_pt} pt wide"


def test_inspect_after_passes_of_the_model(compiled_once: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("graphviz", reason="drawing needs the graphviz package")
    assert main(["-q", "inspect", RESNET, "--after-passes", "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    assert compiled_once and "kernels" in dot and "Conv + BatchNormalization + Sum + Relu" in dot


def test_inspect_before_passes_shows_the_imported_nodes(
        capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("graphviz", reason="drawing needs the graphviz package")
    assert main(["-q", "inspect", RESNET, "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.count("<B>Conv</B>") == 53 and "IR nodes" in dot


def test_run_profile_traces_every_kernel(tmp_path: Path, artifact: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    trace_path = tmp_path / "trace.json"
    assert main(["-q", "run", str(artifact), "--random-inputs", "--profile",
                 str(trace_path)]) == 0
    out = capsys.readouterr().out
    trace = json.loads(trace_path.read_text())
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    kernels = onnxc.load(str(artifact)).describe()["kernels"]
    assert [e["name"] for e in events] == [k["name"] for k in kernels]
    assert all(e["cat"] == e["args"]["device"] == "cpu:0" for e in events)
    assert all(e["dur"] >= 0 and e["args"]["bytes"] > 0 for e in events)
    assert "gpu_0/softmax_1: shape=[1, 1000]" in out
    table = out[out.index("ops (fused)"):]
    assert "Conv+BatchNormalization+Relu" in table and "\ntotal" in table


def test_bench_reports_percentiles_and_throughput(artifact: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "bench", str(artifact), "--runs", "2", "--warmup", "0",
                 "--batch", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{INPUT} [1, 3, 224, 224] float32; 1 threads, 2 runs" in out
    row = next(line for line in out.splitlines() if line.startswith("onnxc "))
    numbers = [float(v) for v in row.split()[1:]]
    assert len(numbers) == 7 and all(v > 0 for v in numbers)


def test_bench_compares_with_onnxruntime(compiled_once: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    assert main(["-q", "bench", RESNET, "--compare", "onnxruntime", "--runs", "2",
                 "--warmup", "0", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("onnxruntime ") for line in out.splitlines())
    difference = float(re.search(r"max \|output difference\|: (\S+)", out).group(1))
    assert difference < 1e-4


def test_a_wrong_feed_names_the_input(tmp_path: Path, artifact: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    feed = tmp_path / "x.npy"
    np.save(feed, np.zeros((1, 3, 224, 224), np.float32))
    assert main(["-q", "run", str(artifact), "--input", f"image={feed}"]) == 2
    err = capsys.readouterr().err
    assert "unknown input name(s) ['image']" in err and repr(INPUT) in err
    np.save(feed, np.zeros((1, 3, 200, 200), np.float32))
    assert main(["-q", "run", str(artifact), "--input", f"{INPUT}={feed}"]) == 2
    err = capsys.readouterr().err
    assert f"input {INPUT!r} expects shape [1, 3, 224, 224], got [1, 3, 200, 200]" in err
