"""Pipelines as plain lists, per -O level."""
from __future__ import annotations

from .cleanup import DeadCodeElimination, EliminateIdentity, MaterializeOutputs
from .fold_batchnorm import FoldBatchNorm
from .fusion import FuseElementwise
from .manager import Pass


def pipeline(opt_level: int) -> list[Pass]:
    passes: list[Pass] = []
    if opt_level >= 1:
        passes += [EliminateIdentity(), FoldBatchNorm(), DeadCodeElimination()]
    if opt_level >= 2:
        passes += [FuseElementwise()]
    passes += [MaterializeOutputs()]
    return passes


def all_passes() -> dict[str, type[Pass]]:
    return {p.name: p for p in (EliminateIdentity, FoldBatchNorm, DeadCodeElimination,
                                FuseElementwise, MaterializeOutputs)}
