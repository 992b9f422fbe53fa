"""The LLVM driver: optimize a module for the host CPU, emit an object file, load it to run.

Compiling and loading go through the same object file, so what a saved artifact loads is
exactly what a fresh compile runs.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading

import llvmlite.binding as llvm
from onnxc.ir.errors import ArtifactError, CompileError

from . import pool
from .objects import unpack_objects

_lock = threading.Lock()


@functools.cache
def _init() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    # Loop strength reduction was 55-70% of a cold compile (ResNet-50: 7.4 of 13.9 s; its
    # formula search grows with the address expressions of the unrolled micro-kernel and
    # epilogue loops) and bought nothing at run time: x86 addressing modes already fold
    # base + index * scale (A/B in one process, 6 models at 1 thread: run-time ratios 0.94-1.01).
    llvm.set_option("onnxc", "-disable-lsr")


@functools.cache
def openmp_library() -> str | None:
    """Path of libgomp (GCC's OpenMP runtime), loaded into the process, or None if absent.

    Since 2026-11-28 a run's thread team uses onnxc's own pool (pool.py); libgomp remains for
    the fork-join per stage that kernels called one by one use (``Session.profile``, the
    A/B switches that turn the team off); without it those run on one thread and the team
    still works. Its default wait policy stays: an idle thread spins a few ms, then sleeps."""
    candidates = [ctypes.util.find_library("gomp"), "libgomp.so.1"]
    for name in candidates:
        if not name:
            continue
        try:
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
            llvm.load_library_permanently(name) if os.path.isabs(name) else None
            return name
        except OSError:
            continue
    return None


# The large code model: every address in the object is a 64-bit absolute relocation.
# MCJIT maps an object's .text and .rodata sections wherever mmap puts them; in a process
# with big libraries and arrays mapped (PyTorch, a few large models) they can land more than
# 2 GiB apart, out of reach of the small model's 32-bit PC-relative references. LLVM then
# aborts in RuntimeDyld (`isInt<32>(RealOffset)`: llvmlite 0.50's LLVM has assertions on,
# which is how CI found it), or, built without assertions, patches in a wrong address. This is
# also LLVM's own default for JIT code on x86-64. "static": RuntimeDyld relocates the object
# anyway, and absolute relocations avoid the GOT indirections of position-independent code.
CODE_MODEL = "large"
RELOCATION_MODEL = "static"


def host_target() -> dict[str, str]:
    _init()
    return {"triple": llvm.get_process_triple(), "cpu": llvm.get_host_cpu_name(),
            "features": llvm.get_host_cpu_features().flatten(), "code_model": CODE_MODEL}


def _target_machine(target: dict[str, str]):
    _init()
    tgt = llvm.Target.from_triple(target["triple"])
    return tgt.create_target_machine(cpu=target["cpu"], features=target["features"], opt=3,
                                     reloc=RELOCATION_MODEL, codemodel=CODE_MODEL)


def compile_module(llvm_ir: str, target: dict[str, str] | None = None,
                   opt_level: int = 3) -> bytes:
    """Parse, verify, optimize and emit an object file for the target (the host by default)."""
    target = target or host_target()
    with _lock:
        tm = _target_machine(target)
        try:
            mod = llvm.parse_assembly(llvm_ir)
            mod.triple = target["triple"]
            mod.data_layout = str(tm.target_data)
            mod.verify()
        except RuntimeError as exc:
            raise CompileError(f"generated LLVM IR is invalid: {exc}") from exc
        if opt_level > 0:
            pto = llvm.create_pipeline_tuning_options(speed_level=min(opt_level, 3))
            pto.loop_vectorization = True
            pto.slp_vectorization = True
            pto.loop_unrolling = True
            pb = llvm.create_pass_builder(tm, pto)
            pb.getModulePassManager().run(mod, pb)
        return tm.emit_object(mod)


def optimized_ir(llvm_ir: str, opt_level: int = 3) -> str:
    """The optimized LLVM IR text, for inspection."""
    target = host_target()
    with _lock:
        tm = _target_machine(target)
        mod = llvm.parse_assembly(llvm_ir)
        mod.triple = target["triple"]
        mod.data_layout = str(tm.target_data)
        pto = llvm.create_pipeline_tuning_options(speed_level=min(opt_level, 3))
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
        return str(mod)


MainFn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                          ctypes.c_void_p, ctypes.c_int32)


KernelFn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int32)


class LoadedObject:
    """An object file linked into this process; keeps the JIT engine alive."""

    def __init__(self, obj: bytes, target: dict[str, str], needs_openmp: bool):
        host = host_target()
        if target["triple"] != host["triple"]:
            raise ArtifactError(f"artifact was compiled for {target['triple']}, this machine is "
                                f"{host['triple']}; recompile the model here")
        if target.get("code_model") != CODE_MODEL:
            raise ArtifactError("artifact was compiled by an older onnxc with the small code "
                                "model, which can crash the process when loaded; recompile "
                                "the model with this onnxc")
        missing = _missing_features(target["features"], host["features"])
        if missing:
            raise ArtifactError(f"artifact uses CPU features this machine lacks "
                                f"({', '.join(sorted(missing)[:8])}); recompile the model here")
        if needs_openmp and openmp_library() is None:
            raise ArtifactError("artifact needs the OpenMP runtime (libgomp), which is not "
                                "installed; install gcc's libgomp1 or recompile with "
                                "num_threads=1")
        if pool.supported():
            pool.runtime()  # onnxc_pool_run, which a team's onnxc_main calls
        with _lock:
            tm = _target_machine(host)
            self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
            for part in unpack_objects(obj):  # one per module of a split compile
                self._engine.add_object_file(llvm.ObjectFileRef.from_data(part))
            self._engine.finalize_object()
            address = self._engine.get_function_address("onnxc_main")
        if not address:
            raise ArtifactError("object code has no onnxc_main entry point")
        self.main = MainFn(address)

    def ensure_threads(self, num_threads: int) -> None:
        """Start the pool's workers a team of ``num_threads`` needs (once per process)."""
        pool.ensure_workers(num_threads)

    # forks since the pool started (a one-element list): after a fork, ensure_threads again
    forks = pool.FORKS

    def kernel(self, symbol: str):
        """One kernel's entry ``void(ptr params, i32 nthreads)``, for profiling."""
        address = self._engine.get_function_address(symbol)
        if not address:
            raise ArtifactError(f"object code has no kernel {symbol!r}")
        return KernelFn(address)


def _missing_features(wanted: str, have: str) -> set[str]:
    have_on = {f[1:] for f in have.split(",") if f.startswith("+")}
    return {f[1:] for f in wanted.split(",") if f.startswith("+") and f[1:] not in have_on}
