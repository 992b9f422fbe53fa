"""Core op definitions; see registry.py for how to add one."""
from .registry import OpDef, all_ops, get_op, register

__all__ = ["OpDef", "all_ops", "get_op", "register"]
