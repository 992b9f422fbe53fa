"""One team per run, with stages handed out in chunks by atomic counters.

With a fork-join (``GOMP_parallel``) per stage, every stage waits for every thread to wake,
arrive and leave; on a busy machine one descheduled thread stalls each of a model's dozens of
stages (SqueezeNet ran 7x slower at two threads than at one on a loaded host). Here the pool
(pool.py) starts the team once per run (``onnxc_team``) and every thread walks the same list of
stages:

* a stage's work is cut into chunks (``CHUNKS_PER_THREAD`` per thread of the intended team
  when the stage is worth parallelising, at most 64, else one) and runs the stage body on each
  (``body(params, chunk, chunks)``: the stage computes its share from those, as it does from
  thread id and count), then counts it done;
* a thread claims chunks by setting their bits in the stage's mask, starting with its own
  share (thread t of n: chunks from t * chunks / n on), then any others still unclaimed. So on
  time, thread t runs the same rows of every step: an LSTM's recurrent weights (1 MB) stay
  split between the two cores' L2 caches instead of moving between them at every step, and a
  chain of elementwise stages reads what the same core just wrote;
* before the next stage, a thread waits until the stage's done count is complete (spinning a
  little, then yielding its core).

A thread that is late finds the chunks already claimed by the others and only passes through,
and the pool never waits for a worker that has not started, so the calling thread can do a
whole run alone when its workers are asleep or descheduled. Any team size works: the chunking
does not depend on which threads show up.
"""
from __future__ import annotations

from llvmlite import ir

from . import pool
from .llvm_types import I32, I64, PTR, VOID

ENABLED = True  # bench.ab switches it off: a fork-join per parallel stage, as before
CHUNKS_PER_THREAD = 4
MAX_CHUNKS = 64  # the bits of a stage's claim mask
SPINS_BEFORE_YIELD = 2000


def add_team(mb, calls, stage_table: dict) -> ir.Function:
    """``void onnxc_team(ptr ctx, i32 tid, i32 nthreads)``, ctx = [inputs, outputs, consts,
    arena, counters], run by every thread of the pool's team (pool.py)."""
    fn = ir.Function(mb.module, ir.FunctionType(VOID, [PTR, I32, I32]), "onnxc_team")
    fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    ctx = fn.args[0]

    def field(k):
        return b.load(b.gep(ctx, [I64(k)], source_etype=PTR), typ=PTR)

    inputs, outputs, consts, arena, counters = (field(k) for k in range(5))
    tables = {"input": inputs, "output": outputs, "const": consts}
    tid = b.sext(fn.args[1], I64)
    team = b.sext(fn.args[2], I64)  # the team's intended size, not how many threads show up
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
                cap = I64(min(extent, MAX_CHUNKS))
                chunks = b.select(b.icmp_signed("<", want, cap), want, cap)
            else:
                chunks = I64(1)
                body = _whole(mb, body)
            # One call per stage into a shared claim-and-wait loop: the team stays straight-line
            # code, which LLVM optimizes in linear time (a loop pair per stage made
            # DenseNet-121's team 2.1 s of its compile).
            b.call(run_stage, [body, params, claim, done, chunks, tid, team])
            s += 1
    b.ret_void()
    return fn


def _whole(mb, body: ir.Function) -> ir.Function:
    """``body.whole(params, chunk, chunks)`` = ``body(params, 0, 1)``: a stage run in one chunk
    takes the team's stage pointer through this, so every call of ``body`` passes the constants
    (0, 1) and LLVM specializes it as it does without a team (an LSTM step's state update,
    whose range bounds were otherwise run-time values, ran 6x slower)."""
    name = body.name + ".whole"
    existing = mb.module.globals.get(name)
    if existing is not None:
        return existing
    fn = ir.Function(mb.module, body.function_type, name)
    fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.call(body, [fn.args[0], I32(0), I32(1)])
    b.ret_void()
    return fn


def _stage_runner(mb) -> ir.Function:
    """``void onnxc.run_stage(ptr body, ptr params, ptr claim, ptr done, i64 chunks, i64 tid,
    i64 team)``: claim chunks of the stage and run them, then wait until all its chunks are
    done."""
    fn = ir.Function(mb.module, ir.FunctionType(VOID, [PTR, PTR, PTR, PTR, I64, I64, I64]),
                     "onnxc.run_stage")
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    body, params, claim, done, chunks, tid, team = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    spins = b.alloca(I64, name="spins")
    callee = pool.Indirect(body, ir.FunctionType(VOID, [PTR, I32, I32]))
    _claim_loop(fn, b, callee, params, claim, done, chunks, tid, team)
    _wait(fn, b, done, chunks, spins, mb.declare("sched_yield", I32, []))
    b.ret_void()
    return fn


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
    return ENABLED and pool.supported()


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


def _claim_loop(fn, b, body, params, mask, done, chunks, tid, team) -> None:
    """For i in 0..chunks: chunk c = (first + i) mod chunks, first = tid * chunks / team; run
    it if this thread is the one that sets its bit in ``mask``."""
    step = b.alloca(I64, name="step")
    b.store(I64(0), step)
    first = b.sdiv(b.mul(tid, chunks), team)
    head, check, take, run, nxt, out = (fn.append_basic_block(n) for n in (
        "claim", "claim.check", "claim.take", "run", "claim.next", "claimed"))
    b.branch(head)
    b.position_at_end(head)
    i = b.load(step, typ=I64)
    b.cbranch(b.icmp_signed("<", i, chunks), check, out)
    b.position_at_end(check)
    c = b.add(first, i)
    c = b.select(b.icmp_signed(">=", c, chunks), b.sub(c, chunks), c)
    bit = b.shl(I64(1), c)
    seen = b.load_atomic(mask, "monotonic", 8, typ=I64)  # skip chunks others hold: no write
    b.cbranch(b.icmp_unsigned("!=", b.and_(seen, bit), I64(0)), nxt, take)
    b.position_at_end(take)
    old = b.atomic_rmw("or", mask, bit, "monotonic")
    b.cbranch(b.icmp_unsigned("!=", b.and_(old, bit), I64(0)), nxt, run)
    b.position_at_end(run)
    b.call(body, [params, b.trunc(c, I32), b.trunc(chunks, I32)])
    b.atomic_rmw("add", done, I64(1), "release")
    b.branch(nxt)
    b.position_at_end(nxt)
    b.store(b.add(i, I64(1)), step)
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
