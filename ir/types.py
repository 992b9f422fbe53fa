"""Tensor types: an element type and a shape whose dims are ints or symbolic names."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .dtypes import DType

Dim = Union[int, str]


@dataclass(frozen=True)
class TensorType:
    """dtype plus shape; a dim is an int (static) or a str (symbolic, e.g. ``"batch"``)."""

    dtype: DType
    shape: tuple[Dim, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def numel(self) -> int:
        """Element count of a static shape."""
        n = 1
        for d in self.shape:
            if not isinstance(d, int):
                raise ValueError(f"shape {self.shape} is not static")
            n *= d
        return n

    def nbytes(self) -> int:
        return self.numel() * self.dtype.itemsize

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"


def static_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Row-major element strides of a static shape."""
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    return tuple(strides)
