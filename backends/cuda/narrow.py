"""Narrow element types in CUDA C: the conversion helpers of the prelude, and the C text that
loads, stores and casts them (cexpr.py, codegen.py).

The same algorithm as the cpu backend (ir/float_formats.py): ``ox_encode`` rounds a float to a
narrow float's bits (nearest even, the format's inf/NaN/overflow codes), ``ox_decode`` widens
exactly; bfloat16 widens by a shift. int4/uint4/int2/uint2 are held sign- or zero-extended in
an ``i8``/``u8`` and stored as their low bits, as ml_dtypes keeps them. cuda-sim compiles the
same text with g++, so tests check it against ml_dtypes on every 8- and 16-bit pattern.
"""
from __future__ import annotations

from onnxc.ir.dtypes import DType
from onnxc.ir.float_formats import E8M0, FORMATS

_KIND = {DType.float8e5m2: 0, DType.bfloat16: 0, DType.float8e4m3fn: 1,
         DType.float8e4m3fnuz: 2, DType.float8e5m2fnuz: 2, DType.float4e2m1: 3}

_GENERIC = r"""// Narrow floats (ir/float_formats.py): float -> stored bits, nearest even, and back.
template <int M, int B, unsigned MAXC, unsigned INF, unsigned NANC, bool SIGNED, int SB>
__device__ __forceinline__ unsigned ox_encode(float x) {
  const unsigned bits = ox_bitcast<unsigned, float>(x), s = bits >> 31;
  const unsigned a = bits & 0x7FFFFFFFu, e = a >> 23;
  const int sh = 23 - M;
  unsigned code;
  if (e >= (unsigned)(128 - B)) {
    code = ((a + (1u << (sh - 1)) - 1u + ((a >> sh) & 1u)) >> sh) - ((unsigned)(127 - B) << M);
  } else {  // a subnormal of the target: align the mantissa with its implicit bit first
    const unsigned m = (a & 0x7FFFFFu) | (e ? 0x800000u : 0u);
    int k = sh + 128 - B - (e ? (int)e : 1);
    k = k > 31 ? 31 : k;
    code = (m + (1u << (k - 1)) - 1u + ((m >> k) & 1u)) >> k;
  }
  const unsigned sp = s << SB;
  if (a > 0x7F800000u) return SIGNED ? (NANC ^ sp) : NANC;
  if (code > MAXC || a == 0x7F800000u) return SIGNED ? (INF | sp) : INF;
  return (SIGNED || code) ? (code | sp) : 0u;
}
// KIND 0: inf and NaN in the top exponent; 1: NaN is all ones (e4m3fn); 2: FNUZ (0x80 is
// NaN); 3: no specials (e2m1). Codes past the format's bits are masked off, like ml_dtypes.
template <int E, int M, int B, int KIND>
__device__ __forceinline__ float ox_decode(unsigned c) {
  const int SB = E + M;
  c &= (1u << (SB + 1)) - 1u;
  const unsigned s = c >> SB, mag = c & ((1u << SB) - 1u), e = mag >> M;
  const unsigned m = mag & ((1u << M) - 1u);
  unsigned bits = e ? ((e + 127u - B) << 23) | (m << (23 - M))
                    : ox_bitcast<unsigned, float>((float)m * ox_bitcast<float, unsigned>(
                          (unsigned)(1 - B - M + 127) << 23));
  if (KIND == 0 && e == (1u << E) - 1u) bits = m ? 0x7FC00000u : 0x7F800000u;
  if (KIND == 1 && mag == (1u << SB) - 1u) bits = 0x7FC00000u;
  bits |= s << 31;
  if (KIND == 2 && c == (1u << SB)) bits = 0xFFC00000u;
  return ox_bitcast<float, unsigned>(bits);
}
__device__ __forceinline__ unsigned ox_encode_e8m0(float x) {
  const unsigned bits = ox_bitcast<unsigned, float>(x), a = bits & 0x7FFFFFFFu, e = a >> 23;
  const unsigned f = a & 0x7FFFFFu;
  if ((bits >> 31) || a == 0u || e == 255u) return 255u;
  const unsigned code = e ? e + (f >= 0x400000u ? 1u : 0u) : (f > 0x400000u ? 1u : 0u);
  return code > 255u ? 255u : code;
}
__device__ __forceinline__ float ox_decode_e8m0(unsigned c) {
  c &= 255u;
  return ox_bitcast<float, unsigned>(c == 255u ? 0x7FC00000u : c ? c << 23 : 0x00400000u);
}
// int4/uint4/int2/uint2: the low N bits, sign-extended or not; a float goes through an int32
// as ml_dtypes does (NaN and values past int32 give 0).
template <int N> __device__ __forceinline__ i8 ox_wrap_s(long long v) {
  return (i8)((i8)(((unsigned)v & ((1u << N) - 1u)) << (8 - N)) >> (8 - N)); }
template <int N> __device__ __forceinline__ u8 ox_wrap_u(long long v) {
  return (u8)((unsigned)v & ((1u << N) - 1u)); }
__device__ __forceinline__ int ox_f2i(double x) {
  return fabs(x) < 2147483648.0 ? (int)x : (int)0x80000000u; }
"""


