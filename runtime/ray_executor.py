"""Partitions and replicas as Ray actors, for when one machine is not enough.

Each actor loads one artifact (a partition, or a whole-model replica) from bytes put into Ray's
object store, and runs it with the ordinary Session. Tensors move between actors through the
object store: a partition's outputs are object refs that the next partition's call takes as
arguments, so Ray ships them to wherever that actor lives. Calls to one actor run in the order
they are submitted, so submitting every micro-batch before waiting pipelines them.

Ray is optional (``pip install 'onnxc[distributed]'``). Connect to a cluster with
``ray.init(address="auto")`` (or ``"ray://head:10001"``) before the first run; without that, the
first run starts a local Ray instance.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np

from onnxc.ir.errors import OnnxcError


def import_ray(init_options: Mapping[str, Any] | None = None):
    """The ``ray`` module, initialized (locally unless ray.init was called already)."""
    try:
        import ray
    except ImportError:
        raise OnnxcError("executor='ray' needs Ray: pip install 'onnxc[distributed]'") from None
    if not ray.is_initialized():
        ray.init(**dict(init_options or {}))
    return ray


class SessionActor:
    """A Ray actor holding one loaded artifact (partition or replica)."""

    def __init__(self, artifact: bytes, num_threads: int | None):
        from onnxc.runtime.artifact import load_artifact

        fd, path = tempfile.mkstemp(suffix=".onnxc")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(artifact)
            self.session = load_artifact(path, num_threads=num_threads)
        finally:
            os.unlink(path)
        self.names = [i.name for i in self.session.get_inputs()]

    def run(self, *arrays):
        outs = self.session.run(None, dict(zip(self.names, arrays)))
        return outs[0] if len(outs) == 1 else tuple(outs)

    def where(self) -> dict:
        import socket

        return {"host": socket.gethostname(), "pid": os.getpid()}


def _actor_options(device, options: Mapping[str, Any] | None) -> dict:
    """Per-actor Ray options: a GPU for cuda devices, then the user's (all devices, or keyed
    by device name)."""
    out: dict = {"num_gpus": 1} if device.kind == "cuda" else {}
    options = dict(options or {})
    if device.name in options and isinstance(options[device.name], Mapping):
        out.update(options[device.name])
    else:
        out.update({k: v for k, v in options.items() if not isinstance(v, Mapping)})
    return out


class RayExecutor:
    """The partitions of a placed model as Ray actors, one per partition."""

    def __init__(self, stages, num_threads: int, outputs: Sequence[str],
                 actor_options: Mapping[str, Any] | None = None,
                 init_options: Mapping[str, Any] | None = None):
        self.ray = ray = import_ray(init_options)
        self.stages = stages
        self.outputs = list(outputs)
        actor = ray.remote(SessionActor)
        self.actors = [actor.options(**_actor_options(s.device, actor_options))
                       .remote(ray.put(s.artifact_bytes(num_threads)), num_threads)
                       for s in stages]

    def _submit(self, env: dict) -> dict:
        refs = {name: self.ray.put(array) for name, array in env.items()}
        for stage, actor in zip(self.stages, self.actors):
            for src, dst in stage.transfers:  # the object store moves it to the actor
                refs[dst] = refs[src]
            n = len(stage.outputs)
            out = actor.run.options(num_returns=n).remote(*[refs[i] for i in stage.inputs])
            refs.update(zip(stage.outputs, [out] if n == 1 else out))
        return refs

    def run(self, env: dict) -> dict:
        return self.run_pipelined([env])[0]

    def run_pipelined(self, envs: list[dict]) -> list[dict]:
        submitted = [self._submit(env) for env in envs]  # all in flight before any wait
        for env, refs in zip(envs, submitted):
            values = self.ray.get([refs[n] for n in self.outputs])
            env.update({n: np.array(v) for n, v in zip(self.outputs, values)})
        return envs

    def where(self) -> list[dict]:
        return self.ray.get([a.where.remote() for a in self.actors])

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []


class RayReplicas:
    """Whole-model replicas as Ray actors, one per device (data parallelism)."""

    def __init__(self, artifacts: list[bytes], devices, num_threads: int,
                 actor_options: Mapping[str, Any] | None = None,
                 init_options: Mapping[str, Any] | None = None):
        self.ray = ray = import_ray(init_options)
        actor = ray.remote(SessionActor)
        self.actors = [actor.options(**_actor_options(d, actor_options))
                       .remote(ray.put(blob), num_threads)
                       for blob, d in zip(artifacts, devices)]

    def run(self, chunks: list[list[np.ndarray]], n_outputs: int) -> list[list[np.ndarray]]:
        refs = [self.actors[k].run.options(num_returns=n_outputs).remote(*chunk)
                for k, chunk in enumerate(chunks)]
        got = self.ray.get([r for ref in refs for r in ([ref] if n_outputs == 1 else ref)])
        return [[np.array(v) for v in got[k * n_outputs:(k + 1) * n_outputs]]
                for k in range(len(chunks))]

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
