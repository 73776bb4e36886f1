"""Numba kernels: combine a stack of N frames, pixel by pixel, with rejection.

The kernel works on blocks of pixels. A block's values are gathered into an (N, block) scratch
array (in the stack's dtype: sorting is exact; all arithmetic is float64) with missing values
(NaN, Inf) replaced by +inf, and sorted along N by a Batcher odd-even merge sorting network
applied to all pixels of the block at once: branch-free compare-exchanges over contiguous rows,
which the compiler turns into SIMD min/max. Every rejection algorithm then only moves each
pixel's kept range ``[lo, hi)`` of sorted values (they all reject from the ends: extrema,
thresholds, and the clipping algorithms, whose bounds lie around a center), so one rejection is
one small function that narrows ``lo``/``hi``. Medians are gathers; the median absolute
deviation sorts the deviations with the same network.

Where a frame's identity matters (weights, scaling after rejection, per-frame rejection counts),
the unsorted values of the pixels that rejected anything are scanned for the ones outside the kept
range. Ties at the edges of the range are resolved as a stable sort would order them (by frame
number).

The kernel is compiled once per stack dtype and cached on disk (``cache=True``); it releases the
GIL and runs in parallel over groups of blocks. :mod:`calstack.kernels.reference` holds the pure-NumPy
twin that the tests compare it with.
"""

from __future__ import annotations

import functools
import math
from collections import namedtuple

import numpy as np
from numba import njit, prange

from . import esd
from .params import MEDIAN, SUM, WINSOR_CLIP, WINSOR_CORRECTION
from .registry import CCDCLIP, ESD, NO_REJECTION, PERCENTILE_CLIP, SIGMA_CLIP, WINSORIZED_SIGMA_CLIP
from .statistics import MAD_TO_STD

__all__ = ["combine_stack", "sorting_network"]

_WINSOR_TOLERANCE = 5e-4  # relative change of sigma at which winsorizing stops
_WINSOR_MAX_LOOPS = 50

_BLOCK = 256  # pixels sorted together
_GROUPS = 64  # parallel work items (each allocates its scratch once)

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


# --- clipping bounds: one function per algorithm, one signature --------------------------------
# Each fills s.lower/s.upper for the columns whose range ``lo..hi`` is not empty.

Scratch = namedtuple("Scratch", "center spread lower upper total mean std dev new_lo new_hi cur_lo "
                                "cur_hi range_lo range_hi")


@njit(nogil=True, cache=True)
def _sigma_bounds(w, lo, hi, m, p, s, pairs):
    """Sigma clipping: center (median or mean) -/+ sigma * spread (mad_std or std)."""
    if p.cen_median or p.std_mad:
        _median_of_range(w, lo, hi, s.center, m)
    if not (p.cen_median and p.std_mad):
        _moments(w, lo, hi, s.total, s.mean, s.std, m)
    if p.std_mad:
        _mad(w, lo, hi, s.center, s.dev, pairs, s.spread, m)
        for q in range(m):
            s.spread[q] *= MAD_TO_STD
    else:
        s.spread[:m] = s.std[:m]
    if not p.cen_median:
        s.center[:m] = s.mean[:m]
    for q in range(m):
        if hi[q] > lo[q]:
            s.lower[q] = s.center[q] - s.spread[q] * p.sigma_lower
            s.upper[q] = s.center[q] + s.spread[q] * p.sigma_upper


@njit(nogil=True, cache=True)
def pclip_offset(k, pclip):
    """IRAF's percentile-clip rank offset from the median for ``k`` values."""
    a = abs(pclip)
    return int(a) if a >= 1.0 else max(1, int(a * k / 2.0 + 0.5))


