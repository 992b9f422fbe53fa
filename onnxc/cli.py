"""The ``onnxc`` command line: compile, run and inspect ONNX models from a shell.

It is a thin layer over the public API (``onnxc.compile``, ``onnxc.load``, ``Session``) so that
everything the CLI does can also be done, and tested, from Python.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("onnxc.cli")

_EPILOG = """\
examples:
  onnxc compile model.onnx -o model.onnxc -O 3 --num-threads 8
  onnxc compile model.onnx -o model.onnxc --input-shape input=1,3,224,224
  onnxc compile model.onnx -o model.onnxc --precision bf16
  onnxc run model.onnxc --input x=x.npy --output-dir out/
  onnxc run model.onnx --random-inputs --seed 1 --input-shape x=8,16
  onnxc run model.onnxc --random-inputs --profile trace.json   # open in ui.perfetto.dev
  onnxc inspect model.onnxc
  onnxc inspect model.onnxc --format svg -o kernels.svg
  onnxc inspect model.onnx --after-passes
  onnxc inspect model.onnx --devices cpu:0=40MB,cpu:1=40MB -o placed.svg
  onnxc bench model.onnx --compare onnxruntime --threads 4 --runs 50
  onnxc optimize model.onnx -o model.opt.onnx --input-shape x=1,3,224,224
  onnxc bisect model.onnx            # which pass changes the outputs?
  python -m onnxc inspect model.onnx -O 0
"""

# ONNX tensor element types (as Session.get_inputs() spells them) -> numpy dtype names.
_ONNX_TYPES = {"float": "float32", "double": "float64", "float16": "float16", "bool": "bool"}
_ONNX_TYPES.update({f"{k}{b}": f"{k}{b}" for k in ("int", "uint") for b in (8, 16, 32, 64)})


class _UsageError(Exception):
    """A mistake in what the user asked for that argparse itself cannot see."""


class _CliError(Exception):
    """A problem outside onnxc proper (e.g. an unreadable .npy file), reported like one."""


def _parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """Parse ``NAME=1,3,224,224`` (``NAME=`` is a scalar); errors become argparse errors."""
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=D0,D1,..., got {text!r}")
    try:
        shape = tuple(int(d) for d in dims.split(",")) if dims.strip() else ()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"dimensions of {name!r} must be integers separated by commas, got {dims!r}"
        ) from None
    if any(d < 0 for d in shape):
        raise argparse.ArgumentTypeError(f"dimensions of {name!r} must be >= 0, got {dims!r}")
    return name, shape


def _parse_feed(text: str) -> tuple[str, Path]:
    """Parse ``NAME=FILE.npy``; split at the first '=' since paths are likelier to hold one."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE.npy, got {text!r}")
    return name, Path(path)


def _to_dict(pairs: list[tuple[str, Any]] | None, what: str) -> dict[str, Any]:
    """Collect repeated NAME=... options, refusing the same name twice."""
    result: dict[str, Any] = {}
    for name, value in pairs or []:
        if name in result:
            raise _UsageError(f"{what} {name!r} given more than once")
        result[name] = value
    return result


def _add_verbosity(parser: argparse.ArgumentParser, default: Any) -> None:
    """-v/-q; subcommands use SUPPRESS so they never overwrite a flag given before them."""
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="store_true", default=default,
                       help="log debug detail")
    noise.add_argument("-q", "--quiet", action="store_true", default=default,
                       help="log warnings and errors only")


