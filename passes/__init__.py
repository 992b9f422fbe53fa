"""Graph -> graph passes; passes never import a backend."""
from .manager import Pass, PassManager
from .pipeline import all_passes, pipeline

__all__ = ["Pass", "PassManager", "all_passes", "pipeline"]
