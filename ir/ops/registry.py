"""The op registry: one ``OpDef`` per core op — its shape rule, meaning and compute description.

Adding a core op means writing one ``OpDef`` (usually a few lines, see ``elementwise.py``) and
registering it with ``@register``. Backends lower the compute description; the numpy
interpreter (``ir.interp``) evaluates it, which gives constant folding and a reference for free.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ModelError
from ..kernel import Stage, TensorRef
from ..types import TensorType

InferFn = Callable[[list[TensorType | None], dict[str, Any], list[np.ndarray | None]],
                   list[TensorType]]
ComputeFn = Callable[[list[TensorRef | None], list[TensorRef], dict[str, Any]], list[Stage]]
ReferenceFn = Callable[[list[np.ndarray | None], dict[str, Any]], list[np.ndarray]]


@dataclass
class OpDef:
    """Everything onnxc knows about a core op.

    kind: "elementwise" (pure per-element map with broadcasting: fusable both ways),
    "reduction" (has a Reduce: may take an elementwise epilogue), "view" (output is the input's
    bytes under another shape: no kernel, no copy), or "opaque".
    """

    name: str
    infer: InferFn
    compute: ComputeFn | None = None
    reference: ReferenceFn | None = None
    kind: str = "opaque"
    doc: str = ""


_REGISTRY: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    if opdef.name in _REGISTRY:
        raise ValueError(f"op {opdef.name} registered twice")
    _REGISTRY[opdef.name] = opdef
    return opdef


def get_op(name: str) -> OpDef:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown core op {name!r}") from None


def all_ops() -> dict[str, OpDef]:
    _load_all()
    return dict(_REGISTRY)


def _fused_infer(types, attrs, consts):
    raise ModelError("Fused nodes are made by Graph.fuse_nodes, not Graph.add")


register(OpDef("Fused", _fused_infer, kind="fused",
               doc="a group of nodes compiled as one kernel; members in subgraphs['body']"))


_LOADED: list[bool] = []


def _load_all() -> None:
    # The op modules register themselves on import. get_op runs per node in every pass, so
    # the import statement (a few microseconds even when cached) runs only once.
    if _LOADED:
        return
    from . import (activations, elementwise, index_ops, layernorm, linalg, nn,  # noqa: F401
                   placement_ops, reduction, sampling, shape_ops, winograd)
    _LOADED.append(True)


# -- shape helpers shared by op modules --------------------------------------------------------
def broadcast_shapes(*shapes: Sequence) -> tuple:
    """numpy broadcasting of shapes whose dims may be symbolic names."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for k in range(rank):
        dims = [s[len(s) - rank + k] for s in shapes if len(s) - rank + k >= 0]
        known = {d for d in dims if d != 1}
        if not known:
            out.append(1)
        elif len(known) == 1:
            out.append(known.pop())
        else:
            ints = {d for d in known if isinstance(d, int)}
            if len(ints) > 1:
                raise ModelError(f"shapes {[tuple(s) for s in shapes]} do not broadcast "
                                 f"(dimension {k} is {sorted(ints)})")
            out.append(ints.pop() if ints else sorted(known, key=str)[0])
    return tuple(out)


def normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ModelError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0
