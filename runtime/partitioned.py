"""Running a placed model: partitions on their devices, with the transfers between them.

Each partition is an ``Executable`` compiled for its device's target. The local executor runs
a partition as soon as the partitions it reads from are done, on a thread pool, so independent
partitions run concurrently (native runs release the GIL: ``Executable.run`` is one ctypes
call). ``run_pipelined`` streams micro-batches through the partitions: one thread per
partition, each taking micro-batches in order, so partition k works on micro-batch m while
partition k+1 works on m-1 (model parallelism). ``executor="ray"`` runs the same partitions as
Ray actors (runtime/ray_executor.py).
"""
from __future__ import annotations

import concurrent.futures
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from onnxc.ir.devices import Device
from onnxc.ir.errors import InputError, OnnxcError
from onnxc.runtime.build import CompileOptions
from onnxc.runtime.executable import Executable
from onnxc.runtime.plan import TensorSpec
from onnxc.runtime.session import Session


@dataclass
class Stage:
    """One partition, ready to run: its executable and how it connects to the others."""

    index: int
    name: str
    device: Device
    executable: Executable
    inputs: list[str]  # tensor names, in the executable's input order
    outputs: list[str]  # tensor names, in the executable's output order
    transfers: list[tuple[str, str]]  # (tensor on its source device, its copy here)
    deps: list[int]  # stages whose outputs this one reads
    info: dict = field(default_factory=dict)  # describe() entry

    def artifact_bytes(self, num_threads: int | None = None) -> bytes:
        """This partition as an artifact file's bytes (what a Ray actor loads)."""
        import os
        import tempfile

        from onnxc.runtime.artifact import save_artifact

        exe = self.executable
        session = Session(list(exe.inputs), list(exe.outputs),
                          CompileOptions(target=self.device.target), model=None,
                          executables={tuple(tuple(s.shape) for s in exe.inputs): exe},
                          num_threads=num_threads)
        fd, path = tempfile.mkstemp(suffix=".onnxc")
        os.close(fd)
        try:
            save_artifact(path, session)
            with open(path, "rb") as f:
                return f.read()
        finally:
            os.unlink(path)


def move(array: np.ndarray, device: Device) -> np.ndarray:
    """The transfer to ``device``: a copy into its memory. CUDA partitions copy their inputs
    to the GPU themselves, so a host copy would be wasted there."""
    return np.array(array, copy=True) if device.kind == "cpu" else array


def run_stage(stage: Stage, env: dict[str, np.ndarray], num_threads: int) -> None:
    """Do the stage's transfers, run it, and put its outputs in ``env``."""
    for src, dst in stage.transfers:
        env[dst] = move(env[src], stage.device)
    outs = stage.executable.run([env[n] for n in stage.inputs], num_threads)
    env.update(zip(stage.outputs, outs))