def _build_parser() -> argparse.ArgumentParser:
    """One parser for all commands, so `onnxc --help` lists them with worked examples."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="onnxc", formatter_class=fmt, epilog=_EPILOG,
        description="Compile ONNX models to native code, then run or inspect the result.",
    )
    _add_verbosity(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # Options shared by every command that may have to compile a model.
    build = argparse.ArgumentParser(add_help=False)
    _add_verbosity(build, default=argparse.SUPPRESS)  # so `onnxc run ... -v` works too
    build.add_argument("--target", default="cpu", help="device to compile for (default: cpu)")
    build.add_argument("-O", dest="opt_level", type=int, choices=range(4), default=2,
                       metavar="{0,1,2,3}", help="optimisation level (default: 2)")
    build.add_argument("--num-threads", type=int, default=None, metavar="N",
                       help="worker threads at run time (default: all cores)")
    build.add_argument("--input-shape", type=_parse_shape, action="append", metavar="NAME=DIMS",
                       help="fix a symbolic input shape, e.g. x=1,3,224,224 (repeatable)")
    build.add_argument("--batch-tile", type=int, default=None, metavar="N",
                       help="a symbolic batch compiles once at this batch tile and runs any "
                            "batch by tiles (default: chosen from the model; 0: compile per "
                            "batch size)")
    build.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                       help="bf16: MatMul/Gemm/Conv multiply bfloat16 operands with float32 "
                            "sums (avx512_bf16 where the CPU has it; about 1e-2 relative "
                            "error); default fp32")
    build.add_argument("--disable-pass", action="append", default=[], metavar="NAME",
                       help="skip an optimization pass (repeatable); see --list-passes")
    build.add_argument("--print-after", action="append", default=[], metavar="NAME",
                       help="print the IR after pass NAME ('all' for every pass)")
    build.add_argument("--time-passes", action="store_true",
                       help="print how long each compile phase and pass took")

    p = sub.add_parser("compile", parents=[build], formatter_class=fmt, epilog=_EPILOG,
                       help="compile an ONNX model into an artifact file",
                       description="Compile MODEL (.onnx) and save the executable as ARTIFACT.")
    p.add_argument("model", type=Path, metavar="MODEL")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="ARTIFACT",
                   help="where to write the compiled artifact")
    p.set_defaults(func=_cmd_compile)

    p = sub.add_parser("run", parents=[build], formatter_class=fmt, epilog=_EPILOG,
                       help="run an artifact (or an .onnx model, compiled first)",
                       description="Run ARTIFACT_OR_MODEL on .npy files or random data and "
                                   "print (and optionally save) every output.")
    p.add_argument("path", type=Path, metavar="ARTIFACT_OR_MODEL")
    p.add_argument("--input", type=_parse_feed, action="append", metavar="NAME=FILE.npy",
                   help="feed input NAME from a .npy file (repeatable)")
    p.add_argument("--random-inputs", action="store_true",
                   help="feed random data to every input not given with --input")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-inputs (default: 0)")
    p.add_argument("--output-dir", type=Path, default=None, metavar="DIR",
                   help="save each output as DIR/<name>.npy (default: print only)")
    p.add_argument("--profile", type=Path, default=None, metavar="TRACE.json",
                   help="also run kernel by kernel, write the timings as a Chrome trace "
                        "(Perfetto, chrome://tracing) and print a summary by op")
    p.add_argument("--profile-runs", type=_positive, default=1, metavar="N",
                   help="profiled runs to record with --profile (default: 1)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("optimize", parents=[build], formatter_class=fmt, epilog=_EPILOG,
                       help="write the optimized graph back out as standard ONNX",
                       description="Optimize MODEL and save it as a standard-opset ONNX file "
                                   "that any ONNX runtime can run.")
    p.add_argument("model", type=Path, metavar="MODEL")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.onnx",
                   help="where to write the optimized model (input and output names are kept)")
    p.add_argument("--external-data", action="store_true",
                   help="write the weights to OUT.onnx.data beside it (automatic for models "
                        "of 2 GiB or more)")
    p.set_defaults(func=_cmd_optimize)

    p = sub.add_parser("inspect", parents=[build], formatter_class=fmt, epilog=_EPILOG,
                       help="describe an artifact or model: IR, JSON or a graph picture",
                       description="Show what onnxc makes of MODEL_OR_ARTIFACT. text: a "
                                   "model's IR (before passes unless --after-passes) or an "
                                   "artifact's description; json: the description (compiling "
                                   "a model); dot/svg/png: the kernels as a Graphviz graph "
                                   "(a model before passes: its IR nodes).")
    p.add_argument("path", type=Path, metavar="MODEL_OR_ARTIFACT")
    p.add_argument("--after-passes", action="store_true",
                   help="for a model: show it after optimization (compiled) instead of as "
                        "imported")
    p.add_argument("--format", choices=("text", "json", "dot", "svg", "png"), default=None,
                   help="what to print (default: from -o's suffix, else text); svg/png need "
                        "Graphviz, dot only the graphviz package (pip install 'onnxc[viz]')")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                   help="write to FILE instead of standard output")
    p.add_argument("--devices", default=None, metavar="DEV[=MEM],...",
                   help="place a model over these devices (e.g. cpu:0=40MB,cpu:1=40MB,"
                        "cuda-sim:0) and show the placement: its IR, description, or a "
                        "picture with one colour per device")
    p.set_defaults(func=_cmd_inspect)

    from onnxc import cli_bench, cli_bisect

    cli_bench.add_parser(sub, [build], fmt, _EPILOG)
    cli_bisect.add_parser(sub, [build], fmt, _EPILOG)
    return parser


def int_at_least(minimum: int):
    """An argparse type for whole numbers of at least ``minimum`` (counts, thread numbers)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive = int_at_least(1)


