"""The onnxc exception family.

It lives in the lowest layer (``ir``) so every layer can raise it without importing upward;
``onnxc`` re-exports it as the public ``onnxc.OnnxcError`` family.
"""
from __future__ import annotations


class OnnxcError(Exception):
    """Base of every error onnxc raises on purpose: catch this to catch them all."""


class ModelError(OnnxcError):
    """The model itself is malformed or inconsistent (bad file, bad attribute, bad shapes)."""

    def __init__(self, message: str, *, node: str | None = None, op: str | None = None):
        where = ""
        if node is not None or op is not None:
            where = f"node {node!r} ({op}): " if node else f"{op}: "
        super().__init__(where + message)
        self.node = node
        self.op = op


class UnsupportedOpError(OnnxcError):
    """One or more ops of the model cannot be compiled; every one is listed at once."""

    def __init__(self, problems: list[tuple[str, str, str]], *, target: str = "cpu"):
        # problems: (node name, op type incl. domain, reason)
        self.problems = list(problems)
        lines = [f"  - node {name!r}: {op}: {reason}" for name, op, reason in self.problems]
        ops = sorted({op for _, op, _ in self.problems})
        super().__init__(
            f"{len(self.problems)} node(s) use ops that onnxc cannot compile for target "
            f"{target!r} ({', '.join(ops)}):\n" + "\n".join(lines)
        )


class InputError(OnnxcError):
    """A feed given to Session.run does not match what the model expects."""

    def __init__(self, message: str, *, input_name: str | None = None):
        super().__init__(message)
        self.input_name = input_name


class ArtifactError(OnnxcError):
    """A saved artifact is corrupt, foreign or of an incompatible version."""


class CompileError(OnnxcError):
    """Code generation failed: a bug in onnxc, reported with the kernel that caused it."""


class InputValueNeeded(OnnxcError):
    """Compilation needs the run-time value of a small graph input (axes, shape, pads...).

    The session then compiles one specialization per distinct value of that input, like
    TVM and XLA do for shape-determining host values.
    """

    def __init__(self, input_name: str):
        super().__init__(f"the value of input {input_name!r} must be known to compile; "
                         f"onnxc specializes on it at run time")
        self.input_name = input_name


class DataDependentShape(OnnxcError):
    """An op's output shape depends on run-time tensor values (NonZero, NonMaxSuppression...).

    The session then cuts the model at that node: the part before it runs compiled, the node
    runs on the host, and the part after it is compiled per observed shape (runtime/staged.py).
    """

    def __init__(self, node: str, op: str, outputs: list[str], value: str | None = None):
        if value is None:
            message = (f"node {node!r} ({op}): its output shape depends on run-time values; "
                       f"the session runs it on the host between compiled parts")
        else:
            message = (f"node {node!r} ({op}) needs the value of {value!r} (computed at run "
                       f"time) to compile; the session computes it first and specializes on it")
        super().__init__(message)
        self.node, self.op, self.outputs, self.value = node, op, list(outputs), value
