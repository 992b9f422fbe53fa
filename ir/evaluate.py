"""Evaluate one node on numpy arrays: the op's own numpy reference when it has one, else the
kernel-IR interpreter. Constant folding (at import and in the fold-constants pass) uses it."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .graph import Node, Value
from .ops.registry import get_op
from .types import TensorType

# Folding materializes every element (and the interpreter index grids): keep it bounded.
MAX_FOLD_ELEMENTS = 1 << 20


def evaluate_node(op: str, inputs: Sequence[Value | None], out_types: Sequence[TensorType],
                  attrs: dict, max_elements: int = MAX_FOLD_ELEMENTS
                  ) -> list[np.ndarray] | None:
    """The outputs of core op ``op`` on constant ``inputs``; None when they are too big."""
    from .compute import build_kernel
    from .interp import run_kernel

    opdef = get_op(op)
    arrays = [v.const if v is not None else None for v in inputs]
    if opdef.reference is not None:
        results = opdef.reference(arrays, dict(attrs))
    else:
        if opdef.compute is None or any(not t.is_static or t.numel() > max_elements
                                        for t in out_types):
            return None
        outs = [Value(f"__fold_out{k}", t) for k, t in enumerate(out_types)]
        ins = [Value(f"__fold_in{k}", v.type, const=v.const) if v is not None else None
               for k, v in enumerate(inputs)]
        node = Node(op, ins, outs, dict(attrs), "fold")
        tensors = run_kernel(build_kernel([node], outs),
                             {v.name: v.const for v in ins if v is not None})
        results = [tensors[o.name] for o in outs]
    return [np.asarray(r, dtype=t.dtype.np).reshape(t.shape)
            for r, t in zip(results, out_types)]
