"""``onnxc.compile(model, devices=[...])``: place, partition and compile per device.

Model parallelism (the default): the optimized graph is placed (passes/placement.py), cut into
partitions joined by Transfer nodes (passes/partition.py), and each partition's subgraph is
compiled for its device's target with the ordinary build path. Data parallelism
(``parallel="data"``): one replica of the whole model per device, the batch split between them
(runtime/replicas.py).
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import onnx

from onnxc.ir.devices import Device
from onnxc.ir.errors import CompileError, InputValueNeeded, OnnxcError
from onnxc.ir.verifier import verify
from onnxc.passes.partition import PartitionGraph, partitions
from onnxc.runtime.build import (CompileOptions, compile_graph, declared_inputs,
                                 optimize_graph)
from onnxc.runtime.devices import backend_support, resolve
from onnxc.runtime.partitioned import PartitionedSession, Stage
from onnxc.runtime.plan import TensorSpec, make_plan

EXECUTORS = ("local", "ray")


def compile_placed(proto: onnx.ModelProto, devices: Sequence["Device | str"], *,
                   options: CompileOptions, placement: Mapping[str, Any] | None = None,
                   executor: str = "local", micro_batches: int = 1, parallel: str = "model",
                   num_threads: int | None = None,
                   input_shapes: Mapping[str, Sequence[int]] | None = None,
                   executor_options: Mapping[str, Any] | None = None,
                   objective: str | None = None):
    """A Session running ``proto`` over ``devices`` (see ``onnxc.compile``). The placement
    minimizes the time of one run, or with ``objective="throughput"`` (the default when
    ``micro_batches > 1``) the time of the slowest partition, which bounds a pipeline."""
    if executor not in EXECUTORS:
        raise OnnxcError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    if parallel not in ("model", "data"):
        raise OnnxcError(f"parallel must be 'model' or 'data', got {parallel!r}")
    if not isinstance(micro_batches, int) or micro_batches < 1:
        raise OnnxcError(f"micro_batches must be a positive int, got {micro_batches!r}")
    if isinstance(devices, (str, Device)):
        devices = [devices]
    resolved = [resolve(d) for d in devices]
    specs = declared_inputs(proto, input_shapes)
    if parallel == "data":
        from onnxc.runtime.replicas import compile_replicas

        if placement:
            raise OnnxcError("placement pins apply to model parallelism; with parallel='data' "
                             "every device runs the whole model")
        return compile_replicas(proto, resolved, specs, options=options, executor=executor,
                                num_threads=num_threads, input_shapes=input_shapes,
                                executor_options=executor_options)
    symbolic = [s.name for s in specs if not all(isinstance(d, int) for d in s.shape)]
    if symbolic:
        raise CompileError(f"placing a model needs static input shapes; input(s) {symbolic} "
                           f"have symbolic dims: pass input_shapes={{...}}")
    shapes = {s.name: tuple(s.shape) for s in specs}
    if micro_batches > 1:
        batches = {s[0] if s else None for s in shapes.values()}
        if len(batches) != 1 or None in batches or next(iter(batches)) % micro_batches:
            raise CompileError(f"micro_batches={micro_batches} splits axis 0 of every input "
                               f"equally; the input shapes are {shapes}")
        shapes = {n: (s[0] // micro_batches,) + tuple(s[1:]) for n, s in shapes.items()}
    start = time.perf_counter()
    objective = objective or ("throughput" if micro_batches > 1 else "time")
    graph, placed = _place(proto, shapes, resolved, placement, options, objective)
    stages = _stages(graph, partitions(graph), placed, options)
    options.timings["total"] = time.perf_counter() - start
    outputs = [TensorSpec(n, tuple(v.shape), v.dtype.value)
               for v, n in zip(graph.outputs, graph.output_names)]
    if micro_batches > 1:
        outputs = [TensorSpec(o.name, (o.shape[0] * micro_batches,) + tuple(o.shape[1:]),
                              o.dtype) if o.shape else o for o in outputs]
    return PartitionedSession(specs, outputs, options, stages=stages, graph=graph,
                              placement=placed,
                              graph_inputs=[v.name for v in graph.inputs],
                              graph_outputs=[v.name for v in graph.outputs], executor=executor,
                              micro_batches=micro_batches, num_threads=num_threads,
                              executor_options=executor_options)


def _place(proto, shapes, devices: list[Device], pins, options: CompileOptions,
           objective: str):
    """Optimize, place and partition; then check each partition's real memory plan (weights,
    arena, inputs, outputs) against its device, and place again with less room on a device
    whose partition overflowed (the placer's liveness estimate cannot see arena
    fragmentation)."""
    from dataclasses import replace

    from onnxc.passes import PassManager
    from onnxc.passes.placement import PlaceNodes

    budgets = {d.name: d.memory_bytes for d in devices}
    for attempt in range(8):
        try:
            graph = optimize_graph(proto, shapes, options)
        except InputValueNeeded as need:
            raise CompileError(f"input {need.input_name!r} decides shapes; a placed model "
                               f"needs them at compile time (fold it into the model as a "
                               f"constant)") from None
        trial = [replace(d, memory_bytes=budgets[d.name]) for d in devices]
        placer = PlaceNodes(trial, pins, backend_support, objective)
        pm = PassManager([placer, PartitionGraph()], print_after=set(options.print_after))
        graph = pm.run(graph)
        verify(graph)
        options.timings.setdefault("passes", {}).update(dict(pm.timings))
        over = {}
        for part in partitions(graph):
            need = memory_needed(make_plan(part.subgraphs["body"]))
            cap = next(d.memory_bytes for d in devices if d.name == part.attrs["device"])
            if need > cap:
                over[part.attrs["device"]] = need - cap
        if not over:
            placed = placer.placement
            placed.devices = list(devices)
            for seg in placed.segments:
                seg.device = next(d for d in devices if d.name == seg.device.name)
            return graph, placed
        # Devices with the same capacity are interchangeable to the placer (the next try may
        # put the overflowing segment on a twin): tighten the twins alike.
        for name, excess in over.items():
            size = next(d.memory_bytes for d in devices if d.name == name)
            tighter = budgets[name] - excess - 64 * 1024
            for d in devices:
                if d.memory_bytes == size:
                    budgets[d.name] = min(budgets[d.name], tighter)
    raise CompileError(f"could not fit the partitions' memory plans into the devices after "
                       f"{attempt + 1} placements (overflow: {over} bytes)")


def memory_needed(plan) -> int:
    """What a partition occupies on its device: weights, arena, inputs and outputs."""
    import math

    import numpy as np

    io = sum(math.prod(s.shape) * np.dtype(s.dtype).itemsize for s in plan.inputs + plan.outputs)
    return int(sum(c.nbytes for c in plan.constants) + plan.arena_bytes + io)


def _stages(graph, parts, placement, options: CompileOptions) -> list[Stage]:
    from onnxc.passes.placement import transfer_s_per_byte

    by_name = {d.name: d for d in placement.devices}
    made_by: dict[str, int] = {}  # tensor name -> stage index
    stages = []
    for idx, part in enumerate(parts):
        body = part.subgraphs["body"]
        device = by_name[part.attrs["device"]]
        opts = CompileOptions(target=device.target, opt_level=options.opt_level,
                              use_openmp=options.use_openmp)
        start = time.perf_counter()
        exe = compile_graph(body, opts)
        if device.kind != "cuda":  # a GPU is needed only to run
            exe.load()
        options.timings[f"codegen {part.name}"] = time.perf_counter() - start
        transfers, deps, moved = [], set(), []
        for v in body.inputs:
            source = v
            if v.producer is not None and v.producer.op == "Transfer":
                source = v.producer.inputs[0]
                transfers.append((source.name, v.name))
                src_dev = by_name[v.producer.attrs["src"]]
                moved.append({"tensor": source.name, "src": src_dev.name, "dst": device.name,
                              "bytes": v.type.nbytes(),
                              "estimated_time_s": v.type.nbytes()
                              * transfer_s_per_byte(src_dev, device)})
            if source.name in made_by:
                deps.add(made_by[source.name])
        for v in body.outputs:
            made_by[v.name] = idx
        seg = placement.segments[idx]
        info = {
            "name": part.name, "device": device.name,
            "nodes": list(dict.fromkeys(o for o, _ in part.origin)),
            "ir_nodes": [n.name for n in body.nodes],
            "weight_bytes": exe.weight_bytes,
            "peak_activation_bytes": seg.activation_bytes,
            "arena_bytes": exe.arena_bytes,
            "memory_needed_bytes": memory_needed(exe),
            "memory_bytes": device.memory_bytes,
            "estimated_compute_s": seg.compute_s,
            "estimated_time_s": seg.compute_s + sum(t["estimated_time_s"] for t in moved),
            "inputs": [v.name for v in body.inputs], "outputs": [v.name for v in body.outputs],
            "depends_on": sorted(parts[d].name for d in deps),
            "why": seg.why, "transfers": moved,
        }
        stages.append(Stage(idx, part.name, device, exe, [s.name for s in exe.inputs],
                            [s.name for s in exe.outputs], transfers, sorted(deps), info))
    return stages
