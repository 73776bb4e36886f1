"""Numba kernels: combine a stack of N frames, pixel by pixel, with rejection.

The kernel works on blocks of pixels. A block's values are gathered into an (N, block) scratch
array (in the stack's dtype: sorting is exact; all arithmetic is float64) with missing values (NaN, Inf) replaced by +inf, and sorted along N by a Batcher
odd-even merge sorting network applied to all pixels of the block at once: branch-free
compare-exchanges over contiguous rows, which the compiler turns into SIMD min/max. Every
rejection step then only moves each pixel's kept range ``[lo, hi)`` of sorted values (extrema,
thresholds and sigma clipping all reject from the ends), computed by vectorised counting
passes; medians are gathers, and the median absolute deviation sorts the deviations with the
same network.

The kernel is compiled once per stack dtype and cached on disk (``cache=True``); it releases the
GIL and runs in parallel over groups of blocks. :mod:`calstack.reference` holds the pure-NumPy
twin that the tests compare it with.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit, prange

__all__ = ["combine_stack", "sorting_network", "MAD_TO_STD"]

#: Scale from the median absolute deviation to the standard deviation of a normal distribution
#: (astropy's ``mad_std`` constant).
MAD_TO_STD = 1.482602218505602

_BLOCK = 256  # pixels sorted together
_GROUPS = 64  # parallel work items (each allocates its scratch once)
_AVERAGE, _MEDIAN, _SUM = 0, 1, 2


@functools.lru_cache(maxsize=None)
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
def _sort_columns(w, pairs, m):
    """Sort each of the first ``m`` columns of ``w`` (rows = values) with the network."""
    for c in range(pairs.shape[0]):
        a = w[pairs[c, 0]]
        b = w[pairs[c, 1]]
        for q in range(m):
            x = a[q]
            y = b[q]
            a[q] = x if x < y else y
            b[q] = y if x < y else x


@njit(nogil=True, cache=True)
def _median_of_range(w, lo, hi, out, m):
    for q in range(m):
        k = hi[q] - lo[q]
        if k > 0:  # in float64: w may be float32
            out[q] = (np.float64(w[lo[q] + (k - 1) // 2, q]) + np.float64(w[lo[q] + k // 2, q])) / 2.0


@njit(nogil=True, cache=True)
def _moments(w, lo, hi, total, mean, std, m):
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
def _mad(w, lo, hi, center, dev, pairs, out, m):
    """Median of |w - center| over each column's rows ``lo..hi``; ``dev`` is scratch."""
    n_rows = w.shape[0]
    for r in range(n_rows):
        row = w[r]
        drow = dev[r]
        for q in range(m):
            inside = (r >= lo[q]) & (r < hi[q])
            drow[q] = abs(row[q] - center[q]) if inside else np.inf
    _sort_columns(dev, pairs, m)
    for q in range(m):
        k = hi[q] - lo[q]
        if k > 0:
            out[q] = (dev[(k - 1) // 2, q] + dev[k // 2, q]) / 2.0


@njit(nogil=True, cache=True)
def _clip_to_bounds(w, lo, hi, lower, upper, new_lo, new_hi, m):
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


@njit(parallel=True, nogil=True, cache=True)
def combine_stack(
    stack,
    out_data,
    out_unc,
    out_count,
    pairs,
    method,
    nlow,
    nhigh,
    min_clip,
    max_clip,
    sigma_clip,
    sigma_lower,
    sigma_upper,
    cen_median,
    std_mad,
    maxiters,
):
    """Combine ``stack`` (N, P) into ``out_data``, ``out_unc``, ``out_count`` (each P).

    Non-finite values are missing. The steps run in ccdproc's order: drop the ``nlow`` lowest
    and ``nhigh`` highest values, drop values below ``min_clip`` or above ``max_clip``, sigma
    clip (``maxiters`` passes at most; as in ``astropy.stats.sigma_clip`` the last bounds
    decide), then combine with ``method`` (0 average, 1 median, 2 sum). The uncertainty is
    std/sqrt(n) for the average, mad_std/sqrt(n) for the median and std*sqrt(n) for the sum
    (ccdproc's definitions); a pixel with nothing kept gets NaN, NaN, 0. ``pairs`` is
    ``sorting_network(N)``.

    Returns
    -------
    int
        The number of finite input values that were rejected.
    """
    n_frames, n_pix = stack.shape
    n_blocks = (n_pix + _BLOCK - 1) // _BLOCK
    n_groups = min(_GROUPS, n_blocks)
    rejected = np.zeros(n_groups, np.int64)
    thresholds = min_clip > -np.inf or max_clip < np.inf
    for g in prange(n_groups):
        w = np.empty((n_frames, _BLOCK), stack.dtype)  # sorting is exact in the input dtype
        dev = np.empty((n_frames, _BLOCK), np.float64)
        n = np.empty(_BLOCK, np.int64)
        lo = np.empty(_BLOCK, np.int64)
        hi = np.empty(_BLOCK, np.int64)
        cur_lo = np.empty(_BLOCK, np.int64)
        cur_hi = np.empty(_BLOCK, np.int64)
        new_lo = np.empty(_BLOCK, np.int64)
        new_hi = np.empty(_BLOCK, np.int64)
        lower = np.empty(_BLOCK, np.float64)
        upper = np.empty(_BLOCK, np.float64)
        center = np.empty(_BLOCK, np.float64)
        spread = np.empty(_BLOCK, np.float64)
        total = np.empty(_BLOCK, np.float64)
        mean = np.empty(_BLOCK, np.float64)
        std = np.empty(_BLOCK, np.float64)
        n_rejected = 0
        for blk in range(g, n_blocks, n_groups):
            p0 = blk * _BLOCK
            m = min(_BLOCK, n_pix - p0)
            # gather; missing -> +inf, which the sort puts last
            n[:m] = 0
            for i in range(n_frames):
                src = stack[i, p0 : p0 + m]
                row = w[i]
                for q in range(m):
                    x = src[q]
                    ok = (x - x) == 0.0  # finite; unlike math.isfinite this vectorises
                    row[q] = x if ok else np.inf
                    n[q] += ok
            _sort_columns(w, pairs, m)
            # extrema, then thresholds
            for q in range(m):
                lo[q] = min(nlow, n[q])
                hi[q] = max(n[q] - nhigh, lo[q])
                lower[q] = min_clip
                upper[q] = max_clip
            if thresholds:
                _clip_to_bounds(w, lo, hi, lower, upper, new_lo, new_hi, m)
                lo[:m] = new_lo[:m]
                hi[:m] = new_hi[:m]
            if sigma_clip:
                cur_lo[:m] = lo[:m]
                cur_hi[:m] = hi[:m]
                lower[:m] = -np.inf
                upper[:m] = np.inf
                passes = 0
                for _ in range(maxiters):
                    passes += 1
                    if cen_median or std_mad:
                        _median_of_range(w, cur_lo, cur_hi, center, m)
                    if not (cen_median and std_mad):
                        _moments(w, cur_lo, cur_hi, total, mean, std, m)
                    if std_mad:
                        _mad(w, cur_lo, cur_hi, center, dev, pairs, spread, m)
                        for q in range(m):
                            spread[q] *= MAD_TO_STD
                    else:
                        spread[:m] = std[:m]
                    if not cen_median:
                        center[:m] = mean[:m]
                    for q in range(m):
                        if cur_hi[q] > cur_lo[q]:
                            lower[q] = center[q] - spread[q] * sigma_lower
                            upper[q] = center[q] + spread[q] * sigma_upper
                    _clip_to_bounds(w, cur_lo, cur_hi, lower, upper, new_lo, new_hi, m)
                    changed = False
                    for q in range(m):
                        if new_lo[q] != cur_lo[q] or new_hi[q] != cur_hi[q]:
                            changed = True
                        cur_lo[q] = new_lo[q]
                        cur_hi[q] = new_hi[q]
                    if not changed:
                        break
                if passes > 1:  # after one pass, the current range is already final
                    _clip_to_bounds(w, lo, hi, lower, upper, new_lo, new_hi, m)
                    cur_lo[:m] = new_lo[:m]
                    cur_hi[:m] = new_hi[:m]
                lo[:m] = cur_lo[:m]
                hi[:m] = cur_hi[:m]
            # combine
            if method == _MEDIAN:
                _median_of_range(w, lo, hi, center, m)
                _mad(w, lo, hi, center, dev, pairs, spread, m)
            else:
                _moments(w, lo, hi, total, mean, std, m)
            for q in range(m):
                k = hi[q] - lo[q]
                n_rejected += n[q] - k
                p = p0 + q
                out_count[p] = k
                if k == 0:
                    out_data[p] = np.nan
                    out_unc[p] = np.nan
                elif method == _MEDIAN:
                    out_data[p] = center[q]
                    out_unc[p] = spread[q] * MAD_TO_STD / math.sqrt(k)
                elif method == _SUM:
                    out_data[p] = total[q]
                    out_unc[p] = std[q] * math.sqrt(k)
                else:
                    out_data[p] = mean[q]
                    out_unc[p] = std[q] / math.sqrt(k)
        rejected[g] = n_rejected
    return rejected.sum()
