"""Training ops: the ai.onnx.preview.training optimizers and BatchNormalization's training mode.

Adagrad, Adam and Momentum are elementwise update rules over (R, T, X..., G..., state...), so
they are compositions of core ops, one group per optimized tensor. The iteration count T stays
a run-time input (a Where picks the first-step rule) so one compiled model serves every step.
"""
from __future__ import annotations

import numpy as np

from onnxc.ir import Value

from .importer import ImportContext, onnx_op

TRAINING = "ai.onnx.preview.training"


class _Math:
    """Shorthands for the update rules; scalars become constants of the tensors' type."""

    def __init__(self, ctx: ImportContext, dtype):
        self.ctx, self.dtype, self.np = ctx, dtype, dtype.np

    def c(self, x) -> Value:
        return self.ctx.constant(np.array(x, dtype=self.np))

    def _v(self, x) -> Value:
        return x if isinstance(x, Value) else self.c(x)

    def op(self, name: str, *args) -> Value:
        return self.ctx.add1(name, [self._v(a) for a in args])

    def add(self, a, b): return self.op("Add", a, b)
    def sub(self, a, b): return self.op("Sub", a, b)
    def mul(self, a, b): return self.op("Mul", a, b)
    def div(self, a, b): return self.op("Div", a, b)
    def sqrt(self, a): return self.op("Sqrt", a)

    def cast(self, v: Value) -> Value:
        return self.ctx.add1("Cast", [v], {"to": self.dtype.value})

    def step_positive(self, t: Value) -> Value:
        """T > 0 as a boolean scalar."""
        return self.ctx.add1("Greater", [t, self.ctx.constant(np.array(0, dtype=t.dtype.np))])


def _groups(ctx: ImportContext, node, per: int) -> list[list[Value]]:
    """The optimized tensors' groups: [X, G, state...] for each of the n tensors."""
    rest = len(node.input) - 2
    if rest <= 0 or rest % per:
        raise ctx.error(f"{node.op_type} takes R, T and {per} inputs per optimized tensor; "
                        f"got {len(node.input)} inputs")
    n = rest // per
    return [[ctx.input(2 + j * n + i) for j in range(per)] for i in range(n)]


def _regularized(m: _Math, x: Value, g: Value, norm: float) -> Value:
    return m.add(m.mul(norm, x), g) if norm else g


def _scalar_r(ctx: ImportContext, m: _Math) -> Value:
    r = ctx.input(0)
    return m.cast(r) if r.dtype.np != m.np else r


@onnx_op("Adagrad", domain=TRAINING)
def _adagrad(ctx: ImportContext, node):
    m = _Math(ctx, ctx.input(2).dtype)
    decay, eps = float(ctx.attr("decay_factor", 0.0)), float(ctx.attr("epsilon", 1e-6))
    norm = float(ctx.attr("norm_coefficient", 0.0))
    t = m.cast(ctx.input(1))
    r = m.div(_scalar_r(ctx, m), m.add(1.0, m.mul(t, decay)))  # R / (1 + T * decay)
    xs, hs = [], []
    for x, g, h in _groups(ctx, node, 3):
        gr = _regularized(m, x, g, norm)
        h_new = m.add(h, m.mul(gr, gr))
        xs.append(m.sub(x, m.div(m.mul(r, gr), m.add(m.sqrt(h_new), eps))))
        hs.append(h_new)
    return xs + hs


@onnx_op("Momentum", domain=TRAINING)
def _momentum(ctx: ImportContext, node):
    m = _Math(ctx, ctx.input(2).dtype)
    alpha, beta = float(ctx.attr("alpha")), float(ctx.attr("beta"))
    norm, mode = float(ctx.attr("norm_coefficient")), ctx.attr("mode", "standard")
    if mode not in ("standard", "nesterov"):
        raise ctx.error(f"mode must be 'standard' or 'nesterov', got {mode!r}")
    r = _scalar_r(ctx, m)
    # The gradient's coefficient is 1 at the first step (T == 0), beta afterwards.
    b = ctx.add1("Where", [m.step_positive(ctx.input(1)), m.c(beta), m.c(1.0)])
    xs, vs = [], []
    for x, g, v in _groups(ctx, node, 3):
        gr = _regularized(m, x, g, norm)
        v_new = m.add(m.mul(alpha, v), m.mul(b, gr))
        step = v_new if mode == "standard" else m.add(gr, m.mul(alpha, v_new))
        xs.append(m.sub(x, m.mul(r, step)))
        vs.append(v_new)
    return xs + vs


