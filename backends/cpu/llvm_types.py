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
}


def storage_type(dtype: DType) -> ir.Type:
    """How an element is laid out in memory (bool is a byte)."""
    try:
        return _STORAGE[dtype]
    except KeyError:
        raise UnsupportedOpError([("", str(dtype), "element type not supported by the cpu "
                                   "backend yet")]) from None


def value_type(dtype: DType) -> ir.Type:
    """How an element is held in registers: bool is i1, float16 is computed in float32."""
    if dtype == DType.float16:
        return ir.FloatType()
    return I1 if dtype == DType.bool else storage_type(dtype)
