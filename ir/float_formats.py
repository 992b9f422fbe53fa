"""The narrow float formats, described once for both backends' conversion helpers.

A backend converts float32 to a narrow float (``encode``) with the integer algorithm below and
widens with ``decode_table`` (a table of the float32 bits of each byte; bfloat16 widens by a
shift). The results are exactly those of numpy ``astype`` with ml_dtypes, the ONNX reference:
round to nearest even; an overflow gives inf where the format has one, else NaN (float8 FN and
FNUZ) or the largest finite value (float4e2m1); FNUZ formats have no -0. Saturation (ONNX Cast's
``saturate``) is a clamp before the conversion, not part of it. float8e8m0 (a bare exponent)
has its own rule (``E8M0``). tests/test_narrow_types.py checks every backend against ml_dtypes
on every 8- and 16-bit pattern.

encode(x) for a float32 x with bits ``s | a`` (sign, magnitude), per format (E, M, bias B)::

    e32 = a >> 23
    if e32 >= 128 - B:  code = rne(a, 23 - M) - ((127 - B) << M)     # normal in the target
    else:               m = (a & 0x7FFFFF) | (0x800000 if e32 else 0)  # subnormal: align first
                        code = rne(m, min(23 - M + 128 - B - max(e32, 1), 31))
    with rne(v, k) = (v + (1 << (k - 1)) - 1 + ((v >> k) & 1)) >> k
    code > maxcode or a == inf  ->  inf_code (sign applied if ``signed``)
    a > inf (NaN)               ->  nan_code (sign xor-ed in if ``signed``)
    else                        ->  code with the sign (FNUZ: 0 stays +0)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .dtypes import DType


@dataclass(frozen=True)
class FloatFormat:
    """One narrow float format: exponent and mantissa bits, bias and special codes."""

    dtype: DType
    ebits: int
    mbits: int
    bias: int
    maxcode: int  # largest finite magnitude code
    inf_code: int  # what inf and overflow give (magnitude; signed formats add the sign)
    nan_code: int  # what NaN gives (signed formats xor the sign in)
    signed: bool  # False for FNUZ: no -0, one unsigned NaN
    storage_bits: int  # 16 for bfloat16, 8 for float8, 4 for float4 (held in a byte)

    @property
    def sign_bit(self) -> int:
        return self.ebits + self.mbits

    @property
    def cname(self) -> str:
        """A short identifier for helper names in generated code."""
        return self.dtype.name


FORMATS: dict[DType, FloatFormat] = {f.dtype: f for f in (
    FloatFormat(DType.bfloat16, 8, 7, 127, 0x7F7F, 0x7F80, 0x7FC0, True, 16),
    FloatFormat(DType.float8e4m3fn, 4, 3, 7, 0x7E, 0x7F, 0x7F, True, 8),
    FloatFormat(DType.float8e4m3fnuz, 4, 3, 8, 0x7F, 0x80, 0x80, False, 8),
    FloatFormat(DType.float8e5m2, 5, 2, 15, 0x7B, 0x7C, 0x7E, True, 8),
    FloatFormat(DType.float8e5m2fnuz, 5, 2, 16, 0x7F, 0x80, 0x80, False, 8),
    # ml_dtypes turns NaN into a zero of the opposite sign (there is no NaN in float4e2m1).
    FloatFormat(DType.float4e2m1, 2, 1, 1, 0x7, 0x7, 0x8, True, 4),
)}

E8M0 = DType.float8e8m0
"""float8e8m0 holds 2**(code - 127) (code 255 is NaN). encode (ml_dtypes' astype): NaN, inf,
zero and negatives give 255; else code = e32 + (mantissa >= 0.5) for a normal float32 (255 once
it passes 2**127), and (mantissa > 2**-127's) for a subnormal one, where code 0 is 2**-127."""

TABLE_TYPES = tuple(d for d in FORMATS if d != DType.bfloat16) + (E8M0,)
"""The byte-sized formats that widen through a 256-entry table."""


def _decode_value(fmt: FloatFormat, code: int) -> float:
    code &= (1 << fmt.storage_bits) - 1
    sign = -1.0 if (code >> fmt.sign_bit) & 1 else 1.0
    mag = code & ((1 << fmt.sign_bit) - 1)
    if not fmt.signed and code == 1 << fmt.sign_bit:
        return -float("nan")  # ml_dtypes widens the FNUZ NaN to a negative NaN
    if fmt.dtype == DType.float8e4m3fn and mag == 0x7F:
        return math.copysign(float("nan"), sign)
    if fmt.dtype == DType.float8e5m2 and mag >= 0x7C:
        return math.copysign(float("inf") if mag == 0x7C else float("nan"), sign)
    e, m = mag >> fmt.mbits, mag & ((1 << fmt.mbits) - 1)
    if e == 0:
        return sign * m * 2.0 ** (1 - fmt.bias - fmt.mbits)
    return sign * ((1 << fmt.mbits) + m) * 2.0 ** (e - fmt.bias - fmt.mbits)


def decode_table(dtype: DType) -> list[int]:
    """The float32 bit pattern of each of the 256 byte values of a byte-sized narrow float."""
    if dtype == E8M0:
        values = [float("nan") if c == 255 else 2.0 ** (c - 127) for c in range(256)]
    else:
        values = [_decode_value(FORMATS[dtype], c) for c in range(256)]
    bits = np.array(values, dtype=np.float32).view(np.uint32)
    # NaNs as ml_dtypes widens them: the quiet NaN with the code's sign.
    nan = np.isnan(np.array(values, dtype=np.float32))
    signs = np.signbit(np.array(values, dtype=np.float32))
    bits[nan] = np.where(signs[nan], 0xFFC00000, 0x7FC00000)
    return [int(b) for b in bits]
