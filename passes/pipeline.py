"""Pipelines as plain lists, per -O level.

-O0  nothing but giving outputs their own buffers (the importer still folds constants: shapes
     must be static to compile)
-O1  cleanups that never change the kernels' arithmetic much: identity elimination, constant
     folding, simplification, CSE, BatchNorm folding, GELU and LayerNorm recognition,
     dead-code elimination
-O2  + Winograd convolution (cpu target: 3x3 stride-1 Convs where it wins) and fusion
     (epilogues and elementwise chains become one kernel); the default
-O3  the same graph as -O2; the backends optimize harder (LLVM -O3)
"""
from __future__ import annotations

from .cleanup import DeadCodeElimination, EliminateIdentity, MaterializeOutputs
from .cse import CommonSubexpressionElimination
from .fold_batchnorm import FoldBatchNorm
from .fold_constants import FoldConstants
from .fusion import FuseElementwise
from .manager import Pass
from .patterns import RecognizeGelu, RecognizeLayerNorm
from .simplify import Simplify
from .winograd import WinogradConv

ALL_PASSES: tuple[type[Pass], ...] = (
    EliminateIdentity, FoldConstants, Simplify, CommonSubexpressionElimination, FoldBatchNorm,
    RecognizeGelu, RecognizeLayerNorm, DeadCodeElimination, WinogradConv, FuseElementwise,
    MaterializeOutputs)


def pipeline(opt_level: int, target: str = "cpu") -> list[Pass]:
    passes: list[Pass] = []
    if opt_level >= 1:
        passes += [EliminateIdentity(), FoldConstants(), Simplify(),
                   CommonSubexpressionElimination(), FoldBatchNorm(), RecognizeGelu(),
                   RecognizeLayerNorm(), DeadCodeElimination()]
    if opt_level >= 2:
        if target == "cpu":  # the cuda GEMM gains less from it than the transforms cost
            passes += [WinogradConv()]
        passes += [FuseElementwise()]
    passes += [MaterializeOutputs()]
    return passes


def all_passes() -> dict[str, type[Pass]]:
    return {p.name: p for p in ALL_PASSES}
