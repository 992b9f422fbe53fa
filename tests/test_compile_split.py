"""The split compile (backends/cpu/split.py, parallel.py, objects.py): a plan cut into several
LLVM modules, compiled in threads and loaded as several object files, computes what the one
module does (checked against onnx's reference evaluator), saves and loads as an artifact, and
a damaged multi-object blob is refused; the compile-time hints (no-unroll loops, optnone entry
points, the team's shared claim-and-wait function) keep results right."""
from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import onnxc
from onnxc.backends.cpu import objects, split
from onnxc.ir.errors import ArtifactError, CompileError


def _net(seed: int = 0) -> onnx.ModelProto:
    """Conv (packed GEMM, vector epilogue) -> Relu -> a bfloat16 round trip (narrow-float
    helpers and their tables, which every part needs) -> a second Conv with a residual
    Add -> MatMul: kernels enough for several parts."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.3
    b1 = rng.standard_normal(16).astype(np.float32)
    w2 = rng.standard_normal((16, 16, 1, 1)).astype(np.float32) * 0.3
    m = rng.standard_normal((9, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Cast", ["r1"], ["h"], to=TensorProto.BFLOAT16),
        helper.make_node("Cast", ["h"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["f", "w2"], ["c2"]),
        helper.make_node("Add", ["c2", "r1"], ["s"]),
        helper.make_node("MatMul", ["s", "m"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "split",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 7, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 7, 5])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"),
                                                     (m, "m"))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture()
def split_small(monkeypatch):
    """Split even this small model, into as many parts as it has kernels, uncached."""
    monkeypatch.setattr(split, "MIN_PART_INSTRUCTIONS", 1)
    monkeypatch.setenv("ONNXC_COMPILE_JOBS", "8")
    monkeypatch.setenv("ONNXC_CACHE", "0")


def _feeds():
    return {"x": np.random.default_rng(1).standard_normal((1, 3, 7, 9)).astype(np.float32)}


@pytest.mark.parametrize("threads", [1, 2])
def test_split_compile_matches_the_reference(split_small, tmp_path, threads) -> None:
    model = _net()
    want = ReferenceEvaluator(model).run(None, _feeds())[0]
    session = onnxc.compile(model, num_threads=threads)
    assert session.llvm_ir().count("; ModuleID") >= 3  # really split
    np.testing.assert_allclose(session.run(None, _feeds())[0], want, rtol=1e-4, atol=1e-4)
    path = tmp_path / "m.onnxc"
    session.save(str(path))
    loaded = onnxc.load(str(path), num_threads=threads)
    np.testing.assert_allclose(loaded.run(None, _feeds())[0], want, rtol=1e-4, atol=1e-4)


def test_one_job_keeps_one_module(monkeypatch) -> None:
    monkeypatch.setattr(split, "MIN_PART_INSTRUCTIONS", 1)
    monkeypatch.setenv("ONNXC_COMPILE_JOBS", "1")
    monkeypatch.setenv("ONNXC_CACHE", "0")
    model = _net()
    session = onnxc.compile(model)
    assert session.llvm_ir().count("; ModuleID") == 1
    want = ReferenceEvaluator(model).run(None, _feeds())[0]
    np.testing.assert_allclose(session.run(None, _feeds())[0], want, rtol=1e-4, atol=1e-4)


def test_concurrent_split_compiles(split_small) -> None:
    """Two sessions compiling in threads at once, each with its own compile threads."""
    want = {s: ReferenceEvaluator(_net(s)).run(None, _feeds())[0] for s in (0, 1)}
    got, errors = {}, []

    def work(seed):
        try:
            got[seed] = onnxc.compile(_net(seed)).run(None, _feeds())[0]
        except Exception as exc:  # reported below
            errors.append(exc)
    workers = [threading.Thread(target=work, args=(s,)) for s in (0, 1)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert not errors
    for s in (0, 1):
        np.testing.assert_allclose(got[s], want[s], rtol=1e-4, atol=1e-4)


def test_bad_compile_jobs_setting(monkeypatch) -> None:
    monkeypatch.setenv("ONNXC_COMPILE_JOBS", "two")
    monkeypatch.setenv("ONNXC_CACHE", "0")
    with pytest.raises(CompileError, match="ONNXC_COMPILE_JOBS"):
        onnxc.compile(_net())


def test_object_blob_round_trip_and_damage() -> None:
    assert objects.unpack_objects(b"\x7fELF single") == [b"\x7fELF single"]
    assert objects.pack_objects([b"\x7fELF one"]) == b"\x7fELF one"
    parts = [b"\x7fELF a" * 3, b"\x7fELF bb", b"\x7fELF c" * 7]
    blob = objects.pack_objects(parts)
    assert objects.unpack_objects(blob) == parts
    for damaged in (blob[:-1], blob + b"x", blob[:len(objects._MAGIC) + 2]):
        with pytest.raises(ArtifactError, match="damaged"):
            objects.unpack_objects(damaged)


def test_damaged_multi_object_artifact_is_refused(split_small, tmp_path) -> None:
    from onnxc.backends.cpu import load_code
    code = onnxc.compile(_net())._executables  # noqa: SLF001 - the compiled executable
    exe = next(iter(code.values()))
    assert exe.object_code.startswith(objects._MAGIC)
    with pytest.raises(ArtifactError):
        load_code(exe.object_code[:-10], exe.target, exe.needs_openmp)


@pytest.mark.parametrize("threads", [1, 2])
def test_compile_time_hints(threads) -> None:
    """Epilogue loops carry the no-unroll hint; the entry points (straight-line call lists)
    are not optimized; the result still matches the reference."""
    model = _net()
    session = onnxc.compile(model, num_threads=threads)
    ir_text = session.llvm_ir()
    assert "llvm.loop.unroll.disable" in ir_text
    main = next(line for line in ir_text.splitlines() if line.startswith("define")
                and '@"onnxc_main"' in line)
    assert "optnone" in main
    want = ReferenceEvaluator(model).run(None, _feeds())[0]
    np.testing.assert_allclose(session.run(None, _feeds())[0], want, rtol=1e-4, atol=1e-4)
