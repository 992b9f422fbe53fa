"""Per-shape choice of the packed GEMM's micro-kernel tile.

The packed schedule computes ``MR`` rows (output channels) by ``NR`` vectors of columns (output
pixels) per micro-kernel call; columns past the last one are computed and dropped. The models'
late layers have few columns (14x14 = 196, 13x13 = 169, 7x7 = 49 pixels), where a 2-vector tile
(32 columns) wastes up to a quarter of its FMAs on padding: 49 columns (48 once gemm_tail takes
the last one) pad to 64 with 32-wide tiles but fit one 48-wide tile exactly; 196 (192) fit three
64-wide tiles; 169 pads to 176 with 16-wide ones. The choice weighs each tile's padded work by
how fast its micro-kernel runs on full tiles (TILES, measured with bench.gemm_shapes).
"""
from __future__ import annotations

# (MR, NR) -> (relative time per useful FMA on full tiles, largest reduction it suits), from
# bench.gemm_shapes on AVX-512 (Zen 4): 4x4, 6x3 and 6x2 run alike on full tiles (6x2 a little
# behind); 12x1 issues a broadcast per FMA and, past K = 512, its 12 rows of ``a`` no longer
# stay in L1 (79 against 105 GFLOP/s at K = 1024). All stay within the 32 vector registers
# (accumulators + NR panel loads + a broadcast). Listed in order of preference on ties.
TILES = {(4, 4): (1.0, None), (6, 3): (1.0, None), (6, 2): (1.02, None), (12, 1): (1.04, 512)}
FORCE: tuple[int, int] | None = None  # bench.gemm_shapes pins a tile to measure it
SPLIT_COLUMNS = True  # work units split columns before rows (bench.ab_gemm switches it off)


def padded(n: int, step: int) -> int:
    return -(-n // step) * step


def tile_cost(p: int, j: int, vw: int, tile: tuple[int, int]) -> float:
    """Time of the whole product in units of full-tile FMAs, padding included. The last row
    tile runs a kernel for exactly ``p % MR`` rows, at about half speed per row."""
    mr, nr = tile
    rows = p + (mr - p % mr) / 2 if p % mr else p
    return TILES[tile][0] * rows * padded(j, nr * vw)


def choose_tile(p: int, j: int, vw: int, k: int, default: tuple[int, int]) -> tuple[int, int]:
    """The cheapest tile for ``p`` rows by ``j`` columns over a reduction of ``k``."""
    if FORCE is not None:
        return FORCE
    if vw < 16:  # fewer registers (AVX2: 16): keep the tile the schedule was written for
        return default
    fits = [t for t, (_, kmax) in TILES.items() if p >= t[0] and (kmax is None or k <= kmax)]
    if not fits:
        return default
    order = list(TILES)
    return min(fits, key=lambda t: (tile_cost(p, j, vw, t), order.index(t)))
