"""Element types of the IR, tied to numpy dtypes (the reference and runtime representation)."""
from __future__ import annotations

import enum

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

    @property
    def np(self) -> np.dtype:
        return np.dtype(self.value)

    @property
    def itemsize(self) -> int:
        return self.np.itemsize

    @property
    def is_float(self) -> bool:
        return self in (DType.float16, DType.float32, DType.float64)

    @property
    def is_signed_int(self) -> bool:
        return self in (DType.int8, DType.int16, DType.int32, DType.int64)

    @property
    def is_unsigned_int(self) -> bool:
        return self in (DType.uint8, DType.uint16, DType.uint32, DType.uint64)

    @staticmethod
    def from_numpy(dtype) -> "DType":
        return DType(np.dtype(dtype).name)

    def __str__(self) -> str:
        return self.value
