"""Find the first compile step that changes a model's outputs.

The model runs once on an independent reference (onnxruntime, else ``onnx.reference``). Then
onnxc imports it and applies its passes one at a time; after the import and after every pass
the graph is written back as standard ONNX (``frontend.exporter``) and run on the same
reference runtime, so a step is judged by a runtime that shares no code with onnxc. Last, the
optimized graph is compiled by the chosen backend and run. The first step whose outputs leave
the tolerance is the culprit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from onnxc.frontend import ModelLike, load_model
from onnxc.ir import Graph
from onnxc.ir.errors import InputValueNeeded, OnnxcError
from onnxc.random_data import random_array


@dataclass
class BisectStep:
    stage: str  # "import", a pass name, or "codegen:<target>"
    error: float | None  # worst output's max |onnxc - reference| / max |reference|
    output: str = ""  # the output with that error
    note: str = ""  # why a step could not be evaluated
    nodes: int = 0  # graph nodes after the step


@dataclass
class BisectReport:
    reference: str
    tolerance: float
    steps: list[BisectStep] = field(default_factory=list)

    @property
    def first_bad(self) -> BisectStep | None:
        return next((s for s in self.steps if s.error is not None and
                     not s.error <= self.tolerance), None)

    def __str__(self) -> str:
        lines = [f"reference: {self.reference}; tolerance {self.tolerance:g} "
                 f"(max |diff| / max |reference|)",
                 f"{'step':<24} {'nodes':>6} {'error':>10}  output"]
        for s in self.steps:
            err = "n/a" if s.error is None else f"{s.error:.3g}"
            mark = " <-- first divergence" if s is self.first_bad else ""
            lines.append(f"{s.stage:<24} {s.nodes or '':>6} {err:>10}  {s.output}{mark}"
                         + (f"  ({s.note})" if s.note else ""))
        bad = self.first_bad
        lines.append(f"first step that changes the outputs: {bad.stage}" if bad else
                     "every step agrees with the reference")
        return "\n".join(lines)


def random_feeds(proto, shapes: Mapping[str, Sequence[int]] | None = None,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds for every graph input that is not an initializer; symbolic dims not
    given in ``shapes`` are 1."""
    from onnxc.frontend.onnx_types import value_info_type

    rng = np.random.default_rng(seed)
    inits = {t.name for t in proto.graph.initializer}
    feeds = {}
    for vi in proto.graph.input:
        if vi.name in inits:
            continue
        t = value_info_type(vi)
        shape = tuple(shapes[vi.name]) if shapes and vi.name in shapes else t.shape
        shape = tuple(d if isinstance(d, int) else 1 for d in shape)  # symbolic dims: 1
        # Small integers: they are often indices into small axes.
        feeds[vi.name] = random_array(rng, shape, t.dtype.np, int_high=4)
    return feeds


def _runner(kind: str) -> Callable[[Any, dict], list[np.ndarray]]:
    """A function running a ModelProto on the reference runtime; onnxruntime lacks some
    kernels (Max on int16, float Mod with fmod=0, ...): onnx.reference runs those."""
    if kind == "onnxruntime":
        ort_run, ref_run = _runner("onnxruntime-only"), _runner("onnx.reference")

        def run_either(proto, feeds):
            try:
                return ort_run(proto, feeds)
            except Exception:  # noqa: BLE001 - a kernel onnxruntime lacks
                return ref_run(proto, feeds)
        return run_either
    if kind == "onnxruntime-only":
        import onnxruntime as ort

        def run(proto, feeds):
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            opts.log_severity_level = 3
            sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                        providers=["CPUExecutionProvider"])
            names = {i.name for i in sess.get_inputs()}
            return sess.run(None, {k: v for k, v in feeds.items() if k in names})
        return run
    from onnx.reference import ReferenceEvaluator

    def run(proto, feeds):
        ref = ReferenceEvaluator(proto)
        return ref.run(None, {k: v for k, v in feeds.items() if k in ref.input_names})
    return run


def _error(got: Sequence[np.ndarray], want: Sequence[np.ndarray], names: Sequence[str]
           ) -> tuple[float, str]:
    worst, where = 0.0, ""
    for g, w, name in zip(got, want, names):
        g, w = np.asarray(g), np.asarray(w)
        if g.dtype.kind == "u" and g.dtype != w.dtype and g.dtype.itemsize == w.dtype.itemsize \
                and w.dtype.kind not in "biu" and w.dtype not in (np.float16, np.float32,
                                                                  np.float64):
            # onnxruntime returns float8 as its bits: read them as the reference's type
            g = g.view(w.dtype)
        if g.shape != w.shape:
            return float("inf"), f"{name} (shape {g.shape} != {w.shape})"
        if w.size == 0:
            continue
        if w.dtype.kind in "biu":
            err = float(np.mean(g != w))
        else:
            g64, w64 = g.astype(np.float64), w.astype(np.float64)
            same_nan = np.isnan(g64) == np.isnan(w64)
            if not same_nan.all():
                return float("inf"), f"{name} (NaN where the reference has none)"
            finite = ~np.isnan(w64)
            with np.errstate(invalid="ignore"):
                diff = np.where(g64 == w64, 0.0, np.abs(g64 - w64))[finite]
            magnitudes = np.abs(w64[finite])
            scale = max(float(np.max(magnitudes[np.isfinite(magnitudes)], initial=0.0)), 1e-12)
            err = float(np.max(diff, initial=0.0)) / scale
            if np.isnan(err):
                err = float("inf")
        if err > worst or not where:
            worst, where = err, name
    return worst, where


