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
    "copy_columns",
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
def copy_columns(dst, src, m):
    """``dst[:m] = src[:m]``, as a loop: numba's slice assignment does not vectorise."""
    for q in range(m):
        dst[q] = src[q]


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
    """Median of |w - center| over each column's rows ``lo..hi``, ``center`` being the range's
    median (:func:`median_of_range`); ``dev`` is scratch.

    Where every column has the same range (a block without missing values, before clipping)
    the middle deviations are found by merging the two sorted runs of deviations, below and
    above the median (:func:`_middle_deviation`); otherwise the deviations are sorted. Both
    pick the same values.
    """
    if _same_range(lo, hi, m):
        _middle_deviation(w, lo[0], hi[0], center, dev[0], out, m)
        return
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
def _same_range(lo, hi, m):
    """Whether the first ``m`` columns all keep the same rows."""
    differ = 0
    for q in range(m):
        differ += (lo[q] != lo[0]) | (hi[q] != hi[0])
    return differ == 0


@njit(nogil=True, cache=True)
def _middle_deviation(w, lo, hi, center, second, out, m):
    """:func:`mad` of columns that all keep rows ``lo..hi`` of sorted values around their
    medians ``center``: the deviations ``center - w`` of the rows up to the middle one and
    ``w - center`` of those after it are two ascending runs, whose ``t``-th smallest value is
    found without sorting (:func:`_kth_deviation`). ``second`` is scratch."""
    k = hi - lo
    if k <= 0:
        return
    middle = lo + (k - 1) // 2  # the last row of the lower run
    _kth_deviation(w, middle, lo, hi, (k - 1) // 2, center, out, m)
    if k % 2 == 0:
        _kth_deviation(w, middle, lo, hi, k // 2, center, second, m)
        for q in range(m):
            out[q] = (out[q] + second[q]) / 2.0


@njit(nogil=True, cache=True)
def _kth_deviation(w, middle, lo, hi, t, center, out, m):
    """The ``t``-th smallest (from 0) of each column's deviations from ``center``, the lower
    run being rows ``middle, middle - 1, ..., lo`` and the upper one rows ``middle + 1 .. hi``.

    The ``t + 1`` smallest deviations are the ``i`` smallest of the lower run and the
    ``t + 1 - i`` smallest of the upper one, for some ``i``. Taking ``i`` and ``t + 1 - i``
    values from the runs, for any ``i``, the larger of the last two taken is at least the
    ``t``-th smallest deviation, and equals it for that ``i``: so the ``t``-th smallest is the
    smallest of those maxima over every possible ``i``.
    """
    n_lower = middle - lo + 1
    n_upper = hi - middle - 1
    out[:m] = np.inf
    for i in range(max(0, t + 1 - n_upper), min(t + 1, n_lower) + 1):
        if i == 0:  # all from the upper run: its value t
            above = w[middle + 1 + t]
            for q in range(m):
                d = np.float64(above[q]) - center[q]
                out[q] = d if d < out[q] else out[q]  # noqa: FURB136 - a select: SIMD
        elif i == t + 1:  # all from the lower run: its value t
            below = w[middle - t]
            for q in range(m):
                d = center[q] - np.float64(below[q])
                out[q] = d if d < out[q] else out[q]  # noqa: FURB136
        else:  # the lower run's value i - 1 and the upper run's value t - i
            below = w[middle - i + 1]
            above = w[middle + 1 + t - i]
            for q in range(m):
                d_below = center[q] - np.float64(below[q])
                d_above = np.float64(above[q]) - center[q]
                d = d_below if d_below > d_above else d_above  # noqa: FURB136
                out[q] = d if d < out[q] else out[q]  # noqa: FURB136


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
