"""Hints that keep LLVM from spending compile time where it buys no run time.

Loop metadata (``!llvm.loop``): LLVM's runtime unroller copies every innermost loop it may
(4-8x), and the copies then go through every later pass and the backend. For the GEMM micro-kernel that pays off at run time;
for the epilogue and packing loops (a few vectors per tile) it only makes compiling slower:
those loops are marked ``llvm.loop.unroll.disable``.

llvmlite has no API for a loop ID (a metadata node whose first operand is itself), so one is
built from ``MDValue`` with identity equality (its operands refer to itself, so the structural
hash and equality of ``MDValue`` would never end).

``optnone`` on the entry points: onnxc_main and onnxc_team are straight-line lists of a few
instructions per kernel call (fill the parameter array, call the kernel or the team's shared
claim-and-wait loop, team.py) for hundreds of calls. Optimizing them bought nothing at run time
and cost DenseNet-121 2.1 s of a 14 s compile (0.7 s once the team's per-stage loops moved into
one shared function, ~0.05 s with ``optnone``).
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


ENTRY_POINTS_OPTNONE = True  # bench A/B switch


def cold_entry_points(module: ir.Module) -> None:
    """Compile onnxc_main and onnxc_team without optimization (see the module note)."""
    if not ENTRY_POINTS_OPTNONE:
        return
    for name in ("onnxc_main", "onnxc_team"):
        fn = module.globals.get(name)
        if isinstance(fn, ir.Function) and not fn.is_declaration:
            fn.attributes.add("noinline")
            fn.attributes.add("optnone")
