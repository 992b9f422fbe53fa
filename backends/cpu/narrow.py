"""Narrow element types in LLVM IR: widening loads, rounding stores (ir/float_formats.py).

bfloat16, float8 and float4 compute in float32: ``decode`` widens a stored element (a shift for
bfloat16, a 256-entry table of float32 bits for the byte formats), ``encode`` rounds a float32
to the stored bits with the integer algorithm of ir/float_formats.py, one internal function per
format and module. int4/uint4/int2/uint2 sit in a byte, held sign- or zero-extended in an i8:
``wrap`` keeps their low bits, as a store or a cast to them does.
"""
from __future__ import annotations

from llvmlite import ir

from onnxc.ir.dtypes import DType
from onnxc.ir.float_formats import E8M0, FORMATS, decode_table

I8, I16, I32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)
F32 = ir.FloatType()


def _storage_int(dtype: DType) -> ir.IntType:
    return I16 if dtype == DType.bfloat16 else I8


def decode(b: ir.IRBuilder, module: ir.Module, dtype: DType, raw: ir.Value) -> ir.Value:
    """The float32 value of a stored narrow float (``raw`` is its i8/i16)."""
    if dtype == DType.bfloat16:
        return b.bitcast(b.shl(b.zext(raw, I32), I32(16)), F32)
    table = _table(module, dtype)
    slot = b.gep(table, [I32(0), b.zext(raw, I32)], inbounds=True)
    return b.bitcast(b.load(slot, typ=I32), F32)


def encode(b: ir.IRBuilder, module: ir.Module, dtype: DType, x: ir.Value) -> ir.Value:
    """The stored bits (i8/i16) of a float32 rounded to ``dtype``."""
    return b.call(_encoder(module, dtype), [x])


def round_to(b: ir.IRBuilder, module: ir.Module, dtype: DType, x: ir.Value) -> ir.Value:
    """A float32 rounded to the nearest ``dtype`` value, still as float32 (a cast)."""
    return decode(b, module, dtype, encode(b, module, dtype, x))


def wrap(b: ir.IRBuilder, dtype: DType, x8: ir.Value) -> ir.Value:
    """An i8 reduced to a sub-byte integer type's bits, sign-extended for int4/int2."""
    spare = 8 - dtype.bits
    if dtype.is_signed_int:
        return b.ashr(b.shl(x8, I8(spare)), I8(spare))
    return b.and_(x8, I8((1 << dtype.bits) - 1))


def store_bits(b: ir.IRBuilder, dtype: DType, x8: ir.Value) -> ir.Value:
    """The byte of a sub-byte integer as ml_dtypes keeps it: the low bits only."""
    return b.and_(x8, I8((1 << dtype.bits) - 1))


def _table(module: ir.Module, dtype: DType) -> ir.GlobalVariable:
    name = f"onnxc.decode.{dtype.name}"
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    typ = ir.ArrayType(I32, 256)
    g = ir.GlobalVariable(module, typ, name)
    g.initializer = ir.Constant(typ, [I32(v) for v in decode_table(dtype)])
    g.global_constant = True
    g.linkage = "internal"
    return g


def _encoder(module: ir.Module, dtype: DType) -> ir.Function:
    name = f"onnxc.encode.{dtype.name}"
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    out_t = _storage_int(dtype)
    fn = ir.Function(module, ir.FunctionType(out_t, [F32]), name)
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    bits = b.bitcast(fn.args[0], I32)
    sign = b.lshr(bits, I32(31))
    a = b.and_(bits, I32(0x7FFFFFFF))
    e32 = b.lshr(a, I32(23))
    if dtype == E8M0:
        frac = b.and_(a, I32(0x7FFFFF))
        sub = b.zext(b.icmp_unsigned(">", frac, I32(0x400000)), I32)
        norm = b.add(e32, b.zext(b.icmp_unsigned(">=", frac, I32(0x400000)), I32))
        code = b.select(b.icmp_unsigned("==", e32, I32(0)), sub, norm)
        code = b.select(b.icmp_unsigned(">", code, I32(255)), I32(255), code)
        bad = b.or_(b.or_(b.icmp_unsigned("!=", sign, I32(0)), b.icmp_unsigned("==", a, I32(0))),
                    b.icmp_unsigned("==", e32, I32(255)))
        b.ret(b.trunc(b.select(bad, I32(255), code), out_t))
        return fn
    f = FORMATS[dtype]
    sh = 23 - f.mbits

    def rne(v, k):  # v >> k rounded to nearest even (k may be a value)
        k_ = I32(k) if isinstance(k, int) else k
        half = b.sub(b.shl(I32(1), b.sub(k_, I32(1))), I32(1))
        odd = b.and_(b.lshr(v, k_), I32(1))
        return b.lshr(b.add(b.add(v, half), odd), k_)

    norm = b.sub(rne(a, sh), I32((127 - f.bias) << f.mbits))
    implicit = b.select(b.icmp_unsigned("!=", e32, I32(0)), I32(0x800000), I32(0))
    mant = b.or_(b.and_(a, I32(0x7FFFFF)), implicit)
    e_eff = b.select(b.icmp_unsigned("<", e32, I32(1)), I32(1), e32)
    k = b.sub(I32(sh + 128 - f.bias), e_eff)
    k = b.select(b.icmp_signed("<", k, I32(1)), I32(1), k)  # only where the normal path wins
    k = b.select(b.icmp_signed(">", k, I32(31)), I32(31), k)
    code = b.select(b.icmp_unsigned(">=", e32, I32(128 - f.bias)), norm, rne(mant, k))
    sign_part = b.shl(sign, I32(f.sign_bit))
    finite = b.or_(code, sign_part)
    if not f.signed:  # FNUZ: no negative zero
        finite = b.select(b.icmp_unsigned("==", code, I32(0)), I32(0), finite)
    inf = b.or_(I32(f.inf_code), sign_part) if f.signed else I32(f.inf_code)
    nan = b.xor(I32(f.nan_code), sign_part) if f.signed else I32(f.nan_code)
    over = b.or_(b.icmp_unsigned(">", code, I32(f.maxcode)),
                 b.icmp_unsigned("==", a, I32(0x7F800000)))
    out = b.select(over, inf, finite)
    out = b.select(b.icmp_unsigned(">", a, I32(0x7F800000)), nan, out)
    b.ret(b.trunc(out, out_t))
    return fn
