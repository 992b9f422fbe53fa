"""The cpu backend: kernel IR -> LLVM IR -> host machine code (through llvmlite)."""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

from onnxc.ir.dtypes import DType
from onnxc.ir.printer import print_kernel

from .codegen import ModuleBuilder, Slot
from .compiler import LoadedObject, compile_module, host_target, openmp_library

log = logging.getLogger("onnxc.backends.cpu")


@dataclass
class CompiledCode:
    """Machine code for one execution plan, and what is needed to load it again."""

    object_code: bytes
    target: dict
    needs_openmp: bool
    llvm_ir: str
    kernel_symbols: list[str]


def vector_width(features: str) -> int:
    """float32 lanes of the host's widest vector unit."""
    flags = set(features.split(","))
    return 16 if "+avx512f" in flags else 8 if "+avx2" in flags else 4


def generate_ir(calls, *, use_openmp: bool, features: str | None = None) -> tuple[str, list[str]]:
    """LLVM IR text for the kernel calls of a plan; identical kernels share one function."""
    mb = ModuleBuilder(use_openmp, vector_width(features or host_target()["features"]))
    functions = {}
    main_calls, symbols = [], []
    for call in calls:
        key = _structural_key(call.kernel)
        fn = functions.get(key)
        if fn is None:
            fn = functions[key] = mb.add_kernel(call.kernel)
        symbols.append(fn.name)
        main_calls.append((fn, [Slot(s.region, s.index) for s in call.slots]))
    mb.add_main(main_calls)
    return str(mb.module), symbols


def _structural_key(kernel) -> str:
    """Kernels equal up to parameter names compile to the same code."""
    text = print_kernel(kernel)
    for k, p in enumerate(sorted(kernel.params, key=lambda p: -len(p.name))):
        text = text.replace(p.name, f"$p{kernel.params.index(p)}")
    import re

    # Element type names hold digits too (int4 and int2 must stay apart): letters only first.
    for k, d in enumerate(sorted(DType, key=lambda d: -len(d.value))):
        text = text.replace(d.value, f"DT{chr(65 + k // 26)}{chr(65 + k % 26)}")
    text = re.sub(r"([a-z]+)\d+", r"\1", text)  # variable ids
    text = text.split("(", 1)[1]  # drop the kernel's own name
    return hashlib.sha256(text.encode()).hexdigest()


def compile_plan(calls, *, opt_level: int = 3, use_openmp: bool = True) -> CompiledCode:
    use_openmp = use_openmp and openmp_library() is not None
    start = time.perf_counter()
    llvm_ir, symbols = generate_ir(calls, use_openmp=use_openmp)
    mid = time.perf_counter()
    obj = compile_module(llvm_ir, opt_level=3 if opt_level >= 1 else 0)
    log.info("cpu: %d kernels (%d distinct), LLVM IR %.2fs, machine code %.2fs", len(calls),
             len(set(symbols)), mid - start, time.perf_counter() - mid)
    return CompiledCode(obj, host_target(), use_openmp, llvm_ir, symbols)


def load_code(object_code: bytes, target: dict, needs_openmp: bool) -> LoadedObject:
    return LoadedObject(object_code, target, needs_openmp)


__all__ = ["CompiledCode", "compile_plan", "generate_ir", "load_code", "host_target"]
