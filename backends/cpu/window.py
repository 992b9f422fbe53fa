"""Vector schedules for sliding-window stages (depthwise convolution, pooling) and strided copies.

Recognised from the kernel IR, not from op names:

* a **window stage** is ``epilogue(reduce(body))`` whose reduction body reads tensors either at
  a fixed element per output row (weights: broadcast) or advancing by ``s`` (1..4) elements per
  output column (the input window: stride ``s``), e.g. a depthwise or grouped convolution, max
  or average pooling, a reduction over a non-innermost axis. It is not GEMM-shaped (no output
  axis to block over), so the GEMM schedules skip it; the generic ``row`` schedule keeps its
  accumulators in a stack array and runs the epilogue a scalar at a time.
* a **copy stage** is a single (possibly padded) load that advances by ``s`` elements per output
  column: the pad and stride-phase copies that Conv and the pools put before their windows.

Both are vectorised along the output's innermost axis: a vector of ``vw`` output columns at a
time, the accumulators in registers, the (small) reduction unrolled. A stride-``s`` load reads
``s * vw`` contiguous elements (a masked load that stops at the last one needed) and keeps every
``s``-th lane with one shuffle, so there are no gathers. A copy stage's padded border is worked
out per row from the affine index (the columns whose source lies inside the input), so the
interior runs without bounds checks and the border is a plain fill. The epilogue (bias,
BatchNorm, Clip, residual) runs on the finished vector (epilogue.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from llvmlite import ir

from onnxc.ir.dtypes import DType
from onnxc.ir.types import static_strides
from onnxc.ir.kernel import Const, Expr, IndexValue, Load, Op, Reduce, Stage, Var, flat_coef, walk

from .epilogue import FLOAT_OPS, VectorEpilogue, vectorizable
from .flat_reduce import FlatRow, match_flat
from .intervals import ix_range
from .llvm_types import I1, I32, I64, PTR

ENABLED = True  # bench.ab switches it off to measure the generic schedules in one process
MAX_STRIDE = 4
MIN_COLUMNS = 4  # narrower rows leave most vector lanes idle: the generic schedules keep them
UNROLL = 32  # trailing reduction axes whose extents multiply to at most this are unrolled
PARALLEL_MIN_WORK = 1 << 16  # vector work is cheap: split a stage across threads from here


@dataclass
class WindowPlan:
    """How one stage runs under this schedule: ``red`` is None for a copy stage."""

    red: Reduce | None
    flat: bool = False  # a reduction over one contiguous run (flat_reduce.py)
    source: Expr | None = None  # the copy stage's value: a load, or row-uniform selects of them

    def work(self, st: Stage) -> int:
        reduce_work = math.prod(n for _, n in self.red.axes) if self.red is not None else 1
        return math.prod(st.shape) * reduce_work


def match_window(st: Stage, shapes: dict, dtypes: dict) -> WindowPlan | None:
    """The window or copy reading of ``st`` (float32 only), or None."""
    if not ENABLED or not st.shape or dtypes.get(st.out) != DType.float32:
        return None
    flat = match_flat(st, shapes)
    if flat is not None:
        return WindowPlan(flat, flat=True)
    if len(st.shape) < 2 or st.shape[-1] < MIN_COLUMNS or st.body.dtype != DType.float32:
        return None
    j = st.vars[-1]
    if _copy_tree(st.body, j, shapes, st.out):
        return WindowPlan(None, source=st.body)
    reds = [e for e in walk(st.body) if isinstance(e, Reduce)]
    if len(reds) != 1 or reds[0].kind not in ("sum", "max", "min"):
        return None
    red = reds[0]
    if red.dtype != DType.float32 or red.body.dtype != DType.float32:
        return None
    strided = _body_loads(red.body, j, shapes)
    if not strided:
        return None
    if any(ld.tensor == st.out for ld in strided):
        return None
    if any(ld.pad is not None for ld in strided) and math.prod(n for _, n in red.axes) > UNROLL:
        return None  # the border checks are per unrolled tap
    return WindowPlan(red)


def _body_loads(body: Expr, j: Var, shapes: dict) -> list[Load] | None:
    """The loads of ``body`` that advance along ``j`` (None when ``body`` does not fit)."""
    strided, stack, seen = [], [body], set()
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, Const):
            if e.dtype != DType.float32:
                return None
        elif isinstance(e, Load):
            if (e.dtype != DType.float32 or e.tensor not in shapes
                    or any(ix.loads() for ix in e.index)):
                return None
            c = flat_coef(e, j, shapes[e.tensor])
            if c is None or not 0 <= c <= MAX_STRIDE:
                return None
            if e.pad is not None and (c == 0 or _pad_axis(e, j) != len(e.index) - 1):
                return None  # padded: only a window advancing along the input's last axis
            if c:
                strided.append(e)
        elif isinstance(e, Op) and e.name in FLOAT_OPS and e.dtype == DType.float32:
            stack.extend(e.args)
        else:
            return None
    return strided


def _copy_tree(e: Expr, j: Var, shapes: dict, out: str) -> bool:
    """``e`` is a float32 load advancing 1..4 elements per column (padded only along the axis
    that moves with ``j``), or a select of two such trees by a condition that does not depend
    on ``j`` (Concat along a non-innermost axis)."""
    if isinstance(e, Op) and e.name == "select" and e.dtype == DType.float32:
        cond = e.args[0]
        if any(isinstance(x, Reduce) or (isinstance(x, Load) and any(
                j in ix.vars() for ix in x.index)) or (isinstance(x, IndexValue) and
                                                        j in x.index.vars())
               for x in walk(cond)):
            return False
        return all(_copy_tree(a, j, shapes, out) for a in e.args[1:])
    if not isinstance(e, Load):
        return False
    if e.tensor not in shapes or e.dtype != DType.float32 or e.tensor == out:
        return False
    if any(ix.loads() for ix in e.index):
        return False
    c = flat_coef(e, j, shapes[e.tensor])
    if c is None or not 1 <= c <= MAX_STRIDE:
        return False
    return e.pad is None or _pad_axis(e, j) is not None


def _pad_axis(ld: Load, j: Var) -> int | None:
    """The one axis of a padded load that moves with ``j`` (forward), or None."""
    moving = [d for d, ix in enumerate(ld.index) if ix.coef(j) != 0]
    if len(moving) != 1 or (ld.index[moving[0]].coef(j) or 0) < 1:
        return None
    return moving[0]


def window_outer_extent(st: Stage) -> int:
    return math.prod(st.shape[:-1])


def worth_parallel(st: Stage, plan: WindowPlan) -> bool:
    return plan.work(st) >= PARALLEL_MIN_WORK and window_outer_extent(st) > 1


class _Vectors:
    """Strided vector loads and stores for one stage emitter."""

    def __init__(self, se, vw: int):
        self.se, self.b, self.vw = se, se.b, vw
        self.f32 = ir.FloatType()
        self.vec = ir.VectorType(self.f32, vw)

    def masked_load_fn(self, lanes: int):
        vec = ir.VectorType(self.f32, lanes)
        return self.se.mb.declare(f"llvm.masked.load.v{lanes}f32.p0", vec,
                                  [PTR, I32, ir.VectorType(I1, lanes), vec])

    def const_mask(self, lanes: int, on: int) -> ir.Constant:
        return ir.Constant(ir.VectorType(I1, lanes), [ir.Constant(I1, int(k < on))
                                                        for k in range(lanes)])

    def strided(self, ptr, stride: int, count: int):
        """Columns ``0..count-1`` of a load at ``ptr`` advancing ``stride`` per column."""
        lanes = stride * self.vw
        vec = ir.VectorType(self.f32, lanes)
        mask = self.const_mask(lanes, stride * (count - 1) + 1)
        v = self.b.call(self.masked_load_fn(lanes), [ptr, I32(4), mask, ir.Constant(vec, None)])
        if stride == 1:
            return v
        pick = ir.Constant(ir.VectorType(I32, self.vw), [I32(stride * k) for k in range(self.vw)])
        return self.b.shuffle_vector(v, ir.Constant(vec, None), pick)

    def store(self, value, ptr, count: int) -> None:
        fn = self.se.mb.declare(f"llvm.masked.store.v{self.vw}f32.p0", ir.VoidType(),
                                [self.vec, PTR, I32, ir.VectorType(I1, self.vw)])
        self.b.call(fn, [value, ptr, I32(4), self.const_mask(self.vw, count)])

    def splat(self, value):
        b = self.b
        zeros = ir.Constant(ir.VectorType(I32, self.vw), [I32(0)] * self.vw)
        v = b.insert_element(ir.Constant(self.vec, None), value, I32(0))
        return b.shuffle_vector(v, v, zeros)


def emit_window(se, plan: WindowPlan, vw: int) -> None:
    """Emit the stage body: this thread's share of the output rows."""
    st, b = se.st, se.b
    outer_shape = list(st.shape[:-1])
    total = math.prod(outer_shape)
    lo, hi = se.share(total)
    vx = _Vectors(se, vw)
    row = (_CopyRow(se, plan, vx) if plan.red is None else FlatRow(se, plan.red, vw)
           if plan.flat else _WindowRow(se, plan, vx))

    def body(q):
        env: dict[Var, ir.Value] = {}
        rest = q
        for k in range(len(outer_shape) - 1, -1, -1):
            env[st.vars[k]] = b.urem(rest, I64(outer_shape[k])) if k else rest
            if k:
                rest = b.udiv(rest, I64(outer_shape[k]))
        row.emit(env)

    se.loop(lo, hi, body, name="q")


