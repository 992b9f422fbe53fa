"""Scalar operations of the kernel IR in LLVM IR, per element type (codegen.py's StageEmitter
emits the loops around them): arithmetic, NaN-propagating max/min, comparisons, math functions
(fast vectorizable float32 exp/log/tanh/pow) and casts, narrow types included (narrow.py)."""
from __future__ import annotations

from llvmlite import ir

from onnxc.ir.dtypes import DType
from onnxc.ir.errors import CompileError
from onnxc.ir.kernel import Op

from . import narrow
from .llvm_types import I1, I32, storage_type, value_type

FAST = ("contract",)


class ScalarOps:
    """Scalar arithmetic, math functions, comparisons and casts, per element type."""

    FLOAT_INTRINSICS = {"exp": "exp", "log": "log", "sqrt": "sqrt", "abs": "fabs",
                        "floor": "floor", "ceil": "ceil", "round": "roundeven", "sin": "sin",
                        "cos": "cos"}
    LIBM = {"tanh": "tanh", "erf": "erf", "tan": "tan", "asin": "asin", "acos": "acos",
            "atan": "atan", "sinh": "sinh", "cosh": "cosh", "asinh": "asinh", "acosh": "acosh",
            "atanh": "atanh"}

    def __init__(self, se):  # a codegen.StageEmitter
        self.se, self.b = se, se.b

    def fn(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        return self.se.mb.declare(name, ret, args)

    @staticmethod
    def suffix(t: ir.Type) -> str:
        return "f32" if isinstance(t, ir.FloatType) else "f64"

    def arith(self, name: str, dtype: DType, a, c, flags=FAST):
        b = self.b
        if dtype.is_float:
            instr = {"add": b.fadd, "sub": b.fsub, "mul": b.fmul, "div": b.fdiv}[name](a, c)
            instr.flags.extend(flags)
            return instr
        if name == "div":
            return b.udiv(a, c) if dtype.is_unsigned_int else b.sdiv(a, c)
        return {"add": b.add, "sub": b.sub, "mul": b.mul}[name](a, c)

    def minmax(self, kind: str, dtype: DType, a, c):
        if dtype.is_float:
            intr = "llvm.maximum" if kind == "max" else "llvm.minimum"
            t = value_type(dtype)
            return self.b.call(self.fn(f"{intr}.{self.suffix(t)}", t, [t, t]), [a, c])
        op = ">" if kind == "max" else "<"
        cmp = (self.b.icmp_unsigned if dtype.is_unsigned_int or dtype == DType.bool
               else self.b.icmp_signed)(op, a, c)
        return self.b.select(cmp, a, c)

    def emit(self, e: Op, args: list[ir.Value]) -> ir.Value:
        b, name = self.b, e.name
        src = e.args[0].dtype if e.args else e.dtype
        if name in ("add", "sub", "mul", "div"):
            return self.arith(name, e.dtype, *args)
        if name in ("max", "min"):
            return self.minmax(name, e.dtype, *args)
        if name == "mod":  # C remainder, like fmod
            if e.dtype.is_float:
                return b.frem(*args)
            return b.urem(*args) if e.dtype.is_unsigned_int else b.srem(*args)
        if name == "select":
            return b.select(*args)
        if name == "cast":
            return self.cast(args[0], src, e.dtype)
        if name == "bitcast":  # through the stored bits (bool is a byte, bfloat16 an i16...)
            y = b.bitcast(self.se.to_storage(args[0], src), storage_type(e.dtype))
            return self.se.from_storage(y, e.dtype)
        if name in ("lt", "le", "gt", "ge", "eq", "ne"):
            sym = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}[name]
            if src.is_float:
                return (b.fcmp_unordered if name == "ne" else b.fcmp_ordered)(sym, *args)
            if src.is_unsigned_int or src == DType.bool:
                return b.icmp_unsigned(sym, *args)
            return b.icmp_signed(sym, *args)
        if name in ("and", "or", "xor"):
            return {"and": b.and_, "or": b.or_, "xor": b.xor}[name](*args)
        if name == "shl":
            return b.shl(*args)
        if name == "shr":
            return b.lshr(*args) if e.dtype.is_unsigned_int else b.ashr(*args)
        if name == "not":
            return b.xor(args[0], I1(1))
        if name == "neg":
            return b.fneg(args[0]) if e.dtype.is_float else b.neg(args[0])
        if e.dtype.is_float:
            t = value_type(e.dtype)
            if isinstance(t, ir.FloatType) and name in ("exp", "log", "pow", "tanh", "erf"):
                return self.fast_f32(name, args)
            if name in self.FLOAT_INTRINSICS:
                f = self.fn(f"llvm.{self.FLOAT_INTRINSICS[name]}.{self.suffix(t)}", t, [t])
                return b.call(f, args)
            if name == "pow":
                return b.call(self.fn(f"llvm.pow.{self.suffix(t)}", t, [t, t]), args)
            if name in self.LIBM:
                base = self.LIBM[name]
                sym = base + "f" if isinstance(t, ir.FloatType) else base
                return b.call(self.fn(sym, t, [t]), args)
        if name == "pow":  # integer power through double precision
            f64 = ir.DoubleType()
            a, c = (self.cast(v, a.dtype, DType.float64) for v, a in zip(args, e.args))
            r = b.call(self.fn("llvm.pow.f64", f64, [f64, f64]), [a, c])
            return self.cast(r, DType.float64, e.dtype)
        if name == "abs" and not e.dtype.is_float:
            x = args[0]
            if e.dtype.is_unsigned_int:
                return x
            return b.select(b.icmp_signed("<", x, x.type(0)), b.neg(x), x)
        raise CompileError(f"operation {name} on {e.dtype} is not supported by the cpu backend")

    def fast_f32(self, name: str, args: list[ir.Value]) -> ir.Value:
        """Vectorizable float32 exp/log/pow (see fastmath.py)."""
        from .fastmath import erf_f32, exp_f32, log_f32, tanh_f32

        b, mb = self.b, self.se.mb
        if name == "erf":
            return erf_f32(b, mb, args[0])
        if name == "exp":
            return exp_f32(b, mb, args[0])
        if name == "log":
            return log_f32(b, mb, args[0])
        if name == "tanh":
            return tanh_f32(b, mb, args[0])
        # pow: |x|^y = exp(y log|x|), then IEEE's cases for x <= 0, NaN and y = 0.
        x, y = args
        t = x.type
        fabs = self.fn("llvm.fabs.f32", t, [t])
        rint = self.fn("llvm.rint.f32", t, [t])
        r = exp_f32(b, mb, b.fmul(y, log_f32(b, mb, b.call(fabs, [x]))))
        y_int = b.fcmp_ordered("==", b.call(rint, [y]), y)
        half = b.fmul(y, t(0.5))
        y_odd = b.and_(y_int, b.fcmp_ordered("!=", b.call(rint, [half]), half))
        not_integer = b.select(b.fcmp_ordered("==", x, t(float("-inf"))), r, t(float("nan")))
        negative = b.select(y_int, b.select(y_odd, b.fneg(r), r), not_integer)
        r = b.select(b.fcmp_ordered("<", x, t(0.0)), negative, r)
        zero = b.select(b.fcmp_ordered(">", y, t(0.0)),
                        b.select(y_odd, x, t(0.0)),  # keeps the sign of -0.0 for odd y
                        b.select(b.fcmp_ordered("<", y, t(0.0)),
                                 b.select(y_odd, b.fdiv(t(1.0), x), t(float("inf"))), r))
        r = b.select(b.fcmp_ordered("==", x, t(0.0)), zero, r)
        one = b.or_(b.fcmp_ordered("==", y, t(0.0)), b.fcmp_ordered("==", x, t(1.0)))
        one = b.or_(one, b.and_(b.fcmp_ordered("==", x, t(-1.0)),
                                b.fcmp_ordered("==", b.call(fabs, [y]), t(float("inf")))))
        return b.select(one, t(1.0), r)

    def cast(self, x: ir.Value, src: DType, dst: DType) -> ir.Value:
        b = self.b
        t = value_type(dst)
        if src == dst:
            return x
        if dst == DType.bool:
            if src.is_float:
                return b.fcmp_unordered("!=", x, x.type(0.0))
            return b.icmp_unsigned("!=", x, x.type(0))
        if dst.is_narrow_float:  # through float32 (as ml_dtypes does), rounded once to dst
            x32 = self.cast(x, src, DType.float32)
            if dst == DType.float16:
                return b.fpext(b.fptrunc(x32, storage_type(dst)), t)
            return narrow.round_to(b, self.se.mb.module, dst, x32)
        if dst.is_sub_byte_int:  # the low bits of an int32 (ml_dtypes: NaN and overflow give 0)
            if src.is_float:
                x = self.cast(x, src, DType.float32 if src != DType.float64 else src)
                ok = b.fcmp_ordered("<", b.call(self.fn(f"llvm.fabs.{self.suffix(x.type)}",
                                                        x.type, [x.type]), [x]),
                                    x.type(2.0 ** 31))
                x = b.select(ok, b.fptosi(x, I32), I32(-2 ** 31))
            x8 = self.cast(x, src if not src.is_float else DType.int32, DType.int8)
            return narrow.wrap(b, dst, x8)
        if src == DType.bool:
            return b.uitofp(x, t) if dst.is_float else b.zext(x, t)
        if src.is_float and dst.is_float:
            if x.type == t:
                return x
            return b.fpext(x, t) if t.intrinsic_name == "f64" else b.fptrunc(x, t)
        if src.is_float:
            return b.fptoui(x, t) if dst.is_unsigned_int else b.fptosi(x, t)
        if dst.is_float:
            return b.uitofp(x, t) if src.is_unsigned_int else b.sitofp(x, t)
        if t.width > x.type.width:
            return b.zext(x, t) if src.is_unsigned_int else b.sext(x, t)
        if t.width < x.type.width:
            return b.trunc(x, t)
        return x
