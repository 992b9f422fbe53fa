"""ONNX sequence and optional values, resolved at compile time.

A compiled program has static shapes, so a sequence is a Python list of IR values (its length
and element shapes are known once the model is specialized) and an optional is either absent
or one value (a tensor or a sequence). Sequence and optional ops then become plain tensor ops
or nothing at all. Graph inputs and outputs of these types are flattened into tensors named
``name[k]`` (sequence element k) and ``name`` (a present optional tensor); the session does the
same flattening on feeds and regroups the outputs (``flat_names``/``regroup``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import onnx

from onnxc.ir.dtypes import DType
from onnxc.ir.errors import ModelError

#: the kinds of a graph input/output: "tensor", "sequence", "optional" (of a tensor) and
#: "optional_sequence"
KINDS = ("tensor", "sequence", "optional", "optional_sequence")


class Seq(list):
    """A sequence value: the list of its elements (IR values), plus its element type."""

    def __init__(self, items: Sequence = (), dtype: DType | None = None):
        super().__init__(items)
        self.dtype = dtype if dtype is not None or not items else items[0].dtype


@dataclass
class Opt:
    """An optional value: ``value`` is None when absent, else a Value or a Seq."""

    value: Any = None


def kind_of(tp: onnx.TypeProto) -> tuple[str, onnx.TypeProto]:
    """The kind of a declared type and the TypeProto of its tensor (element) type."""
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        return "tensor", tp
    if which == "sequence_type":
        inner = tp.sequence_type.elem_type
        if inner.WhichOneof("value") != "tensor_type":
            raise ModelError("only sequences of tensors are supported")
        return "sequence", inner
    if which == "optional_type":
        inner = tp.optional_type.elem_type
        k, elem = kind_of(inner)
        if k == "tensor":
            return "optional", elem
        if k == "sequence":
            return "optional_sequence", elem
        raise ModelError("only optionals of tensors or of sequences are supported")
    raise ModelError(f"values of type {which} are not supported")


def element_name(name: str, k: int) -> str:
    """The flat tensor name of element ``k`` of sequence ``name``."""
    return f"{name}[{k}]"


def structure_of(kind: str, value: Any, name: str) -> Any:
    """The specialization key part of a feed: its shape (tensor, optional tensor), a tuple of
    element shapes (sequence), or None (absent optional)."""
    if kind in ("optional", "optional_sequence") and value is None:
        return None
    if kind in ("sequence", "optional_sequence"):
        if not isinstance(value, (list, tuple)):
            raise ModelError(f"input {name!r} is a sequence: feed a list of arrays")
        return ("seq",) + tuple(tuple(e.shape) for e in value)
    return tuple(value.shape)


def flatten_feed(kind: str, name: str, value: Any) -> dict[str, Any]:
    """The flat tensor feeds of one structured feed."""
    if value is None and kind.startswith("optional"):
        return {}
    if kind in ("sequence", "optional_sequence"):
        return {element_name(name, k): e for k, e in enumerate(value)}
    return {name: value}


def regroup(kind: str, name: str, flat: dict[str, Any]) -> Any:
    """One model output from the flat outputs: an array, a list (sequence) or None (absent
    optional; an optional holding an empty sequence also reads as absent)."""
    if kind == "tensor":
        return flat[name]
    if kind == "optional":
        return flat.get(name)
    items = []
    while element_name(name, len(items)) in flat:
        items.append(flat[element_name(name, len(items))])
    if kind == "optional_sequence" and not items:
        return None
    return items
