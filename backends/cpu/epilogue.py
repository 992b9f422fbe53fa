"""Vector epilogues for the GEMM schedules: bias, BatchNorm, activation and residual applied to a
finished accumulator tile a vector of output columns at a time.

The scalar path evaluates the stage's expression per element; when the reduction is short
(a 3x3x3 or 1x1 convolution) that costs more than the FMAs. Here the same expression is
evaluated on ``vw``-lane vectors along the innermost output axis: loads that do not move along
it are broadcast, loads that advance by one element per column are (masked) vector loads, the
accumulators come from the tile. Expressions with anything else (integer index values, gathers,
math functions, casts) keep the scalar path (``vectorizable`` says which).
"""
from __future__ import annotations

from llvmlite import ir

from onnxc.ir.dtypes import DType
from onnxc.ir.kernel import Const, Expr, Load, Op, Reduce, Stage, flat_coef

from .llvm_types import I1, I32, I64

FLOAT_OPS = {"add", "sub", "mul", "div", "max", "min", "neg"}
ENABLED = True  # bench.ab switches it off to measure the scalar epilogue
COMPARE = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def vectorizable(st: Stage, red: Reduce, shapes: dict, out_dtype: DType) -> bool:
    """The stage's expression uses only float32 arithmetic, comparisons, selects, the
    reduction and loads that are constant or contiguous along the innermost output axis."""
    if not ENABLED or out_dtype != DType.float32 or st.body.dtype != DType.float32:
        return False
    x = st.vars[-1]
    stack, seen = [st.body], set()
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, Reduce):
            if e is not red:
                return False
        elif isinstance(e, Const):
            if e.dtype not in (DType.float32, DType.bool):
                return False
        elif isinstance(e, Load):
            if e.pad is not None or e.dtype != DType.float32 or e.tensor not in shapes:
                return False
            # a gathered row (an LSTM step's input projection): the index is read once per
            # vector, so it must not move along the columns
            if any(ix.loads() and ix.coef(x) != 0 for ix in e.index):
                return False
            if flat_coef(e, x, shapes[e.tensor]) not in (0, 1):
                return False
        elif isinstance(e, Op):
            if e.name in FLOAT_OPS and e.dtype == DType.float32:
                stack.extend(e.args)
            elif e.name in COMPARE and all(a.dtype == DType.float32 for a in e.args):
                stack.extend(e.args)
            elif e.name == "select" and e.dtype == DType.float32:
                stack.extend(e.args)
            else:
                return False
        else:
            return False
    return True


class VectorEpilogue:
    """Emits ``out[env, x0 : x0 + lanes] = expr`` with the reduction's value given as a vector."""

    def __init__(self, se, red: Reduce, vw: int):
        self.se, self.b, self.red, self.vw = se, se.b, red, vw
        self.f32 = ir.FloatType()
        self.vec = ir.VectorType(self.f32, vw)
        mb = se.mb
        mask_t = ir.VectorType(I1, vw)
        self.mload = mb.declare(f"llvm.masked.load.v{vw}f32.p0", self.vec,
                                [ir.PointerType(), I32, mask_t, self.vec])
        self.mstore = mb.declare(f"llvm.masked.store.v{vw}f32.p0", ir.VoidType(),
                                 [self.vec, ir.PointerType(), I32, mask_t])
        self.lanes = ir.Constant(ir.VectorType(I64, vw), [ir.Constant(I64, k) for k in range(vw)])
        self.zeros32 = ir.Constant(ir.VectorType(I32, vw), [ir.Constant(I32, 0)] * vw)

    def splat(self, value):
        b = self.b
        v = b.insert_element(ir.Constant(ir.VectorType(value.type, self.vw), None), value, I32(0))
        return b.shuffle_vector(v, v, self.zeros32)

    def mask(self, count):
        """Lanes below ``count`` (an i64) on."""
        return self.b.icmp_signed("<", self.lanes, self.splat(count))

    def tile_vector(self, ptr, mask):
        return self.b.call(self.mload, [ptr, I32(4), mask, ir.Constant(self.vec, None)])

    def store(self, env: dict, value: ir.Value, count) -> None:
        """Run the stage's expression at ``env`` (innermost variable = first column) on
        ``value`` (the reduction, one vector) and store the first ``count`` lanes."""
        se, st = self.se, self.se.st
        mask = self.mask(count)
        memo: dict[int, ir.Value] = {}
        result = self._expr(st.body, env, value, mask, memo)
        ptr = se.address(st.out, [env[v] for v in st.vars])
        self.b.call(self.mstore, [result, ptr, I32(4), mask])

    def _expr(self, e: Expr, env, value, mask, memo):
        hit = memo.get(id(e))
        if hit is not None:
            return hit
        b, se = self.b, self.se
        if isinstance(e, Reduce):
            out = value
        elif isinstance(e, Const):
            out = self.splat(se.constant(e.value, e.dtype))
        elif isinstance(e, Load):
            if flat_coef(e, se.st.vars[-1], se.shapes[e.tensor]) == 0:
                out = self.splat(se.load(e, env))
            else:
                ptr = se.address(e.tensor, [se.ix(i, env) for i in e.index])
                out = b.call(self.mload, [ptr, I32(4), mask, ir.Constant(self.vec, None)])
        else:
            args = [self._expr(a, env, value, mask, memo) for a in e.args]
            out = self._op(e, args)
        memo[id(e)] = out
        return out

    def _op(self, e: Op, args):
        b = self.b
        name = e.name
        if name in ("add", "sub", "mul", "div"):
            instr = {"add": b.fadd, "sub": b.fsub, "mul": b.fmul, "div": b.fdiv}[name](*args)
            instr.flags.append("contract")
            return instr
        if name in ("max", "min"):
            intr = "llvm.maximum" if name == "max" else "llvm.minimum"
            fn = self.se.mb.declare(f"{intr}.v{self.vw}f32", self.vec, [self.vec, self.vec])
            return b.call(fn, args)
        if name == "neg":
            return b.fneg(args[0])
        if name in COMPARE:
            return (b.fcmp_unordered if name == "ne" else b.fcmp_ordered)(COMPARE[name], *args)
        if name == "select":
            return b.select(*args)
        raise AssertionError(f"not vectorizable: {name}")  # vectorizable() rules it out
