"""Size limits that keep a hostile or broken model from asking for absurd amounts of memory.

Two checks, applied where sizes first become known (graph inputs, initializers, each node's
inferred output types, constant folding, the execution plan):

- a tensor's element count (and byte size) must fit in int64, or the generated index
  arithmetic would wrap around;
- what onnxc itself allocates for one specialization (arena, outputs, weights) and any one
  tensor it folds at compile time must fit in the memory limit. The limit is
  ``onnxc.compile(..., memory_limit_bytes=N)``, else the ``ONNXC_MEMORY_LIMIT`` environment
  variable (bytes; suffixes K, M, G, T are powers of 1024), else the machine's physical memory.
"""
from __future__ import annotations

import math
import os
from typing import Iterable

from .errors import ModelError

INT64_MAX = (1 << 63) - 1
ENV_VAR = "ONNXC_MEMORY_LIMIT"
FALLBACK_LIMIT = 16 << 30  # when physical memory cannot be read
_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(text: str) -> int:
    """``"8G"`` -> 8 GiB; a plain integer is bytes."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = _SUFFIX.get(text[-1:], 1)
    digits = text[:-1] if text[-1:] in _SUFFIX else text
    try:
        value = int(float(digits) * scale)
    except ValueError:
        raise ModelError(f"{ENV_VAR}={text!r} is not a byte count (e.g. 8G, 512M, "
                         f"1073741824)") from None
    if value <= 0:
        raise ModelError(f"{ENV_VAR} must be positive, got {text!r}")
    return value


def physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return FALLBACK_LIMIT


def memory_limit(override: int | None = None) -> int:
    """The memory limit in bytes: ``override``, else $ONNXC_MEMORY_LIMIT, else physical RAM."""
    if override is not None:
        if int(override) <= 0:
            raise ModelError(f"memory_limit_bytes must be positive, got {override!r}")
        return int(override)
    env = os.environ.get(ENV_VAR)
    return parse_bytes(env) if env else physical_memory()


def checked_numel(shape: Iterable[int], itemsize: int = 1) -> int:
    """The element count of a static shape; raises ValueError when it or its byte size
    overflows int64 (callers turn that into a ModelError naming the tensor)."""
    n = math.prod(int(d) for d in shape)
    if n > INT64_MAX or n * itemsize > INT64_MAX:
        raise ValueError(f"shape {list(shape)} has {n} elements, which overflows int64")
    return n


def check_shape(shape, itemsize: int, what: str, node: str | None = None,
                op: str | None = None) -> None:
    """ModelError when a static shape has a negative dim or overflows int64."""
    dims = [d for d in shape if isinstance(d, int)]
    if any(d < 0 for d in dims):
        raise ModelError(f"{what} has a negative dimension: {list(shape)}", node=node, op=op)
    n = math.prod(dims)
    if n > INT64_MAX or n * itemsize > INT64_MAX:
        raise ModelError(f"{what} has shape {list(shape)}: {n} elements overflow int64",
                         node=node, op=op)


def check_budget(nbytes: int, limit: int, what: str, node: str | None = None,
                 op: str | None = None) -> None:
    """ModelError when ``nbytes`` exceeds the memory limit."""
    if nbytes > limit:
        raise ModelError(f"{what} needs {_human(nbytes)} ({nbytes} bytes), more than the memory "
                         f"limit of {_human(limit)}; raise it with "
                         f"onnxc.compile(..., memory_limit_bytes=N) or {ENV_VAR}", node=node,
                         op=op)


def _human(n: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
