"""One OpenMP parallel region per run, with stages handed out in chunks by atomic counters.

With a fork-join (``GOMP_parallel``) per stage, every stage waits for every thread to wake,
arrive and leave; on a busy machine one descheduled thread stalls each of a model's dozens of
stages (SqueezeNet ran 7x slower at two threads than at one on a loaded host). Here libgomp
starts its team once per run (``onnxc_team``) and every thread walks the same list of stages:

* a stage's work is cut into chunks (``CHUNKS_PER_THREAD`` per thread when the stage is worth
  parallelising, else one); a thread claims the next chunk with an atomic increment and runs
  the stage body on it (``body(params, chunk, chunks)``: the stage computes its share from
  those, as it does from thread id and count), then counts it done;
* before the next stage, a thread waits until the stage's done count is complete (spinning a
  little, then yielding its core).

A thread that is late finds the chunks already claimed by the others and only passes through,
so the only point where all threads must meet is the region's end. Any team size works: the
chunking does not depend on which threads show up.
"""
from __future__ import annotations

from llvmlite import ir

from .llvm_types import I32, I64, PTR, VOID

ENABLED = True  # bench.ab switches it off: a fork-join per parallel stage, as before
CHUNKS_PER_THREAD = 4
SPINS_BEFORE_YIELD = 2000


def add_team(mb, calls, stage_table: dict) -> ir.Function:
    """``void onnxc_team(ptr ctx)``, ctx = [inputs, outputs, consts, arena, counters]."""
    fn = ir.Function(mb.module, ir.FunctionType(VOID, [PTR]), "onnxc_team")
    fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    ctx = fn.args[0]

    def field(k):
        return b.load(b.gep(ctx, [I64(k)], source_etype=PTR), typ=PTR)

    inputs, outputs, consts, arena, counters = (field(k) for k in range(5))
    tables = {"input": inputs, "output": outputs, "const": consts}
    team = b.sext(b.call(mb.declare("omp_get_num_threads", I32, []), []), I64)
    width = max((len(slots) for _, slots in calls), default=1)
    params = b.alloca(PTR, size=I64(max(width, 1)), name="params")
    run_stage = _stage_runner(mb)
    s = 0
    for kfn, slots in calls:
        fill_params(b, params, slots, tables, arena)
        for body, parallel, extent in stage_table[kfn.name]:
            claim = b.gep(counters, [I64(2 * s)], source_etype=I64)
            done = b.gep(counters, [I64(2 * s + 1)], source_etype=I64)
            if parallel:
                want = b.mul(team, I64(CHUNKS_PER_THREAD))
                chunks = b.select(b.icmp_signed("<", want, I64(extent)), want, I64(extent))
            else:
                chunks = I64(1)
            # One call per stage into a shared claim-and-wait loop: the team stays straight-line
            # code, which LLVM optimizes in linear time (a loop pair per stage made
            # DenseNet-121's team 2.1 s of its compile).
            b.call(run_stage, [body, params, claim, done, chunks])
            s += 1
    b.ret_void()
    return fn


def _stage_runner(mb) -> ir.Function:
    """``void onnxc.run_stage(ptr body, ptr params, ptr claim, ptr done, i64 chunks)``: claim
    chunks of the stage and run them, then wait until all its chunks are done."""
    fn = ir.Function(mb.module, ir.FunctionType(VOID, [PTR, PTR, PTR, PTR, I64]),
                     "onnxc.run_stage")
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    body, params, claim, done, chunks = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    spins = b.alloca(I64, name="spins")
    callee = _Indirect(body, ir.FunctionType(VOID, [PTR, I32, I32]))
    _claim_loop(fn, b, callee, params, claim, done, chunks)
    _wait(fn, b, done, chunks, spins, mb.declare("sched_yield", I32, []))
    b.ret_void()
    return fn


class _Indirect:
    """A function pointer as a callee: llvmlite's ``call`` reads the signature from the callee,
    which an opaque ``ptr`` does not carry."""

    def __init__(self, ptr: ir.Value, ftype: ir.FunctionType):
        self.ptr, self.type, self.function_type = ptr, ptr.type, ftype

    def get_reference(self) -> str:
        return self.ptr.get_reference()


def fill_params(b, params, slots, tables: dict, arena) -> None:
    """params[k] = where the kernel's k-th parameter lives in this run."""
    for k, slot in enumerate(slots):
        if slot.region == "arena":
            ptr = b.gep(arena, [I64(slot.index)], source_etype=ir.IntType(8))
        else:
            ptr = b.load(b.gep(tables[slot.region], [I64(slot.index)], source_etype=PTR),
                         typ=PTR)
        b.store(ptr, b.gep(params, [I64(k)], source_etype=PTR))


def enabled() -> bool:
    return ENABLED


def serial_calls(b, fn, calls, nthreads) -> None:
    """Each kernel in turn, each given ``nthreads`` (``fn`` is onnxc_main: inputs, outputs,
    consts, arena)."""
    width = max((len(slots) for _, slots in calls), default=1)
    params = b.alloca(PTR, size=I64(max(width, 1)), name="params")
    tables = {"input": fn.args[0], "output": fn.args[1], "const": fn.args[2]}
    for kfn, slots in calls:
        fill_params(b, params, slots, tables, fn.args[3])
        b.call(kfn, [params, nthreads])


def stage_count(calls, stage_table: dict) -> int:
    return sum(len(stage_table[kfn.name]) for kfn, _ in calls)


def _claim_loop(fn, b, body, params, claim, done, chunks) -> None:
    head = fn.append_basic_block("claim")
    run = fn.append_basic_block("run")
    out = fn.append_basic_block("claimed")
    b.branch(head)
    b.position_at_end(head)
    c = b.atomic_rmw("add", claim, I64(1), "monotonic")
    b.cbranch(b.icmp_signed("<", c, chunks), run, out)
    b.position_at_end(run)
    b.call(body, [params, b.trunc(c, I32), b.trunc(chunks, I32)])
    b.atomic_rmw("add", done, I64(1), "release")
    b.branch(head)
    b.position_at_end(out)


def _wait(fn, b, done, chunks, spins, yield_fn) -> None:
    head = fn.append_basic_block("wait")
    again = fn.append_basic_block("spin")
    out = fn.append_basic_block("ready")
    b.store(I64(0), spins)
    b.branch(head)
    b.position_at_end(head)
    finished = b.load_atomic(done, "acquire", 8, typ=I64)
    b.cbranch(b.icmp_signed(">=", finished, chunks), out, again)
    b.position_at_end(again)
    n = b.add(b.load(spins, typ=I64), I64(1))
    b.store(n, spins)
    with b.if_then(b.icmp_signed(">", n, I64(SPINS_BEFORE_YIELD))):
        b.call(yield_fn, [])
    b.branch(head)
    b.position_at_end(out)