def bisect(model: ModelLike, *, opt_level: int = 2, target: str = "cpu",
           input_shapes: Mapping[str, Sequence[int]] | None = None,
           feeds: Mapping[str, Any] | None = None, seed: int = 0, tolerance: float = 1e-3,
           passes: Sequence[Any] | None = None, reference: str = "auto",
           expected: Sequence[np.ndarray] | None = None, compile: bool = True) -> BisectReport:
    """Check the import, every pass of ``-O opt_level`` (or ``passes``) and code generation
    against a reference runtime; ``expected`` gives the reference outputs directly."""
    from onnxc.frontend import import_graph
    from onnxc.frontend.exporter import export_model
    from onnxc.passes import pipeline

    proto, _ = load_model(model)
    if reference == "auto":
        try:
            import onnxruntime  # noqa: F401
            reference = "onnxruntime"
        except ImportError:
            reference = "onnx.reference"
    run_ref = _runner(reference)
    feeds = {k: np.asarray(v) for k, v in (feeds or random_feeds(proto, input_shapes, seed))
             .items()}
    names = [o.name for o in proto.graph.output]
    if expected is None:
        try:
            expected = run_ref(proto, feeds)
        except Exception as exc:  # noqa: BLE001 - the reference's own limits, reported
            raise OnnxcError(f"the reference ({reference}) cannot run this model: {exc}; "
                             f"pass expected outputs instead") from exc
    report = BisectReport(reference, tolerance)

    last: list = [None, None]  # fingerprint of the last graph evaluated, and its step

    def check(stage: str, graph: Graph) -> None:
        mark = _fingerprint(graph)
        if mark == last[0]:  # the step changed nothing: same result, no need to run it again
            prev = last[1]
            report.steps.append(BisectStep(stage, prev.error, prev.output, "unchanged",
                                           len(graph.nodes)))
            return
        try:
            got = run_ref(export_model(graph), feeds)
        except Exception as exc:  # noqa: BLE001 - a step we cannot judge is reported, not fatal
            report.steps.append(BisectStep(stage, None, note=f"not evaluated: {exc}"[:200],
                                           nodes=len(graph.nodes)))
            return
        err, where = _error(got, expected, names)
        report.steps.append(BisectStep(stage, err, where, nodes=len(graph.nodes)))
        last[:] = [mark, report.steps[-1]]

    shapes = {k: v.shape for k, v in feeds.items()}
    values: dict[str, np.ndarray] = {}
    while True:
        try:
            graph = import_graph(proto, shapes, values or None)
            break
        except InputValueNeeded as need:
            if need.input_name in values or need.input_name not in feeds:
                raise
            values[need.input_name] = feeds[need.input_name]
    check("import", graph)
    steps = list(passes) if passes is not None else pipeline(opt_level)
    for p in steps:
        graph = p.run(graph)
        check(p.name, graph)
    if compile:
        _check_codegen(report, graph, target, opt_level, feeds, expected, names)
    return report


def _fingerprint(graph: Graph) -> tuple:
    """Equal for graphs no pass has touched in between (nodes, wiring, attributes)."""
    def node_key(n):
        body = _fingerprint(n.subgraphs["body"]) if "body" in n.subgraphs else ()
        return (n.op, tuple(id(v) for v in n.inputs), tuple(id(v) for v in n.outputs),
                repr(sorted(n.attrs.items())), body)
    return (tuple(node_key(n) for n in graph.nodes), tuple(id(v) for v in graph.outputs))


def _check_codegen(report: BisectReport, graph: Graph, target: str, opt_level: int,
                   feeds: Mapping[str, np.ndarray], expected, names) -> None:
    from onnxc.runtime.build import CompileOptions, compile_graph
    from onnxc.runtime.executable import check_feed

    stage = f"codegen:{target}"
    exe = compile_graph(graph, CompileOptions(target=target, opt_level=opt_level))
    exe.load()
    got = exe.run([check_feed(spec, feeds[spec.name]) for spec in exe.inputs], 1)
    err, where = _error(got, expected, names)
    report.steps.append(BisectStep(stage, err, where, nodes=len(graph.nodes)))
