"""The data path's boundaries, enforced: a picture of the imports reads top to bottom.

ir imports nothing else of onnxc; passes never import a backend or the runtime; backends never
import the frontend, passes or runtime; only frontend, runtime (artifacts keep the model) and
the public face import the onnx package.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "ir": ("onnxc.frontend", "onnxc.passes", "onnxc.backends", "onnxc.runtime", "onnx", "llvmlite"),
    "passes": ("onnxc.backends", "onnxc.runtime", "onnxc.frontend", "onnx", "llvmlite"),
    "backends": ("onnxc.frontend", "onnxc.passes", "onnxc.runtime", "onnx"),
    "frontend": ("onnxc.backends", "onnxc.runtime", "llvmlite"),
}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_layer_imports_only_what_is_below_it(folder):
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module in _imports(path):
            for banned in FORBIDDEN[folder]:
                if module == banned or module.startswith(banned + "."):
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, "\n".join(bad)


def test_pycuda_is_never_imported_at_module_level():
    for path in sorted(ROOT.rglob("*.py")):
        if ".venv" in path.parts:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "pycuda" for n in names), path


def test_modules_stay_small():
    big = [f"{p.relative_to(ROOT)}: {len(p.read_text().splitlines())} lines"
           for p in ROOT.rglob("*.py") if ".venv" not in p.parts
           and len(p.read_text().splitlines()) > 650]
    assert not big, big
