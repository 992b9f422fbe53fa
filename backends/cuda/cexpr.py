"""Scalar expressions of the kernel IR as C expressions, for the CUDA backend (codegen.py).

The rules mirror the cpu backend's ScalarOps (backends/cpu/scalar.py): NaN-propagating
max/min (the ``ox_max``/``ox_min`` helpers of codegen.PRELUDE), truncating integer division,
integer results wrapped to their width, ordered float compares except ``!=``, bool held as
``bool`` and stored as a byte, the narrow floats (float16, bfloat16, float8, float4) computed
in float and rounded once when stored or cast (narrow.py).
"""
from __future__ import annotations

import math
import re

import numpy as np

from onnxc.ir.dtypes import DType
from onnxc.ir.errors import CompileError
from onnxc.ir.kernel import (Const, Expr, IndexValue, Ix, Kernel, Load, Op, Reduce, Stage, Var,
                             walk)
from onnxc.ir.types import static_strides

from . import narrow

_STORAGE = {
    DType.float16: "__half", DType.float32: "float", DType.float64: "double",
    DType.int8: "i8", DType.int16: "i16", DType.int32: "i32", DType.int64: "i64",
    DType.uint8: "u8", DType.uint16: "u16", DType.uint32: "u32", DType.uint64: "u64",
    DType.bool: "u8", DType.bfloat16: "u16", DType.float8e4m3fn: "u8",
    DType.float8e4m3fnuz: "u8", DType.float8e5m2: "u8", DType.float8e5m2fnuz: "u8",
    DType.float8e8m0: "u8", DType.float4e2m1: "u8", DType.int4: "u8", DType.uint4: "u8",
    DType.int2: "u8", DType.uint2: "u8",
}
_INT_BITS = {DType.int8: 8, DType.int16: 16, DType.int32: 32, DType.int64: 64, DType.uint8: 8,
             DType.uint16: 16, DType.uint32: 32, DType.uint64: 64, DType.int4: 4,
             DType.uint4: 4, DType.int2: 2, DType.uint2: 2}
_FLOAT_FN = {"exp": "exp", "log": "log", "sqrt": "sqrt", "abs": "fabs", "floor": "floor",
             "ceil": "ceil", "round": "rint", "sin": "sin", "cos": "cos", "tanh": "tanh",
             "erf": "erf", "tan": "tan", "asin": "asin", "acos": "acos", "atan": "atan",
             "sinh": "sinh", "cosh": "cosh", "asinh": "asinh", "acosh": "acosh",
             "atanh": "atanh"}  # rint: half to even in the default rounding mode, like roundeven
_COMPARE = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}

def storage_type(dtype: DType) -> str:
    """The C type of an element in memory (bool is a byte, float16 is ``__half``)."""
    try:
        return _STORAGE[dtype]
    except KeyError:
        raise CompileError(f"element type {dtype} is not supported by the cuda backend") from None


def value_type(dtype: DType) -> str:
    """The C type of an element in registers: bool is ``bool``, the narrow floats (float16,
    bfloat16, float8, float4) compute in float, int4/int2 sit extended in an i8/u8."""
    if dtype.is_narrow_float:
        return "float"
    if dtype.is_sub_byte_int:
        return "i8" if dtype.is_signed_int else "u8"
    return "bool" if dtype == DType.bool else storage_type(dtype)


def from_storage(raw: str, dtype: DType) -> str:
    """A stored element (C text) as its register value."""
    if dtype == DType.bool:
        return f"({raw} != 0)"
    if dtype == DType.float16:
        return f"__half2float({raw})"
    if dtype.is_narrow_float or dtype.is_sub_byte_int:
        return narrow.load(raw, dtype)
    return raw


def to_storage(value: str, dtype: DType) -> str:
    """A register value (C text) as the element's stored bits: narrow floats round here."""
    if dtype == DType.bool:
        return f"(u8)({value})"
    if dtype == DType.float16:
        return f"__float2half({value})"
    if dtype.is_narrow_float or dtype.is_sub_byte_int:
        return narrow.store(value, dtype)
    return value


