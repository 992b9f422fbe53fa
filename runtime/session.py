"""Session: onnxruntime's call shape over compiled executables, one per input-shape set.

A model whose inputs share a symbolic leading (batch) dim is compiled once per set of the other
dims, at a batch tile and at batch 1, and runs any batch by tiles (runtime/tiling.py) when that
is proven safe. Otherwise a model with symbolic dims compiles once per distinct set of concrete
input shapes, on the first run that uses it. Either way the specializations are cached and
saved with the artifact. A fully static model compiles once, at ``onnxc.compile``.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import onnx

from onnxc.ir import Graph
from onnxc.ir.errors import DataDependentShape, InputError, InputValueNeeded
from onnxc.runtime.build import CompileOptions, build_executable
from onnxc.runtime.executable import Executable, check_feed
from onnxc.runtime.plan import TensorSpec
from onnxc.runtime.tiling import Tiling, batch_symbol, build_tiles, rest_key, run_tiled


@dataclass(frozen=True)
class NodeArg:
    """Like onnxruntime's NodeArg: name, shape (ints and symbolic names) and type string."""

    name: str
    shape: list
    type: str


def _ort_type(dtype: str) -> str:
    """onnxruntime's spelling: tensor(float), tensor(bfloat16), tensor(float8e4m3fn)..."""
    names = {"float32": "float", "float64": "double", "bool": "bool",
             "float8_e8m0fnu": "float8e8m0", "float4_e2m1fn": "float4e2m1", "object": "string"}
    return f"tensor({names.get(dtype, dtype.replace('_', ''))})"


