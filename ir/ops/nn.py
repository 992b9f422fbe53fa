"""Convolution, pooling and local response normalization."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..dtypes import DType
from ..errors import ModelError
from ..kernel import (IndexValue, Ix, Load, TensorRef, call, const, ix_load, reduce, select,
                      stage)
from ..types import TensorType
from .registry import OpDef, register


def conv_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int,
                     dilation: int, ceil_mode: bool = False) -> int:
    span = size + pad_begin + pad_end - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        # The last window must start inside the input or the left padding (ONNX rule).
        if (out - 1) * stride >= size + pad_begin:
            out -= 1
        return out
    return span // stride + 1


def _spatial_attrs(attrs, nd: int):
    strides = list(attrs.get("strides") or [1] * nd)
    dilations = list(attrs.get("dilations") or [1] * nd)
    pads = list(attrs.get("pads") or [0] * (2 * nd))
    if len(strides) != nd or len(dilations) != nd or len(pads) != 2 * nd:
        raise ModelError(f"strides {strides}, dilations {dilations} and pads {pads} do not fit "
                         f"{nd} spatial dimensions")
    if min(strides + dilations, default=1) < 1 or min(pads, default=0) < 0:
        raise ModelError(f"strides and dilations must be >= 1 and pads >= 0; got strides "
                         f"{strides}, dilations {dilations}, pads {pads}")
    return strides, dilations, pads


def _pad_stage(x, pads, value: float, name: str):
    """Materialize a padded copy of ``x`` so the hot loops read it without bounds checks."""
    nd = len(x.shape) - 2
    if not any(pads):
        return x, []
    shape = list(x.shape[:2]) + [x.shape[2 + d] + pads[d] + pads[nd + d] for d in range(nd)]
    st = stage(name, shape, lambda n, c, *s: x.padded([n, c] + [s[d] - pads[d]
                                                                for d in range(nd)], value))
    return TensorRef(name, shape, x.dtype), [st]


def _phase_stage(x, strides, name: str):
    """Split a strided convolution's input into stride phases.

    ``phases[a, b, n, c, i, j] = x[n, c, i*s0 + a, j*s1 + b]``, so a strided convolution reads
    each phase with unit stride along the output columns (vectorizable, GEMM-like).
    """
    nd = len(strides)
    shape = list(strides) + list(x.shape[:2]) + [-(-x.shape[2 + d] // strides[d])
                                                  for d in range(nd)]

    def body(*v):
        ph, (n, c), sp = v[:nd], v[nd:nd + 2], v[nd + 2:]
        return x.padded([n, c] + [sp[d] * strides[d] + ph[d] for d in range(nd)], 0.0)

    return TensorRef(name, shape, x.dtype), [stage(name, shape, body)]


# -- Conv ---------------------------------------------------------------------------------------
def _conv_infer(types, attrs, consts):
    x, w = types[0], types[1]
    if x.rank < 3 or w.rank != x.rank:
        raise ModelError(f"Conv needs X of rank >= 3 and W of the same rank, got X {x}, W {w}")
    nd = x.rank - 2
    group = attrs.get("group", 1)
    strides, dilations, pads = _spatial_attrs(attrs, nd)
    c, m, cg = x.shape[1], w.shape[0], w.shape[1]
    if isinstance(c, int) and isinstance(cg, int) and c != cg * group:
        raise ModelError(f"Conv input has {c} channels but W expects {cg} x group {group} = "
                         f"{cg * group} (X {x}, W {w})")
    if isinstance(m, int) and m % group:
        raise ModelError(f"Conv output channels {m} are not divisible by group {group}")
    if len(types) > 2 and types[2] is not None and types[2].shape not in ((m,),):
        raise ModelError(f"Conv bias must have shape ({m},), got {types[2]}")
    spatial = []
    for k in range(nd):
        size = x.shape[2 + k]
        if not isinstance(size, int):
            spatial.append(f"{size}_conv")
            continue
        o = conv_output_size(size, w.shape[2 + k], strides[k], pads[k], pads[nd + k],
                             dilations[k])
        if o < 1:
            raise ModelError(f"Conv output would be empty: input {x}, kernel {w}, pads {pads}")
        spatial.append(o)
    return [TensorType(x.dtype, (x.shape[0], m, *spatial))]


def _conv_compute(ins, outs, attrs):
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    out = outs[0]
    nd = len(out.shape) - 2
    strides, dilations, pads = _spatial_attrs(attrs, nd)
    group = attrs.get("group", 1)
    m_per_group = out.shape[1] // group
    cg = w.shape[1]
    x, prologue = _pad_stage(x, pads, 0.0, f"{out.name}__pad")
    phased = any(s > 1 for s in strides)
    if phased:
        x, more = _phase_stage(x, strides, f"{out.name}__phases")
        prologue += more

    def body(n, m, *o):
        g = m // m_per_group if group > 1 else Ix.lift(0)

        def term(c, *kk):
            if phased:  # read phase (k*d mod s) at o + (k*d div s): unit stride along o
                taps = [kk[d] * dilations[d] for d in range(nd)]
                xi = ([t % strides[d] for d, t in enumerate(taps)] + [n, g * cg + c] +
                      [o[d] + taps[d] // strides[d] for d in range(nd)])
            else:
                xi = [n, g * cg + c] + [o[d] + kk[d] * dilations[d] for d in range(nd)]
            return x[tuple(xi)] * w[(m, c) + tuple(kk)]

        acc = reduce("sum", [cg, *w.shape[2:]], term)
        return acc + bias[m] if bias is not None else acc

    return prologue + [stage(out.name, out.shape, body)]


register(OpDef("Conv", _conv_infer, _conv_compute, kind="reduction",
               doc="inputs X, W, optional B; attrs group, strides, pads (begins+ends), dilations"))


# -- Pooling ------------------------------------------------------------------------------------
def _pool_infer(types, attrs, consts):
    x = types[0]
    kernel = list(attrs["kernel_shape"])
    nd = len(kernel)
    if x.rank != nd + 2:
        raise ModelError(f"pool kernel_shape {kernel} does not fit input {x}")
    strides, dilations, pads = _spatial_attrs(attrs, nd)
    spatial = []
    for k in range(nd):
        size = x.shape[2 + k]
        if not isinstance(size, int):
            spatial.append(f"{size}_pool")
            continue
        o = conv_output_size(size, kernel[k], strides[k], pads[k], pads[nd + k], dilations[k],
                             bool(attrs.get("ceil_mode", 0)))
        if o < 1:
            raise ModelError(f"pool output would be empty: input {x}, kernel {kernel}")
        spatial.append(o)
    return [TensorType(x.dtype, (x.shape[0], x.shape[1], *spatial))]


def _window_index(o, kk, strides, dilations):
    return [o[d] * strides[d] + kk[d] * dilations[d] for d in range(len(o))]


def _pool_padded(x, out, attrs, value):
    """Pad the input so every window lies inside it (ceil_mode windows may reach past pads)."""
    kernel = list(attrs["kernel_shape"])
    nd = len(kernel)
    strides, dilations, pads = _spatial_attrs(attrs, nd)
    pads = list(pads)
    for d in range(nd):
        need = (out.shape[2 + d] - 1) * strides[d] + (kernel[d] - 1) * dilations[d] + 1
        pads[nd + d] = max(pads[nd + d], need - x.shape[2 + d] - pads[d])
    xp, prologue = _pad_stage(x, pads, value, f"{out.name}__pad")
    return xp, prologue, kernel, strides, dilations


def _maxpool_compute(ins, outs, attrs):
    x, out = ins[0], outs[0]
    x, prologue, kernel, strides, dilations = _pool_padded(x, out, attrs, -math.inf)

    def body(n, c, *o):
        return reduce("max", kernel, lambda *kk: x[
            tuple([n, c] + _window_index(o, kk, strides, dilations))])

    return prologue + [stage(out.name, out.shape, body)]


def _avgpool_compute(ins, outs, attrs):
    x, divisor, out = ins[0], ins[1], outs[0]
    x, prologue, kernel, strides, dilations = _pool_padded(x, out, attrs, 0.0)

    def body(n, c, *o):
        total = reduce("sum", kernel, lambda *kk: x[
            tuple([n, c] + _window_index(o, kk, strides, dilations))])
        return total / divisor[tuple(o)]

    return prologue + [stage(out.name, out.shape, body)]


def pool_divisor(in_spatial: Sequence[int], out_spatial: Sequence[int], kernel: Sequence[int],
                 strides, pads, dilations, count_include_pad: bool) -> np.ndarray:
    """How many window elements each AveragePool output divides by (ONNX's rule)."""
    nd = len(kernel)
    per_dim = []
    for d in range(nd):
        o = np.arange(out_spatial[d])[:, None]
        pos = o * strides[d] - pads[d] + np.arange(kernel[d])[None, :] * dilations[d]
        if count_include_pad:
            valid = (pos >= -pads[d]) & (pos < in_spatial[d] + pads[nd + d])
        else:
            valid = (pos >= 0) & (pos < in_spatial[d])
        per_dim.append(valid.sum(axis=1))
    div = per_dim[0].astype(np.float64)
    for counts in per_dim[1:]:
        div = np.multiply.outer(div, counts)
    return np.maximum(div, 1)


register(OpDef("MaxPool", _pool_infer, _maxpool_compute, kind="reduction",
               doc="attrs kernel_shape, strides, pads, dilations, ceil_mode"))
register(OpDef("AveragePool", lambda t, a, c: _pool_infer(t[:1], a, c), _avgpool_compute,
               kind="reduction",
               doc="inputs X and the per-output divisor (see pool_divisor); attrs as MaxPool"))


# -- LRN ----------------------------------------------------------------------------------------
def _lrn_infer(types, attrs, consts):
    if types[0].rank < 3:
        raise ModelError(f"LRN needs an input of rank >= 3, got {types[0]}")
    return [types[0]]


def _lrn_compute(ins, outs, attrs):
    x, out = ins[0], outs[0]
    size = int(attrs["size"])
    alpha, beta, bias = attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0)
    before = (size - 1) // 2

    def body(n, c, *rest):
        def sq(r):
            v = x.padded([n, c - before + r, *rest], 0.0)
            return v * v

        total = reduce("sum", [size], sq)
        scale = const(bias, x.dtype) + const(alpha / size, x.dtype) * total
        return x[(n, c, *rest)] / call("pow", scale, const(beta, x.dtype))

    return [stage(out.name, out.shape, body)]