@njit(nogil=True, cache=True)
def _pclip_bounds(w, lo, hi, m, p, s, pairs):
    """Percentile clipping (IRAF ``pclip``): the spread is the distance from the median to the
    value ``pclip_offset`` ranks below it (``pclip < 0``) or above it (``pclip > 0``)."""
    _median_of_range(w, lo, hi, s.center, m)
    for q in range(m):
        k = hi[q] - lo[q]
        if k > 0:
            offset = pclip_offset(k, p.pclip)
            if p.pclip < 0:
                r = max(0, (k - 1) // 2 - offset)
            else:
                r = min(k - 1, k // 2 + offset)
            spread = abs(s.center[q] - np.float64(w[lo[q] + r, q]))
            s.lower[q] = s.center[q] - spread * p.sigma_lower
            s.upper[q] = s.center[q] + spread * p.sigma_upper


@njit(nogil=True, cache=True)
def noise_model_sigma(level, gain, read_noise, sense_noise):
    """IRAF ``ccdclip`` noise in data units at ``level``:
    sqrt((read_noise/gain)**2 + level/gain + (sense_noise*level)**2); negative levels count as 0
    in the Poisson term."""
    return math.sqrt((read_noise / gain) ** 2 + max(level, 0.0) / gain + (sense_noise * level) ** 2)


@njit(nogil=True, cache=True)
def _ccdclip_bounds(w, lo, hi, m, p, s, pairs):
    """Noise-model clipping (IRAF ``ccdclip``): center -/+ sigma * noise_model_sigma(center)."""
    if p.cen_median:
        _median_of_range(w, lo, hi, s.center, m)
    else:
        _moments(w, lo, hi, s.total, s.center, s.std, m)
    for q in range(m):
        if hi[q] > lo[q]:
            spread = noise_model_sigma(s.center[q], p.gain, p.read_noise, p.sense_noise)
            s.lower[q] = s.center[q] - spread * p.sigma_lower
            s.upper[q] = s.center[q] + spread * p.sigma_upper


@njit(nogil=True, cache=True)
def _winsorized_bounds(w, lo, hi, m, p, s, pairs):
    """Winsorized sigma clipping: median -/+ sigma * the std of the values winsorized at
    WINSOR_CLIP sigma (times WINSOR_CORRECTION), iterated until that std settles."""
    _median_of_range(w, lo, hi, s.center, m)
    _moments(w, lo, hi, s.total, s.mean, s.std, m)
    for q in range(m):
        a = lo[q]
        b = hi[q]
        if b <= a:
            continue
        c = s.center[q]
        sigma = s.std[q]
        for _ in range(_WINSOR_MAX_LOOPS):
            low = c - WINSOR_CLIP * sigma
            high = c + WINSOR_CLIP * sigma
            total = 0.0
            for r in range(a, b):
                total += min(max(np.float64(w[r, q]), low), high)
            mean = total / (b - a)
            var = 0.0
            for r in range(a, b):
                d = min(max(np.float64(w[r, q]), low), high) - mean
                var += d * d
            new = WINSOR_CORRECTION * math.sqrt(var / (b - a))
            settled = abs(new - sigma) <= _WINSOR_TOLERANCE * sigma
            sigma = new
            if settled:
                break
        s.lower[q] = c - sigma * p.sigma_lower
        s.upper[q] = c + sigma * p.sigma_upper


@njit(nogil=True, cache=True)
def _bounds(w, lo, hi, m, p, s, pairs):
    """The clipping bounds of the algorithm ``p.rejection`` (a code of the registry)."""
    if p.rejection == SIGMA_CLIP:
        _sigma_bounds(w, lo, hi, m, p, s, pairs)
    elif p.rejection == PERCENTILE_CLIP:
        _pclip_bounds(w, lo, hi, m, p, s, pairs)
    elif p.rejection == WINSORIZED_SIGMA_CLIP:
        _winsorized_bounds(w, lo, hi, m, p, s, pairs)
    elif p.rejection == CCDCLIP:
        _ccdclip_bounds(w, lo, hi, m, p, s, pairs)


@njit(nogil=True, cache=True)
def _clip_iteratively(w, lo, hi, m, p, s, pairs):
    """Narrow ``lo..hi`` by up to ``maxiters`` passes of the rejection's bounds; as in
    ``astropy.stats.sigma_clip``, the last bounds decide over the whole starting range."""
    s.cur_lo[:m] = lo[:m]
    s.cur_hi[:m] = hi[:m]
    s.lower[:m] = -np.inf
    s.upper[:m] = np.inf
    passes = 0
    for _ in range(p.maxiters):
        passes += 1
        _bounds(w, s.cur_lo, s.cur_hi, m, p, s, pairs)
        _clip_to_bounds(w, s.cur_lo, s.cur_hi, s.lower, s.upper, s.new_lo, s.new_hi, m)
        changed = False
        for q in range(m):
            if s.new_lo[q] != s.cur_lo[q] or s.new_hi[q] != s.cur_hi[q]:
                changed = True
            s.cur_lo[q] = s.new_lo[q]
            s.cur_hi[q] = s.new_hi[q]
        if not changed:
            break
    if passes > 1:  # after one pass, the current range is already final
        _clip_to_bounds(w, lo, hi, s.lower, s.upper, s.cur_lo, s.cur_hi, m)
    lo[:m] = s.cur_lo[:m]
    hi[:m] = s.cur_hi[:m]


esd_max_outliers = njit(nogil=True, cache=True)(esd.esd_max_outliers)


@njit(nogil=True, cache=True)
def _esd(w, lo, hi, m, p, crit):
    """Generalized extreme studentized deviate test (Rosner 1983): remove the value farthest
    from the mean (sample std, ddof=1) up to ``esd_max`` times; the outliers are the first i
    removed, for the largest i whose statistic exceeds its critical value ``crit[k, i]``."""
    for q in range(m):
        a = lo[q]
        b = hi[q]
        k = b - a
        best_a = a
        best_b = b
        for i in range(1, esd_max_outliers(k, p.esd_max) + 1):
            n = b - a
            total = 0.0
            for r in range(a, b):
                total += w[r, q]
            mean = total / n
            var = 0.0
            for r in range(a, b):
                d = w[r, q] - mean
                var += d * d
            std = math.sqrt(var / (n - 1))
            if std == 0.0:
                break
            below = mean - w[a, q]
            above = w[b - 1, q] - mean
            statistic = max(below, above) / std
            if above >= below:
                b -= 1
            else:
                a += 1
            if statistic > crit[k, i]:
                best_a = a
                best_b = b
        lo[q] = best_a
        hi[q] = best_b


@njit(nogil=True, cache=True)
def _mark_rejected(stack, p0, w, lo, hi, n, m, kept, frame_rejected, s):
    """Add to ``frame_rejected[i]`` the number of frame i's valid values outside the kept range
    ``lo..hi`` of the sorted values ``w``. When ``kept`` has a row per frame, it holds which
    values are valid, and the rejected ones are unmarked.

    Only the columns that rejected anything are scanned. Of the values tied at the low (high) edge
    of a range, the lowest (highest) frame numbers are the rejected ones, as a stable sort ranks
    them. Uses ``s.cur_lo`` (the columns), ``s.lower``/``s.upper`` (their edges),
    ``s.new_lo``/``s.new_hi`` (how many values each still rejects at each edge) and ``s.dev``
    (their values) as scratch.
    """
    n_frames = stack.shape[0]
    marks = kept.shape[0] == n_frames
    cols, low, high, n_low, n_high = s.cur_lo, s.lower, s.upper, s.new_lo, s.new_hi
    n_cols = 0
    for q in range(m):
        if hi[q] - lo[q] < n[q]:
            empty = hi[q] <= lo[q]  # then every valid value lies outside the edges
            cols[n_cols] = q
            low[n_cols] = np.inf if empty else w[lo[q], q]
            high[n_cols] = -np.inf if empty else w[hi[q] - 1, q]
            n_low[n_cols] = 0 if empty else lo[q]
            n_high[n_cols] = 0 if empty else n[q] - hi[q]
            n_cols += 1
    values = s.dev  # those columns' values, contiguous so that the scan vectorizes
    for i in range(n_frames):
        row = stack[i, p0 : p0 + m]
        for j in range(n_cols):
            values[i, j] = row[cols[j]]
    for i in range(n_frames):  # every valid value outside the edges
        dropped = 0
        for j in range(n_cols):
            x = values[i, j]
            below = ((x - x) == 0.0) & (x < low[j])
            above = ((x - x) == 0.0) & (x > high[j])
            n_low[j] -= below
            n_high[j] -= above
            dropped += below | above
        frame_rejected[i] += dropped
        if marks:
            for j in range(n_cols):
                x = values[i, j]
                if x < low[j] or x > high[j]:
                    kept[i, cols[j]] = False
    for j in range(n_cols):  # then as many of those tied with an edge as it still leaves out
        if n_low[j] == 0 and n_high[j] == 0:
            continue
        q = cols[j]
        for i in range(n_frames):
            if n_low[j] > 0 and values[i, j] == low[j]:
                n_low[j] -= 1
                frame_rejected[i] += 1
                if marks:
                    kept[i, q] = False
        for i in range(n_frames - 1, -1, -1):
            if n_high[j] > 0 and values[i, j] == high[j]:
                n_high[j] -= 1
                frame_rejected[i] += 1
                if marks:
                    kept[i, q] = False


@njit(nogil=True, cache=True)
def _reject(w, lo, hi, n, m, p, s, pairs, esd_crit):
    """Narrow each column's kept range: extrema, thresholds, then the rejection algorithm."""
    n_frames = w.shape[0]
    for q in range(m):
        lo[q] = min(p.nlow, n[q])
        top = n_frames - p.nhigh if p.nan_is_high else n[q] - p.nhigh
        hi[q] = max(min(top, n[q]), lo[q])
    if p.min_clip > -np.inf or p.max_clip < np.inf:
        for q in range(m):
            s.lower[q] = p.min_clip
            s.upper[q] = p.max_clip
        _clip_to_bounds(w, lo, hi, s.lower, s.upper, s.new_lo, s.new_hi, m)
        lo[:m] = s.new_lo[:m]
        hi[:m] = s.new_hi[:m]
    if p.rejection == NO_REJECTION:
        return
    a = s.range_lo
    b = s.range_hi
    if p.independent:  # statistics over every valid value; keep what every step keeps
        a[:m] = 0
        b[:m] = n[:m]
    else:
        a[:m] = lo[:m]
        b[:m] = hi[:m]
    if p.rejection == ESD:
        _esd(w, a, b, m, p, esd_crit)
    else:
        _clip_iteratively(w, a, b, m, p, s, pairs)
    for q in range(m):
        lo[q] = max(lo[q], a[q])
        hi[q] = max(lo[q], min(hi[q], b[q]))


@njit(nogil=True, cache=True)
def _combine_block(stack, p0, m, weights, post_scale, esd_crit, pairs, p, w, kept, s, n, lo, hi,
                   sum_w, sum_wx, out_data, out_unc, out_count, frame_rejected):
    """Combine the ``m`` pixels from ``p0`` (see :func:`combine_stack`); returns the number of
    finite values rejected. The other arguments are the work item's scratch."""
    n_frames = stack.shape[0]
    per_pixel = weights.shape[1] > 1
    marks = kept.shape[0] == n_frames
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
            if marks:
                kept[i, q] = ok
    _sort_columns(w, pairs, m)
    _reject(w, lo, hi, n, m, p, s, pairs, esd_crit)
    _mark_rejected(stack, p0, w, lo, hi, n, m, kept, frame_rejected, s)
    if p.post_scaled:  # ccdproc scales after rejection: re-sort the scaled kept values
        for i in range(n_frames):
            for q in range(m):
                w[i, q] = stack[i, p0 + q] * post_scale[i] if kept[i, q] else np.inf
        _sort_columns(w, pairs, m)
        for q in range(m):
            hi[q] -= lo[q]
            lo[q] = 0
    if p.method == MEDIAN:
        _median_of_range(w, lo, hi, s.center, m)
        _mad(w, lo, hi, s.center, s.dev, pairs, s.spread, m)
    else:
        _moments(w, lo, hi, s.total, s.mean, s.std, m)
    if p.weighted:
        sum_w[:m] = 0.0
        sum_wx[:m] = 0.0
        for i in range(n_frames):
            factor = post_scale[i] if p.post_scaled else 1.0
            for q in range(m):
                if kept[i, q]:
                    weight = weights[i, p0 + q] if per_pixel else weights[i, 0]
                    sum_w[q] += weight
                    sum_wx[q] += weight * (stack[i, p0 + q] * factor)
    n_rejected = 0
    for q in range(m):
        k = hi[q] - lo[q]
        n_rejected += n[q] - k
        pix = p0 + q
        out_count[pix] = k
        if k == 0:
            out_data[pix] = np.nan
            out_unc[pix] = np.nan
        elif p.method == MEDIAN:
            out_data[pix] = s.center[q]
            out_unc[pix] = s.spread[q] * MAD_TO_STD / math.sqrt(k)
        elif p.method == SUM:
            out_data[pix] = sum_wx[q] if p.weighted else s.total[q]
            out_unc[pix] = s.std[q] * math.sqrt(k)
        else:
            if p.weighted:
                out_data[pix] = sum_wx[q] / sum_w[q] if sum_w[q] != 0.0 else np.nan
            else:
                out_data[pix] = s.mean[q]
            out_unc[pix] = s.std[q] / math.sqrt(k)
    return n_rejected


@njit(parallel=True, nogil=True, cache=True)
def combine_stack(stack, weights, post_scale, esd_crit, pairs, p, out_data, out_unc, out_count):
    """Combine ``stack`` (N, P) into ``out_data``, ``out_unc``, ``out_count`` (each P).

    Parameters
    ----------
    stack : ndarray (N, P)
        The values; non-finite ones are missing.
    weights : ndarray (N, P) or (N, 1)
        Per-pixel or per-frame weights (used when ``p.weighted``).
    post_scale : ndarray (N,)
        Factors applied to kept values after rejection (used when ``p.post_scaled``).
    esd_crit : ndarray
        ``esd_crit[k, i]``: the ESD test's critical value for the i-th outlier of k values.
    pairs : ndarray
        ``sorting_network(N)``.
    p : KernelParams
        The options.
    out_data, out_unc, out_count : ndarray (P,)
        Filled with the combined value, its uncertainty and the number of values kept.

    Returns
    -------
    rejected : int
        The number of finite input values that were rejected.
    frame_rejected : ndarray (N,) of int64
        The number of each frame's finite values that were rejected.

    Notes
    -----
    Rejection runs in ccdproc's order (extrema, thresholds, then the algorithm), then the kept
    values are combined with ``p.method``. The uncertainty is std/sqrt(n) for the average,
    mad_std/sqrt(n) for the median and std*sqrt(n) for the sum (ccdproc's definitions, unweighted);
    a pixel with nothing kept gets NaN, NaN, 0.
    """
    n_frames, n_pix = stack.shape
    n_blocks = (n_pix + _BLOCK - 1) // _BLOCK
    n_groups = min(_GROUPS, n_blocks)
    rejected = np.zeros(n_groups, np.int64)
    frame_rejected = np.zeros((n_groups, n_frames), np.int64)
    n_marks = n_frames if p.weighted or p.post_scaled else 1  # kept values per frame, if needed
    for g in prange(n_groups):
        w = np.empty((n_frames, _BLOCK), stack.dtype)  # sorting is exact in the input dtype
        kept = np.empty((n_marks, _BLOCK), np.bool_)
        s = Scratch(np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK),
                    np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK),
                    np.empty((n_frames, _BLOCK)), np.empty(_BLOCK, np.int64),
                    np.empty(_BLOCK, np.int64), np.empty(_BLOCK, np.int64),
                    np.empty(_BLOCK, np.int64), np.empty(_BLOCK, np.int64),
                    np.empty(_BLOCK, np.int64))
        n = np.empty(_BLOCK, np.int64)
        lo = np.empty(_BLOCK, np.int64)
        hi = np.empty(_BLOCK, np.int64)
        sum_w = np.empty(_BLOCK)
        sum_wx = np.empty(_BLOCK)
        n_rejected = 0
        for blk in range(g, n_blocks, n_groups):
            p0 = blk * _BLOCK
            n_rejected += _combine_block(stack, p0, min(_BLOCK, n_pix - p0), weights, post_scale,
                                         esd_crit, pairs, p, w, kept, s, n, lo, hi, sum_w,
                                         sum_wx, out_data, out_unc, out_count, frame_rejected[g])
        rejected[g] = n_rejected
    return rejected.sum(), frame_rejected.sum(axis=0)