def literal(value, dtype: DType) -> str:
    """A C literal of the value type of ``dtype`` (infinities saturate for integers)."""
    if dtype == DType.bool:
        return "true" if bool(value) else "false"
    if dtype.is_float:
        v = float(value)
        if dtype.is_narrow_float and dtype != DType.float16 and math.isfinite(v):
            with np.errstate(all="ignore"):  # the nearest value of the type, as numpy gives it
                v = float(np.asarray(value, dtype=dtype.np).astype(np.float32))
        f64 = dtype == DType.float64
        if math.isnan(v):
            return '__builtin_nan("")' if f64 else '__builtin_nanf("")'
        if math.isinf(v):
            inf = "__builtin_huge_val()" if f64 else "__builtin_huge_valf()"
            return inf if v > 0 else f"(-{inf})"
        text = repr(v)
        if f64:
            return text if v >= 0 else f"({text})"
        exact = float(np.float32(v)) == v  # else round the double like the cpu backend does
        text = f"{text}f" if exact else f"(float){text}"
        return text if v >= 0 else f"({text})"
    bits, signed = _INT_BITS[dtype], dtype.is_signed_int
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if isinstance(value, float) and math.isinf(value):
        value = lo if value < 0 else hi
    v = int(value)
    if bits == 64:
        if v == -(1 << 63):
            return "(-9223372036854775807LL - 1)"
        return f"({v}LL)" if signed and v < 0 else f"{v}LL" if signed else f"{v}ULL"
    t = value_type(dtype)
    return f"(({t}){v})" if bits < 32 or v < 0 else f"{v}{'' if signed else 'u'}"


def _children(e: Expr) -> tuple[Expr, ...]:
    if isinstance(e, Op):
        return e.args
    if isinstance(e, Reduce):
        return (e.body,)
    return ()


def used_vars(root: Expr) -> set[Var]:
    """Index variables that some load or index value of the expression reads."""
    used: set[Var] = set()
    for e in walk(root):
        if isinstance(e, Load):
            for i in e.index:
                used |= i.vars()
        elif isinstance(e, IndexValue):
            used |= e.index.vars()
    return used


def _use_counts(root: Expr) -> dict[int, int]:
    """How many parents each node of the expression DAG has (by object identity)."""
    counts: dict[int, int] = {}
    for e in walk(root):
        for c in _children(e):
            counts[id(c)] = counts.get(id(c), 0) + 1
    return counts


