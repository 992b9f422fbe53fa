"""Progress display for long CLI steps (compiles, benchmark loops), drawn with rich.

Shown only on an interactive stderr: logs, CI and pipes get byte-for-byte the same output as
without it. rich is optional (``pip install 'onnxc[cli]'``); without it nothing is drawn. Log
lines written while a display is up go above it instead of through it.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, Callable, Iterator

log = logging.getLogger("onnxc.cli")


def _interactive(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


@contextlib.contextmanager
def _display(message: str, total: int | None, enabled: bool,
             stream: Any) -> Iterator[Callable[[int], None]]:
    """A rich Progress with one task; yields ``advance(n)``, a no-op when nothing is drawn."""
    stream = stream if stream is not None else sys.stderr
    if not enabled or not _interactive(stream):
        yield lambda n=1: None
        return
    try:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                                   TextColumn, TimeElapsedColumn, TimeRemainingColumn)
    except ImportError:
        log.debug("no progress display: rich is not installed (pip install 'onnxc[cli]')")
        yield lambda n=1: None
        return
    columns: list = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    columns.append(TimeElapsedColumn())
    console = Console(file=stream, force_terminal=True)
    progress = Progress(*columns, console=console, transient=True, redirect_stdout=False,
                        redirect_stderr=False)
    task = progress.add_task(message, total=total)
    with progress, _logs_above(stream, console):
        yield lambda n=1: progress.advance(task, n)


@contextlib.contextmanager
def _logs_above(stream: Any, console: Any) -> Iterator[None]:
    """Route the log handlers that write to ``stream`` through rich, above the display."""
    handlers = [h for h in logging.getLogger().handlers
                if isinstance(h, logging.StreamHandler) and h.stream is stream]
    proxy = _ConsoleWriter(console)
    for handler in handlers:
        handler.setStream(proxy)
    try:
        yield
    finally:
        for handler in handlers:
            handler.setStream(stream)


class _ConsoleWriter:
    """A text stream whose lines rich prints above its live display."""

    def __init__(self, console: Any):
        self.console = console

    def write(self, text: str) -> int:
        if text.strip():
            self.console.print(text.rstrip("\n"), markup=False, highlight=False,
                               soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        pass


def spinner(message: str, enabled: bool = True, stream: Any = None
            ) -> contextlib.AbstractContextManager:
    """A spinner with elapsed time while a step of unknown length runs (a compile)."""
    return _display(message, None, enabled, stream)


def bar(message: str, total: int, enabled: bool = True, stream: Any = None
        ) -> contextlib.AbstractContextManager:
    """A bar over ``total`` steps (benchmark runs); the context yields ``advance(n=1)``."""
    return _display(message, total, enabled, stream)
