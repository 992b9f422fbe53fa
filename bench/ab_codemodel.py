"""Before/after of the large code model for JIT-loaded code, in one process: each model compiled
with the small code model and position-independent code ("before", what onnxc emitted until
the CI abort) and with the large code model and absolute relocations ("after"), timed
interleaved in blocks with onnxruntime (bench.ab); medians.

    env -u OPENBLAS_CORETYPE python -m bench.ab_codemodel [--models ...] [--threads 1 2]
"""
from __future__ import annotations

import contextlib

from onnxc.backends.cpu import compiler

from .ab import main_for


@contextlib.contextmanager
def large_code_model(enabled: bool):
    saved = compiler.CODE_MODEL, compiler.RELOCATION_MODEL
    if not enabled:
        compiler.CODE_MODEL, compiler.RELOCATION_MODEL = "small", "pic"
    try:
        yield
    finally:
        compiler.CODE_MODEL, compiler.RELOCATION_MODEL = saved


def main(argv=None) -> None:
    main_for(large_code_model, __doc__, argv)


if __name__ == "__main__":
    main()
