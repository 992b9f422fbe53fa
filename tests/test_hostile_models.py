"""Hostile and broken models: each gets the right onnxc.OnnxcError subclass naming the node and
the problem, never a crash, a hang, a deep traceback or a huge allocation.

(Feeds, malformed files and the basic external-data cases are in test_errors.py; artifact
damage in test_artifact.py.)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc

vi = helper.make_tensor_value_info
X = vi("x", TensorProto.FLOAT, [2, 3])
Y = vi("y", TensorProto.FLOAT, [2, 3])
ANY = vi("y", TensorProto.FLOAT, None)


def model(nodes, inputs=(X,), outputs=(Y,), inits=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "hostile", list(inputs), list(outputs), list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def node(op, ins, outs, name, **attrs) -> onnx.NodeProto:
    return helper.make_node(op, ins, outs, name=name, **attrs)


def raw_tensor(name: str, dims, *, raw: bytes | None = None, floats=None) -> onnx.TensorProto:
    """A float TensorProto built by hand, so its data may disagree with its shape."""
    t = TensorProto()
    t.name, t.data_type = name, TensorProto.FLOAT
    t.dims.extend(dims)
    if raw is not None:
        t.raw_data = raw
    if floats is not None:
        t.float_data.extend(floats)
    return t


def const(array, name: str) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def refuses(m, cls=onnxc.ModelError, *needles, **kwargs) -> str:
    with pytest.raises(cls) as info:
        onnxc.compile(m, **kwargs)
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    return message


# -- the file and its header --------------------------------------------------------------------
def test_model_without_graph() -> None:
    proto = onnx.ModelProto()
    proto.opset_import.add().version = 17
    refuses(proto, onnxc.ModelError, "no graph")
    refuses(proto.SerializeToString(), onnxc.ModelError)


def test_unknown_op_and_domain_are_listed_together() -> None:
    m = model([node("Relu", ["x"], ["a"], "fine"),
               helper.make_node("Frob", ["a"], ["b"], name="custom", domain="com.example"),
               node("NotAnOp", ["b"], ["y"], "unknown")])
    message = refuses(m, onnxc.UnsupportedOpError, "custom", "com.example", "unknown", "NotAnOp")
    assert "fine" not in message


def test_opset_newer_than_supported() -> None:
    refuses(model([node("Relu", ["x"], ["y"], "r")], opset=999), onnxc.ModelError, "opset 999")


# -- graph structure ----------------------------------------------------------------------------
def test_cycle_names_its_nodes() -> None:
    m = model([node("Add", ["x", "b"], ["a"], "loop_add"), node("Relu", ["a"], ["b"], "loop_relu"),
               node("Relu", ["a"], ["y"], "out")])
    refuses(m, onnxc.ModelError, "cycle", "loop_add", "loop_relu")


def test_self_loop_is_a_cycle() -> None:
    refuses(model([node("Relu", ["y"], ["y"], "selfie")]), onnxc.ModelError, "cycle", "selfie")


def test_dangling_input_names_node_and_value() -> None:
    m = model([node("Add", ["x", "ghost"], ["y"], "adder")])
    refuses(m, onnxc.ModelError, "adder", "'ghost'", "not produced")


def test_unsorted_graph_is_sorted_like_onnxruntime() -> None:
    m = model([node("Neg", ["a"], ["y"], "second"), node("Relu", ["x"], ["a"], "first")])
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_array_equal(onnxc.compile(m).run(None, {"x": x})[0], -np.maximum(x, 0))


@pytest.mark.parametrize("nodes,inits,needle", [
    ([node("Relu", ["x"], ["y"], "n1"), node("Neg", ["x"], ["y"], "n2")], [], "node 'n1'"),
    ([node("Relu", ["x"], ["x"], "n1"), node("Neg", ["x"], ["y"], "n2")], [], "graph input"),
    ([node("Relu", ["x"], ["y"], "n1")], [const(np.ones((2, 3), np.float32), "y")],
     "initializer"),
], ids=["two-producers", "shadows-input", "shadows-initializer"])
def test_value_produced_twice(nodes, inits, needle) -> None:
    refuses(model(nodes, inits=inits), onnxc.ModelError, "produced twice", needle)


def test_duplicate_initializer_and_graph_input() -> None:
    w = const(np.ones((2, 3), np.float32), "w")
    refuses(model([node("Add", ["x", "w"], ["y"], "a")], inits=[w, w]), onnxc.ModelError,
            "'w'", "twice")
    refuses(model([node("Relu", ["x"], ["y"], "r")], inputs=[X, X]), onnxc.ModelError,
            "'x'", "twice")


def test_graph_output_nobody_produces() -> None:
    refuses(model([node("Relu", ["x"], ["z"], "r")]), onnxc.ModelError, "'y'")


def _nested_if_bytes(depth: int) -> bytes:
    """A model whose If nodes nest ``depth`` graphs deep, encoded by hand (onnx.helper itself
    refuses to build it)."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    def field(number: int, payload: bytes) -> bytes:
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    graph = field(2, b"leaf")
    for k in range(depth):
        attr = field(1, b"then_branch") + varint(20 << 3) + varint(5) + field(6, graph)
        graph = field(1, field(1, b"c") + field(2, b"y") + field(3, b"if%d" % k) +
                      field(4, b"If") + field(5, attr)) + field(2, b"g%d" % k)
    return varint(1 << 3) + varint(8) + field(7, graph) + field(8, varint(2 << 3) + varint(17))


