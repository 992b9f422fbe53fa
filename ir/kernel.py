"""The kernel IR: what a kernel computes, as index expressions (the Halide / TVM idea).

A core op says its meaning once, as a ``Kernel``: a few ``Stage``s, each defining every element of
one tensor by a scalar ``Expr`` over index variables — loads of input tensors at integer index
expressions, arithmetic, and ``Reduce`` over extra index variables. Fusion composes kernels by
substituting one stage's expression for the loads of its result (``inline``), and each backend
lowers stages to loops for its target. Nothing here knows about LLVM or CUDA.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .dtypes import DType

_var_ids = itertools.count()


# --------------------------------------------------------------------------------------------
# Integer index expressions
# --------------------------------------------------------------------------------------------
class Ix:
    """An integer index expression: a variable, a constant, +, *, //, %, min and max of two, or
    kind "load": the value of an integer tensor element (``a`` is the Load), for gathers.

    // and % are used only on non-negative operands (backends may lower them as C's / and %).
    """

    __slots__ = ("kind", "a", "b")

    def __init__(self, kind: str, a=None, b=None):
        self.kind, self.a, self.b = kind, a, b

    @staticmethod
    def lift(x: "Ix | int") -> "Ix":
        return x if isinstance(x, Ix) else Ix("const", int(x))

    def _bin(self, kind: str, other, swap=False) -> "Ix":
        a, b = (Ix.lift(other), self) if swap else (self, Ix.lift(other))
        if a.kind == "const" and b.kind == "const":
            x, y = a.a, b.a
            return Ix("const", {"add": x + y, "mul": x * y, "div": x // y if y else 0,
                                "mod": x % y if y else 0, "min": min(x, y),
                                "max": max(x, y)}[kind])
        if kind == "add":
            if a.kind == "const" and a.a == 0:
                return b
            if b.kind == "const" and b.a == 0:
                return a
        if kind == "mul":
            for p, q in ((a, b), (b, a)):
                if p.kind == "const" and p.a == 1:
                    return q
                if p.kind == "const" and p.a == 0:
                    return p
        if kind == "div" and b.kind == "const" and b.a == 1:
            return a
        return Ix(kind, a, b)

    def __add__(self, o): return self._bin("add", o)
    def __radd__(self, o): return self._bin("add", o, swap=True)
    def __sub__(self, o): return self._bin("add", Ix.lift(o) * -1)
    def __rsub__(self, o): return Ix.lift(o)._bin("add", self * -1)
    def __mul__(self, o): return self._bin("mul", o)
    def __rmul__(self, o): return self._bin("mul", o, swap=True)
    def __floordiv__(self, o): return self._bin("div", o)
    def __mod__(self, o): return self._bin("mod", o)

    def vars(self) -> set["Var"]:
        if isinstance(self, Var):
            return {self}
        if self.kind == "const":
            return set()
        if self.kind == "load":
            return set().union(*(i.vars() for i in self.a.index))
        return self.a.vars() | self.b.vars()

    def loads(self) -> list["Load"]:
        """The tensor loads this index reads (kind "load"), outermost first."""
        if isinstance(self, Var) or self.kind == "const":
            return []
        if self.kind == "load":
            return [self.a]
        return self.a.loads() + self.b.loads()

    def coef(self, var: "Var") -> int | None:
        """The coefficient of ``var`` if the expression is affine in it, else None."""
        if isinstance(self, Var):
            return 1 if self is var else 0
        if self.kind == "const":
            return 0
        if self.kind == "load":
            return None if var in self.vars() else 0
        ca, cb = self.a.coef(var), self.b.coef(var)
        if ca is None or cb is None:
            return None
        if self.kind == "add":
            return ca + cb
        if self.kind == "mul":
            if ca == 0 and cb == 0:
                return 0
            if self.a.kind == "const":
                return self.a.a * cb
            if self.b.kind == "const":
                return self.b.a * ca
            return None
        return 0 if ca == 0 and cb == 0 else None

    def subst(self, mapping: dict["Var", "Ix"]) -> "Ix":
        if isinstance(self, Var):
            return mapping.get(self, self)
        if self.kind == "const":
            return self
        if self.kind == "load":
            ld = self.a
            return Ix("load", Load(ld.tensor, tuple(i.subst(mapping) for i in ld.index),
                                   ld.dtype, ld.pad))
        return self.a.subst(mapping)._bin(self.kind, self.b.subst(mapping))

    def __repr__(self) -> str:
        if self.kind == "const":
            return str(self.a)
        if self.kind in ("min", "max"):
            return f"{self.kind}({self.a!r}, {self.b!r})"
        if self.kind == "load":
            return f"{self.a.tensor}[{', '.join(map(repr, self.a.index))}]"
        sym = {"add": "+", "mul": "*", "div": "//", "mod": "%"}[self.kind]
        return f"({self.a!r} {sym} {self.b!r})"


def ix_min(a: "Ix | int", b: "Ix | int") -> Ix:
    return Ix.lift(a)._bin("min", b)


def ix_max(a: "Ix | int", b: "Ix | int") -> Ix:
    return Ix.lift(a)._bin("max", b)


def ix_load(load: "Load") -> Ix:
    """An index read from an integer tensor (the data-dependent index of a gather)."""
    if load.dtype.is_float or load.dtype == DType.bool:
        raise ValueError(f"an index load needs an integer tensor, got {load.dtype}")
    return Ix("load", load)


class Var(Ix):
    """An index variable; identity matters, the name is for printing."""

    __slots__ = ("name", "uid")

    def __init__(self, name: str = "i"):
        super().__init__("var")
        self.name = name
        self.uid = next(_var_ids)

    def __hash__(self):
        return self.uid

    def __eq__(self, other):
        return self is other

    def __repr__(self) -> str:
        return f"{self.name}{self.uid}"


# --------------------------------------------------------------------------------------------
# Scalar expressions
# --------------------------------------------------------------------------------------------
# "round" rounds half to even; "mod" is C's remainder (fmod: the sign of the dividend);
# "and", "or", "xor" are bitwise on integers (logical on bool); "shl" and "shr" (arithmetic
# for signed types) are defined for shift amounts in [0, bit width) only.
UNARY = {"neg", "exp", "log", "sqrt", "tanh", "abs", "floor", "ceil", "round", "not", "erf", "sin",
         "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh"}
BINARY = {"add", "sub", "mul", "div", "max", "min", "pow", "mod", "and", "or", "xor", "shl", "shr"}
COMPARE = {"lt", "le", "gt", "ge", "eq", "ne"}


class Expr:
    """A scalar expression of element type ``dtype``."""

    dtype: DType

    def _op(self, name, other, swap=False) -> "Expr":
        other = other if isinstance(other, Expr) else Const(other, self.dtype)
        a, b = (other, self) if swap else (self, other)
        return Op(name, (a, b), self.dtype)

    def __add__(self, o): return self._op("add", o)
    def __radd__(self, o): return self._op("add", o, True)
    def __sub__(self, o): return self._op("sub", o)
    def __rsub__(self, o): return self._op("sub", o, True)
    def __mul__(self, o): return self._op("mul", o)
    def __rmul__(self, o): return self._op("mul", o, True)
    def __truediv__(self, o): return self._op("div", o)
    def __rtruediv__(self, o): return self._op("div", o, True)
    def __neg__(self): return Op("neg", (self,), self.dtype)


@dataclass(frozen=True, eq=False)
class Const(Expr):
    value: float | int | bool
    dtype: DType


@dataclass(frozen=True, eq=False)
class Load(Expr):
    """Element ``tensor[index]``; with ``pad`` set, out-of-range indices read ``pad`` instead."""

    tensor: str
    index: tuple[Ix, ...]
    dtype: DType
    pad: float | None = None


@dataclass(frozen=True, eq=False)
class Op(Expr):
    """Arithmetic, math function, comparison (bool result), ``select`` or ``cast``."""

    name: str
    args: tuple[Expr, ...]
    dtype: DType


@dataclass(frozen=True, eq=False)
class Reduce(Expr):
    """``kind`` (sum, max, min, prod) of ``body`` over all values of ``axes`` (var, extent)."""

    kind: str
    body: Expr
    axes: tuple[tuple[Var, int], ...]
    dtype: DType


def const(value, dtype: DType) -> Const:
    return Const(value, dtype)


def call(name: str, *args: Expr, dtype: DType | None = None) -> Op:
    if name in COMPARE:
        return Op(name, args, DType.bool)
    if name == "select":
        return Op(name, args, args[1].dtype)
    return Op(name, args, dtype or args[0].dtype)


def cast(x: Expr, dtype: DType) -> Expr:
    return x if x.dtype == dtype else Op("cast", (x,), dtype)


def bitcast(x: Expr, dtype: DType) -> Expr:
    """The same stored bits read as another type of the same size (a narrow float rounds to
    its bits first, as a store would)."""
    if x.dtype.itemsize != dtype.itemsize:
        raise ValueError(f"cannot bitcast {x.dtype} to {dtype}")
    return x if x.dtype == dtype else Op("bitcast", (x,), dtype)


def select(cond: Expr, a: Expr, b: Expr) -> Op:
    return Op("select", (cond, a, b), a.dtype)


def maximum(a: Expr, b: Expr) -> Op:
    """max that propagates NaN from either side, like numpy.maximum and onnxruntime."""
    return Op("max", (a, b), a.dtype)


def minimum(a: Expr, b: Expr) -> Op:
    return Op("min", (a, b), a.dtype)


# --------------------------------------------------------------------------------------------
# Stages and kernels
# --------------------------------------------------------------------------------------------
@dataclass
class Stage:
    """``out[vars] = body`` for every index in ``shape``."""

    out: str
    shape: tuple[int, ...]
    vars: tuple[Var, ...]
    body: Expr


@dataclass
class Param:
    name: str
    shape: tuple[int, ...]
    dtype: DType
    role: str  # "in", "out" or "temp"


@dataclass
class Kernel:
    """A unit of generated code: parameters (inputs, outputs, temporaries) and ordered stages."""

    name: str
    params: list[Param]
    stages: list[Stage]
    # ONNX nodes covered, for describe() and readable generated code.
    origin: list[tuple[str, str]] = field(default_factory=list)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)


class TensorRef:
    """Sugar for writing compute definitions: ``x[i, j]`` is a Load of tensor ``x``."""

    def __init__(self, name: str, shape: Sequence[int], dtype: DType):
        self.name, self.shape, self.dtype = name, tuple(shape), dtype

    def __getitem__(self, index) -> Load:
        if not isinstance(index, tuple):
            index = (index,)
        return Load(self.name, tuple(Ix.lift(i) for i in index), self.dtype)

    def padded(self, index: Sequence, pad: float) -> Load:
        return Load(self.name, tuple(Ix.lift(i) for i in index), self.dtype, pad)

    def broadcast_to(self, out_vars: Sequence[Var]) -> Load:
        """Load with numpy broadcasting against an output indexed by ``out_vars``."""
        offset = len(out_vars) - len(self.shape)
        index = [Ix.lift(0) if d == 1 else out_vars[offset + k] for k, d in enumerate(self.shape)]
        return Load(self.name, tuple(index), self.dtype)


def stage(out: str, shape: Sequence[int], fn: Callable[..., Expr], names: str = "ijklmnopqrst"
          ) -> Stage:
    """Build a Stage from a Python function of the index variables."""
    shape = tuple(int(d) for d in shape)
    vars_ = tuple(Var(names[k % len(names)]) for k in range(len(shape)))
    return Stage(out, shape, vars_, fn(*vars_))


def reduce(kind: str, extents: Sequence[int], fn: Callable[..., Expr], names: str = "rstuvw"
           ) -> Reduce:
    """``kind`` of ``fn(r0, r1, ...)`` over a box of the given extents."""
    rvars = tuple(Var(names[k % len(names)]) for k in range(len(extents)))
    body = fn(*rvars)
    return Reduce(kind, body, tuple(zip(rvars, (int(e) for e in extents))), body.dtype)


# --------------------------------------------------------------------------------------------
# Traversal and rewriting (fusion builds on these)
# --------------------------------------------------------------------------------------------
def walk(expr: Expr):
    """Yield every distinct sub-expression once, parents first, including loads inside index
    expressions. Expressions are DAGs (fusion shares sub-expressions), so this dedupes."""
    stack = [expr]
    seen: set[int] = set()
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, Op):
            stack.extend(e.args)
        elif isinstance(e, Reduce):
            stack.append(e.body)
        elif isinstance(e, Load):
            stack.extend(ld for i in e.index for ld in i.loads())
        elif isinstance(e, IndexValue):
            stack.extend(e.index.loads())


def rewrite(expr: Expr, fn: Callable[[Expr], Expr | None],
            _memo: dict[int, Expr] | None = None) -> Expr:
    """Bottom-up rewrite: ``fn`` returns a replacement or None to keep the node. A shared
    sub-expression is rewritten once and stays shared."""
    memo = {} if _memo is None else _memo
    key = id(expr)
    if key in memo:
        return memo[key]
    original = expr
    if isinstance(expr, Op):
        args = tuple(rewrite(a, fn, memo) for a in expr.args)
        if any(a is not b for a, b in zip(args, expr.args)):
            expr = Op(expr.name, args, expr.dtype)
    elif isinstance(expr, Reduce):
        body = rewrite(expr.body, fn, memo)
        if body is not expr.body:
            expr = Reduce(expr.kind, body, expr.axes, expr.dtype)
    out = fn(expr)
    memo[key] = expr if out is None else out
    memo.setdefault(-1 - key, original)  # keep the key object alive so ids are not reused
    return memo[key]


def substitute_vars(expr: Expr, mapping: dict[Var, Ix]) -> Expr:
    """Replace index variables inside every load (reduction axes get fresh variables).
    Shared sub-expressions are substituted once and stay shared."""
    memo: dict[int, tuple[Expr, Expr]] = {}

    def visit(e: Expr) -> Expr:
        hit = memo.get(id(e))
        if hit is not None:
            return hit[1]
        out = visit_new(e)
        memo[id(e)] = (e, out)
        return out

    def visit_new(e: Expr) -> Expr:
        if isinstance(e, Load):
            return Load(e.tensor, tuple(i.subst(mapping) for i in e.index), e.dtype, e.pad)
        if isinstance(e, IndexValue):
            return IndexValue(e.index.subst(mapping))
        if isinstance(e, Op):
            return Op(e.name, tuple(visit(a) for a in e.args), e.dtype)
        if isinstance(e, Reduce):
            fresh = {v: Var(v.name) for v, _ in e.axes}
            inner = dict(mapping)
            inner.update(fresh)
            return Reduce(e.kind, substitute_vars(e.body, inner),
                          tuple((fresh[v], n) for v, n in e.axes), e.dtype)
        return e

    return visit(expr)


def inline(expr: Expr, producer: Stage) -> Expr:
    """Replace loads of ``producer.out`` in ``expr`` by the producer's defining expression."""

    def fn(e: Expr) -> Expr | None:
        if isinstance(e, Load) and e.tensor == producer.out:
            if e.pad is not None:
                raise ValueError("cannot inline a padded load")
            return substitute_vars(producer.body, dict(zip(producer.vars, e.index)))
        return None

    return rewrite(expr, fn)


