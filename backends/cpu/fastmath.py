"""exp and log for float32 as plain arithmetic, so LLVM vectorizes them.

LLVM lowers ``llvm.exp.v16f32`` to sixteen scalar ``expf`` calls when no vector math library
is configured (llvmlite offers no way to configure one), which made Softmax, Sigmoid, LRN and
friends scalar. These are the classic Cephes-style reductions: exp by x = n ln2 + r with a
degree-6 polynomial for e^r, log by x = 2^e m with a polynomial in m - 1. Both are within
2 ulp on their domains and keep IEEE special cases (NaN, +-inf, 0, negative log arguments).
"""
from __future__ import annotations

from llvmlite import ir

F32 = ir.FloatType()
I32 = ir.IntType(32)
FAST = ("contract",)


def _c(v: float) -> ir.Constant:
    return ir.Constant(F32, v)


def _fma(b: ir.IRBuilder, mod, a, x, c):
    fn = mod.declare("llvm.fma.f32", F32, [F32, F32, F32])
    return b.call(fn, [a, x, c])


def _poly(b, mod, x, coeffs):
    """Horner: coeffs from the highest degree down."""
    acc = _c(coeffs[0])
    for k in coeffs[1:]:
        acc = _fma(b, mod, acc, x, _c(k))
    return acc


def exp_f32(b: ir.IRBuilder, mod, x: ir.Value) -> ir.Value:
    hi, lo = 88.72283935546875, -103.97207708
    xc = b.select(b.fcmp_ordered(">", x, _c(hi)), _c(hi), x)
    xc = b.select(b.fcmp_ordered("<", xc, _c(lo)), _c(lo), xc)
    rint = mod.declare("llvm.rint.f32", F32, [F32])
    n = b.call(rint, [b.fmul(xc, _c(1.44269504088896341))])
    r = _fma(b, mod, n, _c(-0.693359375), xc)
    r = _fma(b, mod, n, _c(2.12194440e-4), r)
    p = _poly(b, mod, r, [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                          4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1])
    p = _fma(b, mod, b.fmul(p, r), r, r)
    p = b.fadd(p, _c(1.0))
    # Scale by 2^n in two halves so n = 128 (x near 88.7) does not overflow the exponent.
    ni = b.fptosi(n, I32)
    half = b.ashr(ni, I32(1))
    s1 = b.bitcast(b.shl(b.add(half, I32(127)), I32(23)), F32)
    s2 = b.bitcast(b.shl(b.add(b.sub(ni, half), I32(127)), I32(23)), F32)
    y = b.fmul(b.fmul(p, s1), s2)
    y = b.select(b.fcmp_ordered(">", x, _c(hi)), _c(float("inf")), y)
    y = b.select(b.fcmp_ordered("<", x, _c(lo)), _c(0.0), y)
    return b.select(b.fcmp_unordered("uno", x, x), x, y)


def log_f32(b: ir.IRBuilder, mod, x: ir.Value) -> ir.Value:
    # Normalize denormals, then split x = 2^e * m with m in [sqrt(0.5), sqrt(2)).
    tiny = b.fcmp_ordered("<", x, _c(1.17549435e-38))
    xs = b.select(tiny, b.fmul(x, _c(8388608.0)), x)  # * 2^23
    bits = b.bitcast(xs, I32)
    e = b.sub(b.lshr(bits, I32(23)), I32(127))
    m = b.bitcast(b.or_(b.and_(bits, I32(0x007FFFFF)), I32(0x3F800000)), F32)  # [1, 2)
    big = b.fcmp_ordered(">", m, _c(1.41421356))
    m = b.select(big, b.fmul(m, _c(0.5)), m)
    e = b.select(big, b.add(e, I32(1)), e)
    e = b.select(tiny, b.sub(e, I32(23)), e)
    f = b.fsub(m, _c(1.0))
    z = b.fmul(f, f)
    p = _poly(b, mod, f, [7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1,
                          -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
                          2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1])
    y = b.fmul(b.fmul(p, f), z)
    ef = b.sitofp(e, F32)
    y = _fma(b, mod, ef, _c(-2.12194440e-4), y)
    y = _fma(b, mod, z, _c(-0.5), y)
    y = b.fadd(f, y)
    y = _fma(b, mod, ef, _c(0.693359375), y)
    y = b.select(b.fcmp_ordered("==", x, _c(0.0)), _c(float("-inf")), y)
    y = b.select(b.fcmp_ordered("<", x, _c(0.0)), _c(float("nan")), y)
    y = b.select(b.fcmp_ordered("==", x, _c(float("inf"))), x, y)
    return b.select(b.fcmp_unordered("uno", x, x), x, y)


def tanh_f32(b: ir.IRBuilder, mod, x: ir.Value) -> ir.Value:
    """tanh: an odd polynomial near 0 (keeps relative accuracy), 1 - 2/(e^2|x| + 1) beyond."""
    fabs = mod.declare("llvm.fabs.f32", F32, [F32])
    copysign = mod.declare("llvm.copysign.f32", F32, [F32, F32])
    a = b.call(fabs, [x])
    z = b.fmul(x, x)
    p = _poly(b, mod, z, [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2,
                          1.33314422036e-1, -3.33332819422e-1])
    small = _fma(b, mod, b.fmul(p, z), x, x)
    e = exp_f32(b, mod, b.fmul(b.select(b.fcmp_ordered(">", a, _c(9.0)), _c(9.0), a),
                               _c(2.0)))
    large = b.fsub(_c(1.0), b.fdiv(_c(2.0), b.fadd(e, _c(1.0))))
    large = b.select(b.fcmp_ordered(">", a, _c(9.0)), _c(1.0), large)  # tanh(9) rounds to 1
    large = b.call(copysign, [large, x])
    y = b.select(b.fcmp_ordered("<", a, _c(0.625)), small, large)
    return b.select(b.fcmp_unordered("uno", x, x), x, y)


def erf_f32(b: ir.IRBuilder, mod, x: ir.Value) -> ir.Value:
    """erf as a rational function of x on [-4, 4] (Eigen's / XLA's float32 erf, a few ulp),
    +-1 beyond: vectorizable, where libm's erff kept a GELU's epilogue scalar."""
    xc = b.select(b.fcmp_ordered(">", x, _c(4.0)), _c(4.0), x)
    xc = b.select(b.fcmp_ordered("<", xc, _c(-4.0)), _c(-4.0), xc)
    z = b.fmul(xc, xc)
    p = _poly(b, mod, z, [-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
                          -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
                          -1.60960333262415e-02])
    q = _poly(b, mod, z, [-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
                          -7.37332916720468e-03, -1.42647390514189e-02])
    return b.fdiv(b.fmul(xc, p), q)
