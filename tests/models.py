"""Model builders shared by the tests (not a test module).

Every builder is deterministic: weights come from ``numpy.random.default_rng(seed)``.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


# -- MLP ----------------------------------------------------------------------------------------
def mlp_weights(sizes: Sequence[int], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight [in, out], bias [out]) per layer, He-scaled so activations stay O(1)."""
    rng = np.random.default_rng(seed)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        w = rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)
        b = rng.standard_normal(fan_out) * 0.1
        layers.append((w.astype(np.float32), b.astype(np.float32)))
    return layers


def mlp_reference(x: np.ndarray, sizes: Sequence[int], seed: int) -> np.ndarray:
    """The model built by :func:`mlp`, evaluated in numpy (float64, cast back to float32)."""
    h = x.astype(np.float64)
    for w, b in mlp_weights(sizes, seed):
        h = np.maximum(h @ w.astype(np.float64) + b.astype(np.float64), 0.0)
    return h.astype(np.float32)


def mlp(batch: int | str, sizes: Sequence[int], seed: int) -> onnx.ModelProto:
    """``len(sizes) - 1`` layers of MatMul + Add + Relu on float32 input "x" [batch, sizes[0]].

    ``batch`` may be a symbolic dim name (e.g. "N"). The output is "y" [batch, sizes[-1]].
    """
    nodes, inits = [], []
    current = "x"
    for k, (w, b) in enumerate(mlp_weights(sizes, seed)):
        inits += [numpy_helper.from_array(w, f"w{k}"), numpy_helper.from_array(b, f"b{k}")]
        out = "y" if k == len(sizes) - 2 else f"h{k}"
        nodes += [
            helper.make_node("MatMul", [current, f"w{k}"], [f"mm{k}"], name=f"matmul{k}"),
            helper.make_node("Add", [f"mm{k}", f"b{k}"], [f"add{k}"], name=f"add{k}"),
            helper.make_node("Relu", [f"add{k}"], [out], name=f"relu{k}"),
        ]
        current = out
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, sizes[-1]])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


# -- onnx's "light" model zoo -------------------------------------------------------------------
def light_model_paths() -> list[str]:
    """The nine ``light_*.onnx`` models shipped with the onnx package, sorted by name."""
    return sorted(os.path.join(LIGHT_DIR, f) for f in os.listdir(LIGHT_DIR)
                  if f.endswith(".onnx"))


def light_model_name(path: str) -> str:
    """"light_resnet50.onnx" -> "resnet50"."""
    return os.path.basename(path)[len("light_"):-len(".onnx")]


def data_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs that are not initializers (what a caller has to feed)."""
    inits = {t.name for t in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def random_feeds(model: onnx.ModelProto, seed: int) -> dict[str, np.ndarray]:
    """Standard-normal float32 feeds for every (static-shaped, float) data input."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in data_inputs(model):
        assert vi.type.tensor_type.elem_type == TensorProto.FLOAT, vi.name
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _random_weight(rng: np.random.Generator, shape: Sequence[int], positive: bool) -> np.ndarray:
    w = rng.standard_normal(shape, dtype=np.float32)
    if positive:  # a BatchNormalization variance
        np.abs(w, out=w)
        w += np.float32(0.5)
    elif len(shape) >= 2:
        w *= np.float32(math.sqrt(2.0 / max(1, math.prod(shape[1:]))))
    else:
        w *= np.float32(0.1)
    return w


def randomize_light_model(path: str, seed: int) -> onnx.ModelProto:
    """The light model at ``path`` with every ``ConstantOfShape(0.02)`` weight replaced by a
    random float32 initializer of the same shape (He-scaled; BatchNorm variances positive).

    The light models are IR version 3, where every initializer is also a graph input; the new
    initializers get graph inputs too, and the now-unused int64 shape initializers are dropped.
    """
    model = onnx.load(path)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    variances = {n.input[4] for n in graph.node
                 if n.op_type == "BatchNormalization" and len(n.input) > 4}
    rng = np.random.default_rng(seed)

    new_inits, kept_nodes = [], []
    for node in graph.node:
        if node.op_type != "ConstantOfShape":
            kept_nodes.append(node)
            continue
        shape = [int(d) for d in numpy_helper.to_array(inits[node.input[0]])]
        weight = _random_weight(rng, shape, positive=node.output[0] in variances)
        new_inits.append(numpy_helper.from_array(weight, node.output[0]))

    used = {name for n in kept_nodes for name in n.input}
    used |= {o.name for o in graph.output}
    kept_inits = [t for t in graph.initializer if t.name in used]
    dropped = {t.name for t in graph.initializer} - {t.name for t in kept_inits}
    kept_inputs = [vi for vi in graph.input if vi.name not in dropped]
    new_inputs = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                  for t in new_inits]

    del graph.node[:]
    graph.node.extend(kept_nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits + new_inits)
    del graph.input[:]
    graph.input.extend(kept_inputs + new_inputs)
    onnx.checker.check_model(model)
    return model


def final_softmax(model: onnx.ModelProto) -> onnx.NodeProto | None:
    """The Softmax node that produces the model's (single) output, if there is one."""
    out = model.graph.output[0].name
    for node in model.graph.node:
        if out in node.output:
            return node if node.op_type == "Softmax" else None
    return None


def logits_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` without its final Softmax: the Softmax's input becomes the output.

    The new output has elem_type FLOAT and no shape, so the compiler has to infer it.
    """
    softmax = final_softmax(model)
    if softmax is None:
        raise ValueError(f"model {model.graph.name!r} does not end in a Softmax")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    nodes = [n for n in graph.node if list(n.output) != list(softmax.output)]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(softmax.input[0], TensorProto.FLOAT, None))
    # No onnx.checker here: it insists on output shapes for IR version 3 models.
    return out
