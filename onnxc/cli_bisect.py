"""``onnxc bisect``: which compile step (import, a pass, code generation) changes the outputs.

Exit status 0 when every step agrees with the reference runtime, 1 when one does not.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any, parents: list, fmt: Any, epilog: str) -> None:
    p = sub.add_parser("bisect", parents=parents, formatter_class=fmt, epilog=epilog,
                       help="find the first pass (or import, or codegen) that changes the "
                            "outputs",
                       description="Run MODEL on onnxruntime (else onnx.reference), then "
                                   "after onnxc's import and after every pass (written back "
                                   "as ONNX and run there), then compiled; print each step's "
                                   "error and name the first step beyond --tolerance.")
    p.add_argument("model", type=Path, metavar="MODEL")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy",
                   help="feed input NAME from a .npy file (others get random data)")
    p.add_argument("--seed", type=int, default=0, help="seed for random inputs (default: 0)")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="allowed max |diff| / max |reference| per output (default: 1e-3)")
    p.add_argument("--reference", choices=("auto", "onnxruntime", "onnx.reference"),
                   default="auto", help="runtime that judges each step (default: onnxruntime "
                                        "when installed)")
    p.add_argument("--no-codegen", action="store_true",
                   help="check the import and the passes only, not the generated code")
    p.set_defaults(func=cmd_bisect)


def cmd_bisect(args: argparse.Namespace) -> int:
    from onnxc import cli
    from onnxc.bisect import bisect, random_feeds
    from onnxc.frontend import load_model
    from onnxc.passes import all_passes, pipeline

    cli._must_exist(args.model)
    shapes = cli._to_dict(args.input_shape, "--input-shape")
    given = {name: cli._load_npy(path) for name, path in
             cli._to_dict([cli._parse_feed(t) for t in args.input or []], "--input").items()}
    proto, _ = load_model(str(args.model))
    feeds = {**random_feeds(proto, {**shapes, **{k: v.shape for k, v in given.items()}},
                            args.seed), **given}
    unknown = [n for n in args.disable_pass if n not in all_passes()]
    if unknown:
        raise cli._CliError(f"unknown pass(es) {unknown}; the passes are {sorted(all_passes())}")
    passes = [p for p in pipeline(args.opt_level) if p.name not in set(args.disable_pass)]
    report = bisect(proto, opt_level=args.opt_level, target=args.target, feeds=feeds,
                    tolerance=args.tolerance, passes=passes, reference=args.reference,
                    compile=not args.no_codegen)
    print(report)
    return 1 if report.first_bad else 0