register(OpDef("LRN", _lrn_infer, _lrn_compute, kind="reduction",
               doc="attrs size, alpha, beta, bias: normalization across channels"))


# -- MaxPool's Indices output ---------------------------------------------------------------------
def _pool_indices_infer(types, attrs, consts):
    return [TensorType(DType.int64, types[1].shape)]


def _pool_indices_compute(ins, outs, attrs):
    """The flat index (into X) of the first window element equal to the pooled maximum;
    storage_order 1 numbers the spatial positions column-major (2-D)."""
    x, y, out = ins[0], ins[1], outs[0]
    kernel = list(attrs["kernel_shape"])
    nd = len(kernel)
    strides, dilations, pads = _spatial_attrs(attrs, nd)
    spatial = x.shape[2:]
    big = const(int(np.prod(x.shape)), DType.int64)
    first = f"{out.name}__first"

    def first_body(n, c, *o):
        def term(*kk):
            pos = [o[d] * strides[d] + kk[d] * dilations[d] - pads[d] for d in range(nd)]
            inside = None
            for d in range(nd):
                ok = call("and", call("ge", IndexValue(pos[d]), const(0, DType.int64)),
                          call("lt", IndexValue(pos[d]), const(spatial[d], DType.int64)))
                inside = ok if inside is None else call("and", inside, ok)
            flat = n * x.shape[1] + c
            for d in range(nd):
                flat = flat * spatial[d] + pos[d]
            hit = call("and", inside, call("eq", x.padded([n, c] + pos, -math.inf),
                                           y[(n, c) + tuple(o)]))
            return select(hit, IndexValue(flat), big)

        return reduce("min", kernel, term)

    if not attrs.get("storage_order", 0):
        return [stage(out.name, out.shape, first_body)]
    if nd != 2:
        raise ModelError("storage_order=1 is only defined here for 2-D pooling")
    h, w = spatial

    def column_major(*v):
        flat = ix_load(Load(first, tuple(v), DType.int64))
        return IndexValue((flat // (h * w)) * (h * w) + (flat % w) * h + (flat // w) % h)

    return [stage(first, out.shape, first_body), stage(out.name, out.shape, column_major)]


register(OpDef("MaxPoolIndices", _pool_indices_infer, _pool_indices_compute, kind="opaque",
               doc="inputs X and MaxPool(X); attrs as MaxPool plus storage_order"))
