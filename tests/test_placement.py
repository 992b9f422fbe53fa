"""Placement over several devices: the device model, the placement and partition passes, and
placed sessions (local executor, pipelining, data parallelism, cpu + cuda-sim), each checked
against numpy and onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc
from onnxc import Device
from onnxc.ir.errors import CompileError
from onnxc.passes.placement import place
from onnxc.runtime.build import CompileOptions, optimize_graph
from onnxc.runtime.devices import CUDA_FLOPS, CUDA_LINK, resolve
from models import mlp, mlp_reference

ort = pytest.importorskip("onnxruntime")

SIZES = (64, 128, 128, 128, 16)  # weights: 32 KB, 64 KB, 64 KB, 8 KB (+ biases)
SEED = 5


def cpus(n: int, memory: float | None = None) -> list[Device]:
    return [Device("cpu", k, memory_bytes=memory) for k in range(n)]


def x_of(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, SIZES[0])).astype(np.float32)


def assert_close(got, want, rel=1e-4):
    scale = float(np.max(np.abs(want)))
    np.testing.assert_allclose(got, want, rtol=0, atol=rel * scale + 1e-6)


def ort_run(model, feeds):
    return ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)


def two_branches(seed: int = 1) -> onnx.ModelProto:
    """y = relu(x @ w1) + sigmoid(x @ w2): two independent branches joined by an Add."""
    rng = np.random.default_rng(seed)
    w1, w2 = (rng.standard_normal((32, 32)).astype(np.float32) * 0.2 for _ in range(2))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a0"], name="mm_a"),
             helper.make_node("Relu", ["a0"], ["a"], name="relu_a"),
             helper.make_node("MatMul", ["x", "w2"], ["b0"], name="mm_b"),
             helper.make_node("Sigmoid", ["b0"], ["b"], name="sig_b"),
             helper.make_node("Add", ["a", "b"], ["y"], name="join")]
    graph = helper.make_graph(
        nodes, "branches", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 32])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# -- the device model ------------------------------------------------------------------------
def test_devices_parse_and_resolve_from_the_hardware():
    assert Device("cuda:1") == Device("cuda", 1)
    assert Device.parse("cuda-sim:0").name == "cuda-sim:0" and Device("cpu").index == 0
    assert Device("cuda:1").target == "cuda"
    for bad in ("tpu:0", "cuda:x", 3):
        with pytest.raises(onnxc.OnnxcError):
            Device.parse(bad)
    with pytest.raises(onnxc.OnnxcError, match="memory_bytes"):
        Device("cpu", 0, memory_bytes=0)
    cpu = resolve("cpu:0")
    assert cpu.resolved and cpu.memory_bytes > 2**28 and cpu.flops > 1e8
    capped = resolve(Device("cpu:2", memory_bytes=40e6, flops=1e9))
    assert (capped.memory_bytes, capped.flops) == (40_000_000, 1e9)  # given figures are kept
    sim = resolve("cuda-sim:0")  # it stands in for a GPU: nominal GPU figures, host memory
    assert (sim.flops, sim.link_bandwidth) == (CUDA_FLOPS, CUDA_LINK)
    assert sim.memory_bytes == cpu.memory_bytes


# -- memory, pins, support, cost ---------------------------------------------------------------
def test_memory_caps_split_the_model_and_outputs_match():
    model = mlp(8, SIZES, SEED)
    sess = onnxc.compile(model, devices=cpus(4, memory=100_000))
    parts = sess.describe()["partitions"]
    assert len(parts) >= 2
    for p in parts:
        assert p["memory_needed_bytes"] <= p["memory_bytes"], p
        assert p["weight_bytes"] + p["peak_activation_bytes"] <= p["memory_bytes"], p
        assert p["nodes"] and p["estimated_time_s"] > 0 and "weights" in p["why"]
    placed = [n for p in parts for n in p["nodes"]]
    assert sorted(placed) == sorted(n.name for n in model.graph.node)
    x = x_of(8)
    (got,) = sess.run(None, {"x": x})
    assert_close(got, mlp_reference(x, SIZES, SEED))
    assert_close(got, ort_run(model, {"x": x})[0])
    assert "Transfer{src=cpu:0, dst=cpu:1}" in sess.ir_text()  # transfers are IR nodes


def test_without_memory_pressure_one_device_takes_everything():
    sess = onnxc.compile(mlp(2, SIZES, SEED), devices=cpus(3))
    assert [p["device"] for p in sess.describe()["partitions"]] == ["cpu:0"]
    assert sess.describe()["transfers"] == []


def test_pins_are_obeyed_and_explained():
    sess = onnxc.compile(mlp(4, SIZES, SEED), devices=cpus(3),
                         placement={"matmul1": "cpu:2", "relu3": "cpu:1"})
    where = {n: p["device"] for p in sess.describe()["partitions"] for n in p["nodes"]}
    assert where["matmul1"] == where["add1"] == "cpu:2"  # fused with its pinned MatMul
    assert where["relu3"] == "cpu:1"
    assert "pinned to cpu:2" in sess.explain("matmul1")
    assert "not cpu:0: pinned to cpu:2" in sess.explain("matmul1")
    x = x_of(4, seed=3)
    assert_close(sess.run(None, {"x": x})[0], mlp_reference(x, SIZES, SEED))
    with pytest.raises(CompileError, match="unknown node"):
        onnxc.compile(mlp(4, SIZES, SEED), devices=cpus(2), placement={"nope": "cpu:0"})
    with pytest.raises(CompileError, match="not one of the devices"):
        onnxc.compile(mlp(4, SIZES, SEED), devices=cpus(2), placement={"add0": "cpu:7"})


def test_ops_a_device_cannot_run_go_elsewhere_and_say_why():
    devices = [Device("cpu:0", unsupported_ops={"Fused"}), Device("cpu:1", flops=1e6)]
    sess = onnxc.compile(mlp(4, SIZES, SEED), devices=devices)
    parts = sess.describe()["partitions"]
    assert {p["device"] for p in parts} == {"cpu:1"}  # every MLP layer is a fused kernel
    assert "cpu:0 is configured not to run Fused" in sess.explain("matmul0")
    # The backend protocol: what ``supports`` refuses goes elsewhere, with its reason.
    graph = optimize_graph(mlp(4, SIZES, SEED), None, CompileOptions())
    refuse = lambda node, dev: "no Fused here" if dev.index == 0 and node.op == "Fused" \
        else None  # noqa: E731
    result = place(graph, [resolve("cpu:0"), resolve("cpu:1")], supports=refuse)
    assert set(result.assignment.values()) == {"cpu:1"}
    assert "not cpu:0: no Fused here" in result.explain("relu2")
    with pytest.raises(CompileError, match="none of the devices"):
        place(graph, [resolve("cpu:0")], supports=refuse)


def test_cost_moves_work_to_the_faster_device():
    devices = [Device("cpu:0", flops=1e8), Device("cpu:1", flops=1e11)]
    sess = onnxc.compile(mlp(64, SIZES, SEED), devices=devices, placement={"matmul0": "cpu:0"})
    where = sess.describe()["placement"]
    assert list(where.values()).count("cpu:1") == len(where) - 1
    assert "least estimated time" in sess.explain("matmul0")


def test_throughput_objective_balances_the_stages():
    model = mlp(64, SIZES, SEED)
    fast = onnxc.compile(model, devices=cpus(3), objective="time")
    piped = onnxc.compile(model, devices=cpus(3), objective="throughput")
    slowest = lambda s: max(p["estimated_compute_s"]  # noqa: E731
                            for p in s.describe()["partitions"])
    assert len(fast.stages) == 1 and len(piped.stages) >= 2
    assert slowest(piped) < slowest(fast)
    assert "slowest partition" in piped.explain("matmul0")
    x = x_of(64, seed=9)
    assert_close(piped.run(None, {"x": x})[0], mlp_reference(x, SIZES, SEED))
    with pytest.raises(CompileError, match="objective"):
        onnxc.compile(model, devices=cpus(2), objective="fastest")


def test_infeasible_memory_is_a_clear_error():
    with pytest.raises(CompileError, match=r"alone needs .* MB"):
        onnxc.compile(mlp(4, SIZES, SEED), devices=cpus(3, memory=10_000))
    with pytest.raises(CompileError, match="does not fit the devices"):
        onnxc.compile(mlp(4, SIZES, SEED), devices=cpus(2, memory=90_000))
    with pytest.raises(onnxc.OnnxcError, match="either target"):
        onnxc.compile(mlp(4, SIZES, SEED), target="cuda-sim", devices=cpus(2))
    with pytest.raises(CompileError, match="static input shapes"):
        onnxc.compile(mlp("N", SIZES, SEED), devices=cpus(2))


# -- execution ---------------------------------------------------------------------------------
def test_independent_partitions_run_concurrently_and_match(monkeypatch):
    model = two_branches()
    pins = {"mm_a": "cpu:0", "relu_a": "cpu:0", "mm_b": "cpu:1", "sig_b": "cpu:1",
            "join": "cpu:0"}
    sess = onnxc.compile(model, devices=cpus(2), placement=pins, disable_passes=["fuse"])
    parts = sess.describe()["partitions"]
    assert [p["device"] for p in parts] == ["cpu:0", "cpu:1", "cpu:0"]
    assert parts[1]["depends_on"] == []  # branch b does not wait for branch a
    assert sorted(parts[2]["depends_on"]) == ["partition0", "partition1"]
    assert not sess.executor.chain
    # The two branches really overlap: each waits at a barrier the other must also reach.
    import threading

    from onnxc.runtime import partitioned

    barrier, real = threading.Barrier(2, timeout=30), partitioned.run_stage

    def meet(stage, env, threads):
        if stage.index in (0, 1):
            barrier.wait()  # BrokenBarrierError if the other branch is not running meanwhile
        real(stage, env, threads)

    monkeypatch.setattr(partitioned, "run_stage", meet)
    x = np.random.default_rng(2).standard_normal((4, 32)).astype(np.float32)
    assert_close(sess.run(None, {"x": x})[0], ort_run(model, {"x": x})[0])
    outs = sess.run_pipelined([{"x": x}, {"x": 2 * x}])
    assert_close(outs[1][0], ort_run(model, {"x": 2 * x})[0])


def test_micro_batches_pipeline_through_the_stages():
    model = mlp("N", SIZES, SEED)
    sess = onnxc.compile(model, devices=cpus(3, memory=100_000), input_shapes={"x": (8, 64)},
                         micro_batches=4)
    assert len(sess.describe()["partitions"]) >= 2
    assert sess.stages[0].executable.inputs[0].shape == (2, 64)  # compiled per micro-batch
    x = x_of(8, seed=4)
    (got,) = sess.run(None, {"x": x})
    assert got.shape == (8, 16)
    assert_close(got, mlp_reference(x, SIZES, SEED))
    with pytest.raises(onnxc.InputError):
        sess.run(None, {"x": x_of(6)})


def test_data_parallel_splits_the_batch_and_joins_results():
    model = mlp("N", SIZES, SEED)
    sess = onnxc.compile(model, devices=cpus(3), parallel="data")
    x = x_of(7, seed=6)  # 3 + 2 + 2 rows
    (got,) = sess.run(None, {"x": x})
    assert_close(got, ort_run(model, {"x": x})[0])
    assert len(sess.describe()["replicas"]) == 3
    with pytest.raises(CompileError, match="symbolic batch"):
        onnxc.compile(mlp(4, SIZES, SEED), devices=cpus(2), parallel="data")


def test_cpu_plus_cuda_sim_placement_matches_onnxruntime():
    model = mlp(256, SIZES, SEED)  # enough work that the (nominal) GPU beats the transfers
    sess = onnxc.compile(model, devices=["cpu:0", "cuda-sim:0"],
                         placement={"matmul0": "cpu:0"})
    d = sess.describe()
    devices = [p["device"] for p in d["partitions"]]
    assert devices[0] == "cpu:0" and "cuda-sim:0" in devices  # the nominal GPU is faster
    assert any(t["src"] == "cpu:0" and t["dst"] == "cuda-sim:0" for t in d["transfers"])
    assert {k["device"] for k in d["kernels"]} == {"cpu:0", "cuda-sim:0"}
    x = x_of(256, seed=8)
    assert_close(sess.run(None, {"x": x})[0], ort_run(model, {"x": x})[0])


def test_placed_graph_picture_has_one_colour_per_device():
    pytest.importorskip("graphviz")
    from onnxc.visualize_placement import device_colours, placement_graph

    sess = onnxc.compile(mlp(8, SIZES, SEED), devices=cpus(4, memory=100_000))
    dot = placement_graph(sess).source
    parts = sess.describe()["partitions"]
    assert dot.count("subgraph cluster_") == len(parts)
    colours = device_colours([f"cpu:{k}" for k in range(4)])
    assert len(set(colours.values())) == 4
    for p in parts:
        assert f"fillcolor=\"{colours[p['device']]}\"" in dot
        assert f"{p['name']} on {p['device']}" in dot
    assert "Transfer cpu:0" in dot


def test_inspect_devices_draws_and_describes_the_placement(tmp_path, capsys):
    pytest.importorskip("graphviz")
    import json

    from onnxc.cli import main

    path = tmp_path / "mlp.onnx"
    onnx.save(mlp(8, SIZES, SEED), str(path))
    devices = "cpu:0=100KB,cpu:1=0.1MB,cpu:2=100000"
    assert main(["-q", "inspect", str(path), "--devices", devices, "--format", "json"]) == 0
    parts = json.loads(capsys.readouterr().out)["partitions"]
    assert len(parts) >= 2 and all(p["memory_bytes"] == 100_000 for p in parts)
    assert main(["-q", "inspect", str(path), "--devices", devices, "--format", "dot"]) == 0
    assert "subgraph cluster_" in capsys.readouterr().out
    assert main(["-q", "inspect", str(path), "--devices", "cpu:0=1XB"]) == 2
