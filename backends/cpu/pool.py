"""The thread pool that runs a model's team: the calling thread never waits for a worker that
has not started.

Why not libgomp's ``GOMP_parallel`` (onnxc's team until 2026-11-28): a fork-join region ends
only when every thread of the team has arrived. The team's stages already hand out work in
chunks (team.py), so the calling thread can do a whole run alone, but it still waited at the
region's end for a worker that was asleep. On these 2-vCPU VMs a worker woken after 0.1 s idle
arrived 4-8 ms late (mlp_b1: first run after the pause 7.7 ms, the next one 4.0 ms, against
0.1 ms back to back), and libgomp offers no region whose end skips threads that never began.
onnxruntime's and TVM's pools work the same way as this one, for the same reason; oneTBB's
arenas do too but only have a C++ template API that generated code cannot call.

How it works (all of it LLVM IR built here, compiled once per process):

* each worker thread (pthread, started on demand, at most ``num_threads - 1``) owns a slot
  whose ``ticket`` is IDLE, POSTED or RUNNING;
* ``onnxc_pool_run(fn, ctx, nthreads)`` (called by a model's ``onnxc_main``) writes the job,
  posts it to ``nthreads - 1`` workers (a futex wake for a sleeping one), runs
  ``fn(ctx, 0, nthreads)`` itself, then takes back every ticket still POSTED (compare-and-swap
  to IDLE: that worker never started) and waits only for workers that are RUNNING;
* a worker claims a posted job by compare-and-swap POSTED -> RUNNING, runs
  ``fn(ctx, tid, nthreads)`` and sets its ticket IDLE; between jobs it spins a while
  (``spin_count``: libgomp's default, throttled as libgomp's when threads outnumber
  processors, 0 with ``OMP_WAIT_POLICY=PASSIVE``), then sleeps on a futex;
* workers keep off the caller's processor: when the caller posts from another processor than
  last time, worker w is pinned to the w-th processor after the caller's
  (``_place_workers``, where the measurements are).

``fn`` must give the same result whichever threads show up: the team's stages count finished
chunks, not arrived threads. A second thread that calls ``onnxc_pool_run`` while the pool is
busy runs its job alone. A forked child starts its own workers at its first team run (a
serving process forked after warming its sessions up keeps its threads).
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
import threading
import time

import llvmlite.binding as llvm
from llvmlite import ir

from .llvm_types import I32, I64, PTR, VOID

MAX_THREADS = 256
IDLE, POSTED, RUNNING = 0, 1, 2
SPINS = 300_000  # as libgomp's GOMP_SPINCOUNT default: a few ms
THROTTLED_SPINS = 100  # as libgomp's, with more threads than processors
YIELD_AFTER = 2000  # spins of the caller waiting for a running worker before it yields
_SLOT_WORDS = 16  # i32 words per worker slot: one 64-byte cache line each
_FUTEX = {"x86_64": 202, "aarch64": 98}  # SYS_futex
_SETAFFINITY = {"x86_64": 203, "aarch64": 122}  # SYS_sched_setaffinity
_GETTID = {"x86_64": 186, "aarch64": 178}  # SYS_gettid
MAX_CPUS = 1024  # processors a worker can be placed on (a 128-byte affinity mask)
_FUTEX_WAIT_PRIVATE, _FUTEX_WAKE_PRIVATE = 128, 129
RUN_SYMBOL = "onnxc_pool_run"


@functools.cache
def supported() -> bool:
    """Linux on x86-64 or AArch64: the futex system call numbers are known. (Cached: the slow
    run path asks on every run.)"""
    return sys.platform.startswith("linux") and platform.machine() in _FUTEX


def spin_count(threads: int, processors: int) -> int:
    """How long an idle worker spins before it sleeps: ``SPINS``; 0 with
    ``OMP_WAIT_POLICY=PASSIVE``; ``THROTTLED_SPINS`` when the caller and its workers outnumber
    the processors (a spinning worker would take time from the thread it waits for), as
    libgomp throttles."""
    if os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE":
        return 0
    return SPINS if threads <= processors else THROTTLED_SPINS


def build_runtime(machine: str) -> ir.Module:
    """The pool's LLVM module: globals, ``onnxc_pool_worker`` and ``onnxc_pool_run``."""
    m = ir.Module(name="onnxc_pool")
    slot_t = ir.ArrayType(I32, _SLOT_WORDS)
    slots = _global(m, "onnxc_pool_slots", ir.ArrayType(slot_t, MAX_THREADS))
    job = _global(m, "onnxc_pool_job", ir.LiteralStructType([PTR, PTR, I32]))
    busy = _global(m, "onnxc_pool_busy", slot_t)  # word 0: a caller holds the pool
    workers = _global(m, "onnxc_pool_workers", slot_t)  # word 0: started workers
    # placement: processors the process may use, in order (count, list) and each one's place
    # in that list (-1: not allowed), and the processor the caller ran on at its last post
    ncpus = _global(m, "onnxc_pool_ncpus", slot_t)
    cpus = _global(m, "onnxc_pool_cpus", ir.ArrayType(I32, MAX_CPUS))
    places = _global(m, "onnxc_pool_places", ir.ArrayType(I32, MAX_CPUS))
    caller_cpu = _global(m, "onnxc_pool_caller_cpu", slot_t)
    spins = _global(m, "onnxc_pool_spins", ir.ArrayType(I64, 8))  # word 0: see spin_count
    team_fn = ir.FunctionType(VOID, [PTR, I32, I32])
    syscall = ir.Function(m, ir.FunctionType(I64, [I64], var_arg=True), "syscall")
    sched_yield = ir.Function(m, ir.FunctionType(I32, []), "sched_yield")
    nr = I64(_FUTEX[machine])
    sched_getcpu = ir.Function(m, ir.FunctionType(I32, []), "sched_getcpu")

    def relax(b):
        if machine == "x86_64":
            b.call(_intrinsic(m, "llvm.x86.sse2.pause", []), [])
        else:
            b.call(_intrinsic(m, "llvm.aarch64.hint", [I32]), [I32(1)])  # yield

    def slot_word(b, index, word):
        return _addr(b, slots, index, I32(word))

    def word0(b, g):
        return _addr(b, g, I32(0))

    # -- the worker ------------------------------------------------------------------------
    worker = ir.Function(m, ir.FunctionType(PTR, [PTR]), "onnxc_pool_worker")
    b = ir.IRBuilder(worker.append_basic_block("entry"))
    tid = b.trunc(b.ptrtoint(worker.args[0], I64), I32)
    ticket, sleeping = slot_word(b, tid, 0), slot_word(b, tid, 1)
    kernel_tid = b.trunc(b.call(syscall, [I64(_GETTID[machine])]), I32)
    b.store_atomic(kernel_tid, slot_word(b, tid, 2), "release", 4)  # for placing it
    count = b.alloca(I64)
    b.store(I64(0), count)
    loop, claim, run, idle, wait, sleep, done = (worker.append_basic_block(n) for n in (
        "loop", "claim", "run", "idle", "wait", "sleep", "slept"))
    b.branch(loop)
    b.position_at_end(loop)
    t = b.load_atomic(ticket, "acquire", 4, typ=I32)
    b.cbranch(b.icmp_unsigned("==", t, I32(POSTED)), claim, idle)
    b.position_at_end(claim)
    won = b.extract_value(b.cmpxchg(ticket, I32(POSTED), I32(RUNNING), "acquire", "acquire"), 1)
    b.cbranch(won, run, loop)
    b.position_at_end(run)
    fields = [b.load(_addr(b, job, I32(k)), typ=ty)
              for k, ty in enumerate((PTR, PTR, I32))]
    b.call(Indirect(fields[0], team_fn), [fields[1], tid, fields[2]])
    b.store_atomic(I32(IDLE), ticket, "release", 4)
    b.store(I64(0), count)
    b.branch(loop)
    b.position_at_end(idle)
    n = b.add(b.load(count, typ=I64), I64(1))
    b.store(n, count)
    limit = b.load_atomic(_addr(b, spins, I32(0)), "monotonic", 8, typ=I64)
    b.cbranch(b.icmp_unsigned("<", n, limit), wait, sleep)
    b.position_at_end(wait)
    relax(b)
    b.branch(loop)
    b.position_at_end(sleep)  # announce the sleep, then check once more: no lost wake-up
    b.store_atomic(I32(1), sleeping, "seq_cst", 4)
    again = b.load_atomic(ticket, "seq_cst", 4, typ=I32)
    with b.if_then(b.icmp_unsigned("==", again, I32(IDLE))):
        b.call(syscall, [nr, ticket, I64(_FUTEX_WAIT_PRIVATE), I64(IDLE), ir.Constant(PTR, None)])
    b.branch(done)
    b.position_at_end(done)
    b.store_atomic(I32(0), sleeping, "seq_cst", 4)
    b.store(I64(0), count)
    b.branch(loop)

    # -- the caller ------------------------------------------------------------------------
    fn = ir.Function(m, ir.FunctionType(VOID, [PTR, PTR, I32]), RUN_SYMBOL)
    job_fn, ctx, nthreads = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    solo = fn.append_basic_block("solo")
    take = fn.append_basic_block("take")
    posted = fn.append_basic_block("posted")
    started = b.load_atomic(word0(b, workers), "acquire", 4, typ=I32)
    want = b.sub(nthreads, I32(1))
    helpers = b.select(b.icmp_signed("<", want, started), want, started)
    b.cbranch(b.icmp_signed(">", helpers, I32(0)), take, solo)
    b.position_at_end(solo)
    b.call(Indirect(job_fn, team_fn), [ctx, I32(0), nthreads])
    b.ret_void()
    b.position_at_end(take)
    held = b.extract_value(b.cmpxchg(word0(b, busy), I32(0), I32(1), "acquire", "monotonic"), 1)
    b.cbranch(held, posted, solo)
    b.position_at_end(posted)
    _place_workers(b, fn, syscall, I64(_SETAFFINITY[machine]), sched_getcpu, caller_cpu,
                   ncpus, cpus, places, word0(b, workers), slot_word)
    for k, value in enumerate((job_fn, ctx, nthreads)):
        b.store(value, _addr(b, job, I32(k)))
    with _for(b, fn, helpers) as w:
        b.store_atomic(I32(POSTED), slot_word(b, w, 0), "seq_cst", 4)
        asleep = b.load_atomic(slot_word(b, w, 1), "seq_cst", 4, typ=I32)
        with b.if_then(b.icmp_unsigned("!=", asleep, I32(0))):
            b.call(syscall, [nr, slot_word(b, w, 0), I64(_FUTEX_WAKE_PRIVATE), I64(1)])
    b.call(Indirect(job_fn, team_fn), [ctx, I32(0), nthreads])
    waited = b.alloca(I64)
    with _for(b, fn, helpers) as w:
        ticket = slot_word(b, w, 0)
        b.cmpxchg(ticket, I32(POSTED), I32(IDLE), "acq_rel", "acquire")  # never started
        b.store(I64(0), waited)
        head, spin, out = (fn.append_basic_block(n) for n in ("join", "join.spin", "joined"))
        b.branch(head)
        b.position_at_end(head)
        state = b.load_atomic(ticket, "acquire", 4, typ=I32)
        b.cbranch(b.icmp_unsigned("==", state, I32(IDLE)), out, spin)
        b.position_at_end(spin)
        k = b.add(b.load(waited, typ=I64), I64(1))
        b.store(k, waited)
        relax(b)
        with b.if_then(b.icmp_unsigned(">", k, I64(YIELD_AFTER))):
            b.call(sched_yield, [])
        b.branch(head)
        b.position_at_end(out)
    b.store_atomic(I32(0), word0(b, busy), "release", 4)
    b.ret_void()
    return m


