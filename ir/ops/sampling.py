"""GridSample: sample the input at the points a grid gives (nearest, linear or cubic; zeros,
border or reflection padding), as onnx's reference does it.

Per spatial dimension d there are three small stages over the grid points: the source
coordinate (denormalized, rounded for nearest, clamped or reflected into range), the integer
indices of its taps (1, 2 or 4; each again clamped or reflected per padding mode) and their
weights. The output sums, over the tensor product of the taps, the weights' product times the
input read at the tap indices (a read outside the input gives 0: zeros padding).
"""
from __future__ import annotations

from ..dtypes import DType
from ..errors import ModelError
from ..kernel import IndexValue, Ix, Load, call, cast, const, ix_load, reduce, select, stage
from ..types import TensorType
from .registry import OpDef, register

MODES = {"nearest": (0,), "linear": (0, 1), "cubic": (-1, 0, 1, 2)}
PADDING = ("zeros", "border", "reflection")
CUBIC_A = -0.75


def _infer(types, attrs, consts):
    x, grid = types
    nd = x.rank - 2
    if nd < 1 or grid.rank != nd + 2 or grid.shape[-1] != nd or grid.shape[0] != x.shape[0]:
        raise ModelError(f"GridSample needs X (N, C, D1..Dn) and grid (N, H1..Hn, n), got "
                         f"{x} and {grid}")
    if attrs.get("mode", "linear") not in MODES or \
            attrs.get("padding_mode", "zeros") not in PADDING:
        raise ModelError(f"GridSample mode must be one of {sorted(MODES)} and padding_mode "
                         f"one of {PADDING}")
    return [TensorType(x.dtype, (x.shape[0], x.shape[1]) + tuple(grid.shape[1:-1]))]


def _reflect(v, lo: float, hi: float):
    """Fold v into [lo, hi] by reflecting at the borders (the reference's _gs_reflect)."""
    k = lambda value: const(value, v.dtype)  # noqa: E731
    span = k(hi - lo)
    below, above = call("lt", v, k(lo)), call("gt", v, k(hi))
    dx = select(below, k(lo) - v, v - k(hi))
    n = call("floor", dx / span)
    r = dx - n * span
    even = call("eq", call("mod", n, k(2)), k(0))
    from_below = select(even, k(lo) + r, k(hi) - r)
    from_above = select(even, k(hi) - r, k(lo) + r)
    return select(below, from_below, select(above, from_above, v))


def _cubic(r, t: int):
    """Keys' cubic weight of tap t (-1..2) at fractional offset r."""
    a = CUBIC_A
    x = {-1: r + 1, 0: r, 1: 1 - r, 2: 2 - r}[t]
    c = lambda value: const(value, r.dtype)  # noqa: E731
    if t in (0, 1):
        return ((c(a + 2) * x - c(a + 3)) * x * x) + c(1)
    return ((c(a) * x - c(5 * a)) * x + c(8 * a)) * x - c(4 * a)


