"""Before/after of float32 weights prepared at compile time for the packed GEMM, in one
process: each model compiled with its MatMul/Gemm weights packed on every run ("before") and
laid out once when compiling ("after", backends/cpu/packed_weights.py), timed interleaved in
blocks with onnxruntime (bench.ab); medians.

    env -u OPENBLAS_CORETYPE python -m bench.ab_prepack [--models ...] [--threads 1 2]
"""
from __future__ import annotations

import contextlib

from onnxc.backends.cpu import packed_weights

from .ab import main_for


@contextlib.contextmanager
def prepacked(enabled: bool):
    saved = packed_weights.ENABLED
    packed_weights.ENABLED = enabled
    try:
        yield
    finally:
        packed_weights.ENABLED = saved


def main(argv=None) -> None:
    main_for(prepacked, __doc__, argv)


if __name__ == "__main__":
    main()