def test_deeply_nested_subgraphs() -> None:
    refuses(_nested_if_bytes(1000), onnxc.ModelError, "not a valid ONNX model")
    proto = onnx.ModelProto()  # in memory, protobuf's depth limit does not apply
    proto.opset_import.add().version = 17
    graph = proto.graph
    for k in range(3000):
        n = graph.node.add()
        n.op_type, n.name = "If", f"if{k}"
        n.input.append("c")
        n.output.append("y")
        attr = n.attribute.add()
        attr.name, attr.type = "then_branch", onnx.AttributeProto.GRAPH
        graph = attr.g
    refuses(proto, onnxc.OnnxcError, "if0")


# -- tensors and shapes -------------------------------------------------------------------------
@pytest.mark.parametrize("tensor,needle", [
    (raw_tensor("w", [2, 3], raw=b"\0" * 8), "8 bytes"),
    (raw_tensor("w", [2, 3], floats=[1.0, 2.0]), "cannot be read"),
    (raw_tensor("w", [2, -3]), "negative"),
    (raw_tensor("w", [1 << 40, 1 << 40]), "overflow int64"),
], ids=["short-raw", "short-typed", "negative-dim", "overflow"])
def test_bad_initializer(tensor, needle) -> None:
    refuses(model([node("Add", ["x", "w"], ["y"], "add")], inits=[tensor]), onnxc.ModelError,
            "'w'", needle)


def test_bad_input_dims() -> None:
    relu = [node("Relu", ["x"], ["y"], "r")]
    refuses(model(relu, inputs=[vi("x", TensorProto.FLOAT, [2, -3])]), onnxc.ModelError,
            "'x'", "negative")
    refuses(model(relu, inputs=[vi("x", TensorProto.FLOAT, [1 << 40, 1 << 40])]),
            onnxc.ModelError, "'x'", "overflow int64")


@pytest.mark.parametrize("op,shape,needle", [
    ("Tile", [1 << 40, 1 << 40], "overflow int64"),
    ("ConstantOfShape", [1 << 62, 4], "overflow int64"),
    ("ConstantOfShape", [1 << 20, 1 << 20], "memory limit"),
    ("Expand", [1 << 20, 1 << 14, 2, 3], "memory limit"),
    ("Reshape", [-2, -3], "shape"),
], ids=["tile-overflow", "constant-overflow", "constant-budget", "expand-budget", "reshape"])
def test_shape_inputs_that_explode(op, shape, needle) -> None:
    s = const(np.array(shape, np.int64), "s")
    ins = ["s"] if op == "ConstantOfShape" else ["x", "s"]
    refuses(model([node(op, ins, ["y"], "boom")], outputs=[ANY], inits=[s]), onnxc.ModelError,
            "'boom'", op, needle)


def test_range_with_absurd_length() -> None:
    inits = [const(np.int64(0), "a"), const(np.int64(1 << 62), "b"), const(np.int64(1), "c")]
    refuses(model([node("Range", ["a", "b", "c"], ["y"], "rng")], outputs=[ANY], inits=inits),
            onnxc.ModelError, "'rng'", "overflow int64")


