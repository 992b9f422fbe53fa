"""Winograd convolution: 3x3 stride-1 Convs become F(2x2, 3x3) transforms around a MatMul.

Rule (cpu pipeline, -O2 and up, after BatchNorm folding so the folded weights are transformed):
  Conv(x, W, b)  with W a constant [K, C, 3, 3], group 1, stride 1, dilation 1, float32, static
                 NCHW shapes, and a shape where it wins (``winograd_wins``)
  -> WinogradOutput(MatMul(U, Reshape(WinogradInput(x))), b)      U = G W G^T (a constant)
The weight transform happens here, once, at compile time. The MatMul is an ordinary batched
matrix product (16 positions x batch), so the backend's packed GEMM runs it; WinogradOutput
takes the Conv's fused epilogue (see ir/ops/winograd.py). The rewrite multiplies 2.25x fewer
times but reads and writes 4x the activations in the transforms: it pays off only when the
channel counts make the product dominate (measured, see ``winograd_wins``).
"""
from __future__ import annotations

import numpy as np

from onnxc.ir import Graph, Node
from onnxc.ir.dtypes import DType
from onnxc.ir.ops.winograd import tile_counts, transform_weights

from .manager import Pass

ENABLED = True  # tests and A/B runs switch it off to compare with the direct convolution
GRID_ALIGN = 1  # 8 sped the input transform up but slowed the output one (measured: a wash)

# When it wins: the transforms cost ~ (C + K) * tiles, the product saves ~ C * K * tiles, so
# the criterion is h = C*K / (C + K), with a higher bar for narrow images (short inner loops
# in the transforms, more padded tiles). Measured at one thread on the avx512 dev machine
# (time of Winograd / direct, relu epilogue): Wo >= 28: 64x64 0.78, 128x64 0.96, 64x96 0.90,
# 48x64 1.05, 32x32 0.97; Wo = 14: 256x256 0.71, 128x128 0.86, 96x128 0.91, 64x96 1.01,
# 64x64 1.12, 128x32 1.52; Wo = 7: 512x512 0.76, 192x384 0.68, 160x320 0.75, 128x128 1.08,
# 96x128 1.00. (C x K; DenseNet's 128 -> 32 convs lose everywhere.)
WIDE, MID = 27, 13  # odd widths have the tile grid of the next even one
H_WIDE, H_MID, H_NARROW = 30.0, 48.0, 96.0


def grid_width(out_w: int) -> int:
    """Tile columns, rounded up to a multiple of GRID_ALIGN from 5 tiles on."""
    tw = -(-out_w // 2)
    return tw if tw <= 4 else -(-tw // GRID_ALIGN) * GRID_ALIGN


def winograd_wins(c_in: int, c_out: int, out_h: int, out_w: int) -> bool:
    """Whether F(2x2, 3x3) beats the direct (implicit-im2col GEMM) convolution for a shape."""
    h = c_in * c_out / (c_in + c_out)
    need = H_WIDE if out_w >= WIDE else H_MID if out_w >= MID else H_NARROW
    return h >= need and out_h >= 4 and out_w >= 4


def eligible(graph: Graph, node: Node) -> bool:
    if node.op != "Conv" or len(node.inputs) < 2:
        return False
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if w.const is None or x.type.rank != 4 or not x.type.is_static or \
            x.dtype != DType.float32 or w.dtype != DType.float32:
        return False
    if bias is not None and bias.dtype != DType.float32:
        return False
    a = node.attrs
    if a.get("group", 1) != 1 or tuple(w.shape[2:]) != (3, 3) or \
            any(s != 1 for s in a.get("strides") or [1, 1]) or \
            any(d != 1 for d in a.get("dilations") or [1, 1]):
        return False
    pads = list(a.get("pads") or [0, 0, 0, 0])
    return len(pads) == 4 and max(pads) <= 2


class WinogradConv(Pass):
    name = "winograd"
    purpose = "3x3 stride-1 Conv -> Winograd F(2x2,3x3) transforms around a batched MatMul"

    def __init__(self, choose=None):
        self.choose = choose  # (c_in, c_out, out_h, out_w) -> bool; None: winograd_wins

    def run(self, graph: Graph) -> Graph:
        if not ENABLED:
            return graph
        for node in [n for n in graph.nodes if eligible(graph, n)]:
            y = node.outputs[0]
            n_, c_in = node.inputs[0].shape[:2]
            c_out, out_h, out_w = y.shape[1:]
            if (self.choose or winograd_wins)(c_in, c_out, out_h, out_w):
                self._rewrite(graph, node)
        graph.prune()
        return graph

    @staticmethod
    def _rewrite(graph: Graph, conv: Node) -> None:
        x, w = conv.inputs[0], conv.inputs[1]
        bias = conv.inputs[2] if len(conv.inputs) > 2 else None
        y = conv.outputs[0]
        n_, c_in = x.shape[:2]
        out_h, out_w = y.shape[2:]
        th, tw = tile_counts(out_h, out_w, grid_width(out_w))
        pads = list(conv.attrs.get("pads") or [0, 0, 0, 0])
        first = len(graph.nodes)
        kw = dict(origin=list(conv.origin or [(conv.name, conv.op)]))
        u = graph.add_constant(transform_weights(np.asarray(w.const)), f"{w.name}_winograd")
        # Pad first, as its own kernel: inside WinogradInput's kernel the padding stage would
        # be inlined into the transform as bounds-checked loads, which do not vectorize.
        ends = [2 * th + 2 - x.shape[2] - pads[0], 2 * tw + 2 - x.shape[3] - pads[1]]
        if pads[0] or pads[1] or ends[0] or ends[1]:
            x = graph.add("Pad", [x], {"pads": [0, 0, pads[0], pads[1], 0, 0] + ends,
                                       "mode": "constant", "value": 0.0},
                          name=f"{conv.name}_wino_pad", **kw)[0]
        v = graph.add("WinogradInput", [x], {"pads": [0, 0, 0, 0], "grid_w": tw},
                      name=f"{conv.name}_wino_in", **kw)[0]
        v = graph.add("Reshape", [v], {"shape": [n_, 16, c_in, th * tw]},
                      name=f"{conv.name}_wino_v", **kw)[0]
        m = graph.add("MatMul", [u, v], name=f"{conv.name}_wino_gemm", **kw)[0]
        out = graph.add("WinogradOutput", [m] + ([bias] if bias is not None else []),
                        {"out_hw": [out_h, out_w], "grid_w": tw},
                        name=f"{conv.name}_wino_out", **kw)[0]
        assert out.type == y.type, (out.type, y.type)
        # graph.add appends: move the new nodes to where the Conv was (topological order).
        new = graph.nodes[first:]
        del graph.nodes[first:]
        at = graph.nodes.index(conv)
        graph.nodes[at:at] = new
        graph.replace_uses(y, out)
        graph.remove_node(conv)
