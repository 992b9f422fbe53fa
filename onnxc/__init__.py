"""onnxc: compile ONNX models to native code.

    import onnxc
    sess = onnxc.compile("model.onnx")            # -> Session
    outputs = sess.run(None, {"input": array})    # the onnxruntime call shape
    sess.save("model.onnxc"); onnxc.load("model.onnxc")
"""
from onnxc.ir.errors import (ArtifactError, CompileError, InputError, ModelError, OnnxcError,
                             UnsupportedOpError)

from onnxc.ir.devices import Device

from .api import compile, load, optimize
from onnxc.runtime.session import NodeArg, Session

__version__ = "0.1.0"

__all__ = ["compile", "load", "optimize", "Session", "Device", "NodeArg", "OnnxcError",
           "ModelError",
           "UnsupportedOpError", "InputError", "ArtifactError", "CompileError", "__version__"]
