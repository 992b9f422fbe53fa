"""RNN, LSTM and GRU, unrolled over the static sequence length into core ops.

The core has no loops, so each time step becomes its own small graph: the step's slice of the
input projection, ``H @ R^T``, the gate activations and the state update. The input projection
``X @ W^T + Wb + Rb`` is one MatMul over all steps; constant weights make every transpose, split
and bias sum fold at import. Per-batch ``sequence_lens`` become masks (``Where`` on ``t < len``)
computed at run time, so a graph-input length vector is not compiled per value.

Semantics follow the ONNX spec and onnxruntime: gate pre-activations are clipped, a reverse
direction runs each batch entry from its own last valid step back to step 0, the state stops
updating past its length, Y is zero there, and an empty sequence gives zero Y_h/Y_c.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from onnxc.ir import Value

from .importer import ImportContext, onnx_op

# lower-case name -> (default alpha or None if unused, default beta or None if unused).
# Defaults are the ONNX ops' own (ThresholdedRelu's alpha is 1.0); Affine and ScaledTanh have no
# ONNX op any more, so they default to the identity-like alpha=1, beta=0 / alpha=1, beta=1.
_ACTIVATIONS = {
    "relu": (None, None), "tanh": (None, None), "sigmoid": (None, None),
    "softsign": (None, None), "softplus": (None, None),
    "leakyrelu": (0.01, None), "thresholdedrelu": (1.0, None), "elu": (1.0, None),
    "hardsigmoid": (0.2, 0.5), "affine": (1.0, 0.0), "scaledtanh": (1.0, 1.0),
}
_DEFAULTS = {"RNN": ["Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
_GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}  # W/R rows per hidden unit: RNN i, LSTM iofc, GRU zrh
_CONCAT_FAN = 8  # Y is a tree of Concats: each output element selects among at most this many


class _Net:
    """Shorthands for adding core ops through the import context (which folds constants)."""

    def __init__(self, ctx: ImportContext, dtype):
        self.ctx, self.np = ctx, dtype.np

    def op(self, name: str, *inputs, **attrs) -> Value:
        return self.ctx.add1(name, list(inputs), attrs or None)

    def scalar(self, value) -> Value:
        return self.ctx.constant(np.array(value, dtype=self.np), "rnn_scalar")

    def add(self, a, b):
        return b if a is None else a if b is None else self.op("Add", a, b)

    def mul(self, a, b):
        return self.op("Mul", a, b)

    def reshape(self, x, shape):
        return x if tuple(x.shape) == tuple(shape) else self.op("Reshape", x, shape=tuple(shape))

    def transpose(self, x, perm):
        return self.op("Transpose", x, perm=tuple(perm))

    def cut(self, x, axis: int, start: int, size: int) -> Value:
        """x[start:start+size] along ``axis``."""
        if start == 0 and size == x.shape[axis]:
            return x
        return self.op("Slice", x, starts=(start,), ends=(start + size,), axes=(axis,),
                       steps=None)

    def where(self, cond, a, b):
        return a if cond is None else self.op("Where", cond, a, b)

    def concat(self, values: list[Value], axis: int) -> Value:
        """One Concat per group of at most _CONCAT_FAN inputs, level by level."""
        while len(values) > 1:
            values = [group[0] if len(group) == 1 else self.op("Concat", *group, axis=axis)
                      for group in (values[k:k + _CONCAT_FAN]
                                    for k in range(0, len(values), _CONCAT_FAN))]
        return values[0]


def _strings(value) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in value]


def _activations(ctx: ImportContext, kind: str, num_dirs: int):
    """Per direction, the (name, alpha, beta) of each activation slot (f[, g[, h]])."""
    n = len(_DEFAULTS[kind])
    names = ctx.attr("activations")
    names = _DEFAULTS[kind] * num_dirs if names is None else _strings(names)
    alphas = iter(float(a) for a in ctx.attr("activation_alpha", []))
    betas = iter(float(b) for b in ctx.attr("activation_beta", []))
    parsed = []
    for name in names:
        key = name.lower()
        if key not in _ACTIVATIONS:
            raise ctx.unsupported(f"activation {name!r} is not supported (supported: "
                                  f"{', '.join(sorted(_ACTIVATIONS))})")
        alpha, beta = _ACTIVATIONS[key]
        # Values are consumed in order, only by the functions that take them (as onnxruntime).
        alpha = next(alphas, alpha) if alpha is not None else None
        beta = next(betas, beta) if beta is not None else None
        parsed.append((key, alpha, beta))
    if len(parsed) == n and num_dirs == 2:
        parsed = parsed * 2  # one list for both directions
    elif len(parsed) == 2 * n and num_dirs == 1:
        parsed = parsed[:n]  # e.g. RNN's old default ["Tanh", "Tanh"] on a one-way RNN
    if len(parsed) != n * num_dirs:
        raise ctx.error(f"{kind} with {num_dirs} direction(s) takes {n * num_dirs} activations, "
                        f"got {names}")
    return [parsed[d * n:(d + 1) * n] for d in range(num_dirs)]


def _activate(net: _Net, act, x: Value) -> Value:
    name, alpha, beta = act
    if name in ("relu", "tanh", "sigmoid", "softsign", "softplus"):
        return net.op(name.capitalize(), x)
    if name == "leakyrelu":
        return net.op("LeakyRelu", x, alpha=alpha)
    if name == "thresholdedrelu":
        return net.op("ThresholdedRelu", x, alpha=alpha)
    if name == "elu":
        return net.op("Elu", x, alpha=alpha)
    if name == "hardsigmoid":
        return net.op("HardSigmoid", x, alpha=alpha, beta=beta)
    if name == "affine":
        return net.add(net.mul(x, net.scalar(alpha)), net.scalar(beta))
    # scaledtanh: alpha * tanh(beta * x)
    return net.mul(net.op("Tanh", net.mul(x, net.scalar(beta))), net.scalar(alpha))


class _Masks:
    """Which batch entries are still inside their sequence at each step (None: all are)."""

    def __init__(self, net: _Net, lens: Value | None, seq: int, batch: int):
        self.net, self.lens, self.none_empty = net, None, False
        if lens is None:
            return
        if tuple(lens.shape) != (batch,):
            raise net.ctx.error(f"sequence_lens must have shape [{batch}], got {lens.type}")
        known = lens.const
        if known is not None and known.min(initial=seq) >= seq:
            return  # every sequence is full: no masks at all
        self.none_empty = known is not None and known.min(initial=seq) > 0
        self.lens = net.reshape(lens, (batch, 1))

    def step(self, t: int) -> Value | None:
        """[batch, 1] bool: t < sequence_lens."""
        if self.lens is None:
            return None
        t_value = self.net.ctx.constant(np.array(t, dtype=self.lens.dtype.np), "rnn_step")
        return self.net.op("Less", t_value, self.lens)

    def nonempty(self) -> Value | None:
        """[batch, 1] bool: 0 < sequence_lens, or None when no sequence is empty."""
        return None if self.lens is None or self.none_empty else self.step(0)


class _Direction:
    """The weights of one direction, prepared once: transposed, split, biases summed."""

    def __init__(self, net: _Net, kind: str, d: int, w, r, b, p, hidden: int, lbr: bool):
        g, h = _GATES[kind], hidden
        self.net, self.kind, self.h, self.lbr = net, kind, h, lbr
        pick = (lambda v, rows: net.reshape(net.cut(v, 0, d, 1), rows))
        self.wt = net.transpose(pick(w, (g * h, w.shape[2])), (1, 0))  # [input, g*h]
        rt = net.transpose(pick(r, (g * h, h)), (1, 0))  # [h, g*h]
        if kind == "GRU" and not lbr:  # (r * H) @ Rh^T needs r first: keep Rh apart
            self.rt, self.rt_h = net.cut(rt, 1, 0, 2 * h), net.cut(rt, 1, 2 * h, h)
        else:
            self.rt, self.rt_h = rt, None
        self.in_bias, self.rb_h = None, None
        if b is not None:
            bias = pick(b, (2 * g * h,))
            wb, rb = net.cut(bias, 0, 0, g * h), net.cut(bias, 0, g * h, g * h)
            if kind == "GRU" and lbr:  # Rb_h goes inside r * (H @ Rh^T + Rb_h)
                self.rb_h = net.cut(rb, 0, 2 * h, h)
                rb = net.op("Concat", net.cut(rb, 0, 0, 2 * h),
                            net.ctx.constant(np.zeros(h, dtype=net.np), "rnn_zero_bias"), axis=0)
            self.in_bias = net.add(wb, rb)
        self.peep = None
        if p is not None:
            pd = pick(p, (3 * h,))
            self.peep = [net.cut(pd, 0, k * h, h) for k in range(3)]  # i, o, f

    def project(self, x: Value) -> Value:
        """X @ W^T + biases for every step at once: [seq, batch, g*h]."""
        net = self.net
        seq, batch, size = x.shape
        flat = net.op("MatMul", net.reshape(x, (seq * batch, size)), self.wt)
        flat = net.add(flat, self.in_bias)
        return net.reshape(flat, (seq, batch, flat.shape[1]))


def _clip(net: _Net, clip: float | None, x: Value) -> Value:
    if clip is None:
        return x
    return net.op("Clip", x, net.scalar(-clip), net.scalar(clip))


def _rnn_step(net, dw: _Direction, acts, clip, xw_t, state):
    (h_prev,) = state
    pre = net.add(xw_t, net.op("MatMul", h_prev, dw.rt) if h_prev is not None else None)
    return (_activate(net, acts[0], _clip(net, clip, pre)),)


def _lstm_step(net, dw: _Direction, acts, clip, xw_t, state, input_forget: bool):
    h_prev, c_prev = state
    f_act, g_act, h_act = acts
    n = dw.h
    gates = net.add(xw_t, net.op("MatMul", h_prev, dw.rt) if h_prev is not None else None)
    pre_i, pre_o, pre_f, pre_c = (net.cut(gates, 1, k * n, n) for k in range(4))
    peep = dw.peep if c_prev is not None else None  # P * C_{t-1} is 0 for a zero C_{t-1}
    if peep is not None:
        pre_i = net.add(pre_i, net.mul(peep[0], c_prev))
        pre_f = net.add(pre_f, net.mul(peep[2], c_prev))
    i = _activate(net, f_act, _clip(net, clip, pre_i))
    if input_forget:  # coupled gates: f = 1 - i (onnxruntime's reading of the attribute)
        f = net.op("Sub", net.scalar(1.0), i)
    else:
        f = _activate(net, f_act, _clip(net, clip, pre_f))
    cell = _activate(net, g_act, _clip(net, clip, pre_c))
    c = net.mul(i, cell)
    if c_prev is not None:
        c = net.add(net.mul(f, c_prev), c)
    if dw.peep is not None:
        pre_o = net.add(pre_o, net.mul(dw.peep[1], c))
    o = _activate(net, f_act, _clip(net, clip, pre_o))
    return net.mul(o, _activate(net, h_act, c)), c


def _gru_step(net, dw: _Direction, acts, clip, xw_t, state):
    (h_prev,) = state
    f_act, g_act = acts
    n = dw.h
    x_zr, x_h = net.cut(xw_t, 1, 0, 2 * n), net.cut(xw_t, 1, 2 * n, n)
    rec = net.op("MatMul", h_prev, dw.rt) if h_prev is not None else None  # [b, 2n] or [b, 3n]
    zr = net.add(x_zr, net.cut(rec, 1, 0, 2 * n) if rec is not None else None)
    z = _activate(net, f_act, _clip(net, clip, net.cut(zr, 1, 0, n)))
    r = _activate(net, f_act, _clip(net, clip, net.cut(zr, 1, n, n)))
    if dw.lbr:  # r * (H @ Rh^T + Rb_h)
        lin = net.add(net.cut(rec, 1, 2 * n, n) if rec is not None else None, dw.rb_h)
        pre = net.add(x_h, net.mul(r, lin) if lin is not None else None)
    else:  # (r * H) @ Rh^T
        pre = net.add(x_h, net.op("MatMul", net.mul(r, h_prev), dw.rt_h)
                      if h_prev is not None else None)
    cand = _activate(net, g_act, _clip(net, clip, pre))
    if h_prev is None:  # (1 - z) * cand
        return (net.op("Sub", cand, net.mul(z, cand)),)
    return (net.add(cand, net.mul(z, net.op("Sub", h_prev, cand))),)  # (1-z)*cand + z*H


def _run(net, step, dw, acts, clip, xw, state, masks: _Masks, reverse: bool):
    """Unroll one direction; returns the per-step outputs in time order and the final state."""
    zero = net.scalar(0.0)
    seq = xw.shape[0]
    ys: list[Value | None] = [None] * seq
    for t in (reversed(range(seq)) if reverse else range(seq)):
        # A Gather, not a Slice: t is then a constant buffer, not baked into the code, so the
        # steps' kernels are identical and compile once (256 LSTM steps: 49 s -> 10 s).
        xw_t = net.op("Gather", xw, net.ctx.constant(np.array(t, dtype=np.int64), "rnn_t"),
                      axis=0)
        new = step(net, dw, acts, clip, xw_t, state)
        mask = masks.step(t)
        ys[t] = net.where(mask, new[0], zero)
        # Past its length an entry keeps its state (a reverse run has not started yet there).
        state = tuple(net.where(mask, v, zero if old is None else old)
                      for v, old in zip(new, state))
    return ys, state


def _state_input(net: _Net, v: Value | None, d: int, shape: tuple, what: str):
    """Direction d's [batch, hidden] slice of initial_h / initial_c."""
    if v is None:
        return None
    if tuple(v.shape) != shape:
        raise net.ctx.error(f"{what} must have shape {list(shape)} (time-major), got {v.type}")
    batch, hidden = shape[1:]
    return net.reshape(net.cut(v, 0, d, 1), (batch, hidden))


