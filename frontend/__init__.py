"""ONNX in: loading (with safe external data) and import into the IR."""
from .importer import IMPORTERS, import_graph
from .loader import ModelLike, load_model

__all__ = ["IMPORTERS", "ModelLike", "import_graph", "load_model"]
