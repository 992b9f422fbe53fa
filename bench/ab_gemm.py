"""Before/after of the packed GEMM's per-shape tiles and leftover-column dot products, in one
process: each model compiled with the old fixed 6x2 tile and no dot products ("before") and with
the per-shape choices ("after"), timed interleaved in blocks with onnxruntime (bench.ab); medians.

    env -u OPENBLAS_CORETYPE python -m bench.ab_gemm [--models ...] [--threads 1 2] [--runs 20]
"""
from __future__ import annotations

import contextlib

from onnxc.backends.cpu import gemm_shapes, gemm_tail

from .ab import main_for


@contextlib.contextmanager
def fixed_tile(enabled: bool):
    """enabled=False: the schedule as before (6x2 everywhere, no dot-product columns, row
    groups before column blocks)."""
    saved = gemm_shapes.FORCE, gemm_tail.TAIL_MAX, gemm_shapes.SPLIT_COLUMNS
    if not enabled:
        gemm_shapes.FORCE, gemm_tail.TAIL_MAX, gemm_shapes.SPLIT_COLUMNS = (6, 2), 0, False
    try:
        yield
    finally:
        gemm_shapes.FORCE, gemm_tail.TAIL_MAX, gemm_shapes.SPLIT_COLUMNS = saved


def main(argv=None) -> None:
    main_for(fixed_tile, __doc__, argv)


if __name__ == "__main__":
    main()
