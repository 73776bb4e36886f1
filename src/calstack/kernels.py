"""Numba kernels: combine a stack of N frames, pixel by pixel, with rejection.

One kernel serves every method and rejection chain: per pixel it gathers the finite values,
sorts them once, and then every rejection step is a move of the two ends of the kept range of
the sorted values (extrema, thresholds and sigma clipping all reject from the ends). The median
and the median absolute deviation come from the sorted range without a second sort.

The kernel is compiled once per stack dtype and cached on disk (``cache=True``); it releases the
GIL and runs in parallel over chunks of pixels. :mod:`calstack.reference` holds the pure-NumPy
twin that the tests compare it with.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["combine_stack", "MAD_TO_STD"]

#: Scale from the median absolute deviation to the standard deviation of a normal distribution
#: (astropy's ``mad_std`` constant).
MAD_TO_STD = 1.482602218505602

_CHUNK = 2048  # pixels per parallel work item
_AVERAGE, _MEDIAN, _SUM = 0, 1, 2


@njit(nogil=True, cache=True, inline="always")
def _median(v, lo, hi):
    n = hi - lo
    mid = lo + n // 2
    if n % 2:
        return v[mid]
    return (v[mid - 1] + v[mid]) / 2.0


@njit(nogil=True, cache=True)
def _mad(v, lo, hi, med):
    """Median of |v - med| over sorted ``v[lo:hi]``: a merge of the two sides, no sort."""
    n = hi - lo
    c = lo + n // 2
    a = c - 1  # walks left: deviations med - v[a] grow
    b = c  # walks right: deviations v[b] - med grow
    k2 = n // 2
    k1 = k2 if n % 2 else k2 - 1
    d1 = 0.0
    d = 0.0
    for t in range(k2 + 1):
        if a >= lo and (b >= hi or med - v[a] <= v[b] - med):
            d = med - v[a]
            a -= 1
        else:
            d = v[b] - med
            b += 1
        if t == k1:
            d1 = d
    return (d1 + d) / 2.0


@njit(nogil=True, cache=True)
def _moments(v, lo, hi):
    """Sum, mean and population standard deviation (two-pass) of ``v[lo:hi]``."""
    n = hi - lo
    s = 0.0
    for j in range(lo, hi):
        s += v[j]
    mean = s / n
    ss = 0.0
    for j in range(lo, hi):
        d = v[j] - mean
        ss += d * d
    return s, mean, math.sqrt(ss / n)


@njit(nogil=True, cache=True)
def _sigma_clip(v, lo, hi, low, high, cen_median, std_mad, maxiters):
    """Astropy's sigma clipping on sorted ``v[lo:hi]``; returns the kept ``(lo, hi)``.

    Bounds are recomputed on the surviving values up to ``maxiters`` times; as in
    ``astropy.stats.sigma_clip``, the last bounds then decide over all of ``v[lo:hi]``, so a
    value clipped in an early pass is kept if the final bounds include it.
    """
    cur_lo, cur_hi = lo, hi
    lower, upper = -np.inf, np.inf
    for _ in range(maxiters):
        if cur_hi == cur_lo:
            break
        if cen_median:
            cen = _median(v, cur_lo, cur_hi)
        else:
            cen = _moments(v, cur_lo, cur_hi)[1]
        if std_mad:
            std = _mad(v, cur_lo, cur_hi, _median(v, cur_lo, cur_hi)) * MAD_TO_STD
        else:
            std = _moments(v, cur_lo, cur_hi)[2]
        lower = cen - std * low
        upper = cen + std * high
        new_lo, new_hi = cur_lo, cur_hi
        while new_lo < new_hi and v[new_lo] < lower:
            new_lo += 1
        while new_hi > new_lo and v[new_hi - 1] > upper:
            new_hi -= 1
        if new_lo == cur_lo and new_hi == cur_hi:
            break
        cur_lo, cur_hi = new_lo, new_hi
    while lo < hi and v[lo] < lower:
        lo += 1
    while hi > lo and v[hi - 1] > upper:
        hi -= 1
    return lo, hi


@njit(parallel=True, nogil=True, cache=True)
def combine_stack(
    stack,
    out_data,
    out_unc,
    out_count,
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
    clip (``maxiters`` passes at most), then combine with ``method`` (0 average, 1 median,
    2 sum). The uncertainty is std/sqrt(n) for the average, mad_std/sqrt(n) for the median and
    std*sqrt(n) for the sum (ccdproc's definitions); a pixel with nothing kept gets NaN, NaN, 0.

    Returns
    -------
    int
        The number of finite input values that were rejected.
    """
    n_frames, n_pix = stack.shape
    n_chunks = (n_pix + _CHUNK - 1) // _CHUNK
    rejected = np.zeros(n_chunks, np.int64)
    for chunk in prange(n_chunks):
        v = np.empty(n_frames, np.float64)
        n_rejected = 0
        for p in range(chunk * _CHUNK, min(n_pix, (chunk + 1) * _CHUNK)):
            n = 0
            for i in range(n_frames):
                x = stack[i, p]
                if math.isfinite(x):
                    v[n] = x
                    n += 1
            v[:n].sort()
            lo = min(nlow, n)
            hi = max(n - nhigh, lo)
            while lo < hi and v[lo] < min_clip:
                lo += 1
            while hi > lo and v[hi - 1] > max_clip:
                hi -= 1
            if sigma_clip:
                lo, hi = _sigma_clip(v, lo, hi, sigma_lower, sigma_upper, cen_median, std_mad, maxiters)
            kept = hi - lo
            n_rejected += n - kept
            out_count[p] = kept
            if kept == 0:
                out_data[p] = np.nan
                out_unc[p] = np.nan
            elif method == _MEDIAN:
                med = _median(v, lo, hi)
                out_data[p] = med
                out_unc[p] = _mad(v, lo, hi, med) * MAD_TO_STD / math.sqrt(kept)
            else:
                total, mean, std = _moments(v, lo, hi)
                if method == _SUM:
                    out_data[p] = total
                    out_unc[p] = std * math.sqrt(kept)
                else:
                    out_data[p] = mean
                    out_unc[p] = std / math.sqrt(kept)
        rejected[chunk] = n_rejected
    return rejected.sum()
