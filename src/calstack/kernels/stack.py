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
GIL and runs in parallel over groups of consecutive blocks (so that each thread streams through
memory; :class:`calstack.stacking.kernel_call.KernelCall` has the threads take the groups one at a
time, so that a costly region does not hold up one thread). The sorted-range primitives are in
:mod:`calstack.kernels.sorted_ranges`, the rejection steps in :mod:`calstack.kernels.rejection`;
:mod:`calstack.kernels.twin` is the pure-NumPy twin that the tests compare it with.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import njit, prange
from .params import MEDIAN, SUM
from .registry import AVSIGCLIP
from .rejection import Scratch, avsigclip_terms, candidates, reject
from .sorted_ranges import copy_columns, mad, median_of_range, moments, sort_columns
from .statistics import MAD_TO_STD

__all__ = ["combine_stack"]

_BLOCK = 256  # pixels sorted together
_GROUPS = 64  # parallel work items (each allocates its scratch once)


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
def _gather_sorted(stack, p0, m, p, pairs, w, kept, s, n):
    """Gather the ``m`` pixels from ``p0`` into ``w`` (missing values as +inf, which the sort puts
    last), count the valid ones in ``n``, keep them unsorted in ``s.raw`` (``p.frame_noise``) and
    mark them in ``kept`` (when it has a row per frame); then sort ``w``'s columns."""
    n_frames = stack.shape[0]
    marks = kept.shape[0] == n_frames
    n[:m] = 0
    for i in range(n_frames):
        src = stack[i, p0 : p0 + m]
        row = w[i]
        for q in range(m):
            x = src[q]
            ok = (x - x) == 0.0  # finite; unlike math.isfinite this vectorises
            row[q] = x if ok else np.inf
            n[q] += ok
            if p.frame_noise:
                s.raw[i, q] = row[q]
            if marks:
                kept[i, q] = ok
    sort_columns(w, pairs, m)


@njit(nogil=True, cache=True)
def _combine_block(stack, p0, m, weights, post_scale, esd_crit, pairs, p, line_sigma, w, kept, s,
                   n, lo, hi, sum_w, sum_wx, out_data, out_unc, out_count, frame_rejected,
                   out_rejected):
    """Combine the ``m`` pixels from ``p0`` (see :func:`combine_stack`); returns the number of
    finite values rejected. The other arguments are the work item's scratch."""
    n_frames = stack.shape[0]
    per_pixel = weights.shape[1] > 1
    _gather_sorted(stack, p0, m, p, pairs, w, kept, s, n)
    if p.rejection == AVSIGCLIP:
        copy_columns(s.line_sigma, line_sigma[p0:], m)
    reject(w, lo, hi, n, m, p, s, pairs, esd_crit)
    _mark_rejected(stack, p0, w, lo, hi, n, m, kept, frame_rejected, s)
    if out_rejected.shape[0] == n_frames:
        for i in range(n_frames):
            src = stack[i, p0 : p0 + m]
            for q in range(m):
                x = src[q]
                out_rejected[i, p0 + q] = ((x - x) == 0.0) & ~kept[i, q]
    if p.post_scaled:  # ccdproc scales after rejection: re-sort the scaled kept values
        for i in range(n_frames):
            for q in range(m):
                w[i, q] = stack[i, p0 + q] * post_scale[i] if kept[i, q] else np.inf
        sort_columns(w, pairs, m)
        for q in range(m):
            hi[q] -= lo[q]
            lo[q] = 0
    if p.method == MEDIAN:
        median_of_range(w, lo, hi, s.center, m)
        mad(w, lo, hi, s.center, s.dev, pairs, s.spread, m)
    else:
        moments(w, lo, hi, s.total, s.mean, s.std, m)
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


@njit(nogil=True, cache=True)
def _scratch(n_frames, dtype_like, p, frame_noise):
    """A work item's scratch (:class:`calstack.kernels.rejection.Scratch`) for blocks of
    ``n_frames`` values of ``dtype_like``'s dtype."""
    return Scratch(np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK),
                   np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK),
                   np.empty((n_frames, _BLOCK)), np.empty(_BLOCK, np.int64),
                   np.empty(_BLOCK, np.int64), np.empty(_BLOCK, np.int64),
                   np.empty(_BLOCK, np.int64), np.empty(_BLOCK, np.int64),
                   np.empty(_BLOCK, np.int64),
                   np.empty((n_frames, _BLOCK) if p.frame_noise else (1, 1), dtype_like.dtype),
                   frame_noise[0], frame_noise[1], np.empty(_BLOCK))


