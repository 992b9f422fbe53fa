"""The onnxc intermediate representation: typed SSA graphs, core ops and the kernel IR.

This package imports nothing else of onnxc; every other layer builds on it.
"""
from .dtypes import DType
from .errors import (ArtifactError, CompileError, InputError, ModelError, OnnxcError,
                     UnsupportedOpError)
from .graph import Graph, Node, Value
from .types import Dim, TensorType

__all__ = ["DType", "Dim", "Graph", "Node", "Value", "TensorType", "OnnxcError", "ModelError",
           "UnsupportedOpError", "InputError", "ArtifactError", "CompileError"]