def _compute(ins, outs, attrs):
    x, grid, out = ins[0], ins[1], outs[0]
    nd = len(x.shape) - 2
    mode = attrs.get("mode", "linear")
    padding = attrs.get("padding_mode", "zeros")
    align = bool(attrs.get("align_corners", 0))
    taps = MODES[mode]
    pts = tuple(grid.shape[:-1])  # (N, H1..Hn)
    dt = x.dtype
    stages, idx_names, w_names = [], [], []
    for d in range(nd):
        size = x.shape[2 + d]
        lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
        k = lambda value: const(value, dt)  # noqa: E731
        coord = f"{out.name}__coord{d}"

        def coord_body(*p, d=d, size=size, lo=lo, hi=hi):
            g = cast(grid[tuple(p) + (nd - 1 - d,)], dt)  # the grid's last axis is (x, y, z)
            v = (g + k(1)) / k(2) * k(size - 1) if align else ((g + k(1)) * k(size) - k(1)) / k(2)
            if mode == "nearest":
                v = call("round", v)
            outside = call("or", call("lt", v, k(lo)), call("gt", v, k(hi)))
            if padding == "border":
                v = select(outside, call("min", call("max", v, k(0)), k(size - 1)), v)
            elif padding == "reflection":
                v = _reflect(v, lo, hi)
            return v

        stages.append(stage(coord, pts, coord_body))
        c_at = lambda p, coord=coord: Load(coord, tuple(p), dt)  # noqa: E731
        idx, wts = f"{out.name}__index{d}", f"{out.name}__weight{d}"

        def idx_body(*v, c_at=c_at, size=size, lo=lo, hi=hi):
            p, t = v[:-1], v[-1]
            base = call("floor", c_at(p)) if mode != "nearest" else c_at(p)
            tap = base + cast(_tap_offset(t, taps), dt)
            if padding == "border":
                tap = call("min", call("max", tap, k(0)), k(size - 1))
            elif padding == "reflection":
                tap = _reflect(tap, lo, hi)
            return cast(tap, DType.int64)  # truncation, as the reference's int()

        stages.append(stage(idx, pts + (len(taps),), idx_body))
        idx_names.append(idx)
        if mode != "nearest":
            def w_body(*v, c_at=c_at):
                p, t = v[:-1], v[-1]
                r = c_at(p) - call("floor", c_at(p))
                weights = [_cubic(r, tt) for tt in taps] if mode == "cubic" else [k(1) - r, r]
                expr = weights[-1]
                for j in range(len(weights) - 2, -1, -1):
                    expr = select(call("eq", _iv(t), const(j, DType.int64)), weights[j], expr)
                return expr

            stages.append(stage(wts, pts + (len(taps),), w_body))
            w_names.append(wts)

    def body(n, c, *s):
        p = (n,) + tuple(s)

        def term(*t):
            t = tuple(Ix.lift(i) for i in t)
            index = [n, c] + [ix_load(Load(idx_names[d], p + (t[d],), DType.int64))
                              for d in range(nd)]
            value = x.padded(index, 0.0)
            for d in range(len(w_names)):
                value = value * Load(w_names[d], p + (t[d],), dt)
            return value

        if mode == "nearest":
            return term(*([0] * nd))
        return reduce("sum", [len(taps)] * nd, term)

    return stages + [stage(out.name, out.shape, body)]


def _iv(ix):
    return IndexValue(Ix.lift(ix))


def _tap_offset(t, taps):
    """The offset of tap variable t: taps are consecutive integers from taps[0]."""
    return _iv(t + taps[0]) if taps[0] else _iv(t)


register(OpDef("GridSample", _infer, _compute, kind="opaque",
               doc="attrs mode (nearest/linear/cubic), padding_mode, align_corners"))


# -- RoiAlign (a fixed sampling ratio) --------------------------------------------------------------
def _roi_infer(types, attrs, consts):
    x, rois, idx = types
    if x.rank != 4 or rois.rank != 2 or rois.shape[1] != 4 or idx.shape != (rois.shape[0],):
        raise ModelError(f"RoiAlign needs X (N, C, H, W), rois (R, 4) and batch_indices (R,), "
                         f"got {x}, {rois}, {idx}")
    if int(attrs["sampling_ratio"]) < 1:
        raise ModelError("RoiAlign needs sampling_ratio >= 1 here")
    return [TensorType(x.dtype, (rois.shape[0], x.shape[1], int(attrs["output_height"]),
                                 int(attrs["output_width"])))]


