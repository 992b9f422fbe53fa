"""The same ONNX graph run by PyTorch on the same GPU: the latency onnxc's CUDA kernels are
compared with (scripts/gpu_check.py, scripts/gpu_pycuda_check.py).

A small interpreter: each ONNX node becomes the torch.nn.functional call that cuDNN/cuBLAS
serve, weights live on the GPU, and one run is the node sequence (no host copies), timed with
CUDA events. Only the ops of the check and bench models are covered; others raise
NotImplementedError so the caller prints "n/a" instead of a wrong figure. Before timing, the
output is compared with the caller's reference, so a mistranslated graph cannot report a time.
"""
from __future__ import annotations

import statistics

import numpy as np


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class TorchGraph:
    """An ONNX model as a sequence of torch calls on ``device`` (float32/float16 models)."""

    def __init__(self, model, device: str = "cuda"):
        import torch
        from onnx import numpy_helper

        self.torch, self.device = torch, device
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          13)
        self.consts = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()).to(device)
                       for i in model.graph.initializer}
        for node in model.graph.node:  # Constant(OfShape) nodes are weights too
            if node.op_type == "ConstantOfShape" and node.input[0] in self.consts:
                value = _attrs(node).get("value")
                fill = numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
                shape = [int(d) for d in self.consts[node.input[0]].tolist()]
                self.consts[node.output[0]] = torch.from_numpy(
                    np.full(shape, fill.reshape(-1)[0], fill.dtype)).to(device)
            if node.op_type == "Constant":
                value = _attrs(node)["value"]
                self.consts[node.output[0]] = torch.from_numpy(
                    numpy_helper.to_array(value).copy()).to(device)
        self.nodes = [n for n in model.graph.node if n.output[0] not in self.consts]
        self.inputs = [i.name for i in model.graph.input if i.name not in self.consts]
        self.outputs = [o.name for o in model.graph.output]
        for node in self.nodes:
            if not hasattr(self, "op_" + node.op_type):
                raise NotImplementedError(f"no torch translation for {node.op_type}")

    def __call__(self, feeds: dict):
        env = dict(self.consts)
        env.update(feeds)
        for node in self.nodes:
            args = [env[name] if name else None for name in node.input]
            outs = getattr(self, "op_" + node.op_type)(args, _attrs(node))
            outs = outs if isinstance(outs, tuple) else (outs,)
            for name, value in zip(node.output, outs):
                env[name] = value
        return [env[name] for name in self.outputs]

    # -- ops ------------------------------------------------------------------------------------
    def op_MatMul(self, a, _):
        return self.torch.matmul(a[0], a[1])

    def op_Gemm(self, a, at):
        x, w = a[0], a[1]
        x = x.t() if at.get("transA", 0) else x
        w = w.t() if at.get("transB", 0) else w
        y = at.get("alpha", 1.0) * (x @ w)
        return y + at.get("beta", 1.0) * a[2] if len(a) > 2 and a[2] is not None else y

    def op_Add(self, a, _):
        return a[0] + a[1]

    def op_Sum(self, a, _):
        out = a[0]
        for x in a[1:]:
            out = out + x
        return out

    def op_Mul(self, a, _):
        return a[0] * a[1]

    def op_Sub(self, a, _):
        return a[0] - a[1]

    def op_Div(self, a, _):
        return a[0] / a[1]

    def op_Relu(self, a, _):
        return self.torch.relu(a[0])

    def op_Sigmoid(self, a, _):
        return self.torch.sigmoid(a[0])

    def op_Conv(self, a, at):
        import torch.nn.functional as F

        pads = list(at.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            raise NotImplementedError("asymmetric Conv padding")
        return F.conv2d(a[0], a[1], a[2] if len(a) > 2 else None, stride=at.get("strides", 1),
                        padding=pads[:2], dilation=at.get("dilations", 1),
                        groups=at.get("group", 1))

    def op_BatchNormalization(self, a, at):
        import torch.nn.functional as F

        return F.batch_norm(a[0], a[3], a[4], a[1], a[2], False, 0.0, at.get("epsilon", 1e-5))

    def op_MaxPool(self, a, at):
        import torch.nn.functional as F

        pads = list(at.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            raise NotImplementedError("asymmetric MaxPool padding")
        return F.max_pool2d(a[0], at["kernel_shape"], at.get("strides", at["kernel_shape"]),
                            pads[:2], ceil_mode=bool(at.get("ceil_mode", 0)))

    def op_AveragePool(self, a, at):
        import torch.nn.functional as F

        pads = list(at.get("pads", [0, 0, 0, 0]))
        return F.avg_pool2d(a[0], at["kernel_shape"], at.get("strides", at["kernel_shape"]),
                            pads[:2], count_include_pad=bool(at.get("count_include_pad", 0)))

    def op_GlobalAveragePool(self, a, _):
        return a[0].mean(dim=(2, 3), keepdim=True)

    def op_Concat(self, a, at):
        return self.torch.cat(a, dim=at["axis"])

    def op_Flatten(self, a, at):
        axis = at.get("axis", 1)
        return a[0].reshape(int(np.prod(a[0].shape[:axis])), -1)

    def op_Reshape(self, a, _):
        shape = [int(s) for s in a[1].tolist()]
        shape = [a[0].shape[k] if s == 0 else s for k, s in enumerate(shape)]
        return a[0].reshape(shape)

    def op_Dropout(self, a, _):
        return a[0]

    def _softmax(self, fn, x, at):
        if self.opset >= 13:
            return fn(x, dim=at.get("axis", -1))
        axis = at.get("axis", 1) % x.dim()  # before opset 13: over the flattened tail
        return fn(x.reshape(int(np.prod(x.shape[:axis])), -1), dim=-1).reshape(x.shape)

    def op_Softmax(self, a, at):
        return self._softmax(self.torch.softmax, a[0], at)

    def op_LogSoftmax(self, a, at):
        return self._softmax(self.torch.log_softmax, a[0], at)


def torch_ms(model, feeds: dict, ref: list, runs: int, rtol: float = 1e-3) -> float:
    """Median milliseconds of one PyTorch run of ``model`` on the GPU (kernels only: inputs
    are uploaded once), after checking its outputs against ``ref``. NaN where the graph has
    an op this interpreter does not translate."""
    import torch

    try:
        graph = TorchGraph(model)
    except NotImplementedError:
        return float("nan")
    torch.backends.cuda.matmul.allow_tf32 = False  # ONNX float32 semantics, like onnxc
    torch.backends.cudnn.allow_tf32 = False
    dev = {k: torch.from_numpy(np.ascontiguousarray(v)).cuda() for k, v in feeds.items()}
    with torch.inference_mode():
        got = [t.float().cpu().numpy() for t in graph(dev)]
        for g, r in zip(got, ref):
            r = np.asarray(r, np.float32)
            scale = max(float(np.abs(r).max()), 1.0)
            if g.shape != r.shape or float(np.abs(g - r).max()) > rtol * scale:
                raise AssertionError("the torch translation disagrees with the reference")
        for _ in range(3):
            graph(dev)
        torch.cuda.synchronize()
        times = []
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            graph(dev)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    return statistics.median(times)


__all__ = ["TorchGraph", "torch_ms"]
