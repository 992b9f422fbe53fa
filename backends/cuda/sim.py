"""cuda-sim: run the generated CUDA C on the CPU, to check its meaning where there is no GPU.

The CUDA source is compiled by the host C++ compiler after an emulation header
(sim_runtime.SIM_RUNTIME: real threads and barriers for blocks, warp shuffles through a
warp-level barrier, real atomics, WMMA fragments). sim.py writes one
``extern "C" launch_<entry>(void** params, grid, block)`` per ``__global__`` function;
``params`` follows cuLaunchKernel's convention (params[k] points at the k-th argument's value).
Blocks run one after another. A kernel that cooperates across threads (sim_runtime.
THREADED_MARKERS) runs each block's threads as real ``std::thread``s; the others run their
threads as a plain loop, which is much faster.

Buffers start filled with 0xFF bytes (NaN for floats) so an element a kernel forgets to write
shows up in the comparison instead of passing by luck.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from typing import Sequence

import numpy as np

from onnxc.ir.errors import CompileError

from .codegen import CudaModule, Launch, render_module
from .sim_runtime import SIM_RUNTIME, THREADED_MARKERS

_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?'
                        r'(\w+)\s*\(([^)]*)\)')
_loaded: dict[str, "SimModule"] = {}  # per process, by source hash: node tests reuse kernels


def _host_fma() -> tuple[str, ...]:
    """``-mfma`` where the host CPU has it: ``fmaf`` (the GEMM kernels' inner step) becomes one
    instruction instead of a libm call; both round once, so results are the same. Contraction
    of a plain ``a * b + c`` stays off (nvcc would contract it: the tests' tolerances cover
    that one rounding)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return ()
    return ("-mfma",) if " fma " in flags + " " else ()


def find_cxx() -> str | None:
    """The host C++ compiler used for cuda-sim ($CXX, g++ or clang++)."""
    for name in (os.environ.get("CXX"), "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def launchers(source: str) -> tuple[str, list[str]]:
    """One ``launch_<entry>`` host function per ``__global__`` function of ``source``."""
    out, entries = [], []
    matches = list(_SIGNATURE.finditer(source))
    for k, m in enumerate(matches):
        name, params = m.group(1), m.group(2).strip()
        end = matches[k + 1].start() if k + 1 < len(matches) else len(source)
        body = source[m.end():end]
        threaded = any(marker in body for marker in THREADED_MARKERS)
        args = []
        for n, param in enumerate(p.strip() for p in params.split(",") if p.strip()):
            ctype = re.sub(r"\b__restrict__\b", "", param.rsplit(None, 1)[0]).strip()
            if param.rstrip().endswith("*"):  # an unnamed pointer parameter
                ctype = param.replace("__restrict__", "").strip()
            args.append(f"*({ctype}*)params[{n}]")
        out.append(f"static void body_{name}(void** params) {{ {name}({', '.join(args)}); }}\n"
                   f'extern "C" void launch_{name}(void** params, unsigned grid, unsigned block) '
                   f"{{\n  ox_launch(grid, block, {str(threaded).lower()}, body_{name}, params);"
                   "\n}\n")
        entries.append(name)
    return "\n".join(out), entries


class SimModule:
    """A CUDA source compiled for cuda-sim and loaded with ctypes."""

    def __init__(self, source: str, cxx_flags: Sequence[str] = ("-O1",)):
        cxx = find_cxx()
        if cxx is None:
            raise CompileError("cuda-sim needs a C++20 compiler (g++ or clang++); none found")
        glue, self.entries = launchers(source)
        text = SIM_RUNTIME + "\n#line 1 \"module.cu\"\n" + source + "\n" + glue
        with tempfile.TemporaryDirectory(prefix="onnxc-sim-") as tmp:
            src, lib = os.path.join(tmp, "module.cc"), os.path.join(tmp, "module.so")
            with open(src, "w") as f:
                f.write(text)
            cmd = [cxx, "-x", "c++", "-std=c++20", *cxx_flags, *_host_fma(), "-ffp-contract=off",
                   "-fPIC", "-shared", "-pthread",
                   "-fno-fast-math", "-w", "-o", lib, src]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                log = (proc.stdout + proc.stderr).replace(tmp + os.sep, "")
                raise CompileError(f"cuda-sim: {os.path.basename(cxx)} failed:\n{log[:4000]}")
            self.lib = ctypes.CDLL(lib)  # the mapping outlives the deleted file
        self._fns = {}
        for name in self.entries:
            fn = getattr(self.lib, f"launch_{name}")
            fn.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            fn.restype = None
            self._fns[name] = fn

    def launch(self, entry: str, args: Sequence[int], grid: int, block: int) -> None:
        """Run ``entry<<<grid, block>>>(args...)`` to completion. Each argument is a pointer
        (an address) or an integer scalar, passed like cuLaunchKernel does (by address)."""
        pointers = args
        n = max(len(pointers), 1)
        values = (ctypes.c_void_p * n)(*pointers)
        base = ctypes.addressof(values)
        size = ctypes.sizeof(ctypes.c_void_p)
        params = (ctypes.c_void_p * n)(*[base + k * size for k in range(len(pointers))])
        self._fns[entry](params, grid, block)


def load_sim(source: str) -> SimModule:
    """A SimModule for ``source``, reused within this process when the text is the same."""
    key = hashlib.sha256(source.encode()).hexdigest()
    if key not in _loaded:
        _loaded[key] = SimModule(source)
    return _loaded[key]


def _poisoned(shape, dtype) -> np.ndarray:
    array = np.empty(shape, dtype=dtype)
    array.reshape(-1).view(np.uint8)[:] = 0xFF
    return array


def run_launches(sim: SimModule, launches: Sequence[Launch], feeds: Sequence[np.ndarray],
                 outputs: Sequence[np.ndarray], constants: Sequence[np.ndarray],
                 arena_bytes: int) -> None:
    """Run a plan's launches in order on host buffers, pointer tables filled like the runtime."""
    arena = np.full(arena_bytes + 64, 0xFF, dtype=np.uint8)
    base = arena.ctypes.data + (-arena.ctypes.data) % 64
    tables = {"input": [a.ctypes.data for a in feeds], "output": [a.ctypes.data for a in outputs],
              "const": [a.ctypes.data for a in constants]}
    for ln in launches:
        if ln.total == 0:
            continue  # CUDA rejects empty grids; nothing to compute
        ptrs = [base + i if region == "arena" else tables[region][i] for region, i in ln.slots]
        sim.launch(ln.entry, ptrs, ln.grid, ln.block)


def run_plan_sim(plan, feeds: Sequence[np.ndarray], module: CudaModule | None = None
                 ) -> list[np.ndarray]:
    """Execute an ``ExecutionPlan`` under cuda-sim; feeds in plan input order, like Executable.run.
    """
    module = module or render_module(plan.calls)
    sim = load_sim(module.source)
    feeds = [_contiguous(np.asarray(f, dtype=s.dtype)) for f, s in zip(feeds, plan.inputs)]
    consts = [_contiguous(c) for c in plan.constants]
    outs = [_poisoned(o.shape, o.dtype) for o in plan.outputs]
    run_launches(sim, module.launches, feeds, outs, consts, plan.arena_bytes)
    return outs


def _contiguous(array) -> np.ndarray:
    array = np.asarray(array)
    return array if array.flags.c_contiguous else np.array(array, order="C")


__all__ = ["SimModule", "load_sim", "run_launches", "run_plan_sim", "launchers", "SIM_RUNTIME",
           "find_cxx"]
