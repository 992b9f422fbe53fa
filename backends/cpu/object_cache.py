"""A content-addressed cache of object code, so recompiling an unchanged model is nearly free.

LLVM's optimizer and machine-code emitter are most of a cold compile (ResNet-50: ~6 s of ~7).
The generated LLVM IR is a pure function of the model, the options and the onnxc version, so
the object file is cached under a hash of (IR text, target triple, CPU, features, code model,
optimization level, LLVM version). Entries carry their own length and sha256 and are re-checked
on every read: a truncated or tampered file is recompiled, never loaded (LLVM would crash the
process on a malformed object). Writes are atomic (temporary file, then rename), so concurrent
compiles of the same model are safe.

Location: ``$ONNXC_CACHE_DIR`` or ``~/.cache/onnxc``; ``ONNXC_CACHE=0`` turns it off.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import llvmlite

log = logging.getLogger("onnxc")

_MAGIC = b"onnxc-object-1\n"
_DIGEST = 32


def cache_dir() -> Path | None:
    """The cache's directory, or None when caching is off."""
    if os.environ.get("ONNXC_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    root = os.environ.get("ONNXC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "onnxc")
    return Path(root) / "objects"


def cache_key(llvm_ir: str, target: dict[str, str], opt_level: int) -> str:
    h = hashlib.sha256()
    for part in (llvmlite.__version__, target["triple"], target["cpu"], target["features"],
                 target.get("code_model", "small"), str(opt_level), llvm_ir):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _read(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    body = data[len(_MAGIC) + _DIGEST:]
    if (not data.startswith(_MAGIC) or not body
            or hashlib.sha256(body).digest() != data[len(_MAGIC):len(_MAGIC) + _DIGEST]):
        log.warning("onnxc: ignoring a damaged object-cache entry %s", path)
        return None
    return body


def _write(path: Path, obj: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + hashlib.sha256(obj).digest() + obj)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only or full disk must not fail the compile
        log.info("onnxc: object cache not written (%s)", exc)


def cached_object(llvm_ir: str, target: dict[str, str], opt_level: int,
                  compile_fn: Callable[[], bytes]) -> tuple[bytes, bool]:
    """(object code, whether it came from the cache): the cached object for this exact IR and
    target, else ``compile_fn()``'s result, stored for next time."""
    root = cache_dir()
    if root is None:
        return compile_fn(), False
    key = cache_key(llvm_ir, target, opt_level)
    path = root / key[:2] / f"{key}.o"
    obj = _read(path)
    if obj is not None:
        return obj, True
    obj = compile_fn()
    _write(path, obj)
    return obj, False