class StageWriter:
    """Writes one stage as the body of a ``__global__`` function.

    Shared sub-expressions (one object used twice) and reductions become named locals; the rest
    stays one C expression, so a ``select`` only evaluates the branch it takes.
    """

    def __init__(self, kernel: Kernel, st: Stage, pnames: dict[str, str]):
        self.kernel, self.st, self.pnames = kernel, st, pnames
        self.shapes = {p.name: p.shape for p in kernel.params}
        self.dtypes = {p.name: p.dtype for p in kernel.params}
        self.counts = _use_counts(st.body)
        self.lines: list[str] = []
        self.vnames: dict[Var, str] = {}
        self.extents: dict[Var, int] = dict(zip(st.vars, st.shape))  # loop ranges, for checks
        self.scopes: list[dict[int, str]] = [{}]
        self.ntemps = 0

    # -- names and statements --------------------------------------------------------------
    def var(self, v: Var) -> str:
        if v not in self.vnames:
            letters = re.sub(r"[^a-z]", "", v.name.lower()) or "v"
            self.vnames[v] = f"{letters}{len(self.vnames)}"
        return self.vnames[v]

    def temp(self, prefix: str = "_t") -> str:
        self.ntemps += 1
        return f"{prefix}{self.ntemps}"

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("  " * depth + text)

    # -- index arithmetic (int64, C semantics: / truncates, % takes the dividend's sign) -----
    def ix(self, e: Ix) -> str:
        if isinstance(e, Var):
            return self.var(e)
        if e.kind == "const":
            return str(e.a) if abs(e.a) < 2 ** 31 else f"{e.a}LL"
        if e.kind == "load":  # a data-dependent index (Gather): the element as int64
            return f"((long long){self.load(e.a)})"
        if e.kind in ("min", "max"):
            a, b = self.ix(e.a), self.ix(e.b)
            return f"({a} {'<' if e.kind == 'min' else '>'} {b} ? {a} : {b})"
        if e.kind == "add" and e.b.kind == "const" and e.b.a < 0:
            return f"({self.ix(e.a)} - {-e.b.a})"
        sym = {"add": "+", "mul": "*", "div": "/", "mod": "%"}[e.kind]
        return f"({self.ix(e.a)} {sym} {self.ix(e.b)})"

    def offset(self, tensor: str, index: tuple[Ix, ...]) -> str:
        shape = self.shapes[tensor]
        if len(index) != len(shape):
            raise CompileError(f"load of {tensor} with {len(index)} indices, rank {len(shape)}")
        terms = [self.ix(i) if s == 1 else f"{self.ix(i)} * {s}"
                 for i, s in zip(index, static_strides(shape))
                 if s != 0 and not (i.kind == "const" and i.a == 0)]
        return " + ".join(terms) if terms else "0"

    # -- expressions -----------------------------------------------------------------------
    def expr(self, e: Expr, depth: int) -> str:
        key = id(e)
        for scope in reversed(self.scopes):
            if key in scope:
                return scope[key]
        if isinstance(e, Reduce):
            text = self.reduce(e, depth)
        else:
            text = self.inline(e, depth)
            if self.counts.get(key, 0) > 1 and isinstance(e, (Op, Load)):
                name = self.temp()
                self.emit(depth, f"const {value_type(e.dtype)} {name} = {text};")
                text = name
        self.scopes[-1][key] = text
        return text

    def inline(self, e: Expr, depth: int) -> str:
        if isinstance(e, Const):
            return literal(e.value, e.dtype)
        if isinstance(e, IndexValue):
            return f"((i64){self.ix(e.index)})"
        if isinstance(e, Load):
            return self.load(e)
        if isinstance(e, Op):
            return self.op(e, [self.expr(a, depth) for a in e.args])
        raise CompileError(f"cannot lower expression {e!r} to CUDA")

    def load(self, e: Load) -> str:
        ptr = self.pnames[e.tensor]
        value = from_storage(f"{ptr}[{self.offset(e.tensor, e.index)}]", e.dtype)
        if e.pad is None:
            return value
        checks = []
        for i, n in zip(e.index, self.shapes[e.tensor]):
            if isinstance(i, Var) and self.extents.get(i, n + 1) <= n:
                continue  # a loop variable that stays inside the dimension
            if i.kind == "const" and 0 <= i.a < n:
                continue
            s = self.ix(i)
            checks.append(f"{s} >= 0 && {s} < {n}")
        return f"(({' && '.join(checks) or 'true'}) ? {value} : {literal(e.pad, e.dtype)})"

    def reduce(self, e: Reduce, depth: int) -> str:
        acc = self.temp("_acc")
        t = value_type(e.dtype)
        self.emit(depth, f"{t} {acc} = {reduce_init(e.kind, e.dtype)};")
        for level, (v, n) in enumerate(e.axes):
            name = self.var(v)
            self.extents[v] = n
            self.emit(depth + level, f"for (i64 {name} = 0; {name} < {n}; ++{name}) {{")
        inner = depth + len(e.axes)
        self.scopes.append({})
        body = self.expr(e.body, inner)
        self.scopes.pop()
        self.emit(inner, f"{acc} = {combine(e.kind, e.dtype, acc, body)};")
        for level in range(len(e.axes) - 1, -1, -1):
            self.emit(depth + level, "}")
        return acc

    def op(self, e: Op, a: list[str]) -> str:
        name, dt = e.name, e.dtype
        src = e.args[0].dtype if e.args else dt
        t = value_type(dt)
        if name in ("add", "sub", "mul", "div"):
            return arith(name, dt, a[0], a[1])
        if name in ("max", "min"):
            return f"ox_{name}({a[0]}, {a[1]})"
        if name == "mod":  # C remainder (the dividend's sign), like frem / srem / urem
            if dt.is_float:
                return f"fmod{'' if dt == DType.float64 else 'f'}({a[0]}, {a[1]})"
            return f"(({t})({a[0]} % {a[1]}))"
        if name == "select":
            return f"({a[0]} ? {a[1]} : {a[2]})"
        if name == "cast":
            return cast(a[0], src, dt)
        if name == "bitcast":  # through the stored bits (bool is a byte, bfloat16 a u16...)
            bits = f"ox_bitcast<{storage_type(dt)}, {storage_type(src)}>({to_storage(a[0], src)})"
            return from_storage(bits, dt)
        if name in _COMPARE:  # C's float compares are ordered except !=, as in the cpu backend
            return f"({a[0]} {_COMPARE[name]} {a[1]})"
        if name in ("and", "or", "xor"):
            sym = {"and": "&", "or": "|", "xor": "^"}[name]
            return f"(({t})({a[0]} {sym} {a[1]}))"
        if name == "shl":  # through unsigned: no undefined behaviour for negative values
            return f"(({t})((unsigned long long)({a[0]}) << ({a[1]})))"
        if name == "shr":  # arithmetic for signed types
            return f"(({t})({a[0]} >> {a[1]}))"
        if name == "not":
            return f"(!{a[0]})"
        if name == "neg":
            return f"(-{a[0]})" if dt.is_float else f"(({t})(-{a[0]}))"
        if dt.is_float:
            f = "f" if dt != DType.float64 else ""
            if name in _FLOAT_FN:
                return f"{_FLOAT_FN[name]}{f}({a[0]})"
            if name == "pow":
                return f"pow{f}({a[0]}, {a[1]})"
        if name == "pow":  # integer power through double precision, like the cpu backend
            x, y = (cast(v, s.dtype, DType.float64) for v, s in zip(a, e.args))
            return cast(f"pow({x}, {y})", DType.float64, dt)
        if name == "abs" and not dt.is_float:
            return a[0] if dt.is_unsigned_int else f"(({t})({a[0]} < 0 ? -{a[0]} : {a[0]}))"
        raise CompileError(f"operation {name} on {dt} is not supported by the cuda backend")


