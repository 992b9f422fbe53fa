"""Optimize and emit several LLVM modules at once, one thread each.

llvmlite serializes every call into LLVM behind one process-wide lock (LLVM's global context
is not thread-safe). Here every module lives in its own LLVM context with its own target
machine and pass builder, which LLVM supports compiling concurrently, so the two long calls
(the optimization pipeline and the code generator) run without that lock; ctypes releases the
GIL around them. Should llvmlite's internals change (no raw function to call), they fall back
to llvmlite's locked calls: still correct, just one module at a time.
"""
from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor

import llvmlite.binding as llvm
from llvmlite.binding import ffi

from onnxc.ir.errors import CompileError

from .compiler import _target_machine, compile_module, host_target


def compile_jobs() -> int:
    """Threads for compiling: ``$ONNXC_COMPILE_JOBS``, else one per core the process may use
    (``1`` = one module, llvmlite's locked calls)."""
    value = os.environ.get("ONNXC_COMPILE_JOBS", "").strip()
    if not value:
        value = "0"
    try:
        jobs = int(value)
    except ValueError:
        raise CompileError(f"ONNXC_COMPILE_JOBS={value!r} is not a number; set it to the "
                           f"number of threads to compile with (1 = no threads)") from None
    if jobs == 0:  # one per core the process may use
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return max(1, os.cpu_count() or 1)
    return max(1, jobs)


UNLOCKED = True  # see _raw


def _raw(name: str):
    """The unlocked ctypes function behind llvmlite's wrapper, or None (the locked wrapper).

    (It was off for a while: a CI abort inside MCJIT finalize was first blamed on it. The cause
    was the small code model's 32-bit relocations, see compiler.CODE_MODEL; the abort also
    happened on a main without the concurrent compile.)"""
    if not UNLOCKED:
        return None
    return getattr(getattr(ffi.lib, name), "_cfn", None)


def _optimize(mod, tm, opt_level: int) -> None:
    pto = llvm.create_pipeline_tuning_options(speed_level=min(opt_level, 3))
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    run = _raw("LLVMPY_RunNewModulePassManager")
    if run is None:
        mpm.run(mod, pb)
    else:
        run(mpm, mod, pb)


def _emit(mod, tm) -> bytes:
    emit = _raw("LLVMPY_TargetMachineEmitToMemory")
    if emit is None:
        return tm.emit_object(mod)
    with ffi.OutputString() as err:
        buf = emit(tm, mod, 1, err)
        if not buf:
            raise CompileError(f"LLVM could not emit object code: {err}")
    try:
        return ctypes.string_at(ffi.lib.LLVMPY_GetBufferStart(buf),
                                ffi.lib.LLVMPY_GetBufferSize(buf))
    finally:
        ffi.lib.LLVMPY_DisposeMemoryBuffer(buf)


def compile_one(llvm_ir: str, target: dict[str, str], opt_level: int) -> bytes:
    """Parse, verify, optimize and emit one module in a context of its own."""
    context = llvm.create_context()
    tm = _target_machine(target)
    try:
        mod = llvm.parse_assembly(llvm_ir, context=context)
        mod.triple = target["triple"]
        mod.data_layout = str(tm.target_data)
        mod.verify()
    except RuntimeError as exc:
        raise CompileError(f"generated LLVM IR is invalid: {exc}") from exc
    if opt_level > 0:
        _optimize(mod, tm, opt_level)
    obj = _emit(mod, tm)
    del mod  # before its context
    return obj


def compile_modules(texts: list[str], target: dict[str, str] | None = None,
                    opt_level: int = 3) -> list[bytes]:
    """Object code of each module, compiled concurrently."""
    target = target or host_target()
    if len(texts) == 1:  # llvmlite's own locked calls: safe beside other threads' compiles
        return [compile_module(texts[0], target, opt_level)]
    with ThreadPoolExecutor(max_workers=len(texts), thread_name_prefix="onnxc-llvm") as pool:
        return list(pool.map(lambda text: compile_one(text, target, opt_level), texts))