def _must_exist(path: Path) -> None:
    """Fail early with the path in the message, whatever the core would have raised."""
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))


def _compile(args: argparse.Namespace, model: Path) -> Any:
    """Compile ``model`` with the build options every command shares."""
    import onnxc

    _must_exist(model)
    log.info("compiling %s for %s at -O%d", model, args.target, args.opt_level)
    from onnxc.passes import all_passes

    unknown = [n for n in args.disable_pass + args.print_after
               if n not in all_passes() and n != "all"]
    if unknown:
        raise _CliError(f"unknown pass(es) {unknown}; the passes are {sorted(all_passes())}")
    from onnxc.progress import spinner

    # --print-after prints IR to stdout while compiling: a live display would cut through it.
    quiet = args.quiet or args.print_after
    with spinner(f"compiling {model.name}", enabled=not quiet):
        session = onnxc.compile(str(model), target=args.target, opt_level=args.opt_level,
                                num_threads=args.num_threads,
                                input_shapes=_to_dict(args.input_shape, "--input-shape"),
                                disable_passes=args.disable_pass, print_after=args.print_after,
                                batch_tile=getattr(args, "batch_tile", None),
                                precision=getattr(args, "precision", "fp32"))
    if log.isEnabledFor(logging.DEBUG):
        for k, kernel in enumerate(session.describe().get("kernels") or []):
            log.debug("kernel %d %s on %s: %s", k, kernel.get("name"), kernel.get("device"),
                      " + ".join(kernel.get("ops") or []))
    if args.time_passes:
        timings = session.describe()["timings"]
        for phase, value in timings.items():
            if isinstance(value, dict):
                for name, seconds in value.items():
                    print(f"  pass {name:<24} {1000 * seconds:9.2f} ms")
            else:
                print(f"{phase:<30} {1000 * value:9.2f} ms")
    return session


def _open(args: argparse.Namespace, path: Path) -> tuple[Any, bool]:
    """Return (session, is_model): compile ONNX models, load artifacts, guessing by trying."""
    import onnxc

    if path.suffix.lower() == ".onnx":
        return _compile(args, path), True
    _must_exist(path)
    kwargs = {} if args.num_threads is None else {"num_threads": args.num_threads}
    try:
        return onnxc.load(str(path), **kwargs), False
    except onnxc.OnnxcError as load_error:
        log.debug("not an artifact (%s); trying it as an ONNX model", load_error)
        try:
            return _compile(args, path), True
        except onnxc.OnnxcError as compile_error:
            raise _CliError(f"{path} is neither an onnxc artifact ({load_error}) nor an ONNX "
                            f"model onnxc can compile ({compile_error})") from None