def _columns(se, width: int, vw: int, start, each) -> None:
    """``each(j0, count)`` over columns ``start .. start + width`` (``width`` an i64 value or
    int): full vectors in a loop, then one masked tail per possible remainder."""
    b = se.b
    if isinstance(width, int):
        full, tail = divmod(width, vw)
        se.loop(I64(0), I64(full), lambda v: each(b.add(start, b.mul(v, I64(vw))), vw),
                name="v")
        if tail:
            each(b.add(start, I64(full * vw)), tail)
        return
    full = b.sdiv(width, I64(vw))
    se.loop(I64(0), full, lambda v: each(b.add(start, b.mul(v, I64(vw))), vw), name="v")
    tail = b.srem(width, I64(vw))
    j0 = b.add(start, b.mul(full, I64(vw)))
    # A switch over the remainder keeps every mask a constant (cheap k-register loads).
    fn = se.fn
    done = fn.append_basic_block("tail.end")
    switch = b.switch(tail, done)
    for r in range(1, vw):
        blk = fn.append_basic_block(f"tail{r}")
        switch.add_case(I64(r), blk)
        b.position_at_end(blk)
        each(j0, r)
        b.branch(done)
    b.position_at_end(done)


class _WindowRow:
    """One output row of a window stage."""

    def __init__(self, se, plan: WindowPlan, vx: _Vectors):
        self.se, self.b, self.vx, self.red = se, se.b, vx, plan.red
        self.j = se.st.vars[-1]
        self.ep = VectorEpilogue(se, plan.red, vx.vw)
        self.vector_epilogue = vectorizable(se.st, plan.red, se.shapes, se.dtypes[se.st.out])
        axes = list(plan.red.axes)
        split = len(axes)
        while split > 0 and math.prod(n for _, n in axes[split - 1:]) <= UNROLL:
            split -= 1
        self.looped, self.unrolled = axes[:split], axes[split:]
        self.acc = se.alloca(vx.vec, "wacc")

        self.padded = [ld for ld in walk(plan.red.body) if isinstance(ld, Load)
                       and ld.pad is not None]
        self.interior = self._interior_columns() if self.padded else None

    def _interior_columns(self) -> tuple[int, int]:
        """Columns [lo, hi) where every padded load stays inside its last axis at every tap."""
        st = self.se.st
        W = st.shape[-1]
        ranges = {v: (0, n - 1) for v, n in zip(st.vars, st.shape)}
        ranges.update({v: (0, n - 1) for v, n in self.red.axes})
        ranges[self.j] = (0, 0)
        lo, hi = 0, W
        for ld in self.padded:
            ix, n = ld.index[-1], self.se.shapes[ld.tensor][-1]
            a, r = ix.coef(self.j), ix_range(ix, ranges)
            if r is None:
                return 0, 0
            lo = max(lo, -(r[0] // a))  # a*j + r[0] >= 0
            hi = min(hi, (n - 1 - r[1]) // a + 1)  # a*j + r[1] <= n - 1
        return min(lo, W), max(min(hi, W), min(lo, W))

    def emit(self, env) -> None:
        se, b, vw = self.se, self.b, self.vx.vw
        W = se.st.shape[-1]
        if not self.padded:
            _columns(se, W, vw, I64(0), lambda j0, count: self.vector(env, j0, count))
            return
        # Rows whose taps all lie inside the padded loads' other axes run their interior
        # columns without checks; the rest of the row, and other rows, mask every load.
        ok = I1(1)
        for p in self._points():
            penv = {**env, self.j: I64(0), **p}
            for ld in self.padded:
                ok = b.and_(ok, self._row_inside(ld, penv))
        lo, hi = self.interior
        left = min(W, -(-lo // vw) * vw)
        mid = max(0, (hi - left) // vw) * vw if hi > left else 0

        def checked(j0, count):
            self.vector(env, j0, count, checked=True)

        with b.if_else(ok) as (fast, slow):
            with fast:
                _columns(se, left, vw, I64(0), checked)
                _columns(se, mid, vw, I64(left), lambda j0, n: self.vector(env, j0, n))
                _columns(se, W - left - mid, vw, I64(left + mid), checked)
            with slow:
                _columns(se, W, vw, I64(0), checked)

    def _points(self) -> list[dict]:
        points = [{}]
        for var, extent in self.unrolled:
            points = [{**p, var: I64(k)} for p in points for k in range(extent)]
        return points

    def _row_inside(self, ld: Load, env):
        """The load's axes other than the last are inside the tensor at this tap."""
        b, se = self.b, self.se
        ok = I1(1)
        for ix, n in zip(ld.index[:-1], se.shapes[ld.tensor][:-1]):
            i = se.ix(ix, env)
            ok = b.and_(ok, b.and_(b.icmp_signed(">=", i, I64(0)),
                                   b.icmp_signed("<", i, I64(n))))
        return ok

    def vector(self, env, j0, count: int, checked: bool = False) -> None:
        se, b, red, vx = self.se, self.b, self.red, self.vx
        env = {**env, self.j: j0}
        b.store(vx.splat(se.reduce_init(red.kind, red.dtype)), self.acc)

        def nest(level: int, renv):
            if level < len(self.looped):
                var, extent = self.looped[level]
                se.loop(I64(0), I64(extent), lambda i: nest(level + 1, {**renv, var: i}),
                        name=f"w{level}")
                return
            acc = b.load(self.acc, typ=vx.vec)
            for p in self._points():
                penv = {**renv, **p}
                acc = self.combine(acc, self.value(red.body, penv, count, {}, checked))
            b.store(acc, self.acc)

        nest(0, env)
        value = b.load(self.acc, typ=vx.vec)
        if self.vector_epilogue:
            self.ep.store(env, value, I64(count))
            return
        # An epilogue with math functions, casts...: the scalar expression, a lane at a time.
        b.store(value, self.acc)
        lanes = b.bitcast(self.acc, PTR)

        def lane(k):
            jenv = {**env, self.j: b.add(j0, k)}
            slot = b.gep(lanes, [k], source_etype=vx.f32, inbounds=True)
            se.reduce_values[id(red)] = b.load(slot, typ=vx.f32)
            se.store(se.expr(se.st.body, jenv), se.st.out, [jenv[v] for v in se.st.vars])
            del se.reduce_values[id(red)]

        se.loop(I64(0), I64(count), lane, name="lane")

    def combine(self, acc, v):
        b, kind = self.b, self.red.kind
        if kind == "sum":
            out = b.fadd(acc, v)
            out.flags.append("contract")
            return out
        # NaN-propagating max/min as compare + select (vmaxps) plus a NaN fix-up of the new
        # value: llvm.maximum's lowering also orders -0 below +0 and costs twice as much.
        take = b.fcmp_ordered(">" if kind == "max" else "<", v, acc)
        best = b.select(take, v, acc)
        return b.select(b.fcmp_unordered("uno", v, v), v, best)

    def value(self, e: Expr, env, count: int, memo: dict, checked: bool = False):
        hit = memo.get(id(e))
        if hit is not None:
            return hit
        se, vx = self.se, self.vx
        if isinstance(e, Const):
            out = vx.splat(se.constant(e.value, e.dtype))
        elif isinstance(e, Load):
            c = flat_coef(e, self.j, se.shapes[e.tensor])
            if c == 0:
                out = vx.splat(se.load(e, env))
            elif e.pad is not None and checked:
                out = self.bordered(e, env, c, count)
            else:
                ptr = se.address(e.tensor, [se.ix(i, env) for i in e.index])
                out = vx.strided(ptr, c, count)
        else:
            out = self.ep._op(e, [self.value(a, env, count, memo, checked) for a in e.args])
        memo[id(e)] = out
        return out

    def bordered(self, ld: Load, env, stride: int, count: int):
        """A padded strided load where some lanes may fall outside: masked per lane."""
        b, se, vx = self.b, self.se, self.vx
        lanes = stride * vx.vw
        index = [se.ix(i, env) for i in ld.index]
        n = se.shapes[ld.tensor][-1]
        i32v = ir.VectorType(I32, lanes)
        first = b.trunc(index[-1], I32)
        pos = b.add(b.shuffle_vector(b.insert_element(ir.Constant(i32v, None), first, I32(0)),
                                     ir.Constant(i32v, None), ir.Constant(i32v, [I32(0)] * lanes)),
                    ir.Constant(i32v, [I32(k) for k in range(lanes)]))
        zero = ir.Constant(i32v, [I32(0)] * lanes)
        mask = b.and_(b.icmp_signed(">=", pos, zero),
                      b.icmp_signed("<", pos, ir.Constant(i32v, [I32(n)] * lanes)))
        mask = b.and_(mask, vx.const_mask(lanes, stride * (count - 1) + 1))
        mask = b.select(self._row_inside(ld, env), mask, vx.const_mask(lanes, 0))
        # Not inbounds: the masked-off lanes may lie before the tensor.
        offset = I64(0)
        for i, st in zip(index, static_strides(tuple(se.shapes[ld.tensor]))):
            offset = b.add(offset, b.mul(i, I64(st)))
        ptr = b.gep(se.ptr(ld.tensor), [offset], source_etype=vx.f32)
        vec = ir.VectorType(vx.f32, lanes)
        pad = ir.Constant(vec, [ir.Constant(vx.f32, float(ld.pad))] * lanes)
        v = b.call(vx.masked_load_fn(lanes), [ptr, I32(4), mask, pad])
        if stride == 1:
            return v
        pick = ir.Constant(ir.VectorType(I32, vx.vw), [I32(stride * k) for k in range(vx.vw)])
        return b.shuffle_vector(v, ir.Constant(vec, None), pick)


class _CopyRow:
    """One output row of a copy stage: pad fill, strided vector copy, pad fill; a select whose
    condition is the same along the row picks the source once per row."""

    def __init__(self, se, plan: WindowPlan, vx: _Vectors):
        self.se, self.b, self.vx, self.tree = se, se.b, vx, plan.source
        self.j = se.st.vars[-1]

    def emit(self, env, tree=None) -> None:
        se, b = self.se, self.b
        tree = self.tree if tree is None else tree
        if isinstance(tree, Op):  # select(row-uniform condition, a, b)
            cond = se.expr(tree.args[0], {**env, self.j: I64(0)})
            with b.if_else(cond) as (then, otherwise):
                with then:
                    self.emit(env, tree.args[1])
                with otherwise:
                    self.emit(env, tree.args[2])
            return
        self.emit_load(env, tree)

    def emit_load(self, env, ld: Load) -> None:
        se, b = self.se, self.b
        stride = flat_coef(ld, self.j, se.shapes[ld.tensor])
        W = se.st.shape[-1]
        if ld.pad is None:
            _columns(se, W, self.vx.vw, I64(0), lambda j0, n: self.copy(env, ld, stride, j0, n))
            return
        axis = _pad_axis(ld, self.j)
        shape = se.shapes[ld.tensor]
        env0 = {**env, self.j: I64(0)}
        inside = I1(1)
        for d, ix in enumerate(ld.index):
            if d == axis:
                continue
            i = se.ix(ix, env0)
            ok = b.and_(b.icmp_signed(">=", i, I64(0)), b.icmp_signed("<", i, I64(shape[d])))
            inside = b.and_(inside, ok)
        a = ld.index[axis].coef(self.j)
        base = se.ix(ld.index[axis], env0)  # source position of column 0 along the axis
        # Columns j with 0 <= base + a*j < n: [ceil(-base/a), floor((n-1-base)/a)] in [0, W].
        first = b.sdiv(b.add(b.sub(I64(0), base), I64(a - 1)), I64(a))
        first = _clamp(b, first, I64(0), I64(W))
        room = b.sub(I64(shape[axis] - 1), base)
        last = b.select(b.icmp_signed("<", room, I64(0)), I64(0),
                        b.add(b.sdiv(room, I64(a)), I64(1)))
        last = _clamp(b, last, first, I64(W))
        first = b.select(inside, first, I64(0))
        last = b.select(inside, last, I64(0))
        pad = self.vx.splat(se.constant(ld.pad, DType.float32))
        _columns(se, first, self.vx.vw, I64(0), lambda j0, n: self.fill(env, j0, n, pad))
        _columns(se, b.sub(last, first), self.vx.vw, first,
                 lambda j0, n: self.copy(env, ld, stride, j0, n))
        _columns(se, b.sub(I64(W), last), self.vx.vw, last,
                 lambda j0, n: self.fill(env, j0, n, pad))

    def out_ptr(self, env, j0):
        se = self.se
        env = {**env, self.j: j0}
        return se.address(se.st.out, [env[v] for v in se.st.vars])

    def copy(self, env, ld: Load, stride: int, j0, count: int) -> None:
        se = self.se
        env2 = {**env, self.j: j0}
        ptr = se.address(ld.tensor, [se.ix(i, env2) for i in ld.index])
        self.vx.store(self.vx.strided(ptr, stride, count), self.out_ptr(env, j0), count)

    def fill(self, env, j0, count: int, pad) -> None:
        self.vx.store(pad, self.out_ptr(env, j0), count)


def _clamp(b, x, lo, hi):
    x = b.select(b.icmp_signed("<", x, lo), lo, x)
    return b.select(b.icmp_signed(">", x, hi), hi, x)


__all__ = ["WindowPlan", "match_window", "emit_window", "window_outer_extent", "worth_parallel"]
