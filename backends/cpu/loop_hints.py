"""Loop metadata (``!llvm.loop``) for hints to LLVM's loop passes.

LLVM's runtime unroller copies every innermost loop it may (4-8x), and the copies then go
through every later pass and the backend. For the GEMM micro-kernel that pays off at run time;
for the epilogue and packing loops (a few vectors per tile) it only makes compiling slower:
those loops are marked ``llvm.loop.unroll.disable``.

llvmlite has no API for a loop ID (a metadata node whose first operand is itself), so one is
built from ``MDValue`` with identity equality (its operands refer to itself, so the structural
hash and equality of ``MDValue`` would never end).
"""
from __future__ import annotations

from llvmlite import ir


class _LoopID(ir.values.MDValue):
    __hash__ = object.__hash__

    def __eq__(self, other) -> bool:
        return self is other

    def __ne__(self, other) -> bool:
        return self is not other


def disable_unroll(module: ir.Module, backedge: ir.Instruction) -> None:
    """Tag the loop whose latch branch is ``backedge`` so LLVM does not unroll it."""
    hint = module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.disable")])
    loop_id = _LoopID(module, [], name=str(len(module.metadata)))
    loop_id.operands = (loop_id, hint)
    backedge.set_metadata("llvm.loop", loop_id)
