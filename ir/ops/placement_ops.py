"""Ops the placement passes put in a graph: partitions and the transfers between them.

A ``Partition`` node holds a contiguous subgraph that runs on one device (``attrs["device"]``)
in ``subgraphs["body"]``; it is made by passes/partition.py, never by ``Graph.add``. A
``Transfer`` copies a tensor from device ``attrs["src"]`` to device ``attrs["dst"]``: its
meaning is the identity, its cost is the bytes over the link.
"""
from __future__ import annotations

from ..errors import ModelError
from .registry import OpDef, register


def _partition_infer(types, attrs, consts):
    raise ModelError("Partition nodes are made by the partition pass, not Graph.add")


def _transfer_infer(types, attrs, consts):
    if len(types) != 1 or types[0] is None:
        raise ModelError("Transfer takes exactly one tensor")
    return [types[0]]


register(OpDef("Partition", _partition_infer, kind="partition",
               doc="a subgraph placed on attrs['device']; members in subgraphs['body']"))
register(OpDef("Transfer", _transfer_infer, reference=lambda ins, attrs: [ins[0].copy()],
               kind="transfer", doc="copy a tensor from attrs['src'] to attrs['dst']"))
