"""Vector max/min reductions along a contiguous axis (Softmax's row max, ReduceMax, ...).

A float ``max`` reduction is ``llvm.maximum`` (NaN-propagating, as ONNX wants), and LLVM's loop
vectorizer does not vectorize ``maximum`` reductions: Softmax's row max ran one element per
~5 cycles on a loop-carried dependency. ``maximum`` is associative and commutative exactly (NaN
wins, -0 < +0), so splitting the row into ``vw`` lanes gives the same result: here the innermost
reduction axis, when the reduced value is a float32 load that advances by one element along it,
runs ``vw`` lanes at a time on a vector accumulator, the tail scalar, and the lanes are combined
at the end.
"""
from __future__ import annotations

from llvmlite import ir

from onnxc.ir.dtypes import DType
from onnxc.ir.kernel import Load, Reduce, flat_coef

from .llvm_types import I32, I64

ENABLED = True


def vector_reducible(se, e: Reduce) -> bool:
    body = e.body
    if not (ENABLED and e.kind in ("max", "min") and e.dtype == DType.float32 and
            isinstance(body, Load) and body.dtype == DType.float32 and body.pad is None and
            body.tensor in se.shapes and not any(ix.loads() for ix in body.index)):
        return False
    var, extent = e.axes[-1]
    return extent >= 2 * se.mb.vector_width and \
        flat_coef(body, var, se.shapes[body.tensor]) == 1


def emit_vector_reduce(se, e: Reduce, env: dict) -> ir.Value:
    """The reduction's value at ``env`` (the stage's outer variables)."""
    b, vw = se.b, se.mb.vector_width
    f32 = ir.FloatType()
    vec = ir.VectorType(f32, vw)
    intr = "llvm.maximum" if e.kind == "max" else "llvm.minimum"
    vfn = se.mb.declare(f"{intr}.v{vw}f32", vec, [vec, vec])
    sfn = se.mb.declare(f"{intr}.f32", f32, [f32, f32])
    init = se.reduce_init(e.kind, e.dtype)
    acc = se.alloca(f32, "racc")
    vacc = se.alloca(vec, "vracc")
    b.store(init, acc)
    var, extent = e.axes[-1]
    full = extent // vw

    def outer(level: int, renv: dict) -> None:
        if level < len(e.axes) - 1:
            v, n = e.axes[level]
            se.loop(I64(0), I64(n), lambda i: outer(level + 1, {**renv, v: i}),
                    name=f"vr{level}")
            return
        b.store(ir.Constant(vec, [init.constant] * vw), vacc)

        def vstep(i):
            idx = [se.ix(x, {**renv, var: b.mul(i, I64(vw))}) for x in e.body.index]
            ld = b.load(se.address(e.body.tensor, idx), typ=vec)
            ld.align = 4
            b.store(b.call(vfn, [b.load(vacc, typ=vec), ld]), vacc)

        se.loop(I64(0), I64(full), vstep, name="vr")
        v = b.load(vacc, typ=vec)
        total = b.load(acc, typ=f32)
        for lane in range(vw):
            total = b.call(sfn, [total, b.extract_element(v, I32(lane))])
        b.store(total, acc)

        def sstep(i):
            x = se.load(e.body, {**renv, var: i})
            b.store(b.call(sfn, [b.load(acc, typ=f32), x]), acc)

        se.loop(I64(full * vw), I64(extent), sstep, name="vrt")

    outer(0, dict(env))
    return b.load(acc, typ=f32)