def _cmd_compile(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    session = _compile(args, args.model)
    seconds = time.perf_counter() - start
    args.output.parent.mkdir(parents=True, exist_ok=True)
    session.save(str(args.output))
    kernels = session.describe().get("kernels", "?")
    count = len(kernels) if isinstance(kernels, (list, tuple, dict)) else kernels
    size = args.output.stat().st_size
    if not session.executables:
        symbolic = {i.name: i.shape for i in session.get_inputs()
                    if not all(isinstance(d, int) for d in i.shape)}
        example = " ".join(f"--input-shape {name}=" + ",".join(
            str(d) if isinstance(d, int) else "1" for d in shape)
            for name, shape in symbolic.items())
        log.warning("%s has symbolic input dimensions %s, so no code was generated yet: the "
                    "artifact compiles each new input shape on first run. To compile now, "
                    "fix them, e.g. %s", args.model, symbolic or "(or shape-deciding inputs)",
                    example or "--input-shape NAME=D0,D1,...")
        print(f"{args.model} -> {args.output}: not compiled yet (symbolic shapes), "
              f"{size / 1024:.1f} KiB")
        return 0
    tiles = sorted({t["tile"] for t in session.describe()["batch_tiling"]["tiled"]})
    batch = f" for any batch (batch tile {tiles[0]})" if tiles else ""
    print(f"{args.model} -> {args.output}: {count} kernels, compiled{batch} in "
          f"{seconds:.2f} s, {size / 1024:.1f} KiB")
    return 0


def _cmd_optimize(args: argparse.Namespace) -> int:
    import onnx

    import onnxc

    _must_exist(args.model)
    model = onnxc.optimize(str(args.model), opt_level=args.opt_level,
                           input_shapes=_to_dict(args.input_shape, "--input-shape"),
                           disable_passes=args.disable_pass)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    from onnxc.frontend.exporter import save_model

    save_model(model, str(args.output), external_data=True if args.external_data else None)
    before = len(onnx.load(str(args.model), load_external_data=False).graph.node)
    print(f"{args.model} -> {args.output}: {before} nodes -> {len(model.graph.node)} nodes")
    return 0


def _random_feeds(session: Any, given: dict[str, Any], seed: int,
                  shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """Random data for each input not already fed; symbolic dims must come from --input-shape."""
    import numpy as np

    from onnxc.random_data import random_array

    rng = np.random.default_rng(seed)
    feeds = {}
    for info in session.get_inputs():
        if info.name in given:
            continue
        elem = re.fullmatch(r"tensor\((\w+)\)", str(info.type))
        dtype = _ONNX_TYPES.get(elem.group(1) if elem else "")
        if dtype is None:  # also sequences and optionals
            raise _UsageError(f"cannot make random data for input {info.name!r} of type "
                              f"{info.type}; feed it with --input")
        shape = shapes[info.name] if info.name in shapes else tuple(info.shape)
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise _UsageError(f"input {info.name!r} has symbolic shape {list(info.shape)}; "
                              f"give one with --input-shape {info.name}=D0,D1,...")
        feeds[info.name] = random_array(rng, shape, dtype)
    return feeds


_NARROW_NAMES = ("bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
                 "float8_e8m0fnu", "float4_e2m1fn", "int4", "uint4", "int2", "uint2")


def _summary(array: Any) -> str:
    """A short, one-line look at an output's values."""
    import numpy as np

    flat = np.asarray(array).ravel()
    if flat.size == 0:
        return "empty"
    head = np.array2string(flat[:5], precision=5, separator=", ", threshold=5)
    if np.issubdtype(flat.dtype, np.number) or flat.dtype == np.bool_ or \
            flat.dtype.name in _NARROW_NAMES:
        num = flat.astype(np.float64)
        return (f"min={num.min():.6g} max={num.max():.6g} mean={num.mean():.6g} "
                f"first={head}")
    return f"first={head}"


def _load_npy(path: Path) -> Any:
    """Read one feed; pickles are refused since loading them can run arbitrary code."""
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:  # a pickled object array, or not a .npy file at all
        raise _CliError(f"cannot read {path} as a .npy array: {e}") from None


def _cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    files = _to_dict(args.input, "--input")
    feeds = {name: _load_npy(path) for name, path in files.items()}
    session, _ = _open(args, args.path)
    if args.random_inputs:
        shapes = _to_dict(args.input_shape, "--input-shape")
        feeds.update(_random_feeds(session, feeds, args.seed, shapes))
    outputs = session.run(None, feeds)
    names = [o.name for o in session.get_outputs()]
    if args.output_dir is not None:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for name, value in zip(names, outputs):
        value = np.asarray(value)
        print(f"{name}: shape={list(value.shape)} dtype={value.dtype} {_summary(value)}")
        if args.output_dir is not None:
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "output"
            stem, n = safe, 1
            while safe in used:  # two names may map to the same safe name
                safe, n = f"{stem}_{n}", n + 1
            used.add(safe)
            np.save(args.output_dir / f"{safe}.npy", value, allow_pickle=False)
            log.info("wrote %s", args.output_dir / f"{safe}.npy")
    if args.profile is not None:
        from onnxc.cli_tools import write_profile

        write_profile(session, feeds, args.profile, args.profile_runs)
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from onnxc.cli_tools import inspect

    return inspect(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``onnxc`` and ``python -m onnxc``; returns the process exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="onnxc: %(levelname)s: %(message)s")
    # basicConfig does nothing when the root logger already has handlers (an embedding
    # program, pytest); setting onnxc's own logger keeps -v/-q meaning the same there.
    onnxc_log = logging.getLogger("onnxc")
    previous = onnxc_log.level
    onnxc_log.setLevel(level)
    try:
        return _dispatch(parser, args)
    finally:
        onnxc_log.setLevel(previous)  # main() called in-process leaves logging as it was


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run the chosen command; errors become one ``onnxc: error:`` line and status 2."""
    from onnxc import OnnxcError

    try:
        return args.func(args)
    except _UsageError as e:
        parser.error(str(e))  # exits 2, like other argument mistakes
    except (OnnxcError, _CliError) as e:
        message = str(e)
    except OSError as e:  # FileNotFoundError, IsADirectoryError, PermissionError, ...
        message = f"{e.strerror or e}: {e.filename}" if e.filename else str(e)
    except KeyboardInterrupt:
        return 130
    print(f"onnxc: error: {message}", file=sys.stderr)
    return 2