@njit(parallel=True, nogil=True, cache=True)
def _line_sigmas(stack, pairs, p, frame_noise, line_width):
    """avsigclip's sigma of each pixel's image line (lines of ``line_width`` pixels), fitted once
    before clipping: ``sqrt(sum(terms) / (sum(counts) - 1))`` of the line's
    :func:`calstack.kernels.rejection.avsigclip_terms` (0 where that is undefined)."""
    n_frames, n_pix = stack.shape
    n_blocks = (n_pix + _BLOCK - 1) // _BLOCK
    n_groups = min(_GROUPS, n_blocks)
    terms = np.zeros(n_pix)
    counts = np.zeros(n_pix, np.int64)
    for g in prange(n_groups):
        w = np.empty((n_frames, _BLOCK), stack.dtype)
        kept = np.empty((1, _BLOCK), np.bool_)
        s = _scratch(n_frames, stack, p, frame_noise)
        n = np.empty(_BLOCK, np.int64)
        lo = np.empty(_BLOCK, np.int64)
        hi = np.empty(_BLOCK, np.int64)
        for blk in range(g * n_blocks // n_groups, (g + 1) * n_blocks // n_groups):
            p0 = blk * _BLOCK
            m = min(_BLOCK, n_pix - p0)
            _gather_sorted(stack, p0, m, p, pairs, w, kept, s, n)
            candidates(w, lo, hi, n, m, p, s)
            if p.independent:  # the algorithm judges every valid value (ccdproc's order)
                lo[:m] = 0
                copy_columns(hi, n, m)
            avsigclip_terms(w, lo, hi, m, p, s, terms[p0 : p0 + m], counts[p0 : p0 + m])
    sigma = np.zeros(n_pix)
    for start in range(0, n_pix, line_width):
        stop = min(start + line_width, n_pix)
        total = terms[start:stop].sum()
        count = counts[start:stop].sum()
        sigma[start:stop] = math.sqrt(total / (count - 1)) if count > 1 else 0.0
    return sigma


@njit(parallel=True, nogil=True, cache=True)
def combine_stack(stack, weights, post_scale, frame_noise, esd_crit, pairs, p, line_width,
                  out_data, out_unc, out_count, out_rejected):
    """Combine ``stack`` (N, P) into ``out_data``, ``out_unc``, ``out_count`` (each P).

    Parameters
    ----------
    stack : ndarray (N, P)
        The values; non-finite ones are missing.
    weights : ndarray (N, P) or (N, 1)
        Per-pixel or per-frame weights (used when ``p.weighted``).
    post_scale : ndarray (N,)
        Factors applied to kept values after rejection (used when ``p.post_scaled``).
    frame_noise : ndarray (2, N)
        Each frame's scale factor and zero offset (value = unscaled value * scale - zero), with
        which ccdclip and avsigclip evaluate their noise on the unscaled values
        (``p.frame_noise``).
    esd_crit : ndarray
        ``esd_crit[k, i]``: the ESD test's critical value for the i-th outlier of k values.
    pairs : ndarray
        ``sorting_network(N)``.
    p : KernelParams
        The options.
    line_width : int
        The pixels of one image line (``P`` is a whole number of lines): avsigclip fits one
        sigma per line.
    out_data, out_unc, out_count : ndarray (P,)
        Filled with the combined value, its uncertainty and the number of values kept.
    out_rejected : ndarray (N, P) or (0, 0) of bool
        When it has a row per frame: filled with which valid values were rejected (``grow``).

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
    marked = p.weighted or p.post_scaled or out_rejected.shape[0] == n_frames
    n_marks = n_frames if marked else 1  # kept values per frame, if needed
    line_sigma = (_line_sigmas(stack, pairs, p, frame_noise, line_width)
                  if p.rejection == AVSIGCLIP else np.zeros(1))
    for g in prange(n_groups):
        w = np.empty((n_frames, _BLOCK), stack.dtype)  # sorting is exact in the input dtype
        kept = np.empty((n_marks, _BLOCK), np.bool_)
        s = _scratch(n_frames, stack, p, frame_noise)
        n = np.empty(_BLOCK, np.int64)
        lo = np.empty(_BLOCK, np.int64)
        hi = np.empty(_BLOCK, np.int64)
        sum_w = np.empty(_BLOCK)
        sum_wx = np.empty(_BLOCK)
        n_rejected = 0
        for blk in range(g * n_blocks // n_groups, (g + 1) * n_blocks // n_groups):
            p0 = blk * _BLOCK
            n_rejected += _combine_block(stack, p0, min(_BLOCK, n_pix - p0), weights, post_scale,
                                         esd_crit, pairs, p, line_sigma, w, kept, s, n, lo, hi,
                                         sum_w, sum_wx, out_data, out_unc, out_count,
                                         frame_rejected[g], out_rejected)
        rejected[g] = n_rejected
    return rejected.sum(), frame_rejected.sum(axis=0)