def test_memory_limit_argument_and_environment(monkeypatch) -> None:
    relu = model([node("Relu", ["x"], ["y"], "r")], inputs=[vi("x", TensorProto.FLOAT, [1024])],
                 outputs=[vi("y", TensorProto.FLOAT, [1024])])
    onnxc.compile(relu, memory_limit_bytes=4096)  # the 4 KiB output fits
    refuses(relu, onnxc.ModelError, "memory limit", "memory_limit_bytes", memory_limit_bytes=4095)
    monkeypatch.setenv("ONNXC_MEMORY_LIMIT", "1K")
    refuses(relu, onnxc.ModelError, "ONNXC_MEMORY_LIMIT")
    onnxc.compile(relu, memory_limit_bytes=1 << 20)  # the argument wins over the variable
    monkeypatch.setenv("ONNXC_MEMORY_LIMIT", "lots")
    refuses(relu, onnxc.ModelError, "not a byte count")


def test_memory_limit_applies_to_run_time_specializations() -> None:
    relu = model([node("Relu", ["x"], ["y"], "r")], inputs=[vi("x", TensorProto.FLOAT, ["n"])],
                 outputs=[vi("y", TensorProto.FLOAT, ["n"])])
    sess = onnxc.compile(relu, memory_limit_bytes=4096)
    with pytest.raises(onnxc.ModelError, match="memory limit"):
        sess.run(None, {"x": np.ones(2048, np.float32)})
    x = np.array([-1, 2], np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], [0, 2])  # still usable


# -- op-level checks ----------------------------------------------------------------------------
def test_conv_channel_mismatch_names_the_node() -> None:
    w = const(np.ones((4, 5, 3, 3), np.float32), "w")
    refuses(model([node("Conv", ["x", "w"], ["y"], "conv1")],
                  inputs=[vi("x", TensorProto.FLOAT, [1, 3, 8, 8])], outputs=[ANY], inits=[w]),
            onnxc.ModelError, "'conv1'", "3 channels")


def test_matmul_and_broadcast_mismatch_name_the_node() -> None:
    w = const(np.ones((4, 5), np.float32), "w")
    refuses(model([node("MatMul", ["x", "w"], ["y"], "mm")], outputs=[ANY], inits=[w]),
            onnxc.ModelError, "'mm'", "inner dimensions")
    refuses(model([node("Add", ["x", "w"], ["y"], "plus")], outputs=[ANY], inits=[w]),
            onnxc.ModelError, "'plus'", "broadcast")


def test_constant_gather_indices_out_of_range() -> None:
    idx = const(np.array([0, 3], np.int64), "i")
    refuses(model([node("Gather", ["x", "i"], ["y"], "gat", axis=1)], outputs=[ANY],
                  inits=[idx]), onnxc.ModelError, "'gat'", "[-3, 2]")


@pytest.fixture(scope="module")
def gather_sessions():
    data = vi("x", TensorProto.FLOAT, [2, 3])
    g = onnxc.compile(model([node("Gather", ["x", "i"], ["y"], "emb", axis=1)],
                            inputs=[data, vi("i", TensorProto.INT64, [4])], outputs=[ANY]))
    ge = onnxc.compile(model([node("GatherElements", ["x", "i"], ["y"], "ge", axis=1)],
                             inputs=[data, vi("i", TensorProto.INT64, [2, 2])], outputs=[ANY]))
    return g, ge


def test_fed_gather_indices_follow_onnx_negative_rule(gather_sessions) -> None:
    g, ge = gather_sessions
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for idx in ([0, 1, 2, -1], [-3, -2, -1, 0]):
        i = np.array(idx, np.int64)
        np.testing.assert_array_equal(g.run(None, {"x": x, "i": i})[0], np.take(x, i, axis=1))
    i = np.array([[-1, 0], [2, -3]], np.int64)
    np.testing.assert_array_equal(ge.run(None, {"x": x, "i": i})[0],
                                  np.take_along_axis(x, i, axis=1))


