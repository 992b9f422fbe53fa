"""TfIdfVectorizer as a host function: n-gram counting over int or string tokens."""
from __future__ import annotations

from collections import Counter

import numpy as np

from onnxc.ir.errors import ModelError

from .host_ops import host_op


def _pool(attrs: dict) -> dict[tuple, int]:
    """n-gram (a tuple of tokens) -> output column, from the pool and its per-length starts."""
    pool = attrs.get("pool_strings") or attrs.get("pool_int64s")
    if pool is None:
        raise ModelError("TfIdfVectorizer needs pool_strings or pool_int64s",
                         op="TfIdfVectorizer")
    pool = list(pool)
    counts = list(attrs.get("ngram_counts", []))
    indexes = list(attrs.get("ngram_indexes", []))
    table, k = {}, 0
    for n, start in enumerate(counts, start=1):
        stop = counts[n] if n < len(counts) else len(pool)
        for pos in range(start, stop, n):
            if k >= len(indexes):
                raise ModelError("TfIdfVectorizer: ngram_indexes is shorter than the pool",
                                 op="TfIdfVectorizer")
            table[tuple(pool[pos:pos + n])] = int(indexes[k])
            k += 1
    return table


@host_op("TfIdfVectorizer")
def _tfidf(attrs, inputs):
    x = np.asarray(inputs[0])
    if x.ndim not in (1, 2):
        raise ModelError(f"TfIdfVectorizer takes [C] or [N, C], got shape {list(x.shape)}",
                         op="TfIdfVectorizer")
    table = _pool(attrs)
    lo, hi = int(attrs.get("min_gram_length", 1)), int(attrs.get("max_gram_length", 1))
    skips = int(attrs.get("max_skip_count", 0))
    mode = attrs.get("mode", "TF")
    width = max(attrs.get("ngram_indexes", [-1]), default=-1) + 1
    weights = np.asarray(attrs.get("weights", np.ones(width)), dtype=np.float32)
    rows = x.reshape(1, -1) if x.ndim == 1 else x
    out = np.zeros((rows.shape[0], width), dtype=np.float32)
    for r, row in enumerate(rows.tolist()):
        found: Counter = Counter()
        for n in range(lo, hi + 1):
            for skip in (range(skips + 1) if n > 1 else [0]):
                step = skip + 1
                for i in range(len(row) - (n - 1) * step):
                    col = table.get(tuple(row[i:i + (n - 1) * step + 1:step]))
                    if col is not None:
                        found[col] += 1
        for col, c in found.items():
            out[r, col] = {"TF": c, "IDF": weights[col], "TFIDF": c * weights[col]}[mode]
    return [out.reshape(width) if x.ndim == 1 else out]
