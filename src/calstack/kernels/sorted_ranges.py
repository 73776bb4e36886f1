"""Sorted ranges: the sorting network, and statistics of each column's kept range of sorted values.

A block's values sit in an (N, block) array, sorted along N; each pixel (column) keeps the
rows ``lo..hi``. Every function here works on all columns of a block at once, branch-free
where it can, so that the compiler turns the loops into SIMD.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .jit import njit

__all__ = [
    "clip_to_bounds",
    "mad",
    "median_of_range",
    "moments",
    "sort_columns",
    "sorting_network",
]


@functools.cache
def sorting_network(n: int) -> np.ndarray:
    """Comparator pairs ``(i, j)``, i < j, of Batcher's odd-even merge sort for ``n`` inputs.

    Comparators of the next power of two that touch an index >= n are dropped, which is exact
    when missing values are +inf (they already sit at the end).
    """
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(pairs, dtype=np.int32).reshape(-1, 2)


@njit(nogil=True, cache=True)
def sort_columns(w, pairs, m):
    """Sort each of the first ``m`` columns of ``w`` (rows = values) with the network."""
    for c in range(pairs.shape[0]):
        a = w[pairs[c, 0]]
        b = w[pairs[c, 1]]
        for q in range(m):
            x = a[q]
            y = b[q]
            # one compare, two selects: what the compiler turns into SIMD min/max
            a[q] = x if x < y else y  # noqa: FURB136
            b[q] = y if x < y else x  # noqa: FURB136


@njit(nogil=True, cache=True)
def median_of_range(w, lo, hi, out, m):
    for q in range(m):
        k = hi[q] - lo[q]
        if k > 0:  # in float64: w may be float32
            out[q] = (np.float64(w[lo[q] + (k - 1) // 2, q]) + np.float64(w[lo[q] + k // 2, q])) / 2.0


@njit(nogil=True, cache=True)
def moments(w, lo, hi, total, mean, std, m):
    """Sum, mean and population std (two passes) of each column's rows ``lo..hi``."""
    n_rows = w.shape[0]
    total[:m] = 0.0
    std[:m] = 0.0
    for r in range(n_rows):
        row = w[r]
        for q in range(m):
            inside = (r >= lo[q]) & (r < hi[q])
            total[q] += row[q] if inside else 0.0
    for q in range(m):
        k = hi[q] - lo[q]
        mean[q] = total[q] / k if k > 0 else 0.0
    for r in range(n_rows):
        row = w[r]
        for q in range(m):
            inside = (r >= lo[q]) & (r < hi[q])
            d = row[q] - mean[q]
            std[q] += d * d if inside else 0.0
    for q in range(m):
        k = hi[q] - lo[q]
        std[q] = math.sqrt(std[q] / k) if k > 0 else 0.0


@njit(nogil=True, cache=True)
def mad(w, lo, hi, center, dev, pairs, out, m):
    """Median of |w - center| over each column's rows ``lo..hi``; ``dev`` is scratch."""
    n_rows = w.shape[0]
    for r in range(n_rows):
        row = w[r]
        drow = dev[r]
        for q in range(m):
            inside = (r >= lo[q]) & (r < hi[q])
            drow[q] = abs(row[q] - center[q]) if inside else np.inf
    sort_columns(dev, pairs, m)
    for q in range(m):
        k = hi[q] - lo[q]
        if k > 0:
            out[q] = (dev[(k - 1) // 2, q] + dev[k // 2, q]) / 2.0


@njit(nogil=True, cache=True)
def clip_to_bounds(w, lo, hi, lower, upper, new_lo, new_hi, m):
    """Narrow ``[lo, hi)`` of sorted columns to the values inside ``[lower, upper]``, into
    ``new_lo``/``new_hi`` (which must not be ``lo``/``hi``)."""
    n_rows = w.shape[0]
    new_lo[:m] = 0
    new_hi[:m] = 0
    for r in range(n_rows):
        row = w[r]
        for q in range(m):
            new_lo[q] += row[q] < lower[q]
            new_hi[q] += row[q] <= upper[q]
    for q in range(m):
        a = max(lo[q], new_lo[q])
        b = min(hi[q], new_hi[q])
        new_lo[q] = a
        new_hi[q] = max(a, b)
