"""Random feeds for commands that run a model without data (run --random-inputs, bench,
bisect): one rule per element kind, so they all feed alike."""
from __future__ import annotations

from typing import Sequence

import ml_dtypes
import numpy as np


def random_array(rng: np.random.Generator, shape: Sequence[int], dtype,
                 int_high: int = 10) -> np.ndarray:
    """bool: fair coin; integers: uniform in [0, int_high); floats: standard normal."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer) or dtype.name in ("int4", "uint4", "int2", "uint2"):
        high = min(int_high, int(ml_dtypes.iinfo(dtype).max) + 1)
        return rng.integers(0, high, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)
