"""The ``onnxc inspect`` command and ``run --profile``.

Kept apart from ``onnxc.cli`` so the argument parsing stays short; everything here works on
the same Session objects the Python API returns.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("onnxc.cli")

_SUFFIX_FORMATS = {".json": "json", ".dot": "dot", ".gv": "dot", ".svg": "svg", ".png": "png",
                   ".txt": "text"}


# -- run --profile -------------------------------------------------------------------------
def write_profile(session: Any, feeds: dict, path: Path, runs: int = 1) -> dict:
    """Profile ``runs`` kernel-by-kernel runs, save the Chrome trace, print the op summary."""
    from onnxc.runtime.profiling import format_summary, op_summary

    trace = session.profile_trace(feeds, runs=runs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(trace))
    rows = op_summary(trace)
    kernels = trace["otherData"]["kernels"]
    print(f"\nprofile: {kernels} kernels, {runs} run{'s' * (runs != 1)} kernel by kernel, "
          f"{sum(r[2] for r in rows):.3f} ms per run -> {path} (open in ui.perfetto.dev)")
    print(format_summary(rows))
    return trace


# -- inspect -------------------------------------------------------------------------------
def inspect(args: argparse.Namespace) -> int:
    """Print or write what ``args.format`` asks for; see the inspect command's help."""
    from onnxc import cli

    fmt = args.format or _SUFFIX_FORMATS.get(args.output.suffix.lower() if args.output
                                             else "", "text")
    if fmt == "png" and args.output is None and sys.stdout.isatty():
        raise cli._UsageError("--format png writes binary data: give -o FILE.png")
    if getattr(args, "devices", None):
        return _inspect_placed(args, fmt)
    session, load_error = _load_artifact(args)
    title = args.path.name
    if session is None and fmt != "json" and not args.after_passes:
        graph = _imported_graph(args, load_error)  # before passes: nothing to compile
        if fmt == "text":
            return _emit(args, str(graph) + "\n")
        from onnxc import visualize

        return _emit(args, visualize.render(visualize.ir_graph(graph, title), fmt))
    if session is None:
        session = _compile_model(args, load_error)
        if fmt == "text":
            if not session.ir_text():
                raise cli._CliError(_SYMBOLIC_HINT)
            return _emit(args, session.ir_text() + "\n")
    if fmt in ("text", "json"):
        return _emit(args, json.dumps(session.describe(), indent=2, default=str) + "\n")
    from onnxc import visualize

    executables = list(session.executables.values())
    if not executables:
        raise cli._CliError(_SYMBOLIC_HINT)
    return _emit(args, visualize.render(visualize.kernel_graph(executables[-1], title), fmt))


def _inspect_placed(args: argparse.Namespace, fmt: str) -> int:
    """``inspect --devices``: place the model and show the partitions."""
    import onnxc
    from onnxc import cli
    from onnxc.frontend import load_model

    cli._must_exist(args.path)
    session = onnxc.compile(load_model(str(args.path))[0], devices=parse_devices(args.devices),
                            opt_level=args.opt_level, num_threads=args.num_threads,
                            input_shapes=cli._to_dict(args.input_shape, "--input-shape"),
                            disable_passes=args.disable_pass)
    if fmt == "text":
        return _emit(args, session.ir_text() + "\n")
    if fmt == "json":
        return _emit(args, json.dumps(session.describe(), indent=2, default=str) + "\n")
    from onnxc import visualize
    from onnxc.visualize_placement import placement_graph

    return _emit(args, visualize.render(placement_graph(session, args.path.name), fmt))


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20,
          "GIB": 2**30}


def parse_devices(text: str) -> list:
    """"cpu:0=40MB,cuda-sim:0" -> Devices (memory optional: bytes, KB/MB/GB or KiB/MiB/GiB)."""
    import re

    import onnxc
    from onnxc import cli

    devices = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        spec, _, memory = item.partition("=")
        size = None
        if memory:
            m = re.fullmatch(r"([0-9.]+(?:e[0-9]+)?)\s*([A-Za-z]*)", memory.strip())
            if m is None or m.group(2).upper() not in _UNITS:
                raise cli._CliError(f"--devices: cannot read the memory {memory!r} of "
                                    f"{spec!r}; write e.g. {spec}=40MB")
            size = float(m.group(1)) * _UNITS[m.group(2).upper()]
        devices.append(onnxc.Device(spec, memory_bytes=size))
    return devices


_SYMBOLIC_HINT = ("the model has symbolic input dimensions and compiles on first run; fix them "
                  "with --input-shape NAME=D0,D1,... to see the compiled kernels")


def _load_artifact(args: argparse.Namespace) -> tuple[Any, Exception | None]:
    """(session, None) for an artifact; (None, why not) for anything else, taken as a model."""
    import onnxc
    from onnxc import cli

    if args.path.suffix.lower() == ".onnx":
        return None, None
    cli._must_exist(args.path)
    kwargs = {} if args.num_threads is None else {"num_threads": args.num_threads}
    try:
        return onnxc.load(str(args.path), **kwargs), None
    except onnxc.OnnxcError as error:
        log.debug("not an artifact (%s); trying it as an ONNX model", error)
        return None, error


def _neither(args: argparse.Namespace, load_error: Exception, error: Exception) -> Exception:
    from onnxc import cli

    return cli._CliError(f"{args.path} is neither an onnxc artifact ({load_error}) nor an ONNX "
                         f"model onnxc can compile ({error})")


def _imported_graph(args: argparse.Namespace, load_error: Exception | None) -> Any:
    """The model's IR as imported, before any pass runs."""
    import onnxc
    from onnxc import cli
    from onnxc.frontend import import_graph, load_model

    cli._must_exist(args.path)
    try:
        proto, _ = load_model(str(args.path))
        return import_graph(proto, cli._to_dict(args.input_shape, "--input-shape"))
    except onnxc.OnnxcError as error:
        if load_error is None:
            raise
        raise _neither(args, load_error, error) from None


def _compile_model(args: argparse.Namespace, load_error: Exception | None) -> Any:
    import onnxc
    from onnxc import cli

    try:
        return cli._compile(args, args.path)
    except onnxc.OnnxcError as error:
        if load_error is None:
            raise
        raise _neither(args, load_error, error) from None


def _emit(args: argparse.Namespace, data: str | bytes) -> int:
    """Write to -o FILE, or to standard output."""
    raw = data.encode() if isinstance(data, str) else data
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(raw)
        log.info("wrote %s (%d bytes)", args.output, len(raw))
        return 0
    if isinstance(data, str) or not hasattr(sys.stdout, "buffer"):  # e.g. redirect_stdout
        sys.stdout.write(data if isinstance(data, str) else data.decode(errors="replace"))
        return 0
    sys.stdout.flush()
    sys.stdout.buffer.write(raw)
    sys.stdout.buffer.flush()
    return 0
