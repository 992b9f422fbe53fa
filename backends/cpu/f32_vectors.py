"""The float32 vector pieces the GEMM schedules (gemm, gemm_packed, gemv) start from: the FMA
and masked-load intrinsics, lane indices, a zero vector, and a scalar splatted across lanes."""
from __future__ import annotations

from llvmlite import ir

from .llvm_types import I1, I32, I64, PTR


class F32Vectors:
    """Declared once per stage function (``se``: its StageEmitter), ``vw`` float32 lanes."""

    def __init__(self, se, vw: int):
        self.b = se.b
        self.vec = vec = ir.VectorType(ir.FloatType(), vw)
        self.fma = se.mb.declare(f"llvm.fma.v{vw}f32", vec, [vec, vec, vec])
        self.mload = se.mb.declare(f"llvm.masked.load.v{vw}f32.p0", vec,
                                   [PTR, I32, ir.VectorType(I1, vw), vec])
        self.lanes = ir.Constant(ir.VectorType(I64, vw), [ir.Constant(I64, k) for k in range(vw)])
        self.zero = ir.Constant(vec, [ir.Constant(ir.FloatType(), 0.0)] * vw)
        self._broadcast = ir.Constant(ir.VectorType(I32, vw), [ir.Constant(I32, 0)] * vw)

    def splat(self, value: ir.Value, typ: ir.VectorType) -> ir.Value:
        """``value`` in every lane of a ``typ`` vector."""
        v = self.b.insert_element(ir.Constant(typ, None), value, I32(0))
        return self.b.shuffle_vector(v, v, self._broadcast)