def arith(name: str, dt: DType, x: str, y: str) -> str:
    sym = {"add": "+", "sub": "-", "mul": "*", "div": "/"}[name]
    if dt.is_float:
        return f"({x} {sym} {y})"
    if dt == DType.bool:  # i1 arithmetic, as LLVM does it in the cpu backend
        sym = {"add": "!=", "sub": "!=", "mul": "&&", "div": "&&"}[name]
        return f"({x} {sym} {y})"
    # C promotes narrow integers to int: cast back so results wrap at the type's width.
    return f"(({value_type(dt)})({x} {sym} {y}))"


def cast(x: str, src: DType, dst: DType) -> str:
    if src == dst:
        return x
    if dst == DType.bool:
        return f"({x} != 0)"  # NaN is true, as with fcmp une
    if dst == DType.float16:
        return f"ox_round_half((float)({x}))"
    if dst.is_narrow_float or dst.is_sub_byte_int:
        return narrow.cast_to(x, src, dst)
    return f"(({value_type(dst)})({x}))"


def reduce_init(kind: str, dtype: DType) -> str:
    if dtype == DType.bool:
        return literal(kind in ("min", "prod"), dtype)
    return literal({"sum": 0, "prod": 1, "max": -math.inf, "min": math.inf}[kind], dtype)


def combine(kind: str, dtype: DType, acc: str, v: str) -> str:
    if kind == "sum":
        return arith("add", dtype, acc, v)
    if kind == "prod":
        return arith("mul", dtype, acc, v)
    if kind in ("max", "min"):
        return f"ox_{kind}({acc}, {v})"
    raise CompileError(f"reduction {kind} is not supported by the cuda backend")
