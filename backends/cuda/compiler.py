"""The nvcc driver: CUDA C -> a fatbin (cubins for the shipped archs, plus PTX) in one call.

One nvcc invocation per module: every ``-gencode`` target is built by the same call, and
``--keep`` leaves the per-arch cubins and the PTX in a private temporary folder that we read and
delete. Nothing is cached across calls; the runtime decides what to keep.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
from typing import Sequence

from onnxc.ir.errors import CompileError

DEFAULT_ARCHS = ("sm_80", "sm_90")


def find_nvcc() -> str | None:
    """nvcc from $CUDA_HOME, $PATH or /usr/local/cuda*/bin, or None."""
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if root and os.access(os.path.join(root, "bin", "nvcc"), os.X_OK):
            return os.path.join(root, "bin", "nvcc")
    found = shutil.which("nvcc")
    if found:
        return found
    for path in ["/usr/local/cuda/bin/nvcc"] + sorted(glob.glob("/usr/local/cuda-*/bin/nvcc"),
                                                      reverse=True):
        if os.access(path, os.X_OK):
            return path
    return None


def _arch_number(arch: str) -> str:
    m = re.fullmatch(r"(?:sm_|compute_)?(\d+[a-z]?)", arch)
    if m is None:
        raise CompileError(f"not a CUDA architecture: {arch!r} (expected e.g. 'sm_90')")
    return m.group(1)


def gencode_flags(arch_list: Sequence[str]) -> list[str]:
    """SASS for each arch, and PTX of the newest one so newer GPUs can JIT it."""
    nums = [_arch_number(a) for a in arch_list]
    if not nums:
        raise CompileError("compile_cuda needs at least one architecture")
    flags = []
    for n in nums:
        flags += ["-gencode", f"arch=compute_{n},code=sm_{n}"]
    newest = max(nums, key=lambda n: int(re.match(r"\d+", n).group()))
    flags += ["-gencode", f"arch=compute_{newest},code=compute_{newest}"]
    return flags


def compile_cuda(source: str, arch_list: Sequence[str] = DEFAULT_ARCHS, *,
                 extra_flags: Sequence[str] = (), timeout: float = 600.0) -> dict:
    """Compile CUDA C with nvcc: returns fatbin bytes, cubins by arch, PTX text and nvcc's log.

    Raises ``CompileError`` with nvcc's own diagnostics when nvcc is missing or fails.
    """
    nvcc = find_nvcc()
    if nvcc is None:
        raise CompileError("nvcc not found: install the CUDA toolkit or set CUDA_HOME")
    nums = [_arch_number(a) for a in arch_list]
    with tempfile.TemporaryDirectory(prefix="onnxc-nvcc-") as tmp:
        src = os.path.join(tmp, "module.cu")
        out = os.path.join(tmp, "module.fatbin")
        keep = os.path.join(tmp, "keep")
        os.mkdir(keep)
        with open(src, "w") as f:
            f.write(source)
        cmd = [nvcc, "-fatbin", "-std=c++17", "-O3", "--threads", "0", "--resource-usage",
               "--keep", "--keep-dir", keep, *gencode_flags(arch_list), *extra_flags,
               "-o", out, src]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise CompileError(f"nvcc timed out after {timeout:.0f}s") from exc
        seconds = time.perf_counter() - start
        log = (proc.stdout + proc.stderr).replace(tmp + os.sep, "")
        if proc.returncode != 0:
            raise CompileError(f"nvcc failed (exit {proc.returncode}):\n{_excerpt(log)}")
        with open(out, "rb") as f:
            fatbin = f.read()
        cubins: dict[str, bytes] = {}
        for n in nums:
            hits = sorted(glob.glob(os.path.join(keep, f"*compute_{n}*.cubin")))
            if hits:
                with open(hits[-1], "rb") as f:
                    cubins[f"sm_{n}"] = f.read()
        ptx = ""
        ptx_files = sorted(glob.glob(os.path.join(keep, "*.ptx")))
        newest = max(nums, key=lambda n: int(re.match(r"\d+", n).group()))
        for path in ptx_files:
            if f"compute_{newest}" in os.path.basename(path):
                with open(path) as f:
                    ptx = f.read()
    return {"fatbin": fatbin, "cubins": cubins, "ptx": ptx, "archs": [f"sm_{n}" for n in nums],
            "ptx_arch": f"compute_{newest}", "log": log, "seconds": seconds, "nvcc": nvcc,
            "command": " ".join(cmd[1:-3])}


def resource_usage(log: str) -> dict[str, dict[str, int]]:
    """Registers per thread by entry point, from nvcc's --resource-usage output (last arch)."""
    usage: dict[str, dict[str, int]] = {}
    entry = None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            entry = m.group(1)
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and entry:
            usage.setdefault(entry, {})["registers"] = int(m.group(1))
    return usage


def _excerpt(log: str, limit: int = 4000) -> str:
    log = log.strip()
    return log if len(log) <= limit else log[:limit] + f"\n... ({len(log) - limit} more chars)"


__all__ = ["compile_cuda", "find_nvcc", "gencode_flags", "resource_usage", "DEFAULT_ARCHS"]