def _roi_compute(ins, outs, attrs):
    """Per axis, the sample coordinates of every (roi, bin, sample) give two tap indices and
    two weights (zero outside [-1, size]); the output averages (or maxes) the bilinear
    samples, as onnx's reference does."""
    x, rois, batch, out = ins[0], ins[1], ins[2], outs[0]
    g = int(attrs["sampling_ratio"])
    scale = float(attrs.get("spatial_scale", 1.0))
    half = attrs.get("coordinate_transformation_mode", "half_pixel") == "half_pixel"
    dt = x.dtype
    k = lambda value: const(value, dt)  # noqa: E731
    stages, taps, weights = [], [], []
    for axis, (col, size, pooled) in enumerate(((1, x.shape[2], out.shape[2]),
                                                (0, x.shape[3], out.shape[3]))):
        def coord(r, p, s, col=col, pooled=pooled):
            start = cast(rois[r, col], dt) * k(scale) - k(0.5 if half else 0.0)
            end = cast(rois[r, col + 2], dt) * k(scale) - k(0.5 if half else 0.0)
            length = end - start if half else call("max", end - start, k(1.0))
            step = length / k(pooled)
            return start + cast(_iv(p), dt) * step + (cast(_iv(s), dt) + k(0.5)) * step / k(g)

        def clamped(r, p, s, size=size, coord=coord):
            v = call("max", coord(r, p, s), k(0))
            last = call("ge", call("floor", v), k(size - 1))
            return select(last, k(size - 1), v), last

        def tap_body(r, p, s, t, size=size, clamped=clamped):
            v, last = clamped(r, p, s)
            low = cast(call("floor", v), DType.int64)
            high = select(last, low, low + const(1, DType.int64))
            return select(call("eq", _iv(t), const(0, DType.int64)), low, high)

        def weight_body(r, p, s, t, size=size, clamped=clamped, coord=coord):
            raw = coord(r, p, s)
            valid = call("and", call("ge", raw, k(-1.0)), call("le", raw, k(size)))
            v, _ = clamped(r, p, s)
            frac = v - call("floor", v)
            w = select(call("eq", _iv(t), const(0, DType.int64)), k(1) - frac, frac)
            return select(valid, w, k(0))

        shape = (rois.shape[0], pooled, g, 2)
        tap, wt = f"{out.name}__tap{axis}", f"{out.name}__w{axis}"
        stages += [stage(tap, shape, tap_body), stage(wt, shape, weight_body)]
        taps.append(tap)
        weights.append(wt)
    mode = attrs.get("mode", "avg")

    def body(r, c, ph, pw):
        b = ix_load(batch[r])

        def corner(sy, sx, ty, tx):
            ty, tx = Ix.lift(ty), Ix.lift(tx)
            yy = ix_load(Load(taps[0], (r, ph, sy, ty), DType.int64))
            xx = ix_load(Load(taps[1], (r, pw, sx, tx), DType.int64))
            w = Load(weights[0], (r, ph, sy, ty), dt) * Load(weights[1], (r, pw, sx, tx), dt)
            return w * x[b, c, yy, xx]

        if mode == "avg":
            total = reduce("sum", [g, g, 2, 2], corner)
            return total / k(g * g)
        return reduce("max", [g, g], lambda sy, sx: call("max", call(
            "max", corner(sy, sx, 0, 0), corner(sy, sx, 0, 1)), call(
            "max", corner(sy, sx, 1, 0), corner(sy, sx, 1, 1))))

    return stages + [stage(out.name, out.shape, body)]


register(OpDef("RoiAlign", _roi_infer, _roi_compute, kind="opaque",
               doc="inputs X, rois (x1, y1, x2, y2), batch_indices; attrs output_height, "
                   "output_width, sampling_ratio (>= 1), spatial_scale, mode, "
                   "coordinate_transformation_mode"))


# -- Resample: one axis of a separable resize -----------------------------------------------------
def _resample_infer(types, attrs, consts):
    x, idx, w = types
    axis = int(attrs["axis"])
    if idx.rank != 2 or w.shape != idx.shape or idx.dtype != DType.int64 or w.dtype != x.dtype:
        raise ModelError(f"Resample needs int64 indices and weights of one [m, taps] shape, got "
                         f"{idx} and {w} for {x}")
    shape = list(x.shape)
    shape[axis] = idx.shape[0]
    return [TensorType(x.dtype, tuple(shape))]


def _resample_compute(ins, outs, attrs):
    """out[.., o, ..] = sum over taps t of w[o, t] * x[.., idx[o, t], ..] along ``axis``."""
    x, idx, w, out = ins[0], ins[1], ins[2], outs[0]
    axis = int(attrs["axis"])

    def body(*v):
        def term(t):
            src = ix_load(idx[v[axis], t])
            return w[v[axis], t] * x[tuple(src if k == axis else i for k, i in enumerate(v))]

        return reduce("sum", [idx.shape[1]], term)

    return [stage(out.name, out.shape, body)]


register(OpDef("Resample", _resample_infer, _resample_compute, kind="reduction",
               doc="inputs x, int64 indices [m, taps], weights [m, taps]; attr axis"))
