"""onnxc as an ``onnx.backend.base.Backend``, so ONNX's backend test machinery can drive it."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from onnxc.api import compile as compile_model
from onnxc.runtime.session import Session


class OnnxcRep(BackendRep):
    def __init__(self, session: Session):
        self.session = session

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        specs = self.session.get_inputs()
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            feeds = {s.name: v if _container(s) else np.asarray(v)
                     for s, v in zip(specs, inputs)}
        return tuple(self.session.run(None, feeds))


def _container(spec) -> bool:
    """A sequence or optional input: its feed (a list, or None) passes through as is."""
    return spec.type.startswith(("seq(", "optional("))


class OnnxcBackend(Backend):
    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return device.upper() == "CPU"

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> OnnxcRep:
        super().prepare(model, device, **kwargs)
        return OnnxcRep(compile_model(model, **kwargs))

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU",
                  **kwargs: Any) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Sequence[np.ndarray], device: str = "CPU",
                 outputs_info=None, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """Wrap the node in a one-node model with the inputs' types, then run it."""
        ins = [onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(
            np.asarray(x).dtype), np.asarray(x).shape) for name, x in zip(node.input, inputs)]
        outs = [onnx.helper.make_empty_tensor_value_info(name) for name in node.output]
        graph = onnx.helper.make_graph([node], "run_node", ins, outs)
        model = onnx.helper.make_model(graph)
        return cls.run_model(model, list(inputs), device, **kwargs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"


prepare = OnnxcBackend.prepare
run_model = OnnxcBackend.run_model
run_node = OnnxcBackend.run_node
supports_device = OnnxcBackend.supports_device
