"""Lowering of kernel IR to LLVM IR for the host CPU.

Each kernel becomes ``void @<name>(ptr params, i32 nthreads)``; each of its stages a loop nest
``void @<name>.s<k>(ptr params, i32 tid, i32 nthreads)`` that computes its share of the outer
iterations. One ``@onnxc_main`` calls every kernel in order, so a whole run is one native call;
with two or more threads it opens one OpenMP region for the run (team.py) in which the threads
claim chunks of each stage. A kernel called on its own (profiling) forks and joins per stage.

Schedules: a stage whose value is ``epilogue(reduce(...))`` and whose loads run along the
innermost output axis is computed a row tile at a time (``row``): accumulators for a tile of the
innermost axis live in a stack array, the reduction loops run outside and the tile loop inside,
so LLVM vectorizes it over the contiguous axis (MatMul, Conv, pooling). Otherwise the reduction
runs innermost per output element (``point``), which vectorizes along a contiguous reduction.
Sliding windows (depthwise conv, pooling), strided/padded copies and contiguous multi-axis
reductions have their own vector schedules (window.py, flat_reduce.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from llvmlite import ir

from onnxc.ir.dtypes import DType
from onnxc.ir.errors import CompileError
from onnxc.ir.kernel import (Const, Expr, IndexValue, Ix, Kernel, Load, Op, Reduce, Stage, Var,
                             flat_coef, loads, walk)
from onnxc.ir.types import static_strides

from . import narrow
from .scalar import ScalarOps
from .gemm import emit_gemm, gemm_outer_extent, match_gemm
from .gemm_packed import emit_gemm_packed, packed_outer_extent, use_packed
from .gemm_bf16 import bf16_outer_extent, emit_gemm_bf16, use_bf16
from .phase_split import phases, specialize
from .inplace import emit_versioned
from .gemv import emit_gemv, gemv_outer_extent, match_row_vector, use_gemv
from .llvm_hints import disable_unroll
from .llvm_types import I1, I32, I64, PTR, VOID, storage_type, value_type
from . import pool
from .team import add_team, serial_calls, stage_count
from .window import emit_window, match_window, window_outer_extent
from .window import worth_parallel as window_worth_parallel
from .window_fuse import inline_window_copies
from .team import enabled as team_enabled

ROW_TILE = 256
PARALLEL_MIN_WORK = 1 << 17
# A run opens a thread team only when its parallel stages hold this much work (multiply-adds)
# in all and per stage of the run on average: below it the team's per-stage hand-offs cost
# more than a second core saves. (Lower since 2026-11-28: the pool no longer waits for a
# worker that has not started (pool.py) and a thread keeps its share of every stage (team.py),
# so an MLP at batch 1 and an LSTM's steps gain from a team too.)
TEAM_MIN_WORK = 1 << 20
TEAM_MIN_STAGE_WORK = 1 << 15
REASSOC = ("reassoc", "contract")


@dataclass(frozen=True)
class Slot:
    """Where a kernel parameter lives at run time: a feed, an output, a constant or the arena."""

    region: str  # "input" | "output" | "const" | "arena"
    index: int  # position for input/output/const, byte offset for arena


class ModuleBuilder:
    """Accumulates kernels and the main entry point into one LLVM module."""

    def __init__(self, use_openmp: bool, vector_width: int = 8, precision: str = "fp32",
                 bf16_native: bool = False, threads: bool | None = None):
        self.module = ir.Module(name="onnxc")
        # "bf16": GEMM stages multiply bfloat16 operands (gemm_bf16.py), natively with
        # avx512_bf16 (bf16_native) or emulated with the same results
        self.precision, self.bf16_native = precision, bf16_native
        self.use_openmp = use_openmp  # kernels may fork-join per stage through libgomp
        self.threads = use_openmp if threads is None else threads  # runs may use the pool
        self.vector_width = vector_width  # float32 lanes of the widest vector unit
        self._names: set[str] = set()
        # kernel symbol -> [(stage function, worth parallelising, outer extent)], for the team
        self.stage_table: dict[str, list[tuple[ir.Function, bool, int]]] = {}
        self.parallel_work: dict[str, int] = {}  # kernel symbol -> work of its parallel stages

    # -- declarations ----------------------------------------------------------------------
    def declare(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        return ir.Function(self.module, ir.FunctionType(ret, args), name)

    def unique(self, name: str) -> str:
        base, k = name, 1
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    # -- kernels ---------------------------------------------------------------------------
    def add_kernel(self, kernel: Kernel) -> ir.Function:
        fn = ir.Function(self.module, ir.FunctionType(VOID, [PTR, I32]), self.unique(kernel.name))
        fn.args[0].name, fn.args[1].name = "params", "nthreads"
        # Inlining hundreds of kernels into onnxc_main only slows LLVM down (a call per kernel
        # costs nothing next to its loops), and keeps each kernel a symbol for profiling.
        fn.attributes.add("noinline")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        shapes = {p.name: p.shape for p in kernel.params}
        dtypes = {p.name: p.dtype for p in kernel.params}
        table = self.stage_table[fn.name] = []
        for k, st in enumerate(inline_window_copies(kernel)):
            try:
                body = StageEmitter(self, kernel, st, f"{fn.name}.s{k}").emit()
            except CompileError:
                raise
            except Exception as exc:  # a bug in onnxc: say which kernel
                raise CompileError(f"code generation failed for kernel {kernel.name} stage "
                                   f"{st.out}: {type(exc).__name__}: {exc}") from exc
            chosen = gemm_schedule(st, shapes, self.vector_width, self.precision)
            window = None if chosen else match_window(st, shapes, dtypes)
            if window is not None:
                parallel = window_worth_parallel(st, window)
                table.append((body, parallel, window_outer_extent(st)))
            else:
                parallel = _worth_parallel(st, shapes, self.vector_width, self.precision)
                table.append((body, parallel, _outer_extent(st, shapes, self.vector_width,
                                                            self.precision)))
            self.parallel_work[fn.name] = self.parallel_work.get(fn.name, 0) + \
                (_stage_work(st) if parallel else 0)
            if self.use_openmp and parallel:
                wrapper = self._omp_wrapper(body)
                gomp = self.declare("GOMP_parallel", VOID, [PTR, PTR, I32, I32])
                serial = b.icmp_signed("<=", fn.args[1], I32(1))
                # A one-row product (gemv: small code) is inlined here, specialized to the
                # whole range: its run-time share bounds cost a 1-thread MLP at batch 1 5%.
                inline = ("alwaysinline",) if chosen and chosen[0] == "gemv" else ()
                with b.if_else(serial) as (then, otherwise):
                    with then:
                        b.call(body, [fn.args[0], I32(0), I32(1)], attrs=inline)
                    with otherwise:
                        b.call(gomp, [wrapper, fn.args[0], fn.args[1], I32(0)])
            else:
                b.call(body, [fn.args[0], I32(0), I32(1)])
        b.ret_void()
        return fn

    def _omp_wrapper(self, body: ir.Function) -> ir.Function:
        fn = ir.Function(self.module, ir.FunctionType(VOID, [PTR]), body.name + ".omp")
        fn.linkage = "internal"
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        tid = b.call(self.declare("omp_get_thread_num", I32, []), [])
        nt = b.call(self.declare("omp_get_num_threads", I32, []), [])
        b.call(body, [fn.args[0], tid, nt])
        b.ret_void()
        return fn

    def add_main(self, calls: list[tuple[ir.Function, list[Slot]]]) -> ir.Function:
        """``void onnxc_main(ptr inputs, ptr outputs, ptr consts, ptr arena, i32 nthreads)``."""
        fn = ir.Function(self.module, ir.FunctionType(VOID, [PTR, PTR, PTR, PTR, I32]),
                         "onnxc_main")
        for arg, name in zip(fn.args, ("inputs", "outputs", "consts", "arena", "nthreads")):
            arg.name = name
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        # A model with no stage worth parallelising (an MLP at batch 1, an LSTM's small steps)
        # runs on the calling thread: a team would only add its start and end to every run.
        work = sum(self.parallel_work.get(kfn.name, 0) for kfn, _ in calls)
        any_parallel = work >= max(TEAM_MIN_WORK, TEAM_MIN_STAGE_WORK *
                                   stage_count(calls, self.stage_table))
        if not (self.threads and team_enabled()) or not any_parallel:
            serial_calls(b, fn, calls, I32(1) if not (self.use_openmp and any_parallel)
                         else fn.args[4])
            b.ret_void()
            return fn
        # Two or more threads: one parallel region for the whole run (see team.py).
        team = add_team(self, calls, self.stage_table)
        serial = b.icmp_signed("<=", fn.args[4], I32(1))
        with b.if_else(serial) as (then, otherwise):
            with then:
                serial_calls(b, fn, calls, I32(1))
            with otherwise:
                n = max(stage_count(calls, self.stage_table), 1)
                counters = b.alloca(I64, size=I64(2 * n), name="counters")
                memset = self.declare("llvm.memset.p0.i64", VOID,
                                      [PTR, ir.IntType(8), I64, I1])
                b.call(memset, [counters, ir.IntType(8)(0), I64(16 * n), I1(0)])
                ctx = b.alloca(PTR, size=I64(5), name="ctx")
                for k, value in enumerate([*fn.args[:4], counters]):
                    b.store(value, b.gep(ctx, [I64(k)], source_etype=PTR))
                run = self.declare(pool.RUN_SYMBOL, VOID, [PTR, PTR, I32])
                b.call(run, [team, ctx, fn.args[4]])
        b.ret_void()
        return fn


def _reduce_work(st: Stage) -> int:
    work = 1
    for e in walk(st.body):
        if isinstance(e, Reduce):
            work *= math.prod(n for _, n in e.axes)
    return work


def gemm_schedule(st: Stage, shapes, vw: int, precision: str = "fp32"
                  ) -> tuple[str, object] | None:
    """Which GEMM schedule runs ``st`` ("bf16", "gemv", "packed" or "gemm") and its plan, or
    None. StageEmitter.emit and the parallel split both follow this one choice; the window
    schedule (window.py) is tried only when it is None."""
    plan = match_gemm(st, shapes)
    if precision == "bf16":  # batch-1 products too (gemm_bf16.py)
        bplan = plan or match_gemm(st, shapes, min_rows=1)
        if bplan is not None and use_bf16(st, bplan, shapes):
            return "bf16", bplan
    if plan is None:  # a one-row product, only for the few-row schedule
        plan = match_row_vector(st, shapes)
        return ("gemv", plan) if plan is not None and use_gemv(st, plan, shapes, vw) else None
    if use_gemv(st, plan, shapes, vw):
        return "gemv", plan
    return ("packed" if use_packed(st, plan, shapes, vw) else "gemm"), plan


def _stage_work(st: Stage) -> int:
    return math.prod(st.shape) * _reduce_work(st)


def _worth_parallel(st: Stage, shapes, vw: int, precision: str = "fp32") -> bool:
    return (_stage_work(st) >= PARALLEL_MIN_WORK
            and _outer_extent(st, shapes, vw, precision) > 1)


def _outer_extent(st: Stage, shapes, vw: int, precision: str = "fp32") -> int:
    if not st.shape:
        return 1
    chosen = gemm_schedule(st, shapes, vw, precision)
    if chosen is not None:
        kind, plan = chosen
        extent = {"bf16": lambda: bf16_outer_extent(st, plan),
                  "gemv": lambda: gemv_outer_extent(st, plan, vw),
                  "packed": lambda: packed_outer_extent(st, plan, vw),
                  "gemm": lambda: gemm_outer_extent(st, plan, vw)}[kind]
        return extent()
    outer = math.prod(st.shape[:-1])
    if _row_reduce(st, shapes) is not None:
        outer *= -(-st.shape[-1] // ROW_TILE)
    return outer


def _top_reduces(expr: Expr) -> list[Reduce]:
    # Expressions are DAGs (fusion shares sub-expressions): visit each node once, or a chain
    # of fused activations that each read their input twice costs 2**depth steps.
    found, stack, seen = [], [expr], set()
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, Reduce):
            found.append(e)
        elif isinstance(e, Op):
            stack.extend(e.args)
    return found


def _row_reduce(st: Stage, shapes: dict[str, tuple[int, ...]]) -> Reduce | None:
    """The stage's single reduction, if the row-tile schedule suits it."""
    if not st.shape or st.shape[-1] < 4:
        return None
    reds = _top_reduces(st.body)
    if len(reds) != 1 or any(isinstance(e, Reduce) for e in walk(reds[0].body)):
        return None
    return reds[0] if _row_candidate(reds[0], st, shapes) else None


