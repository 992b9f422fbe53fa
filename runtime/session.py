"""Session: onnxruntime's call shape over compiled executables, one per input-shape set.

A model with symbolic dims (e.g. "batch") compiles once per distinct set of concrete input
shapes, on the first run that uses it; the specializations are cached and saved with the
artifact. A fully static model compiles once, at ``onnxc.compile``.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import onnx

from onnxc.ir import Graph
from onnxc.ir.errors import InputError, InputValueNeeded
from onnxc.runtime.build import CompileOptions, build_executable
from onnxc.runtime.executable import Executable, check_feed
from onnxc.runtime.plan import TensorSpec


@dataclass(frozen=True)
class NodeArg:
    """Like onnxruntime's NodeArg: name, shape (ints and symbolic names) and type string."""

    name: str
    shape: list
    type: str


def _ort_type(dtype: str) -> str:
    names = {"float32": "float", "float64": "double", "bool": "bool", "object": "string"}
    return f"tensor({names.get(dtype, dtype)})"


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class Session:
    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 options: CompileOptions, *, model: onnx.ModelProto | None,
                 executables: dict[tuple, Executable] | None = None,
                 num_threads: int | None = None, graph: Graph | None = None,
                 value_inputs: Iterable[str] = ()):
        self._inputs = inputs
        self._outputs = outputs
        self._options = options
        self._model = model
        self._executables: dict[tuple, Executable] = dict(executables or {})
        self._lock = threading.Lock()
        self._graph = graph
        self._value_inputs: set[str] = set(value_inputs)  # compiled per run-time value
        self.num_threads = int(num_threads or default_threads())
        if self.num_threads < 1:
            raise ValueError("num_threads must be >= 1")

    # -- onnxruntime-style queries ---------------------------------------------------------
    def get_inputs(self) -> list[NodeArg]:
        return [NodeArg(s.name, list(s.shape), _ort_type(s.dtype)) for s in self._inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [NodeArg(s.name, list(s.shape), _ort_type(s.dtype)) for s in self._outputs]

    # -- running ---------------------------------------------------------------------------
    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any],
            run_options: Any = None) -> list[np.ndarray]:
        """Run the model; ``output_names=None`` returns every output, in model order."""
        feeds = dict(zip((s.name for s in self._inputs), self._validate(input_feed)))
        exe = self._executable_for(feeds)
        return self._select(output_names,
                            exe.run([feeds[s.name] for s in exe.inputs], self.num_threads))

    def _select(self, output_names: Sequence[str] | None,
                outs: list[np.ndarray]) -> list[np.ndarray]:
        """The outputs asked for, by name (all of them, in model order, for None)."""
        if output_names is None:
            return outs
        index = {s.name: k for k, s in enumerate(self._outputs)}
        unknown = [n for n in output_names if n not in index]
        if unknown:
            raise InputError(f"unknown output name(s) {unknown}; the model's outputs are "
                             f"{list(index)}")
        return [outs[index[n]] for n in output_names]

    def profile(self, input_feed: Mapping[str, Any]) -> list[tuple[str, float]]:
        """Per-kernel wall times (seconds) of one run, in execution order."""
        feeds = dict(zip((s.name for s in self._inputs), self._validate(input_feed)))
        exe = self._executable_for(feeds)
        return exe.profile([feeds[s.name] for s in exe.inputs], self.num_threads)

    def profile_trace(self, input_feed: Mapping[str, Any], runs: int = 1) -> dict:
        """``profile`` as a Chrome trace dict (Perfetto, chrome://tracing): one event per kernel
        run, with its ops, nodes and bytes moved; ``json.dump`` it to a file to view it."""
        from onnxc.runtime.profiling import chrome_trace, profile_runs

        feeds = dict(zip((s.name for s in self._inputs), self._validate(input_feed)))
        exe = self._executable_for(feeds)
        timings = profile_runs(exe, [feeds[s.name] for s in exe.inputs], self.num_threads, runs)
        return chrome_trace(exe, timings, num_threads=self.num_threads)

    def _validate(self, input_feed: Mapping[str, Any]) -> list[np.ndarray]:
        if not isinstance(input_feed, Mapping):
            raise InputError("feeds must be a dict of input name -> numpy array")
        names = [s.name for s in self._inputs]
        unknown = [k for k in input_feed if k not in names]
        if unknown:
            raise InputError(f"unknown input name(s) {unknown}; the model's inputs are {names}",
                             input_name=unknown[0])
        missing = [n for n in names if n not in input_feed]
        if missing:
            raise InputError(f"missing input(s) {missing}; the model's inputs are {names}",
                             input_name=missing[0])
        feeds = [check_feed(s, input_feed[s.name]) for s in self._inputs]
        bound: dict[str, tuple[int, str]] = {}
        for s, f in zip(self._inputs, feeds):
            for want, got in zip(s.shape, f.shape):
                if isinstance(want, str):
                    if want in bound and bound[want][0] != got:
                        raise InputError(f"input {s.name!r}: dimension {want!r} is {got}, but "
                                         f"input {bound[want][1]!r} set it to {bound[want][0]}",
                                         input_name=s.name)
                    bound[want] = (got, s.name)
        return feeds

    def _key(self, feeds: dict[str, np.ndarray]) -> tuple:
        shapes = tuple(tuple(feeds[s.name].shape) for s in self._inputs)
        values = tuple((n, tuple(feeds[n].reshape(-1).tolist()))
                       for n in sorted(self._value_inputs))
        return shapes if not values else shapes + (("values",) + values,)

    def _executable_for(self, feeds: dict[str, np.ndarray]) -> Executable:
        exe = self._executables.get(self._key(feeds))
        if exe is not None:
            return exe
        with self._lock:
            while True:
                key = self._key(feeds)
                exe = self._executables.get(key)
                if exe is not None:
                    return exe
                if self._model is None:
                    raise InputError(f"this artifact was compiled for input shapes "
                                     f"{list(self._executables)}, not {list(key)}, and holds "
                                     f"no model to compile new shapes from")
                fixed = {s.name: feeds[s.name].shape for s in self._inputs}
                values = {n: feeds[n] for n in self._value_inputs}
                try:
                    exe, self._graph = build_executable(self._model, fixed, self._options, values)
                except InputValueNeeded as need:
                    if need.input_name in self._value_inputs:
                        raise
                    self._value_inputs.add(need.input_name)
                    continue
                exe.load()
                self._executables[key] = exe
                return exe

    # -- introspection and persistence -----------------------------------------------------
    def describe(self) -> dict:
        """A JSON-able summary: kernels (name, ONNX nodes and ops, device), memory, options."""
        specs = []
        for key, exe in self._executables.items():
            specs.append({
                "input_shapes": [list(s) for s in key if s[:1] != ("values",)],
                "kernels": [{"name": k.name, "symbol": k.symbol, "nodes": k.nodes, "ops": k.ops,
                             "device": k.device} for k in exe.kernels],
                "arena_bytes": exe.arena_bytes,
                "activation_bytes_without_reuse": exe.value_bytes,
                "weight_bytes": exe.weight_bytes,
                "target": exe.target,
            })
        latest = specs[-1] if specs else {"kernels": [], "arena_bytes": 0, "weight_bytes": 0}
        return {
            "target": self._options.target,
            "opt_level": self._options.opt_level,
            "num_threads": self.num_threads,
            "inputs": [{"name": i.name, "shape": i.shape, "type": i.type}
                       for i in self.get_inputs()],
            "outputs": [{"name": o.name, "shape": o.shape, "type": o.type}
                        for o in self.get_outputs()],
            "kernels": latest["kernels"],
            "peak_working_memory_bytes": latest["arena_bytes"],
            "weight_bytes": latest["weight_bytes"],
            "specializations": specs,
            "timings": {k: v for k, v in self._options.timings.items()},
        }

    def ir_text(self) -> str:
        """The optimized IR of the latest specialization (empty for a loaded artifact)."""
        return str(self._graph) if self._graph is not None else ""

    def llvm_ir(self) -> str:
        """The generated LLVM IR of the latest specialization, before LLVM's optimizations."""
        return next(reversed(self._executables.values())).llvm_ir if self._executables else ""

    def save(self, path: str | os.PathLike) -> None:
        from onnxc.runtime.artifact import save_artifact

        save_artifact(path, self)

    @property
    def executables(self) -> dict[tuple, Executable]:
        return dict(self._executables)

    @property
    def value_inputs(self) -> set[str]:
        return set(self._value_inputs)

    @property
    def options(self) -> CompileOptions:
        return self._options

    @property
    def model(self) -> onnx.ModelProto | None:
        return self._model

    @property
    def input_specs(self) -> list[TensorSpec]:
        return list(self._inputs)

    @property
    def output_specs(self) -> list[TensorSpec]:
        return list(self._outputs)


def specs_from_names(pairs: Iterable[tuple[str, list, str]]) -> list[TensorSpec]:
    return [TensorSpec(n, tuple(s), d) for n, s, d in pairs]