@pytest.mark.parametrize("bad", [3, -4, 1 << 40, -(1 << 62)])
def test_fed_gather_indices_out_of_range_are_input_errors(gather_sessions, bad) -> None:
    g, ge = gather_sessions
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(onnxc.InputError) as info:
        g.run(None, {"x": x, "i": np.array([0, bad, 1, 2], np.int64)})
    message = str(info.value)
    assert "'i'" in message and "'emb'" in message and str(bad) in message and "[-3, 2]" in message
    with pytest.raises(onnxc.InputError, match="'ge'"):
        ge.run(None, {"x": x, "i": np.array([[0, 0], [bad, 0]], np.int64)})
    # the session stays usable
    assert g.run(None, {"x": x, "i": np.zeros(4, np.int64)})[0].shape == (2, 4)


def test_gather_index_check_survives_an_artifact(gather_sessions, tmp_path: Path) -> None:
    g, _ = gather_sessions
    g.save(tmp_path / "g.onnxc")
    loaded = onnxc.load(tmp_path / "g.onnxc")
    with pytest.raises(onnxc.InputError, match="'emb'"):
        loaded.run(None, {"x": np.zeros((2, 3), np.float32), "i": np.array([0, 9, 0, 0])})


# -- external data ------------------------------------------------------------------------------
def _external(location: str, offset: str = "0", length: str | None = "16") -> onnx.ModelProto:
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        if value is not None:
            entry = w.external_data.add()
            entry.key, entry.value = key, value
    return model([node("Add", ["x", "w"], ["y"], "add")], inputs=[vi("x", TensorProto.FLOAT, [4])],
                 outputs=[vi("y", TensorProto.FLOAT, [4])], inits=[w])


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    """tmp/secret.bin (off limits) and tmp/m/ holding w.bin, symlinks and a fifo."""
    weights = np.arange(4, dtype=np.float32).tobytes()
    (tmp_path / "secret.bin").write_bytes(weights)
    folder = tmp_path / "m"
    (folder / "sub").mkdir(parents=True)
    (folder / "w.bin").write_bytes(weights)
    (folder / "sub" / "w.bin").write_bytes(weights)
    os.symlink(tmp_path / "secret.bin", folder / "link.bin")
    os.symlink(tmp_path, folder / "up")
    os.symlink("/dev/zero", folder / "zero")
    os.symlink(folder / "w.bin", folder / "inside_link.bin")
    os.mkfifo(folder / "fifo")
    return folder


def _compile_in(folder: Path, m: onnx.ModelProto):
    path = folder / "model.onnx"
    onnx.save(m, str(path))
    return onnxc.compile(str(path))


@pytest.mark.parametrize("location", ["w.bin", "sub/w.bin", "inside_link.bin"])
def test_external_data_inside_the_folder(model_dir: Path, location: str) -> None:
    sess = _compile_in(model_dir, _external(location))
    np.testing.assert_array_equal(sess.run(None, {"x": np.ones(4, np.float32)})[0], [1, 2, 3, 4])


@pytest.mark.parametrize("location,needle", [
    ("../secret.bin", "not a relative path"), ("sub/../../secret.bin", "not a relative path"),
    ("/etc/passwd", "not a relative path"), ("link.bin", "outside"), ("up/secret.bin", "outside"),
    ("zero", "outside"), ("fifo", "not a regular file"), ("sub", "not a regular file"),
    ("w\0.bin", "not a relative path"), ("nope.bin", "missing"), ("", "not a relative path"),
])
def test_external_data_escapes_are_refused(model_dir: Path, location: str, needle: str) -> None:
    with pytest.raises(onnxc.ModelError, match=needle) as info:
        _compile_in(model_dir, _external(location))
    assert "'w'" in str(info.value)


@pytest.mark.parametrize("offset,length,needle", [
    ("100", "16", "outside"), ("8", "16", "outside"), ("-1", "16", "outside"),
    ("0", "-1", "outside"), ("0", str(1 << 62), "outside"), (str(1 << 70), "4", "outside"),
    ("abc", "16", "malformed"), ("8", None, "8 bytes"),
])
def test_external_data_ranges_past_the_file_are_refused(model_dir: Path, offset, length,
                                                        needle) -> None:
    with pytest.raises(onnxc.ModelError, match=needle):
        _compile_in(model_dir, _external("w.bin", offset, length))


def test_external_data_needs_a_path(model_dir: Path) -> None:
    m = _external("w.bin")
    for source in (m, m.SerializeToString()):
        with pytest.raises(onnxc.ModelError, match="from a path"):
            onnxc.compile(source)


