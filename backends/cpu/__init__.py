"""The cpu backend: kernel IR -> LLVM IR -> host machine code (through llvmlite)."""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

from onnxc.ir.kernel import Const, IndexValue, Load, Op, Reduce, Var

from .codegen import ModuleBuilder, Slot
from .llvm_hints import cold_entry_points
from .compiler import LoadedObject, host_target, openmp_library
from .gemm_bf16 import PRECISIONS, native_supported
from .object_cache import cached_object
from .objects import pack_objects
from .parallel import compile_jobs, compile_modules
from .split import kernel_groups, split_module

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


def generate_ir(calls, *, use_openmp: bool, features: str | None = None,
                precision: str = "fp32") -> tuple[str, list[str]]:
    """LLVM IR text for the kernel calls of a plan; identical kernels share one function."""
    mb, symbols = build_module(calls, use_openmp=use_openmp, features=features,
                               precision=precision)
    return str(mb.module), symbols


def build_module(calls, *, use_openmp: bool, features: str | None = None,
                 precision: str = "fp32", threads: bool | None = None
                 ) -> tuple[ModuleBuilder, list[str]]:
    """The LLVM module (in llvmlite's IR objects) for the kernel calls of a plan.
    ``precision="bf16"``: GEMM stages with bfloat16 operands (gemm_bf16.py), with the host's
    avx512_bf16 instructions where ``features`` has them, else emulated (same results).
    ``use_openmp``: kernels may fork-join through libgomp; ``threads`` (default: the same):
    a run may use a thread team (onnxc's pool, which needs no libgomp)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    features = features or host_target()["features"]
    mb = ModuleBuilder(use_openmp, vector_width(features), precision,
                       precision == "bf16" and native_supported(features),
                       threads=use_openmp if threads is None else threads)
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
    cold_entry_points(mb.module)
    return mb, symbols


def _structural_key(kernel) -> str:
    """Kernels equal up to tensor names and index-variable ids compile to the same code: a
    serialization with parameters by position, variables by first appearance and every
    expression's element type (a cast to int4 and one to int2 differ only there)."""
    pos = {p.name: k for k, p in enumerate(kernel.params)}
    var_ids: dict[int, int] = {}
    memo: dict[int, str] = {}

    def var(v) -> str:
        return f"v{var_ids.setdefault(v.uid, len(var_ids))}"

    def ix(i) -> str:
        if isinstance(i, Var):
            return var(i)
        if i.kind == "const":
            return str(i.a)
        if i.kind == "load":
            return f"L({expr(i.a)})"
        return f"{i.kind}({ix(i.a)},{ix(i.b)})"

    def expr(e) -> str:
        if id(e) in memo:  # shared sub-expressions: the key stays linear in the DAG's size
            return memo[id(e)]
        if isinstance(e, Load):
            text = f"ld{pos[e.tensor]}[{','.join(ix(i) for i in e.index)}]{e.pad!r}"
        elif isinstance(e, Const):
            text = f"c{e.value!r}"
        elif isinstance(e, IndexValue):
            text = f"iv({ix(e.index)})"
        elif isinstance(e, Op):
            text = f"{e.name}({','.join(expr(a) for a in e.args)})"
        elif isinstance(e, Reduce):
            axes = ",".join(f"{var(v)}<{n}" for v, n in e.axes)
            text = f"{e.kind}[{axes}]({expr(e.body)})"
        else:
            raise TypeError(f"unknown expression {e!r}")
        memo[id(e)] = text = f"{text}:{e.dtype.value}"
        return text

    parts = [f"{p.role}:{p.dtype.value}{list(p.shape)}" for p in kernel.params]
    # precision="bf16": which stage reads which operand prepared (runtime/build.py)
    prepared = getattr(kernel, "bf16_prepacked", {})
    parts += [f"bf16:{k}:{''.join(sorted(prepared[st.out]))}"
              for k, st in enumerate(kernel.stages) if st.out in prepared]
    # fp32: which stage reads its b operand as prepared panels, for which vector width
    packed = getattr(kernel, "f32_prepacked", {})
    parts += [f"f32:{k}:{packed[st.out][1]}" for k, st in enumerate(kernel.stages)
              if st.out in packed]
    for st in kernel.stages:
        parts.append(f"{pos[st.out]}[{','.join(var(v) for v in st.vars)}]{list(st.shape)}="
                     f"{expr(st.body)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def compile_plan(calls, *, opt_level: int = 3, use_openmp: bool = True,
                 precision: str = "fp32") -> CompiledCode:
    threads = use_openmp  # the team runs on onnxc's pool: without libgomp too
    use_openmp = use_openmp and openmp_library() is not None
    start = time.perf_counter()
    mb, symbols = build_module(calls, use_openmp=use_openmp, precision=precision,
                               threads=threads)
    # Independent kernels go to separate modules that LLVM compiles in parallel (split.py).
    texts = split_module(mb.module, kernel_groups(mb.stage_table, mb.module), compile_jobs())
    llvm_ir = "\n".join(texts)
    mid = time.perf_counter()
    target, level = host_target(), 3 if opt_level >= 1 else 0
    obj, hit = cached_object(llvm_ir, target, level,
                             lambda: pack_objects(compile_modules(texts, target, level)))
    log.info("cpu: %d kernels (%d distinct), LLVM IR %.2fs, machine code %.2fs (%d module%s)%s",
             len(calls), len(set(symbols)), mid - start, time.perf_counter() - mid, len(texts),
             "s" if len(texts) > 1 else "", " (object cache hit)" if hit else "")
    return CompiledCode(obj, target, use_openmp, llvm_ir, symbols)


def load_code(object_code: bytes, target: dict, needs_openmp: bool) -> LoadedObject:
    return LoadedObject(object_code, target, needs_openmp)


__all__ = ["CompiledCode", "compile_plan", "generate_ir", "load_code", "host_target"]