def _wrappers() -> str:
    lines = []
    for dtype, f in FORMATS.items():
        n, store = dtype.name, "u16" if f.storage_bits == 16 else "u8"
        lines.append(
            f"__device__ __forceinline__ {store} ox_enc_{n}(float x) {{ return ({store})"
            f"ox_encode<{f.mbits}, {f.bias}, {f.maxcode:#x}u, {f.inf_code:#x}u, "
            f"{f.nan_code:#x}u, {str(f.signed).lower()}, {f.sign_bit}>(x); }}")
        if dtype == DType.bfloat16:
            dec = "ox_bitcast<float, unsigned>((unsigned)c << 16)"
        else:
            dec = f"ox_decode<{f.ebits}, {f.mbits}, {f.bias}, {_KIND[dtype]}>(c)"
        lines.append(f"__device__ __forceinline__ float ox_dec_{n}(unsigned c) {{ return {dec}; }}")
    lines.append("__device__ __forceinline__ u8 ox_enc_float8e8m0(float x) { "
                 "return (u8)ox_encode_e8m0(x); }")
    lines.append("__device__ __forceinline__ float ox_dec_float8e8m0(unsigned c) { "
                 "return ox_decode_e8m0(c); }")
    for dtype in FORMATS.keys() | {E8M0}:
        n = dtype.name
        lines.append(f"__device__ __forceinline__ float ox_round_{n}(float x) {{ "
                     f"return ox_dec_{n}(ox_enc_{n}(x)); }}")
    return "\n".join(sorted(lines, key=lambda s: "round" in s)) + "\n"


PRELUDE = _GENERIC + _wrappers()


def load(raw: str, dtype: DType) -> str:
    """The register value of a stored narrow element (C text)."""
    if dtype.is_narrow_float:
        return f"ox_dec_{dtype.name}({raw})"
    return f"ox_wrap_{'s' if dtype.is_signed_int else 'u'}<{dtype.bits}>({raw})"


def store(value: str, dtype: DType) -> str:
    """The stored bits of a narrow element's register value (C text)."""
    if dtype.is_narrow_float:
        return f"ox_enc_{dtype.name}({value})"
    return f"(u8)((unsigned)({value}) & {(1 << dtype.bits) - 1}u)"


def cast_to(x: str, src: DType, dst: DType) -> str:
    """A cast to a narrow type: through float (ml_dtypes' way) rounded once, or the low bits
    of an int32."""
    if dst.is_narrow_float:
        return f"ox_round_{dst.name}((float)({x}))"
    fn = f"ox_wrap_{'s' if dst.is_signed_int else 'u'}<{dst.bits}>"
    if src.is_float:
        return f"{fn}(ox_f2i((double)({x})))"
    return f"{fn}((long long)({x}))"