def _node_arg(s: TensorSpec) -> NodeArg:
    """onnxruntime's spelling: ``seq(tensor(float))``, ``optional(tensor(float))``..."""
    t = _ort_type(s.dtype)
    if s.kind in ("sequence", "optional_sequence"):
        t = f"seq({t})"
    if s.kind.startswith("optional"):
        t = f"optional({t})"
    return NodeArg(s.name, list(s.shape) if s.shape is not None else None, t)


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
                 value_inputs: Iterable[str] = (),
                 tilings: dict[tuple, Tiling] | None = None,
                 untiled: dict[tuple, str] | None = None, batch_tiling: bool = True):
        self._inputs = inputs
        self._outputs = outputs
        self._options = options
        self._model = model
        self._executables: dict[tuple, Executable] = dict(executables or {})
        self._lock = threading.Lock()
        self._graph = graph
        self._value_inputs: set[str] = set(value_inputs)  # compiled per run-time value
        # Batch tiling: the batch symbol (or why there is none), the tile programs per set of
        # non-batch shapes, and why a set of shapes is not tiled.
        self._batch, self._no_batch = batch_symbol(inputs) \
            if batch_tiling and options.batch_tile != 0 else \
            (None, "batch tiling is off for this session")
        if any(o.kind != "tensor" for o in outputs):
            self._batch, self._no_batch = None, "sequence or optional outputs are not tiled"
        self._tilings: dict[tuple, Tiling] = dict(tilings or {})
        self._untiled: dict[tuple, str] = dict(untiled or {})
        self._last_tiling: tuple | None = None
        self._stage = None  # a runtime.staged.Stage when the model is cut at a node
        self._fast = None  # runtime.fastrun.FastRun of the last shapes run, for repeat runs
        self.num_threads = int(num_threads or default_threads())
        if self.num_threads < 1:
            raise ValueError("num_threads must be >= 1")

    # -- onnxruntime-style queries ---------------------------------------------------------
    def get_inputs(self) -> list[NodeArg]:
        return [_node_arg(s) for s in self._inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [_node_arg(s) for s in self._outputs]

    # -- running ---------------------------------------------------------------------------
    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any],
            run_options: Any = None) -> list[np.ndarray]:
        """Run the model; ``output_names=None`` returns every output, in model order."""
        fast = self._fast
        if fast is not None and fast.num_threads == self.num_threads:
            outs = fast(input_feed)
            if outs is not None:
                return outs if output_names is None else self._select(output_names, outs)
        feeds = dict(zip((s.name for s in self._inputs), self._validate(input_feed)))
        tiling = self._tiling_for(feeds)
        if tiling is not None:
            exe_tile = self._executables[tiling.key_tile]
            ordered = [feeds[s.name] for s in exe_tile.inputs]
            self._check_batch_memory(tiling, exe_tile, ordered[tiling.batched_inputs[0]])
            outs = run_tiled(tiling, exe_tile, self._executables[tiling.key_one], ordered,
                             self.num_threads)
            return self._select(output_names, outs)
        exe, flat = self._prepare(feeds)
        if exe is None:  # cut at an op whose output shape depends on values
            return self._select(output_names, self._stage.run(flat))
        outs = self._regroup(exe, exe.run(flat, self.num_threads))
        if fast is None or fast.exe is not exe or fast.num_threads != self.num_threads:
            from onnxc.runtime.fastrun import FastRun

            self._fast = FastRun.build(self, exe)
        return self._select(output_names, outs)

    def _prepare(self, feeds: dict[str, Any]) -> tuple[Executable | None, Any]:
        """The executable for these validated feeds and its flat tensor feeds, in its input
        order; for a model cut into stages (runtime/staged.py), None and the feeds by name."""
        exe = self._executable_for(feeds) if self._stage is None else None
        if exe is None:
            return None, feeds
        flat = _flatten(self._inputs, feeds)
        return exe, [flat[s.name] for s in exe.inputs]

    def _regroup(self, exe: Executable, outs: list[np.ndarray]) -> list:
        """The model's outputs from the executable's flat ones: a list for a sequence, None
        for an absent optional."""
        if all(s.kind == "tensor" for s in self._outputs):
            return outs
        from onnxc.frontend.containers import regroup

        flat = {s.name: o for s, o in zip(exe.outputs, outs)}
        return [regroup(s.kind, s.name, flat) for s in self._outputs]

    def _check_batch_memory(self, tiling: Tiling, exe_tile: Executable,
                            feed: np.ndarray) -> None:
        """The memory limit covers a tiled run as it does a specialization: the whole batch's
        outputs, plus the tile program's arena and weights (the largest batch that fits is
        worked out once per tiling)."""
        from onnxc.ir import limits

        batch = feed.shape[0]
        if tiling.max_batch is None:
            per_sample = sum(rows * int(np.prod(o.shape[1:], dtype=np.int64)) *
                             np.dtype(o.dtype).itemsize
                             for o, rows in zip(exe_tile.outputs, tiling.out_rows))
            room = limits.memory_limit(self._options.memory_limit_bytes) - \
                exe_tile.arena_bytes - exe_tile.weight_bytes
            tiling.max_batch = room // per_sample if per_sample else max(room, -1) * 2 ** 62
        if batch > tiling.max_batch:
            outputs = batch * sum(rows * int(np.prod(o.shape[1:], dtype=np.int64)) *
                                  np.dtype(o.dtype).itemsize
                                  for o, rows in zip(exe_tile.outputs, tiling.out_rows))
            limits.check_budget(outputs + exe_tile.arena_bytes + exe_tile.weight_bytes,
                                limits.memory_limit(self._options.memory_limit_bytes),
                                f"a run at batch {batch} (outputs {outputs} B, tile working "
                                f"memory {exe_tile.arena_bytes} B, weights "
                                f"{exe_tile.weight_bytes} B)")

    def _tiling_for(self, feeds: dict[str, np.ndarray]) -> Tiling | None:
        """The tile programs for these feeds' non-batch shapes, compiled on first use; None
        when the model is not run by tiles (the reason is kept for describe())."""
        if self._batch is None or self._value_inputs or self._stage is not None:
            return None
        shapes = tuple(feeds[s.name].shape[1:] for s in self._inputs)
        last = self._last_tiling  # (shapes past dim 0, tiling): the common case, one lookup
        if last is not None and last[0] == shapes:
            return last[1]
        rest = rest_key(self._inputs, [feeds[s.name].shape for s in self._inputs], self._batch)
        tiling = self._tilings.get(rest)
        if tiling is not None and all(s.shape and s.shape[0] == self._batch
                                      for s in self._inputs):
            self._last_tiling = (shapes, tiling)
        if tiling is not None or rest in self._untiled or self._model is None:
            return tiling
        with self._lock:
            return self.prepare_tiling(rest)

    def prepare_tiling(self, rest: tuple) -> Tiling | None:
        """Compile (once) the tile and batch-1 programs for ``rest``: the input shapes with
        -1 for the batch dim. Returns None, recording why, if tiling is not safe."""
        if rest in self._tilings or rest in self._untiled or self._model is None or \
                self._batch is None:
            return self._tilings.get(rest)
        from onnxc.ir.errors import OnnxcError

        try:
            tiling, exes, graph, why = build_tiles(self._model, self._inputs, rest, self._batch,
                                                   self._options, self._options.batch_tile)
        except OnnxcError as exc:  # e.g. the tile is over the memory limit: compile per shape
            tiling, exes, graph, why = None, {}, None, f"the tile programs failed: {exc}"
        if tiling is None:
            self._untiled[rest] = why
            self._keep(exes)  # the batch-1 program is the batch-1 specialization
            return None
        self._keep(exes)
        self._graph = graph
        self._tilings[rest] = tiling
        return tiling

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
        """Per-kernel wall times (seconds) of one run, in execution order (of one tile, for a
        batch-tiled model)."""
        exe, feeds = self._profiled(input_feed)
        return exe.profile(feeds, self.num_threads)

    def _profiled(self, input_feed: Mapping[str, Any]) -> tuple[Executable, list[np.ndarray]]:
        """The program a profile times and its feeds: for a tiled batch, the tile program on
        the first tile (the batch-1 program below a tile), so profiling compiles nothing."""
        feeds = dict(zip((s.name for s in self._inputs), self._validate(input_feed)))
        tiling = self._tiling_for(feeds)
        if tiling is None:
            exe, flat = self._prepare(feeds)
            if exe is None:
                raise InputError("profiling a model cut at an op whose output shape depends "
                                 "on values (runtime/staged.py) is not supported yet")
            return exe, flat
        exe = self._executables[tiling.key_tile]
        ordered = [feeds[s.name] for s in exe.inputs]
        if ordered[tiling.batched_inputs[0]].shape[0] < tiling.tile:
            exe, n = self._executables[tiling.key_one], 1
        else:
            n = tiling.tile
        return exe, [f[:n] if k in tiling.batched_inputs else f for k, f in enumerate(ordered)]

    def profile_trace(self, input_feed: Mapping[str, Any], runs: int = 1) -> dict:
        """``profile`` as a Chrome trace dict (Perfetto, chrome://tracing): one event per kernel
        run, with its ops, nodes and bytes moved; ``json.dump`` it to a file to view it."""
        from onnxc.runtime.profiling import chrome_trace, profile_runs

        exe, feeds = self._profiled(input_feed)
        timings = profile_runs(exe, feeds, self.num_threads, runs)
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
        feeds = [check_feed(s, input_feed[s.name]) if s.kind == "tensor" else
                 check_container_feed(s, input_feed[s.name]) for s in self._inputs]
        bound: dict[str, tuple[int, str]] = {}
        for s, f in zip(self._inputs, feeds):
            if s.kind != "tensor":
                continue
            for want, got in zip(s.shape, f.shape):
                if isinstance(want, str):
                    if want in bound and bound[want][0] != got:
                        raise InputError(f"input {s.name!r}: dimension {want!r} is {got}, but "
                                         f"input {bound[want][1]!r} set it to {bound[want][0]}",
                                         input_name=s.name)
                    bound[want] = (got, s.name)
        return feeds

    def _key(self, feeds: dict[str, Any]) -> tuple:
        shapes = tuple(_structure(s, feeds[s.name]) for s in self._inputs)
        flat = _flatten(self._inputs, feeds)
        values = tuple((n, tuple(flat[n].reshape(-1).tolist()))
                       for n in sorted(self._value_inputs) if n in flat)
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
                fixed = {s.name: _structure(s, feeds[s.name]) for s in self._inputs}
                flat = _flatten(self._inputs, feeds)
                values = {n: flat[n] for n in self._value_inputs if n in flat}
                try:
                    exe, self._graph = build_executable(self._model, fixed, self._options, values)
                except InputValueNeeded as need:
                    if need.input_name in self._value_inputs:
                        raise
                    self._value_inputs.add(need.input_name)
                    continue
                except DataDependentShape as need:
                    from onnxc.runtime.staged import Stage

                    if self._stage is None:
                        self._stage = Stage(self._model, need, self._options, self.num_threads)
                    return None
                exe.load()
                self._executables[key] = exe
                return exe

    # -- introspection and persistence -----------------------------------------------------
    def describe(self) -> dict:
        """A JSON-able summary: kernels (name, ONNX nodes and ops, device), memory, options."""
        specs = []
        for key, exe in self._executables.items():
            specs.append({
                "input_shapes": [None if s is None else list(s) for s in key
                                 if s is None or s[:1] != ("values",)],
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
            "precision": self._options.precision,
            "num_threads": self.num_threads,
            "inputs": [{"name": i.name, "shape": i.shape, "type": i.type}
                       for i in self.get_inputs()],
            "outputs": [{"name": o.name, "shape": o.shape, "type": o.type}
                        for o in self.get_outputs()],
            "kernels": latest["kernels"],
            "peak_working_memory_bytes": latest["arena_bytes"],
            "weight_bytes": latest["weight_bytes"],
            "specializations": specs,
            "batch_tiling": self._tiling_summary(),
            "timings": {k: v for k, v in self._options.timings.items()},
        }

    def _keep(self, exes: dict[tuple, Executable]) -> None:
        for key, exe in exes.items():
            if exe.backend == "cpu":  # cuda-sim builds (g++) and cuda loads on first use
                exe.load()
            self._executables[key] = exe

    def _tiling_summary(self) -> dict:
        """What is tiled over the batch, with which programs, and why not where it is not."""
        return {
            "batch_dim": self._batch,
            "why_not": self._no_batch or None,
            "tiled": [{"shapes": [list(s) for s in rest], **t.to_json()}
                      for rest, t in self._tilings.items()],
            "not_tiled": [{"shapes": [list(s) for s in rest], "why": why}
                          for rest, why in self._untiled.items()],
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
    def tilings(self) -> dict[tuple, Tiling]:
        return dict(self._tilings)

    @property
    def untiled(self) -> dict[tuple, str]:
        return dict(self._untiled)

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


def _structure(spec: TensorSpec, feed: Any):
    """What a feed's executable is specialized on: its shape, or a sequence/optional's
    structure (frontend.containers.structure_of)."""
    if spec.kind == "tensor":
        return tuple(feed.shape)
    from onnxc.frontend.containers import structure_of

    return structure_of(spec.kind, feed, spec.name)


def _flatten(specs: Sequence[TensorSpec], feeds: dict[str, Any]) -> dict[str, np.ndarray]:
    """Tensor feeds by graph-input name: sequence elements as ``name[k]``."""
    if all(s.kind == "tensor" for s in specs):
        return feeds
    from onnxc.frontend.containers import flatten_feed

    flat: dict[str, np.ndarray] = {}
    for s in specs:
        flat.update(flatten_feed(s.kind, s.name, feeds[s.name]))
    return flat


def check_container_feed(spec: TensorSpec, value: Any):
    """A sequence feed (a list of arrays) or an optional one (None when absent), each tensor
    checked against the declared element type."""
    if value is None and spec.kind.startswith("optional"):
        return None
    shape = spec.shape
    if spec.kind in ("sequence", "optional_sequence"):
        if isinstance(value, np.ndarray) or not isinstance(value, (list, tuple)):
            raise InputError(f"input {spec.name!r} is a sequence: feed a list of arrays, got "
                             f"{type(value).__name__}", input_name=spec.name)
        return [_check_element(TensorSpec(f"{spec.name}[{k}]", shape, spec.dtype), e)
                for k, e in enumerate(value)]
    return _check_element(TensorSpec(spec.name, shape, spec.dtype), value)


def _check_element(spec: TensorSpec, value: Any) -> np.ndarray:
    if spec.shape is None:  # undeclared shape: only the element type is checked
        arr = np.asarray(value)
        return check_feed(TensorSpec(spec.name, tuple(f"d{k}" for k in range(arr.ndim)),
                                     spec.dtype), arr)
    return check_feed(spec, value)


def specs_from_names(pairs: Iterable[tuple[str, list, str]]) -> list[TensorSpec]:
    return [TensorSpec(n, tuple(s), d) for n, s, d in pairs]
