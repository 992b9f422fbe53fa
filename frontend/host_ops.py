"""Host functions: ONNX ops that run as Python/numpy code linked into the compiled program.

A compiler cannot sensibly generate code for some ops: string processing (string tensors are
numpy object arrays and live only here), regular expressions, image decoding. Each such op is
a ``HostOp``: a numpy function of the node's attributes and input arrays. The runtime
(runtime/hosted.py) cuts a model at its host nodes, compiles the rest into ordinary compiled
partitions and runs the host functions between them. README.md lists the host ops.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import onnx

STRING = onnx.TensorProto.STRING

HostFn = Callable[[dict, Sequence[np.ndarray | None]], Sequence[np.ndarray]]


@dataclass(frozen=True)
class HostOp:
    """``fn(attrs, inputs) -> outputs``; ``applies(node, elem_types)`` says whether this node
    (whose input/output element types are given, 0 where unknown) must run on the host;
    ``library`` names the library doing the work, for the README and messages."""

    fn: HostFn
    applies: Callable[[onnx.NodeProto, list[int], list[int]], bool]
    library: str = "numpy"


HOST_OPS: dict[tuple[str, str], HostOp] = {}


def _always(node, ins, outs) -> bool:
    return True


def _touches_strings(node, ins, outs) -> bool:
    return STRING in ins or STRING in outs


def host_op(op: str, domain: str = "", applies=_always, library: str = "numpy"):
    """Register ``fn`` as the host function of ``domain::op``."""

    def wrap(fn: HostFn) -> HostFn:
        HOST_OPS[(domain, op)] = HostOp(fn, applies, library)
        return fn

    return wrap


def node_attrs(node: onnx.NodeProto) -> dict:
    """The node's attributes as Python values (strings decoded, tensors as arrays)."""
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode("utf-8") for s in v]
        elif isinstance(v, onnx.TensorProto):
            v = onnx.numpy_helper.to_array(v)
        out[a.name] = v
    return out


def find(node: onnx.NodeProto, ins: list[int], outs: list[int]) -> HostOp | None:
    """The host op for this node, or None when it compiles."""
    op = HOST_OPS.get((node.domain if node.domain != "ai.onnx" else "", node.op_type))
    return op if op is not None and op.applies(node, ins, outs) else None


def as_strings(x: np.ndarray) -> np.ndarray:
    """A string tensor as onnxruntime holds it: a numpy object array of ``str``."""
    x = np.asarray(x)
    if x.dtype == object:
        return x
    if x.dtype.kind == "S":
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(x) if x.size else \
            x.astype(object)
    return x.astype(object)


def _register() -> None:
    from . import host_strings, host_text  # noqa: F401  (they register their ops)