def _place_workers(b, fn, syscall, nr, sched_getcpu, caller_cpu, ncpus, cpus, places,
                   started, slot_word) -> None:
    """When the caller runs on another processor than at its last post, give worker w the
    processor w places after the caller's (in the process's list): no worker shares the
    caller's processor while there are processors enough (num_threads <= processors).
    Unpinned, a woken worker was queued behind the busy caller on the caller's processor (the
    scheduler wakes a thread near its waker) and joined a run only after a 4 ms tick, if at
    all; pinned to a fixed processor, the same happened whenever the caller was on that one."""
    cpu = b.call(sched_getcpu, [])
    last = _addr(b, caller_cpu, I32(0))
    n = b.load(_addr(b, ncpus, I32(0)), typ=I32)
    moved = b.icmp_signed("!=", cpu, b.load(last, typ=I32))
    known = b.and_(b.icmp_signed(">=", cpu, I32(0)), b.icmp_signed("<", cpu, I32(MAX_CPUS)))
    with b.if_then(b.and_(b.and_(moved, known), b.icmp_signed(">=", n, I32(2)))):
        b.store(cpu, last)
        place = b.load(_addr(b, places, cpu), typ=I32)
        with b.if_then(b.icmp_signed(">=", place, I32(0))):
            mask = b.alloca(ir.ArrayType(I64, MAX_CPUS // 64))
            with _for(b, fn, b.load_atomic(started, "acquire", 4, typ=I32)) as w:
                target = b.load(_addr(b, cpus, b.srem(b.add(place, w), n)), typ=I32)
                b.store(ir.Constant(mask.type.pointee, None), mask)
                word = _addr(b, mask, b.udiv(target, I32(64)))
                b.store(b.shl(I64(1), b.zext(b.urem(target, I32(64)), I64)), word)
                ktid = b.load_atomic(slot_word(b, w, 2), "acquire", 4, typ=I32)
                b.call(syscall, [nr, b.sext(ktid, I64), I64(MAX_CPUS // 8), mask])


class _for:
    """``for (w = 1; w <= count; w++)`` around the body of a ``with`` block."""

    def __init__(self, b: ir.IRBuilder, fn: ir.Function, count: ir.Value):
        self.b, self.fn, self.count = b, fn, count

    def __enter__(self) -> ir.Value:
        b = self.b
        self.pre = b.block
        self.head = self.fn.append_basic_block("for")
        self.body = self.fn.append_basic_block("for.body")
        self.out = self.fn.append_basic_block("for.end")
        b.branch(self.head)
        b.position_at_end(self.head)
        self.w = b.phi(I32)
        self.w.add_incoming(I32(1), self.pre)
        b.cbranch(b.icmp_signed("<=", self.w, self.count), self.body, self.out)
        b.position_at_end(self.body)
        return self.w

    def __exit__(self, *exc) -> None:
        b = self.b
        self.w.add_incoming(b.add(self.w, I32(1)), b.block)
        b.branch(self.head)
        b.position_at_end(self.out)


class Indirect:
    """A function pointer as a callee (llvmlite reads the signature from the callee)."""

    def __init__(self, ptr: ir.Value, ftype: ir.FunctionType):
        self.ptr, self.type, self.function_type = ptr, ptr.type, ftype

    def get_reference(self) -> str:
        return self.ptr.get_reference()


def _addr(b: ir.IRBuilder, g: ir.Value, *index: ir.Value) -> ir.Value:
    """A pointer to ``g[index...]`` (``g`` a global or an alloca)."""
    return b.gep(g, [I32(0), *index], inbounds=True)


def _global(m: ir.Module, name: str, ty: ir.Type) -> ir.GlobalVariable:
    g = ir.GlobalVariable(m, ty, name)
    g.initializer = ir.Constant(ty, None)
    g.align = 64
    return g


def _intrinsic(m: ir.Module, name: str, args: list) -> ir.Function:
    existing = m.globals.get(name)
    return existing if existing is not None else ir.Function(
        m, ir.FunctionType(VOID, args), name)


class _Pool:
    """The compiled runtime of this process and its worker threads."""

    def __init__(self):
        from .compiler import _lock, _target_machine, host_target
        module = build_runtime(platform.machine())
        with _lock:
            target = host_target()
            tm = _target_machine(target)
            mod = llvm.parse_assembly(str(module))
            mod.triple = target["triple"]
            mod.data_layout = str(tm.target_data)
            mod.verify()
            self._engine = llvm.create_mcjit_compiler(mod, tm)
            self._engine.finalize_object()
            self.run = self._engine.get_function_address(RUN_SYMBOL)
            self.worker = self._engine.get_function_address("onnxc_pool_worker")
            self._started = ctypes.c_int32.from_address(
                self._engine.get_global_value_address("onnxc_pool_workers"))
            self._busy = ctypes.c_int32.from_address(
                self._engine.get_global_value_address("onnxc_pool_busy"))
            self._slots = self._engine.get_global_value_address("onnxc_pool_slots")
            address = self._engine.get_global_value_address
            self._caller_cpu = ctypes.c_int32.from_address(address("onnxc_pool_caller_cpu"))
            self._set_processors(address)
        llvm.add_symbol(RUN_SYMBOL, self.run)
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._threads_lock = threading.Lock()

    def _set_processors(self, address) -> None:
        """The processors this process may use, for placing the workers."""
        try:
            allowed = sorted(c for c in os.sched_getaffinity(0) if c < MAX_CPUS)
        except (AttributeError, OSError):
            allowed = []
        cpus = (ctypes.c_int32 * MAX_CPUS).from_address(address("onnxc_pool_cpus"))
        places = (ctypes.c_int32 * MAX_CPUS).from_address(address("onnxc_pool_places"))
        for k in range(MAX_CPUS):
            places[k] = -1
        for k, cpu in enumerate(allowed):
            cpus[k], places[cpu] = cpu, k
        ctypes.c_int32.from_address(address("onnxc_pool_ncpus")).value = len(allowed)
        self._processors = max(1, len(allowed))
        self._spins = ctypes.c_int64.from_address(address("onnxc_pool_spins"))
        self._spins.value = spin_count(1, self._processors)
        self._caller_cpu.value = -1

    def start_workers(self, count: int) -> None:
        count = min(count, MAX_THREADS - 1)
        if self._started.value >= count:
            return
        with self._threads_lock:
            self._spins.value = spin_count(count + 1, self._processors)
            create = self._libc.pthread_create
            create.argtypes = [ctypes.POINTER(ctypes.c_ulong), ctypes.c_void_p,
                               ctypes.c_void_p, ctypes.c_void_p]
            for tid in range(self._started.value + 1, count + 1):
                handle = ctypes.c_ulong()
                if create(ctypes.byref(handle), None, self.worker, tid) != 0:
                    break  # out of threads: the team runs with those it has
                self._libc.pthread_detach(handle)
                kernel_tid = ctypes.c_int32.from_address(self._slots + (tid * _SLOT_WORDS + 2) * 4)
                while kernel_tid.value == 0:  # it places the worker: wait until it is known
                    time.sleep(0.0001)
                self._started.value = tid
            self._caller_cpu.value = -1  # place the new workers at the next post

    def after_fork(self) -> None:
        """In a forked child only the forking thread exists: no workers, pool free. Runs
        start new workers lazily (``FORKS`` tells them), as libgomp does after a fork."""
        FORKS[0] += 1
        self._started.value = 0
        self._busy.value = 0
        self._caller_cpu.value = -1
        ctypes.memset(self._slots, 0, MAX_THREADS * _SLOT_WORDS * 4)  # every ticket IDLE
        self._threads_lock = threading.Lock()


_pool: _Pool | None = None
_pool_lock = threading.Lock()
FORKS = [0]  # forks since the pool started; a run that saw another count starts workers again


def runtime() -> _Pool:
    """The process's pool runtime, compiled on first use; makes ``onnxc_pool_run`` resolvable
    by the objects loaded after it."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = _Pool()
                os.register_at_fork(after_in_child=_pool.after_fork)
    return _pool


def ensure_workers(num_threads: int) -> None:
    """Enough workers for a team of ``num_threads`` (the caller is one of them)."""
    if num_threads > 1 and supported():
        runtime().start_workers(num_threads - 1)