# -- artifacts ----------------------------------------------------------------------------------
def _rewrite_manifest(src: Path, dst: Path, edit) -> None:
    """A copy of an artifact whose manifest was edited by a forger (checksums still match:
    they guard against damage, the manifest's values are checked on their own)."""
    import json
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "manifest.json":
                manifest = json.loads(data)
                edit(manifest)
                data = json.dumps(manifest).encode()
            zout.writestr(item.filename, data)


@pytest.mark.parametrize("edit,needle", [
    (lambda m: m["executables"][0].update(arena_bytes=1 << 60), "working memory"),
    (lambda m: m["executables"][0].update(arena_bytes="lots"), "working memory"),
    (lambda m: m["executables"][0].update(index_checks=[[7, 3, "g", "Gather"]]), "index check"),
    (lambda m: m.update(version=999), "version"),
    (lambda m: m.update(format="pickle"), "not an onnxc artifact"),
], ids=["huge-arena", "arena-not-int", "bad-index-check", "version", "format"])
def test_forged_artifact_manifest_is_refused(gather_sessions, tmp_path: Path, edit,
                                             needle) -> None:
    g, _ = gather_sessions
    g.save(tmp_path / "good.onnxc")
    _rewrite_manifest(tmp_path / "good.onnxc", tmp_path / "bad.onnxc", edit)
    with pytest.raises(onnxc.ArtifactError, match=needle):
        onnxc.load(tmp_path / "bad.onnxc")


# -- big graphs ---------------------------------------------------------------------------------
BIG = int(os.environ.get("ONNXC_BIG_GRAPH_NODES", "10000"))


def test_big_chain_with_a_shared_constant_compiles_and_runs() -> None:
    """BIG nodes (10k in CI; 100k measured: see the reliability note) alternating Add of one
    shared initializer and Relu: import, fusion, planning and codegen must be linear (a
    constant read by every node once made fusion quadratic)."""
    nodes, x = [], "x"
    for k in range(BIG):
        op_inputs = [x, "w"] if k % 2 == 0 else [x]
        nodes.append(node("Add" if k % 2 == 0 else "Relu", op_inputs, [f"v{k}"], f"n{k}"))
        x = f"v{k}"
    w = np.full((4, 8), 1e-3, np.float32)
    m = model(nodes, inputs=[vi("x", TensorProto.FLOAT, [4, 8])],
              outputs=[vi(x, TensorProto.FLOAT, [4, 8])], inits=[const(w, "w")], opset=13)
    sess = onnxc.compile(m)
    xs = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    want = xs
    for k in range(BIG):
        want = want + w if k % 2 == 0 else np.maximum(want, 0)
    np.testing.assert_allclose(sess.run(None, {"x": xs})[0], want, rtol=1e-5, atol=1e-5)
    assert len(sess.describe()["kernels"]) <= BIG // 20  # fused, in bounded groups


def test_pickled_constant_in_an_artifact_is_refused(tmp_path: Path) -> None:
    """Nothing is unpickled: an object-dtype .npy (a pickle) with a valid checksum is refused."""
    import hashlib
    import io
    import json
    import zipfile

    w = const(np.ones((2, 3), np.float32), "w")
    onnxc.compile(model([node("Add", ["x", "w"], ["y"], "add")], inits=[w])).save(
        tmp_path / "good.onnxc")
    buf = io.BytesIO()
    np.save(buf, np.array([{"boom": 1}], dtype=object), allow_pickle=True)
    evil = buf.getvalue()
    with zipfile.ZipFile(tmp_path / "good.onnxc") as zin, \
            zipfile.ZipFile(tmp_path / "evil.onnxc", "w") as zout:
        manifest = json.loads(zin.read("manifest.json"))
        name = "exe0/const0.npy"
        assert name in manifest["checksums"]
        manifest["checksums"][name] = hashlib.sha256(evil).hexdigest()
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == name:
                data = evil
            elif item.filename == "manifest.json":
                data = json.dumps(manifest).encode()
            zout.writestr(item.filename, data)
    with pytest.raises(onnxc.ArtifactError, match="pickle"):
        onnxc.load(tmp_path / "evil.onnxc")