@onnx_op("Adam", domain=TRAINING)
def _adam(ctx: ImportContext, node):
    m = _Math(ctx, ctx.input(2).dtype)
    alpha, beta = float(ctx.attr("alpha", 0.9)), float(ctx.attr("beta", 0.999))
    eps, norm = float(ctx.attr("epsilon", 1e-6)), float(ctx.attr("norm_coefficient", 0.0))
    post = float(ctx.attr("norm_coefficient_post", 0.0))
    r, t = _scalar_r(ctx, m), ctx.input(1)
    tf = m.cast(t)
    # Bias correction R * sqrt(1 - beta^T) / (1 - alpha^T) from the second step on.
    corrected = m.div(m.mul(r, m.sqrt(m.sub(1.0, m.op("Pow", m.c(beta), tf)))),
                      m.sub(1.0, m.op("Pow", m.c(alpha), tf)))
    r_adj = ctx.add1("Where", [m.step_positive(t), corrected, r])
    xs, vs, hs = [], [], []
    for x, g, v, h in _groups(ctx, node, 4):
        gr = _regularized(m, x, g, norm)
        v_new = m.add(m.mul(alpha, v), m.mul(1.0 - alpha, gr))
        h_new = m.add(m.mul(beta, h), m.mul(1.0 - beta, m.mul(gr, gr)))
        x_new = m.sub(x, m.mul(r_adj, m.div(v_new, m.add(m.sqrt(h_new), eps))))
        xs.append(m.mul(1.0 - post, x_new) if post else x_new)
        vs.append(v_new)
        hs.append(h_new)
    return xs + vs + hs


def batchnorm_training(ctx: ImportContext, node) -> list[Value | None]:
    """BatchNormalization with batch statistics: Y from the batch's mean and (population)
    variance, and the running mean/var updated with ``momentum``. Opsets 9-13 (training told
    by the extra outputs) also give the saved batch mean and variance."""
    x, scale, bias, mean, var = (ctx.input(k) for k in range(5))
    if x.type.rank < 2:
        raise ctx.error(f"BatchNormalization input must have rank >= 2, got {x.type}")
    m = _Math(ctx, x.dtype)
    momentum, eps = float(ctx.attr("momentum", 0.9)), float(ctx.attr("epsilon", 1e-5))
    axes = (0,) + tuple(range(2, x.type.rank))
    channel_shape = (x.shape[1],) + (1,) * (x.type.rank - 2)
    batch_mean = ctx.add1("ReduceMean", [x], {"axes": axes, "keepdims": 1})
    centered = m.sub(x, batch_mean)
    batch_var = ctx.add1("ReduceMean", [m.mul(centered, centered)],
                         {"axes": axes, "keepdims": 1})
    inv = m.div(1.0, m.sqrt(m.add(batch_var, eps)))
    s = ctx.add1("Reshape", [scale], {"shape": channel_shape})
    b = ctx.add1("Reshape", [bias], {"shape": channel_shape})
    y = m.add(m.mul(m.mul(centered, inv), s), b)
    flat_mean = ctx.add1("Reshape", [batch_mean], {"shape": (x.shape[1],)})
    flat_var = ctx.add1("Reshape", [batch_var], {"shape": (x.shape[1],)})
    run_mean = m.add(m.mul(mean, momentum), m.mul(flat_mean, 1.0 - momentum))
    run_var = m.add(m.mul(var, momentum), m.mul(flat_var, 1.0 - momentum))
    return [y, run_mean, run_var, flat_mean, flat_var]
