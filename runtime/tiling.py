"""Batch tiling: one compile serves every batch size of a dynamic-batch model.

When inputs share a symbolic leading dim (the batch), the model is compiled at a batch tile T
(``batch_tile``, or chosen from the batch-1 program's working set: ``auto_tile``) and at batch 1 (both in one compile, both kept in the artifact). If the program at T is proven
batch-separable (runtime/batch_proof.py) and no output uses the batch size as a value
(frontend/batch_values.py), a run at batch B executes the T program over B // T contiguous
slices of the feeds and outputs, zero-copy (the tiles are pointer offsets into the caller's
arrays; each thread's arena is reused across tiles), and the remainder by the batch-1
program or as one padded tile. Otherwise the session falls back to compiling per input shape, and says why.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from onnxc.runtime.plan import TensorSpec

MIN_TILE, MAX_TILE = 8, 64  # the automatic tile's range (powers of two)
TILE_BYTES = 16 << 20  # the automatic tile's working-set budget


@dataclass
class Tiling:
    """How one set of non-batch shapes runs by tiles."""

    tile: int
    batched_inputs: list[int]  # input positions whose dim 0 is the batch
    out_rows: list[int]  # per output: its dim 0 is batch x rows
    key_tile: tuple  # the session's executable keys of the tile and batch-1 programs
    key_one: tuple
    # Seconds per run of each program, measured once, on the first run with a remainder (0:
    # not yet). They pick how a remainder of r < tile samples runs from then on: r batch-1
    # runs, or one padded tile.
    cost_tile: float = 0.0
    cost_one: float = 0.0
    max_batch: int | None = None  # the largest batch the memory limit allows (worked out once)

    def to_json(self) -> dict:
        return {"tile": self.tile, "batched_inputs": self.batched_inputs,
                "out_rows": self.out_rows, "key_tile": self.key_tile, "key_one": self.key_one,
                "cost_tile": self.cost_tile, "cost_one": self.cost_one}

    def pads(self, remainder: int) -> bool:
        """Whether a remainder runs as one padded tile (cheaper than its batch-1 runs)."""
        return 0 < self.cost_tile < remainder * self.cost_one


def batch_symbol(inputs: Sequence[TensorSpec]) -> tuple[str | None, str]:
    """(the batch symbol, "") or (None, why the inputs have none to tile over)."""
    containers = [s.name for s in inputs if getattr(s, "kind", "tensor") != "tensor"]
    if containers:
        return None, (f"input(s) {containers} are sequences or optionals; batch tiling "
                      f"covers tensor inputs only")
    leading = {s.shape[0] for s in inputs if s.shape and isinstance(s.shape[0], str)}
    if not leading:
        return None, "no input has a symbolic leading (batch) dim"
    if len(leading) > 1:
        return None, (f"the inputs' leading dims are different symbols {sorted(leading)}; "
                      f"batch tiling needs one batch dim shared by the inputs")
    symbol = next(iter(leading))
    for s in inputs:
        if symbol in s.shape[1:]:
            return None, (f"input {s.name!r} has the batch dim {symbol!r} off its leading "
                          f"axis (shape {list(s.shape)})")
    return symbol, ""


def rest_key(inputs: Sequence[TensorSpec], shapes: Sequence[tuple], symbol: str) -> tuple:
    """The feed shapes with the batch dim blanked (-1): what tile programs specialize on."""
    return tuple(tuple(-1 if k == 0 and s.shape and s.shape[0] == symbol else d
                       for k, d in enumerate(shape)) for s, shape in zip(inputs, shapes))


def at_batch(rest: tuple, batch: int) -> tuple:
    return tuple(tuple(batch if d == -1 else d for d in shape) for shape in rest)


def check_outputs(exe_tile, exe_one, tile: int) -> tuple[list[int] | None, str]:
    """Per output, its rows per sample, when the two programs' outputs scale with the batch
    (dim 0 = batch x rows, the same other dims); else why not."""
    rows = []
    for a, b in zip(exe_tile.outputs, exe_one.outputs):
        sa, sb = tuple(a.shape), tuple(b.shape)
        if not sa or not sb or sa[1:] != sb[1:] or sa[0] != tile * sb[0] or a.dtype != b.dtype:
            return None, (f"output {a.name!r} is {list(sa)} at batch {tile} but {list(sb)} at "
                          f"batch 1: it does not scale with the batch")
        rows.append(int(sb[0]))
    if [s.name for s in exe_tile.inputs] != [s.name for s in exe_one.inputs]:
        return None, "the batch-1 and tile programs take different inputs"
    return rows, ""


def auto_tile(exe_one) -> int:
    """The tile for a model whose batch-1 program is ``exe_one``: the largest power of two in
    [MIN_TILE, MAX_TILE] whose working set (arena, feeds and outputs, per sample times the
    tile) fits TILE_BYTES. Big tiles amortise the weights' trip through the caches (an MLP
    at 64 rows runs near a batch-64 specialization's speed); the cap keeps a large CNN's
    arena near what a run of a few images needs."""
    per_sample = exe_one.arena_bytes + sum(
        int(np.prod(s.shape, dtype=np.int64)) * np.dtype(s.dtype).itemsize
        for s in list(exe_one.inputs) + list(exe_one.outputs))
    tile = MAX_TILE
    while tile > MIN_TILE and tile * per_sample > TILE_BYTES:
        tile //= 2
    return tile


def build_tiles(proto, inputs: Sequence[TensorSpec], rest: tuple, symbol: str, options,
                tile: int | None = None):
    """(Tiling, {key: Executable}, graph, "") or (None, {key: Executable}, None, why not).

    The batch-1 program is compiled first (its working set sizes an automatic tile); when
    tiling is refused it is still returned: it is the batch-1 specialization."""
    from onnxc.frontend.batch_values import batch_value_use
    from onnxc.ir.errors import InputValueNeeded
    from onnxc.runtime.batch_proof import prove_batch_separable
    from onnxc.runtime.build import compile_graph, optimize_graph
    from onnxc.runtime.plan import make_plan

    others = {d for s in inputs for d in s.shape[1:] if isinstance(d, str)}
    why = batch_value_use(proto, others)
    if why:
        return None, {}, None, why
    batched = [k for k, s in enumerate(inputs) if s.shape and s.shape[0] == symbol]
    exes: dict = {}

    def optimized(batch: int):
        shapes = {s.name: shape for s, shape in zip(inputs, at_batch(rest, batch))}
        return optimize_graph(proto, shapes, options)

    try:
        exe_one = exes[at_batch(rest, 1)] = compile_graph(optimized(1), options)
        tile = tile or auto_tile(exe_one)
        graph = optimized(tile)
    except InputValueNeeded as need:
        return None, {}, None, f"input {need.input_name!r} is needed as a value at compile time"
    plan = make_plan(graph)
    names = [s.name for s in plan.inputs]
    positions = [names.index(inputs[k].name) for k in batched if inputs[k].name in names]
    why = prove_batch_separable(plan, positions, tile)
    if why:
        return None, exes, None, f"not batch-separable at batch tile {tile}: {why}"
    exe_tile = exes[at_batch(rest, tile)] = compile_graph(graph, options)
    rows, why = check_outputs(exe_tile, exe_one, tile)
    if rows is None:
        return None, exes, None, why
    names = [s.name for s in exe_tile.inputs]
    positions = sorted(names.index(inputs[k].name) for k in batched
                       if inputs[k].name in names)
    return Tiling(tile, positions, rows, at_batch(rest, tile), at_batch(rest, 1)), exes, \
        graph, ""


def measure_costs(tiling: Tiling, exe_tile, exe_one, feeds: list[np.ndarray],
                  num_threads: int, runs: int = 3) -> None:
    """Time each program (the fastest of ``runs``) on the first sample of a real batch, for
    ``Tiling.pads``. Real data, not zeros: an integer division by a zero feed would trap."""
    import time

    batched = set(tiling.batched_inputs)
    costs = []
    for exe, n in ((exe_tile, tiling.tile), (exe_one, 1)):
        part = [np.repeat(f[:1], n, axis=0) if k in batched else f for k, f in enumerate(feeds)]
        outs = [np.empty(o.shape, dtype=o.dtype) for o in exe.outputs]
        exe.run_into(part, outs, num_threads)  # warm: the arena and the caches
        best = float("inf")
        for _ in range(runs):
            start = time.perf_counter()
            exe.run_into(part, outs, num_threads)
            best = min(best, time.perf_counter() - start)
        costs.append(best)
    tiling.cost_tile, tiling.cost_one = costs


def run_tiled(tiling: Tiling, exe_tile, exe_one, feeds: list[np.ndarray], num_threads: int
              ) -> list[np.ndarray]:
    """Run a batch as tiles; ``feeds`` are validated, contiguous and in the programs' input
    order. Returns fresh output arrays of the whole batch."""
    batch = int(feeds[tiling.batched_inputs[0]].shape[0]) if tiling.batched_inputs else 0
    outs = [np.empty((batch * rows,) + tuple(o.shape[1:]), dtype=o.dtype)
            for o, rows in zip(exe_tile.outputs, tiling.out_rows)]
    batched = set(tiling.batched_inputs)
    start, tile = 0, tiling.tile
    left = batch % tile
    if left and not tiling.cost_tile:  # once, on the first run with a remainder
        measure_costs(tiling, exe_tile, exe_one, feeds, num_threads)
    if left and tiling.pads(left):
        _run_padded(tiling, exe_tile, feeds, outs, batch - left, num_threads)
        batch -= left
    while start < batch:
        exe, n = (exe_tile, tile) if batch - start >= tile else (exe_one, 1)
        part = [f[start:start + n] if k in batched else f for k, f in enumerate(feeds)]
        into = [o[start * rows:(start + n) * rows] for o, rows in zip(outs, tiling.out_rows)]
        exe.run_into(part, into, num_threads)
        start += n
    return outs


def _run_padded(tiling: Tiling, exe_tile, feeds, outs, start: int, num_threads: int) -> None:
    """The samples from ``start`` on (fewer than a tile) as one tile, padded with copies of
    the last sample (valid data: it cannot trap where the real samples do not); the padding's
    results are dropped (the proof says no sample reads another)."""
    batched = set(tiling.batched_inputs)
    part = []
    for k, f in enumerate(feeds):
        if k in batched:
            padded = np.empty((tiling.tile,) + f.shape[1:], dtype=f.dtype)
            padded[:f.shape[0] - start] = f[start:]
            padded[f.shape[0] - start:] = f[-1:]
            f = padded
        part.append(f)
    scratch = [np.empty(o.shape, dtype=o.dtype) for o in exe_tile.outputs]
    exe_tile.run_into(part, scratch, num_threads)
    for out, got, rows in zip(outs, scratch, tiling.out_rows):
        out[start * rows:] = got[:out.shape[0] - start * rows]