def loads(expr: Expr) -> list[Load]:
    return [e for e in walk(expr) if isinstance(e, Load)]


def index_loads(expr: Expr) -> list[Load]:
    """The loads that sit inside index expressions (``inline`` does not reach into those)."""
    found = []
    for e in walk(expr):
        if isinstance(e, Load):
            found.extend(ld for i in e.index for ld in i.loads())
        elif isinstance(e, IndexValue):
            found.extend(e.index.loads())
    return found


def flat_coef(load: Load, var: Var, shape: Sequence[int]) -> int | None:
    """How far the load's flat (row-major) offset moves per step of ``var``; None if the
    offset is not affine in it. Schedules use it to find contiguous axes."""
    from .types import static_strides

    total = 0
    for ix, stride in zip(load.index, static_strides(tuple(shape))):
        c = ix.coef(var)
        if c is None:
            return None
        total += c * stride
    return total


def same_position(index: Ix, var: Var, extent: int) -> bool:
    """The index is the stage variable itself (or 0 along an axis of extent 1): a read of the
    element being written."""
    return index is var or (extent == 1 and not isinstance(index, Var) and
                            index.kind == "const" and index.a == 0)


def has_reduce(expr: Expr) -> bool:
    return any(isinstance(e, Reduce) for e in walk(expr))


@dataclass(frozen=True, eq=False)
class IndexValue(Expr):
    """The value of an integer index expression, as an int64 scalar (for comparisons)."""

    index: Ix
    dtype: DType = DType.int64
