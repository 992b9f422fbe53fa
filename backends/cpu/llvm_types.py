"""Mapping of IR element types to LLVM types, and the scalar operations on them."""
from __future__ import annotations

from llvmlite import ir

from onnxc.ir.dtypes import DType
from onnxc.ir.errors import UnsupportedOpError

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()
VOID = ir.VoidType()

_STORAGE = {
    DType.float16: ir.HalfType(), DType.float32: ir.FloatType(), DType.float64: ir.DoubleType(),
    DType.int8: I8, DType.uint8: I8, DType.int16: ir.IntType(16), DType.uint16: ir.IntType(16),
    DType.int32: I32, DType.uint32: I32, DType.int64: I64, DType.uint64: I64, DType.bool: I8,
    DType.bfloat16: ir.IntType(16), DType.float8e4m3fn: I8, DType.float8e4m3fnuz: I8,
    DType.float8e5m2: I8, DType.float8e5m2fnuz: I8, DType.float8e8m0: I8, DType.float4e2m1: I8,
    DType.int4: I8, DType.uint4: I8, DType.int2: I8, DType.uint2: I8,
}


def storage_type(dtype: DType) -> ir.Type:
    """How an element is laid out in memory (bool is a byte; the narrow types are bits in an
    i8/i16, see narrow.py)."""
    try:
        return _STORAGE[dtype]
    except KeyError:
        raise UnsupportedOpError([("", str(dtype), "element type not supported by the cpu "
                                   "backend yet")]) from None


def value_type(dtype: DType) -> ir.Type:
    """How an element is held in registers: bool is i1, the narrow floats (float16, bfloat16,
    float8, float4) are computed in float32, int4/int2 sit extended in an i8."""
    if dtype.is_narrow_float:
        return ir.FloatType()
    return I1 if dtype == DType.bool else storage_type(dtype)