def _row_candidate(red: Reduce, st: Stage, shapes) -> bool:
    inner = st.vars[-1]
    for ld in loads(red.body):
        shape = shapes.get(ld.tensor)
        if shape is None:
            continue
        c = flat_coef(ld, inner, shape)
        if c is not None and 1 <= abs(c) <= 2:
            return True
    return False


class StageEmitter:
    """Emits one stage's loop nest as an LLVM function."""

    def __init__(self, mb: ModuleBuilder, kernel: Kernel, st: Stage, name: str):
        self.mb, self.kernel, self.st = mb, kernel, st
        self.fn = ir.Function(mb.module, ir.FunctionType(VOID, [PTR, I32, I32]), name)
        self.fn.linkage = "internal"
        self.fn.args[0].name, self.fn.args[1].name, self.fn.args[2].name = "params", "tid", "nt"
        self.entry = self.fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.fn.append_basic_block("start"))
        self.ptrs: dict[str, ir.Value] = {}
        self.shapes = {p.name: p.shape for p in kernel.params}
        self.dtypes = {p.name: p.dtype for p in kernel.params}
        self.reduce_values: dict[int, ir.Value] = {}
        # (expression, environment) -> value: fused expressions are DAGs, emit each node once.
        # Entries keep their env and expr alive so ids are never reused while this lives.
        self._memo: dict[tuple[int, int], tuple[ir.Value, dict, Expr]] = {}

    # -- helpers ---------------------------------------------------------------------------
    def share(self, total: int) -> tuple[ir.Value, ir.Value]:
        """[lo, hi): this call's share of ``total`` work units, from the stage function's
        (part, parts) arguments (thread id and count, or chunk and chunk count)."""
        b = self.b
        tid, nt = b.sext(self.fn.args[1], I64), b.sext(self.fn.args[2], I64)
        return (b.sdiv(b.mul(I64(total), tid), nt),
                b.sdiv(b.mul(I64(total), b.add(tid, I64(1))), nt))

    def alloca(self, typ: ir.Type, name: str = "", count: int | None = None) -> ir.Value:
        eb = ir.IRBuilder(self.entry)
        return eb.alloca(typ, size=None if count is None else I64(count), name=name)

    def ptr(self, tensor: str) -> ir.Value:
        if tensor not in self.ptrs:
            index = [p.name for p in self.kernel.params].index(tensor)
            eb = ir.IRBuilder(self.entry)
            slot = eb.gep(self.fn.args[0], [I64(index)], source_etype=PTR)
            self.ptrs[tensor] = eb.load(slot, typ=PTR, name=f"p{index}")
        return self.ptrs[tensor]

    def loop(self, start: ir.Value, end: ir.Value, body, name: str = "i",
             unroll: bool = True) -> None:
        """``for i in [start, end): body(i)``; ``unroll=False`` for loops that run a few times
        per tile (epilogues, packing): LLVM unrolling them costs compile time, gains nothing."""
        b = self.b
        counter = self.alloca(I64, name)
        b.store(start, counter)
        cond = self.fn.append_basic_block(f"{name}.cond")
        blk = self.fn.append_basic_block(f"{name}.body")
        done = self.fn.append_basic_block(f"{name}.end")
        b.branch(cond)
        b.position_at_end(cond)
        i = b.load(counter, typ=I64)
        b.cbranch(b.icmp_signed("<", i, end), blk, done)
        b.position_at_end(blk)
        body(i)
        b.store(b.add(b.load(counter, typ=I64), I64(1), flags=["nsw"]), counter)
        latch = b.branch(cond)
        if not unroll:
            disable_unroll(self.mb.module, latch)
        b.position_at_end(done)

    # -- index and offset arithmetic -------------------------------------------------------
    def ix(self, e: Ix, env: dict[Var, ir.Value]) -> ir.Value:
        if isinstance(e, Var):
            return env[e]
        if e.kind == "const":
            return I64(e.a)
        if e.kind == "load":  # a data-dependent index: the element, widened to i64
            v = self.load(e.a, env)
            if v.type.width < 64:
                v = self.b.zext(v, I64) if e.a.dtype.is_unsigned_int else self.b.sext(v, I64)
            return v
        a, c = self.ix(e.a, env), self.ix(e.b, env)
        b = self.b
        if e.kind == "add":
            return b.add(a, c, flags=["nsw"])
        if e.kind == "mul":
            return b.mul(a, c, flags=["nsw"])
        if e.kind == "div":
            return b.sdiv(a, c)
        if e.kind in ("min", "max"):
            return b.select(b.icmp_signed("<" if e.kind == "min" else ">", a, c), a, c)
        return b.srem(a, c)

    def address(self, tensor: str, index: list[ir.Value]) -> ir.Value:
        shape = self.shapes[tensor]
        offset = None
        for i, stride in zip(index, static_strides(shape)):
            term = i if stride == 1 else self.b.mul(i, I64(stride), flags=["nsw"])
            offset = term if offset is None else self.b.add(offset, term, flags=["nsw"])
        offset = I64(0) if offset is None else offset
        return self.b.gep(self.ptr(tensor), [offset], source_etype=storage_type(
            self.dtypes[tensor]), inbounds=True)

    def load(self, e: Load, env) -> ir.Value:
        b = self.b
        shape = self.shapes[e.tensor]
        index = [self.ix(i, env) for i in e.index]
        inside = None
        if e.pad is not None:
            clamped = []
            for i, n in zip(index, shape):
                ok = b.and_(b.icmp_signed(">=", i, I64(0)), b.icmp_signed("<", i, I64(n)))
                inside = ok if inside is None else b.and_(inside, ok)
                lo = b.select(b.icmp_signed("<", i, I64(0)), I64(0), i)
                clamped.append(b.select(b.icmp_signed(">=", lo, I64(n)), I64(max(n - 1, 0)), lo))
            index = clamped
        value = self.from_storage(b.load(self.address(e.tensor, index),
                                         typ=storage_type(e.dtype)), e.dtype)
        if inside is not None:
            value = b.select(inside, value, self.constant(e.pad, e.dtype))
        return value

    def store(self, value: ir.Value, tensor: str, index: list[ir.Value]) -> None:
        self.b.store(self.to_storage(value, self.dtypes[tensor]), self.address(tensor, index))

    def from_storage(self, raw: ir.Value, dtype: DType) -> ir.Value:
        """A loaded element as its register value (narrow floats widen to float32)."""
        b = self.b
        if dtype == DType.bool:
            return b.icmp_unsigned("!=", raw, raw.type(0))
        if dtype == DType.float16:
            return b.fpext(raw, value_type(dtype))
        if dtype.is_narrow_float:
            return narrow.decode(b, self.mb.module, dtype, raw)
        if dtype.is_sub_byte_int:
            return narrow.wrap(b, dtype, raw)
        return raw

    def to_storage(self, value: ir.Value, dtype: DType) -> ir.Value:
        """A register value as the element's stored bits: narrow floats round to nearest even
        here, once (a bfloat16 Add computes in float32 and rounds at the store)."""
        b = self.b
        if dtype == DType.bool:
            return b.zext(value, storage_type(DType.bool))
        if dtype == DType.float16:
            return b.fptrunc(value, storage_type(DType.float16))
        if dtype.is_narrow_float:
            return narrow.encode(b, self.mb.module, dtype, value)
        if dtype.is_sub_byte_int:
            return narrow.store_bits(b, dtype, value)
        return value

    # -- scalar expressions ----------------------------------------------------------------
    def constant(self, value, dtype: DType) -> ir.Value:
        t = value_type(dtype)
        if dtype.is_narrow_float and dtype != DType.float16 and math.isfinite(value):
            with np.errstate(all="ignore"):  # the nearest value of the type, as numpy gives it
                return t(float(np.asarray(value, dtype=dtype.np).astype(np.float32)))
        if dtype.is_float:
            return t(float(value))
        if dtype == DType.bool:
            return t(int(bool(value)))
        if isinstance(value, float) and math.isinf(value):
            bits = t.width
            if dtype.is_unsigned_int:
                return t(0 if value < 0 else (1 << bits) - 1)
            return t(-(1 << (bits - 1)) if value < 0 else (1 << (bits - 1)) - 1)
        return t(int(value))

    def expr(self, e: Expr, env) -> ir.Value:
        if isinstance(e, Reduce) and id(e) in self.reduce_values:
            return self.reduce_values[id(e)]
        key = (id(e), id(env))
        hit = self._memo.get(key)
        if hit is not None:
            return hit[0]
        value = self._expr(e, env)
        self._memo[key] = (value, env, e)
        return value

    def _expr(self, e: Expr, env) -> ir.Value:
        if isinstance(e, Const):
            return self.constant(e.value, e.dtype)
        if isinstance(e, Load):
            return self.load(e, env)
        if isinstance(e, IndexValue):
            return self.ix(e.index, env)
        if isinstance(e, Reduce):
            if id(e) in self.reduce_values:
                return self.reduce_values[id(e)]
            return self.reduce_point(e, env)
        if isinstance(e, Op):
            return ScalarOps(self).emit(e, [self.expr(a, env) for a in e.args])
        raise CompileError(f"cannot lower expression {e!r}")

    def reduce_init(self, kind: str, dtype: DType) -> ir.Value:
        if dtype == DType.bool:
            return self.constant(kind in ("min", "prod"), dtype)
        return self.constant({"sum": 0, "prod": 1, "max": -math.inf, "min": math.inf}[kind],
                             dtype)

    def combine(self, kind: str, dtype: DType, acc: ir.Value, v: ir.Value) -> ir.Value:
        ops = ScalarOps(self)
        if kind == "sum":
            return ops.arith("add", dtype, acc, v, flags=REASSOC)
        if kind == "prod":
            return ops.arith("mul", dtype, acc, v, flags=REASSOC)
        return ops.minmax(kind, dtype, acc, v)

    def reduce_point(self, e: Reduce, env) -> ir.Value:
        acc = self.alloca(value_type(e.dtype), "acc")
        self.b.store(self.reduce_init(e.kind, e.dtype), acc)

        def nest(level: int, inner_env):
            if level == len(e.axes):
                v = self.expr(e.body, inner_env)
                cur = self.b.load(acc, typ=value_type(e.dtype))
                self.b.store(self.combine(e.kind, e.dtype, cur, v), acc)
                return
            var, extent = e.axes[level]
            self.loop(I64(0), I64(extent),
                      lambda i: nest(level + 1, {**inner_env, var: i}), name=f"r{level}")

        nest(0, dict(env))
        return self.b.load(acc, typ=value_type(e.dtype))

    # -- the loop nest ---------------------------------------------------------------------
    def emit(self) -> ir.Function:
        st, b = self.st, self.b
        chosen = gemm_schedule(st, self.shapes, self.mb.vector_width, self.mb.precision)
        if chosen is not None:
            kind, plan = chosen
            vw = self.mb.vector_width
            if kind == "bf16":
                emit_gemm_bf16(self, plan, vw, self.mb.bf16_native)
            elif kind == "gemv":
                emit_gemv(self, plan, vw)
            elif kind == "packed":
                emit_gemm_packed(self, plan, vw)
            else:
                emit_gemm(self, plan, vw)
            b.ret_void()
            ir.IRBuilder(self.entry).branch(self.fn.blocks[1])
            return self.fn
        window = match_window(st, self.shapes, self.dtypes)
        if window is not None:  # depthwise conv, pooling, pad/stride copies (window.py)
            emit_window(self, window, self.mb.vector_width)
            b.ret_void()
            ir.IRBuilder(self.entry).branch(self.fn.blocks[1])
            return self.fn
        red = _row_reduce(st, self.shapes)
        rank = len(st.shape)
        split = phases(st) if red is None and rank else None
        outer_shape = list(st.shape[:-1]) if rank else []
        inner = st.shape[-1] if rank else 1
        tiles = -(-inner // ROW_TILE) if red is not None else 1
        total = math.prod(outer_shape) * tiles
        lo, hi = self.share(total)

        def outer_body(q):
            env: dict[Var, ir.Value] = {}
            rest = q
            if red is not None:
                tile = b.urem(rest, I64(tiles))
                rest = b.udiv(rest, I64(tiles))
            for k in range(len(outer_shape) - 1, -1, -1):
                env[st.vars[k]] = b.urem(rest, I64(outer_shape[k])) if k else rest
                if k:
                    rest = b.udiv(rest, I64(outer_shape[k]))
            if rank == 0:
                self.store(self.expr(st.body, env), st.out, [])
            elif red is not None:
                self.emit_row(red, env, tile)
            elif split:
                self.emit_phased(env, split)
            else:
                def point(j):
                    env2 = {**env, st.vars[-1]: j}
                    self.store(self.expr(st.body, env2), st.out,
                               [env2[v] for v in st.vars])
                self.loop(I64(0), I64(inner), point, name="j")

        emit_versioned(self, lambda: self.loop(lo, hi, outer_body, name="q"))
        b.ret_void()
        ir.IRBuilder(self.entry).branch(self.fn.blocks[1])
        return self.fn

    def emit_phased(self, env, d: int) -> None:
        """The inner loop as x = d*u + r, one body per phase r (backends/cpu/phase_split.py)."""
        st, b = self.st, self.b
        u = Var("u")
        bodies = [specialize(st, u, r, d) for r in range(d)]
        inner = st.shape[-1]

        def point(uv, r):
            x = b.add(b.mul(uv, I64(d), flags=["nsw"]), I64(r), flags=["nsw"])
            env2 = {**env, u: uv, st.vars[-1]: x}
            self.store(self.expr(bodies[r], env2), st.out, [env2[v] for v in st.vars])

        self.loop(I64(0), I64(inner // d),
                  lambda uv: [point(uv, r) for r in range(d)] and None, name="u")
        for r in range(inner % d):
            point(I64(inner // d), r)

    def emit_row(self, red: Reduce, env, tile: ir.Value) -> None:
        st, b = self.st, self.b
        inner = st.shape[-1]
        jvar = st.vars[-1]
        vt = value_type(red.dtype)
        width = min(ROW_TILE, inner)
        acc = self.alloca(vt, "row", count=width)
        start = b.mul(tile, I64(ROW_TILE))
        rem = b.sub(I64(inner), start)
        count = b.select(b.icmp_signed("<", rem, I64(width)), rem, I64(width))

        def slot(j):
            return b.gep(acc, [j], source_etype=vt, inbounds=True)

        self.loop(I64(0), count, lambda j: b.store(self.reduce_init(red.kind, red.dtype),
                                                   slot(j)), name="init")

        def nest(level: int, renv):
            if level == len(red.axes):
                def step(j):
                    v = self.expr(red.body, {**renv, jvar: b.add(start, j, flags=["nsw"])})
                    cur = b.load(slot(j), typ=vt)
                    b.store(self.combine(red.kind, red.dtype, cur, v), slot(j))
                self.loop(I64(0), count, step, name="jt")
                return
            var, extent = red.axes[level]
            self.loop(I64(0), I64(extent), lambda i: nest(level + 1, {**renv, var: i}),
                      name=f"r{level}")

        nest(0, dict(env))

        def finish(j):
            env2 = {**env, jvar: b.add(start, j, flags=["nsw"])}
            self.reduce_values[id(red)] = b.load(slot(j), typ=vt)
            self.store(self.expr(st.body, env2), st.out, [env2[v] for v in st.vars])
            del self.reduce_values[id(red)]

        self.loop(I64(0), count, finish, name="out")