@onnx_op("RNN", "LSTM", "GRU")
def _recurrent(ctx: ImportContext, node):
    kind = node.op_type
    x, w, r, b, lens, h0 = (ctx.input(k) for k in range(6))
    c0, p = (ctx.input(6), ctx.input(7)) if kind == "LSTM" else (None, None)
    if x is None or w is None or r is None:
        raise ctx.error("X, W and R are required")
    direction = ctx.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ctx.error(f"unknown direction {direction!r}")
    num_dirs = 2 if direction == "bidirectional" else 1
    layout = int(ctx.attr("layout", 0))
    if x.type.rank != 3 or not x.type.is_static:
        raise ctx.unsupported(f"X must be 3-D with static dims (the sequence is unrolled), got "
                              f"{x.type}")
    hidden = int(ctx.attr("hidden_size", r.shape[-1]))
    g = _GATES[kind]
    if tuple(w.shape[:2]) != (num_dirs, g * hidden) or tuple(r.shape) != (num_dirs, g * hidden,
                                                                            hidden):
        raise ctx.error(f"W {w.type} / R {r.type} do not fit {num_dirs} direction(s) of "
                        f"{g} x hidden_size {hidden}")
    net = _Net(ctx, x.dtype)
    if layout:  # batch-major tensors: run time-major inside
        x = net.transpose(x, (1, 0, 2))
        h0 = net.transpose(h0, (1, 0, 2)) if h0 is not None else None
        c0 = net.transpose(c0, (1, 0, 2)) if c0 is not None else None
    seq, batch, size = x.shape
    if w.shape[2] != size:
        raise ctx.error(f"W {w.type} does not fit input size {size}")
    clip = ctx.attr("clip")
    clip = None if clip is None else float(clip)
    acts = _activations(ctx, kind, num_dirs)
    masks = _Masks(net, lens, seq, batch)
    lbr = kind == "GRU" and bool(ctx.attr("linear_before_reset", 0))
    step = {"RNN": _rnn_step, "GRU": _gru_step,
            "LSTM": partial(_lstm_step, input_forget=bool(ctx.attr("input_forget", 0)))}[kind]
    want_y = len(node.output) > 0 and node.output[0] != ""
    ys, hs, cs = [], [], []
    for d in range(num_dirs):
        dw = _Direction(net, kind, d, w, r, b, p, hidden, lbr)
        shape = (num_dirs, batch, hidden)
        state = (_state_input(net, h0, d, shape, "initial_h"),)
        if kind == "LSTM":
            state += (_state_input(net, c0, d, shape, "initial_c"),)
        reverse = direction == "reverse" or d == 1
        steps, state = _run(net, step, dw, acts[d], clip, dw.project(x), state, masks, reverse)
        if want_y:
            ys.append(net.concat([net.reshape(y, (1, 1, batch, hidden)) for y in steps], 0))
        nonempty = masks.nonempty()
        zero = net.scalar(0.0)
        hs.append(net.reshape(net.where(nonempty, state[0], zero), (1, batch, hidden)))
        if kind == "LSTM":
            cs.append(net.reshape(net.where(nonempty, state[1], zero), (1, batch, hidden)))
    y = net.concat(ys, 1) if want_y else None
    y_h = net.concat(hs, 0)
    y_c = net.concat(cs, 0) if kind == "LSTM" else None
    if layout:
        y = net.transpose(y, (2, 0, 1, 3)) if y is not None else None
        y_h = net.transpose(y_h, (1, 0, 2))
        y_c = net.transpose(y_c, (1, 0, 2)) if y_c is not None else None
    return [y, y_h, y_c][:len(node.output)]
