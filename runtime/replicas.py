"""Data parallelism: one replica of the whole model per device, the batch split between them.

The batch (axis 0 of every input) is cut into one slice per replica, the replicas run at once
(threads here, actors with ``executor="ray"``), and their outputs are joined along axis 0. A
replica is an ordinary Session for its device's target, so a new slice shape compiles once and
is cached; the model's inputs need a symbolic batch dim for that.
"""
from __future__ import annotations

import concurrent.futures
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from onnxc.ir.devices import Device
from onnxc.ir.errors import CompileError, InputError, OnnxcError
from onnxc.runtime.build import CompileOptions
from onnxc.runtime.plan import TensorSpec
from onnxc.runtime.session import Session


def compile_replicas(proto: onnx.ModelProto, devices: list[Device], specs: list[TensorSpec], *,
                     options: CompileOptions, executor: str, num_threads: int | None,
                     input_shapes: Mapping[str, Sequence[int]] | None,
                     executor_options: Mapping[str, Any] | None) -> "ReplicatedSession":
    from onnxc.runtime.build import declared_output
    from onnxc.runtime.build import declared_inputs
    from onnxc.runtime.placed import memory_needed

    symbolic = declared_inputs(proto, None)
    static = [s.name for s in symbolic if not s.shape or isinstance(s.shape[0], int)]
    if static and len(devices) > 1:
        raise CompileError(f"data parallelism splits axis 0 of every input between replicas; "
                           f"input(s) {static} have a static (or no) batch dim: export the "
                           f"model with a symbolic batch dim")
    outputs = [declared_output(vi) for vi in proto.graph.output]
    replicas = [Session(symbolic, outputs, CompileOptions(
        target=d.target, opt_level=options.opt_level,
        disabled_passes=options.disabled_passes), model=proto, num_threads=num_threads,
        batch_tiling=False)  # each replica compiles its own slice shape
        for d in devices]
    if input_shapes:  # compile the slices now, and check they fit their devices
        batch = specs[0].shape[0]
        sizes = [len(c) for c in np.array_split(np.arange(batch), len(devices))]
        for replica, device, size in zip(replicas, devices, sizes):
            if size == 0:
                continue
            feeds = {s.name: np.zeros((size,) + tuple(s.shape[1:]), s.dtype) for s in specs}
            exe = replica._executable_for(feeds)
            if memory_needed(exe) > device.memory_bytes:
                raise CompileError(f"a replica on {device.name} needs {memory_needed(exe)} "
                                   f"bytes (weights, working memory, inputs and outputs), "
                                   f"more than its {device.memory_bytes}")
    return ReplicatedSession(specs, outputs, options, replicas=replicas, devices=devices,
                             executor=executor, num_threads=num_threads,
                             executor_options=executor_options)


class ReplicatedSession(Session):
    """A Session whose runs split the batch across replicas on several devices."""

    def __init__(self, inputs, outputs, options, *, replicas: list[Session],
                 devices: list[Device], executor: str, num_threads: int | None,
                 executor_options: Mapping[str, Any] | None):
        super().__init__(inputs, outputs, options, model=None, num_threads=num_threads)
        self.replicas = replicas
        self.devices = devices
        self._executor_name = executor
        self._executor_options = dict(executor_options or {})
        self._ray = None

    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any],
            run_options: Any = None) -> list[np.ndarray]:
        feeds = self._validate(input_feed)
        batch = feeds[0].shape[0] if feeds and feeds[0].ndim else None
        if batch is None or any(f.ndim == 0 or f.shape[0] != batch for f in feeds):
            raise InputError(f"data parallelism splits axis 0 of every input; got shapes "
                             f"{[list(f.shape) for f in feeds]}")
        parts = [np.array_split(f, len(self.replicas)) for f in feeds]
        chunks = [[p[k] for p in parts] for k in range(len(self.replicas))
                  if parts[0][k].shape[0] > 0]
        names = [s.name for s in self._inputs]
        if self._executor_name == "ray":
            results = self._ray_replicas().run(chunks, len(self._outputs))
        else:
            with concurrent.futures.ThreadPoolExecutor(len(chunks)) as pool:
                results = list(pool.map(lambda rc: rc[0].run(None, dict(zip(names, rc[1]))),
                                        zip(self.replicas, chunks)))
        return self._select(output_names, [np.concatenate([r[k] for r in results])
                                            for k in range(len(results[0]))])

    def _ray_replicas(self):
        if self._ray is None:
            import os
            import tempfile

            from onnxc.runtime.ray_executor import RayReplicas

            blobs = []
            for replica in self.replicas:
                fd, path = tempfile.mkstemp(suffix=".onnxc")
                os.close(fd)
                try:
                    replica.save(path)
                    with open(path, "rb") as f:
                        blobs.append(f.read())
                finally:
                    os.unlink(path)
            self._ray = RayReplicas(blobs, self.devices, self.num_threads,
                                    **self._executor_options)
        return self._ray

    def close(self) -> None:
        if self._ray is not None:
            self._ray.close()
            self._ray = None

    def describe(self) -> dict:
        out = super().describe()
        out["parallel"] = "data"
        out["executor"] = self._executor_name
        out["replicas"] = [{"device": d.name, "specializations": r.describe()["specializations"]}
                           for d, r in zip(self.devices, self.replicas)]
        return out

    def save(self, path) -> None:
        raise OnnxcError("saving a data-parallel session is not supported; save the model's "
                         "ordinary artifact (onnxc.compile(model).save(path)) instead")
