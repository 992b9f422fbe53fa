"""Which kernel-IR stages are matrix products in disguise: shared by the cpu and cuda backends.

A stage ``out[..., p, ..., j] = epilogue(sum_r a(p, r) * b(r, j))`` — MatMul, Gemm, and Conv
once its input is padded (``p`` = output channel, ``j`` = output column) — has one ``Reduce``
of a product of two unpadded loads: ``a`` does not move with ``j``, ``b`` is contiguous in ``j``
and does not move with ``p``. Each backend schedules the match its own way (cpu: register-
blocked vector tiles, backends/cpu/gemm.py; cuda: shared-memory tiles, backends/cuda/gemm.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from onnxc.ir.dtypes import DType
from onnxc.ir.kernel import Load, Op, Reduce, Stage, Var, flat_coef, walk

MR_WIDE, NR_WIDE = 6, 2  # cpu tile: rows of p by vectors of j, 12 accumulators
MR_NARROW = 12  # cpu tile when j fits one vector: 12 rows by 1 vector


@dataclass
class GemmPlan:
    red: Reduce
    a: Load  # does not depend on j
    b: Load  # contiguous in j, independent of p
    p: Var
    p_index: int
    # When set, j runs over the last two axes flattened with this row pitch (>= the last
    # extent): b is contiguous along it, columns past the last extent are computed and dropped.
    pitch: int | None = None

    @property
    def merged(self) -> bool:
        return self.pitch is not None

    def j_extent(self, st: Stage) -> int:
        if self.pitch is None:
            return st.shape[-1]
        return (st.shape[-2] - 1) * self.pitch + st.shape[-1]

    def tile(self, st: Stage, vw: int) -> tuple[int, int]:
        """(MR, NR): narrow rows use one vector and more rows, so no FMA is wasted."""
        return (MR_NARROW, 1) if self.j_extent(st) <= vw else (MR_WIDE, NR_WIDE)


def match_gemm(st: Stage, shapes: dict, dtypes: tuple[DType, ...] = (DType.float32,),
               min_rows: int = 2) -> GemmPlan | None:
    """The GEMM reading of ``st``, or None. ``dtypes``: the element types allowed for the
    stage's result and the two operands (the cpu template loads float32 vectors only).
    ``min_rows`` = 1 also matches a single row (a batch-1 MatMul: gemm_bf16 takes those)."""
    if len(st.shape) < 2 or st.body.dtype not in dtypes:
        return None
    reds = [e for e in walk(st.body) if isinstance(e, Reduce)]
    if len(reds) != 1 or reds[0].kind != "sum":
        return None
    red = reds[0]
    body = red.body
    if not (isinstance(body, Op) and body.name == "mul" and
            all(isinstance(x, Load) and x.pad is None and x.dtype in dtypes
                for x in body.args)):
        return None  # the template loads float32 vectors (a Cast epilogue may widen float16)
    j = st.vars[-1]
    for a, b in (body.args, body.args[::-1]):
        if flat_coef(b, j, shapes[b.tensor]) != 1 or flat_coef(a, j, shapes[a.tensor]) != 0:
            continue
        best = None
        for k, v in enumerate(st.vars[:-1]):
            ca, cb = flat_coef(a, v, shapes[a.tensor]), flat_coef(b, v, shapes[b.tensor])
            lone = min_rows == 1 and st.shape[k] == 1  # a batch-1 row: a may not use it
            if (ca or lone) and cb == 0 and st.shape[k] >= min_rows and (best is None or
                                                        st.shape[k] > st.shape[best]):
                best = k
        if best is not None:
            return GemmPlan(red, a, b, st.vars[best], best, _pitch(st, shapes, a, b, best))
    return None


def _pitch(st: Stage, shapes: dict, a: Load, b: Load, p_index: int) -> int | None:
    """The row pitch that makes ``b`` one contiguous run over the last two axes, if any.

    1x1 convolutions read their input with pitch = width; padded 3x3 ones with the padded
    width. Flattening lets narrow rows (7, 14 columns) fill whole vectors."""
    if len(st.shape) < 3 or p_index >= len(st.shape) - 2:
        return None
    v2 = st.vars[-2]
    if flat_coef(a, v2, shapes[a.tensor]) != 0:
        return None
    c2 = flat_coef(b, v2, shapes[b.tensor])
    if c2 is None or c2 < st.shape[-1]:
        return None
    return c2


__all__ = ["GemmPlan", "match_gemm", "MR_WIDE", "NR_WIDE", "MR_NARROW"]
