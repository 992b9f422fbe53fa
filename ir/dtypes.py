"""Element types of the IR, tied to numpy dtypes (the reference and runtime representation).

The narrow types of ml_dtypes (bfloat16, the float8 family, float4_e2m1fn, int4/uint4,
int2/uint2) are numpy dtypes once ml_dtypes is imported, which is why it is imported here.
Every backend stores them one element per byte (two for bfloat16), as ml_dtypes does: packing
two int4 into a byte is a file-format matter that onnx's numpy_helper handles. In registers the
narrow floats (and float16) are float32 and the narrow ints are 8-bit, sign- or zero-extended:
arithmetic on them runs in that wider type and rounds (or wraps) once, when it is stored or cast.
"""
from __future__ import annotations

import enum

import ml_dtypes  # noqa: F401  (registers bfloat16, float8_*, int4... with numpy)
import numpy as np


class DType(enum.Enum):
    """An element type. The value is the numpy dtype name."""

    float16 = "float16"
    float32 = "float32"
    float64 = "float64"
    int8 = "int8"
    int16 = "int16"
    int32 = "int32"
    int64 = "int64"
    uint8 = "uint8"
    uint16 = "uint16"
    uint32 = "uint32"
    uint64 = "uint64"
    bool = "bool"
    bfloat16 = "bfloat16"
    float8e4m3fn = "float8_e4m3fn"
    float8e4m3fnuz = "float8_e4m3fnuz"
    float8e5m2 = "float8_e5m2"
    float8e5m2fnuz = "float8_e5m2fnuz"
    float8e8m0 = "float8_e8m0fnu"
    float4e2m1 = "float4_e2m1fn"
    int4 = "int4"
    uint4 = "uint4"
    int2 = "int2"
    uint2 = "uint2"

    @property
    def np(self) -> np.dtype:
        return np.dtype(self.value)

    @property
    def itemsize(self) -> int:
        return self.np.itemsize

    @property
    def is_float(self) -> bool:
        return self in _FLOATS

    @property
    def is_narrow_float(self) -> bool:
        """Stored narrower than float32 and computed in float32 (float16, bfloat16, float8,
        float4): loads widen exactly, stores and casts round once."""
        return self in _NARROW_FLOATS

    @property
    def is_signed_int(self) -> bool:
        return self in (DType.int8, DType.int16, DType.int32, DType.int64, DType.int4,
                        DType.int2)

    @property
    def is_unsigned_int(self) -> bool:
        return self in (DType.uint8, DType.uint16, DType.uint32, DType.uint64, DType.uint4,
                        DType.uint2)

    @property
    def bits(self) -> int:
        """Significant bits of an integer type (4 for int4, though it takes a byte)."""
        return _SUB_BYTE.get(self, 8 * self.itemsize)

    @property
    def is_sub_byte_int(self) -> bool:
        return self in _SUB_BYTE

    @staticmethod
    def from_numpy(dtype) -> "DType":
        return DType(np.dtype(dtype).name)

    def __str__(self) -> str:
        return self.value


_NARROW_FLOATS = frozenset({DType.float16, DType.bfloat16, DType.float8e4m3fn,
                            DType.float8e4m3fnuz, DType.float8e5m2, DType.float8e5m2fnuz,
                            DType.float8e8m0, DType.float4e2m1})
_FLOATS = _NARROW_FLOATS | {DType.float32, DType.float64}
_SUB_BYTE = {DType.int4: 4, DType.uint4: 4, DType.int2: 2, DType.uint2: 2}