class LocalExecutor:
    """Partitions in this process, each on a worker thread."""

    def __init__(self, stages: list[Stage], num_threads: int):
        self.stages = stages
        self.num_threads = num_threads
        self.chain = all(s.deps in ([], [s.index - 1]) for s in stages)

    def run(self, env: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.chain:  # nothing can overlap within one run
            for stage in self.stages:
                run_stage(stage, env, self.num_threads)
            return env
        with concurrent.futures.ThreadPoolExecutor(len(self.stages)) as pool:
            futures: list[concurrent.futures.Future] = []
            for stage in self.stages:  # in topological order: a task waits only on earlier ones
                deps = [futures[d] for d in stage.deps]
                futures.append(pool.submit(self._after, deps, stage, env))
            for f in futures:
                f.result()
        return env

    def _after(self, deps, stage: Stage, env) -> None:
        for d in deps:
            d.result()
        run_stage(stage, env, self.num_threads)

    def run_pipelined(self, envs: list[dict]) -> list[dict]:
        done = [[threading.Event() for _ in envs] for _ in self.stages]
        errors: list[BaseException] = []

        def worker(stage: Stage) -> None:
            for m, env in enumerate(envs):
                for d in stage.deps:
                    done[d][m].wait()
                if not errors:
                    try:
                        run_stage(stage, env, self.num_threads)
                    except BaseException as exc:  # re-raised in the caller
                        errors.append(exc)
                done[stage.index][m].set()

        threads = [threading.Thread(target=worker, args=(s,), name=f"onnxc-{s.name}",
                                    daemon=True) for s in self.stages]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return envs

    def close(self) -> None:
        pass


class PartitionedSession(Session):
    """A Session over partitions placed on several devices (``onnxc.compile(devices=...)``).

    ``run`` has the usual call shape. With ``micro_batches=k`` at compile time, ``run`` splits
    the batch (axis 0 of every input) into k micro-batches and pipelines them.
    """

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 options: CompileOptions, *, stages: list[Stage], graph, placement,
                 graph_inputs: list[str], graph_outputs: list[str], executor: str = "local",
                 micro_batches: int = 1, num_threads: int | None = None,
                 executor_options: Mapping[str, Any] | None = None):
        super().__init__(inputs, outputs, options, model=None, num_threads=num_threads,
                         graph=graph)
        self.stages = stages
        self.placement = placement
        self.micro_batches = micro_batches
        self._graph_inputs = graph_inputs  # tensor names of the model's inputs, in order
        self._graph_outputs = graph_outputs  # tensor names of the model's outputs, in order
        self._executor_name = executor
        self._executor_options = dict(executor_options or {})
        self._executor = None

    # -- executors ---------------------------------------------------------------------------
    @property
    def executor(self):
        if self._executor is None:
            if self._executor_name == "ray":
                from onnxc.runtime.ray_executor import RayExecutor

                self._executor = RayExecutor(self.stages, self.num_threads,
                                             self._graph_outputs, **self._executor_options)
            else:
                self._executor = LocalExecutor(self.stages, self.num_threads)
        return self._executor

    def set_executor(self, executor: str, **options) -> None:
        """Switch between "local" and "ray" without compiling again."""
        if executor not in ("local", "ray"):
            raise OnnxcError(f"unknown executor {executor!r}; use 'local' or 'ray'")
        self.close()
        self._executor_name, self._executor_options = executor, options

    def close(self) -> None:
        """Release the executor's workers (Ray actors)."""
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    # -- running -----------------------------------------------------------------------------
    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any],
            run_options: Any = None) -> list[np.ndarray]:
        feeds = self._validate(input_feed)
        k = self.micro_batches
        if k > 1:
            batch = feeds[0].shape[0] if feeds and feeds[0].ndim else 0
            if any(f.ndim == 0 or f.shape[0] != batch for f in feeds) or batch % k:
                raise InputError(f"micro_batches={k} splits axis 0 of every input into equal "
                                 f"parts; got shapes {[list(f.shape) for f in feeds]}")
            parts = [np.split(f, k) for f in feeds]
            outs = self._run_many([[p[m] for p in parts] for m in range(k)])
            return self._select(output_names, [np.concatenate([o[n] for o in outs])
                                               for n in range(len(self._graph_outputs))])
        return self._select(output_names, self._run_many([feeds])[0])

    def run_pipelined(self, feeds_list: Sequence[Mapping[str, Any]],
                      output_names: Sequence[str] | None = None) -> list[list[np.ndarray]]:
        """Run many feeds (micro-batches, or independent requests) through the partitions as
        a pipeline; returns each one's outputs, in order."""
        outs = self._run_many([self._validate(f) for f in feeds_list])
        return [self._select(output_names, o) for o in outs]

    def _run_many(self, feeds_list: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        envs = [dict(zip(self._graph_inputs, feeds)) for feeds in feeds_list]
        if len(envs) == 1:
            envs = [self.executor.run(envs[0])]
        else:
            envs = self.executor.run_pipelined(envs)
        return [[env[n] for n in self._graph_outputs] for env in envs]

    def profile(self, input_feed):
        raise OnnxcError("profile() runs one executable; profile a placed model's partitions "
                         "with session.stages[k].executable.profile(...)")

    def profile_trace(self, input_feed, runs: int = 1):
        self.profile(input_feed)

    # -- introspection -----------------------------------------------------------------------
    def describe(self) -> dict:
        """The usual summary plus ``partitions`` (device, nodes, weight_bytes, peak activation
        bytes, estimated time, why), ``transfers`` and the per-node ``placement``."""
        kernels = [{"name": k.name, "symbol": k.symbol, "nodes": k.nodes, "ops": k.ops,
                    "device": s.device.name, "partition": s.name}
                   for s in self.stages for k in s.executable.kernels]
        transfers = [t for s in self.stages for t in s.info.get("transfers", [])]
        return {
            "target": self._options.target,
            "opt_level": self._options.opt_level,
            "num_threads": self.num_threads,
            "executor": self._executor_name,
            "micro_batches": self.micro_batches,
            "inputs": [{"name": i.name, "shape": i.shape, "type": i.type}
                       for i in self.get_inputs()],
            "outputs": [{"name": o.name, "shape": o.shape, "type": o.type}
                        for o in self.get_outputs()],
            "devices": [{"name": d.name, "memory_bytes": d.memory_bytes, "flops": d.flops,
                         "link_bandwidth": d.link_bandwidth} for d in self.placement.devices],
            "partitions": [{k: v for k, v in s.info.items() if k != "transfers"}
                           for s in self.stages],
            "transfers": transfers,
            "placement": dict(self.placement.assignment),
            "estimated_time_s": self.placement.estimated_time_s,
            "kernels": kernels,
            "weight_bytes": sum(s.executable.weight_bytes for s in self.stages),
            "peak_working_memory_bytes": max(s.executable.arena_bytes for s in self.stages),
            "timings": dict(self._options.timings),
        }

    def explain(self, node_name: str) -> str:
        """Why the placer put ``node_name`` (an ONNX or IR node name) where it did."""
        try:
            return self.placement.explain(node_name)
        except KeyError as exc:
            raise OnnxcError(str(exc.args[0])) from None

    def llvm_ir(self) -> str:
        return "\n".join(s.executable.llvm_ir for s in self.stages)

    def save(self, path) -> None:
        raise OnnxcError("saving a placed model as one artifact is not supported yet; save "
                         "each partition with session.stages[k].artifact_bytes()")

    @property
    def executables(self) -> dict[tuple, Executable]:
        return {(s.name,): s.executable for s in self.stages}
