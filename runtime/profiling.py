"""Per-kernel profiles as Chrome traces, the JSON that Perfetto and chrome://tracing open.

``Session.profile`` gives (kernel, seconds) pairs; here they become one complete ("X") event per
kernel run, laid end to end (the kernel-by-kernel run has no other gaps worth showing), with the
ONNX ops and nodes each kernel covers and the bytes it reads and writes, so a slow kernel can be
traced back to the model and judged compute- or memory-bound.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from onnxc.ir.errors import OnnxcError

_PID = 1  # one process and one thread: kernels run one after another


def profile_runs(exe: Any, feeds: list[np.ndarray], num_threads: int,
                 runs: int = 1) -> list[list[tuple[str, float]]]:
    """``runs`` kernel-by-kernel runs of an executable, refusing backends that cannot do it."""
    if exe.backend != "cpu":
        raise OnnxcError(f"kernel-by-kernel profiling supports the cpu target only, not "
                         f"{exe.backend!r}")
    if runs < 1:
        raise OnnxcError(f"runs must be >= 1, got {runs}")
    return [exe.profile(feeds, num_threads) for _ in range(runs)]


def kernel_bytes(kernel: Any) -> tuple[int, int] | None:
    """(bytes read, bytes written) by a kernel's tensor parameters; None if not recorded."""
    if not getattr(kernel, "params", None):
        return None
    read = written = 0
    for role, _, shape, dtype in kernel.params:
        size = math.prod(shape) * np.dtype(dtype).itemsize
        if role == "in":
            read += size
        elif role == "out":
            written += size
    return read, written


def chrome_trace(exe: Any, runs: Sequence[Sequence[tuple[str, float]]], *,
                 num_threads: int | None = None) -> dict:
    """The trace of profiled ``runs`` of ``exe`` (each as ``Executable.profile`` returns it)."""
    kernels = list(exe.kernels)
    device = kernels[0].device if kernels else "cpu:0"
    events: list[dict] = [
        {"name": "process_name", "ph": "M", "pid": _PID, "tid": 0,
         "args": {"name": "onnxc"}},
        {"name": "thread_name", "ph": "M", "pid": _PID, "tid": 0, "args": {"name": device}},
    ]
    clock = 0.0  # microseconds
    for run, timings in enumerate(runs):
        if len(timings) != len(kernels):
            raise ValueError(f"run {run} timed {len(timings)} kernels, the executable has "
                             f"{len(kernels)}")
        for kernel, (name, seconds) in zip(kernels, timings):
            dur = seconds * 1e6
            args: dict[str, Any] = {"ops": list(kernel.ops), "nodes": list(kernel.nodes),
                                    "device": kernel.device, "run": run}
            moved = kernel_bytes(kernel)
            if moved is not None:
                args.update(bytes_read=moved[0], bytes_written=moved[1],
                            bytes=moved[0] + moved[1])
                if seconds > 0:
                    args["GB/s"] = round((moved[0] + moved[1]) / seconds / 1e9, 3)
            events.append({"name": name, "cat": kernel.device, "ph": "X", "ts": round(clock, 3),
                           "dur": round(dur, 3), "pid": _PID, "tid": 0, "args": args})
            clock += dur
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"producer": "onnxc", "runs": len(runs), "kernels": len(kernels),
                          "num_threads": num_threads, "backend": getattr(exe, "backend", None),
                          "cpu": (getattr(exe, "target", None) or {}).get("cpu")}}


def op_summary(trace: dict) -> list[tuple[str, int, float, float]]:
    """(ops, kernels, milliseconds per run, share of the total) by fused op pattern, slowest
    first: a kernel's time belongs to all the ops it fuses, so it is not split among them."""
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    runs = max(1, len({e["args"].get("run", 0) for e in events}))
    total = sum(e["dur"] for e in events) or 1.0
    groups: dict[str, list] = {}
    for e in events:
        ops = list(dict.fromkeys(e["args"].get("ops") or [e["name"]]))
        key = "+".join(ops)
        entry = groups.setdefault(key, [0, 0.0])
        entry[0] += 1
        entry[1] += e["dur"]
    rows = [(key, count // runs, us / 1e3 / runs, us / total)
            for key, (count, us) in groups.items()]
    return sorted(rows, key=lambda r: -r[2])


def format_summary(rows: list[tuple[str, int, float, float]], width: int = 44) -> str:
    """``op_summary`` as a plain-text table, with a total line."""
    lines = [f"{'ops (fused)':<{width}} {'kernels':>7} {'ms/run':>9} {'%':>6}"]
    for ops, count, ms, share in rows:
        label = ops if len(ops) <= width else ops[:width - 3] + "..."
        lines.append(f"{label:<{width}} {count:>7} {ms:>9.3f} {100 * share:>5.1f}%")
    total_ms = sum(r[2] for r in rows)
    lines.append(f"{'total':<{width}} {sum(r[1] for r in rows):>7} {total_ms:>9.3f} "
                 f"{100.0 if rows else 0.0:>5.1f}%")
    return "\n".join(lines)
