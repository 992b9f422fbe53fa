"""The cpu backend: kernel IR -> LLVM IR -> host machine code (through llvmlite)."""
from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass

from onnxc.ir.kernel import IndexValue, Load, Reduce, walk
from onnxc.ir.printer import print_kernel

from .codegen import ModuleBuilder, Slot
from .compiler import LoadedObject, compile_module, host_target, openmp_library
from .object_cache import cached_object

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
    """Kernels equal up to parameter and index-variable names compile to the same code.

    Parameters become their positions and index variables are numbered by first appearance,
    so the key depends neither on names nor on the process-wide variable counter (which
    differs between two compiles of one model), and two kernels that use their variables
    differently (a transpose and a copy) keep different keys."""
    params = {p.name: f"$p{k}" for k, p in enumerate(kernel.params)}
    names = _variable_names(kernel)
    variables: dict[str, str] = {}

    def canonical(match: re.Match) -> str:
        token = match.group(0)
        if token in params:
            return params[token]
        if token in names:
            return variables.setdefault(token, f"$v{len(variables)}")
        return token

    body = print_kernel(kernel, typed=True).split("(", 1)[1]  # drop the kernel's own name
    return hashlib.sha256(_TOKEN.sub(canonical, body).encode()).hexdigest()


_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _variable_names(kernel) -> set[str]:
    """The printed names of every index variable of the kernel (loop, reduction, index)."""
    names: set[str] = set()
    for st in kernel.stages:
        names.update(map(repr, st.vars))
        for e in walk(st.body):
            if isinstance(e, Reduce):
                names.update(repr(v) for v, _ in e.axes)
            elif isinstance(e, Load):
                for ix in e.index:
                    names.update(map(repr, ix.vars()))
            elif isinstance(e, IndexValue):
                names.update(map(repr, e.index.vars()))
    return names


def compile_plan(calls, *, opt_level: int = 3, use_openmp: bool = True) -> CompiledCode:
    use_openmp = use_openmp and openmp_library() is not None
    start = time.perf_counter()
    llvm_ir, symbols = generate_ir(calls, use_openmp=use_openmp)
    mid = time.perf_counter()
    target, level = host_target(), 3 if opt_level >= 1 else 0
    obj, hit = cached_object(llvm_ir, target, level,
                             lambda: compile_module(llvm_ir, target, opt_level=level))
    log.info("cpu: %d kernels (%d distinct), LLVM IR %.2fs, machine code %.2fs%s", len(calls),
             len(set(symbols)), mid - start, time.perf_counter() - mid,
             " (object cache hit)" if hit else "")
    return CompiledCode(obj, target, use_openmp, llvm_ir, symbols)


def load_code(object_code: bytes, target: dict, needs_openmp: bool) -> LoadedObject:
    return LoadedObject(object_code, target, needs_openmp)


__all__ = ["CompiledCode", "compile_plan", "generate_ir", "load_code", "host_target"]
