"""``onnxc bench``: latency percentiles and throughput, optionally beside onnxruntime.

Like trtexec or onnxruntime_perf_test: random inputs, warm-up runs, then timed runs. With
``--compare onnxruntime`` the engines alternate in blocks (the first run of each block untimed)
so machine noise hits both alike and one engine's spinning worker threads have gone quiet
before the other's timed runs; the outputs are compared too.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

BLOCK = 5


def add_parser(sub: Any, parents: list, fmt: Any, epilog: str) -> None:
    from onnxc.cli import int_at_least

    _positive, _non_negative = int_at_least(1), int_at_least(0)

    p = sub.add_parser("bench", parents=parents, formatter_class=fmt, epilog=epilog,
                       help="time a model: latency percentiles and throughput",
                       description="Run MODEL_OR_ARTIFACT on random inputs and report latency "
                                   "(mean, p50, p90, p99) and throughput, beside onnxruntime "
                                   "with --compare onnxruntime.")
    p.add_argument("path", type=Path, metavar="MODEL_OR_ARTIFACT")
    p.add_argument("--compare", choices=("onnxruntime",), default=None,
                   help="also time onnxruntime (CPU) on the same inputs and compare outputs")
    p.add_argument("--threads", type=_positive, dest="num_threads", metavar="N",
                   help="threads for every engine (same as --num-threads; default: all cores)")
    p.add_argument("--batch", type=_positive, default=None, metavar="N",
                   help="batch size: the first dimension of every input whose first dimension "
                        "is symbolic")
    p.add_argument("--runs", type=_positive, default=50, metavar="N",
                   help="timed runs per engine (default: 50)")
    p.add_argument("--warmup", type=_non_negative, default=5, metavar="N",
                   help="untimed runs per engine first (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random inputs (default: 0)")
    p.set_defaults(func=cmd_bench)


def _batched_shapes(args: argparse.Namespace, declared: list[tuple[str, list]]
                    ) -> dict[str, tuple[int, ...]]:
    """--input-shape, plus --batch for the first dimension of the inputs it does not fix."""
    from onnxc import cli

    shapes = cli._to_dict(args.input_shape, "--input-shape")
    if args.batch is None:
        return shapes
    for name, dims in declared:
        if name in shapes or not dims:
            continue
        if isinstance(dims[0], int) and dims[0] != args.batch:
            raise cli._UsageError(f"input {name!r} has a fixed batch size of {dims[0]} (shape "
                                  f"{list(dims)}); --batch sets a symbolic first dimension only")
        rest = dims[1:]
        if not all(isinstance(d, int) for d in rest):
            raise cli._UsageError(f"input {name!r} has symbolic dimensions {list(dims)} besides "
                                  f"the batch; give its shape with --input-shape")
        shapes[name] = (args.batch, *rest)
    return shapes


def _model_inputs(path: Path) -> list[tuple[str, list]]:
    """The graph inputs an ONNX file declares (initializers excluded), dims as int or name."""
    from onnxc.frontend import load_model

    model, _ = load_model(str(path))
    inits = {t.name for t in model.graph.initializer}
    return [(vi.name, [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                       for d in vi.type.tensor_type.shape.dim])
            for vi in model.graph.input if vi.name not in inits]


def _ort_session(path: Path, threads: int) -> Any:
    from onnxc import cli

    try:
        import onnxruntime as ort
    except ImportError:
        raise cli._CliError("--compare onnxruntime needs onnxruntime: pip install "
                            "onnxruntime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _time(engines: list[tuple[str, Callable[[], Any]]], runs: int, warmup: int,
          advance: Callable[[int], None] = lambda n=1: None) -> dict[str, list[float]]:
    """Seconds per run of each engine; several engines alternate in blocks of BLOCK runs.

    ``advance`` is called after each warm-up and timed run (for a progress bar)."""
    for _, run in engines:
        for _ in range(warmup):
            run()
            advance(1)
    times: dict[str, list[float]] = {name: [] for name, _ in engines}
    block = runs if len(engines) == 1 else BLOCK
    while any(len(t) < runs for t in times.values()):
        for name, run in engines:
            if len(engines) > 1:
                run()  # settles the other engine's thread pool; not timed
            for _ in range(min(block, runs - len(times[name]))):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
                advance(1)
    return times


def _stats(seconds: list[float], batch: int) -> dict[str, float]:
    import numpy as np

    ms = 1e3 * np.asarray(seconds)
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"mean": float(ms.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "min": float(ms.min()), "throughput": 1e3 * batch / float(ms.mean())}


def _table(rows: list[tuple[str, float, dict[str, float]]]) -> str:
    head = (f"{'engine':<12} {'setup s':>8} {'mean ms':>9} {'p50 ms':>9} {'p90 ms':>9} "
            f"{'p99 ms':>9} {'min ms':>9} {'samples/s':>10}")
    lines = [head, "-" * len(head)]
    for name, setup, s in rows:
        lines.append(f"{name:<12} {setup:>8.2f} {s['mean']:>9.3f} {s['p50']:>9.3f} "
                     f"{s['p90']:>9.3f} {s['p99']:>9.3f} {s['min']:>9.3f} "
                     f"{s['throughput']:>10.1f}")
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    import numpy as np

    import onnxc
    from onnxc import cli
    from onnxc.cli_tools import _compile_model, _load_artifact, _neither

    start = time.perf_counter()
    session, load_error = _load_artifact(args)
    if session is None:
        cli._must_exist(args.path)
        try:
            declared = _model_inputs(args.path)
        except onnxc.OnnxcError as error:
            if load_error is None:
                raise
            raise _neither(args, load_error, error) from None
        shapes = _batched_shapes(args, declared)
        args.input_shape = list(shapes.items())
        session = _compile_model(args, load_error)
    else:
        if args.compare:
            raise cli._UsageError("--compare needs the ONNX model, not a compiled artifact")
        shapes = _batched_shapes(args, [(i.name, i.shape) for i in session.get_inputs()])
    setup = time.perf_counter() - start
    feeds = cli._random_feeds(session, {}, args.seed, shapes)
    first = next(iter(feeds.values()), None)
    batch = int(first.shape[0]) if first is not None and first.ndim else 1

    engines = [("onnxc", lambda: session.run(None, feeds))]
    setups = {"onnxc": setup}
    if args.compare:
        start = time.perf_counter()
        ort = _ort_session(args.path, session.num_threads)
        setups["onnxruntime"] = time.perf_counter() - start
        engines.append(("onnxruntime", lambda: ort.run(None, feeds)))

    described = ", ".join(f"{n} {list(v.shape)} {v.dtype}" for n, v in feeds.items())
    print(f"{args.path.name}: {described}; {session.num_threads} threads, {args.runs} runs "
          f"after {args.warmup} warm-up")
    from onnxc.progress import bar

    with bar("timing " + " and ".join(name for name, _ in engines),
             total=len(engines) * (args.runs + args.warmup), enabled=not args.quiet) as advance:
        times = _time(engines, args.runs, args.warmup, advance)
    rows = [(name, setups[name], _stats(times[name], batch)) for name, _ in engines]
    print(_table(rows))
    if args.compare:
        ours, theirs = session.run(None, feeds), ort.run(None, feeds)
        diff = max((float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                    for a, b in zip(ours, theirs) if np.size(a)), default=0.0)
        ratio = rows[0][2]["p50"] / rows[1][2]["p50"]
        print(f"onnxc / onnxruntime p50: {ratio:.2f}x ({'faster' if ratio < 1 else 'slower'}); "
              f"max |output difference|: {diff:.3g}")
    return 0
