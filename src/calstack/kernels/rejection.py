"""The rejection steps: each narrows every column's kept range ``[lo, hi)`` of sorted values.

Extrema and thresholds, then the algorithm chosen by its registry code
(:mod:`calstack.kernels.registry`): the clipping algorithms compute bounds around a center
(one function each, one signature) and clip to them, iterated as astropy's ``sigma_clip``
does; ESD removes the most extreme values while its test says they are outliers. Every
algorithm has a NumPy twin in :mod:`calstack.kernels.reference`.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit

from . import esd
from .params import WINSOR_CLIP, WINSOR_CORRECTION
from .registry import CCDCLIP, ESD, NO_REJECTION, PERCENTILE_CLIP, SIGMA_CLIP, WINSORIZED_SIGMA_CLIP
from .sorted_ranges import clip_to_bounds, mad, median_of_range, moments
from .statistics import MAD_TO_STD

__all__ = ["Scratch", "reject"]

_WINSOR_TOLERANCE = 5e-4  # relative change of sigma at which winsorizing stops
_WINSOR_MAX_LOOPS = 50

# Clipping bounds, one function per algorithm, one signature: each fills s.lower/s.upper for the
# columns whose range ``lo..hi`` is not empty.

Scratch = namedtuple("Scratch", "center spread lower upper total mean std dev new_lo new_hi cur_lo "
                                "cur_hi range_lo range_hi")


@njit(nogil=True, cache=True)
def _sigma_bounds(w, lo, hi, m, p, s, pairs):
    """Sigma clipping: center (median or mean) -/+ sigma * spread (mad_std or std)."""
    if p.cen_median or p.std_mad:
        median_of_range(w, lo, hi, s.center, m)
    if not (p.cen_median and p.std_mad):
        moments(w, lo, hi, s.total, s.mean, s.std, m)
    if p.std_mad:
        mad(w, lo, hi, s.center, s.dev, pairs, s.spread, m)
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
def _pclip_bounds(w, lo, hi, m, p, s, _pairs):
    """Percentile clipping (IRAF ``pclip``): the spread is the distance from the median to the
    value ``pclip_offset`` ranks below it (``pclip < 0``) or above it (``pclip > 0``)."""
    median_of_range(w, lo, hi, s.center, m)
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
def _ccdclip_bounds(w, lo, hi, m, p, s, _pairs):
    """Noise-model clipping (IRAF ``ccdclip``): center -/+ sigma * noise_model_sigma(center)."""
    if p.cen_median:
        median_of_range(w, lo, hi, s.center, m)
    else:
        moments(w, lo, hi, s.total, s.center, s.std, m)
    for q in range(m):
        if hi[q] > lo[q]:
            spread = noise_model_sigma(s.center[q], p.gain, p.read_noise, p.sense_noise)
            s.lower[q] = s.center[q] - spread * p.sigma_lower
            s.upper[q] = s.center[q] + spread * p.sigma_upper


@njit(nogil=True, cache=True)
def _winsorized_bounds(w, lo, hi, m, p, s, _pairs):
    """Winsorized sigma clipping: median -/+ sigma * the std of the values winsorized at
    WINSOR_CLIP sigma (times WINSOR_CORRECTION), iterated until that std settles."""
    median_of_range(w, lo, hi, s.center, m)
    moments(w, lo, hi, s.total, s.mean, s.std, m)
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
        clip_to_bounds(w, s.cur_lo, s.cur_hi, s.lower, s.upper, s.new_lo, s.new_hi, m)
        changed = False
        for q in range(m):
            if s.new_lo[q] != s.cur_lo[q] or s.new_hi[q] != s.cur_hi[q]:
                changed = True
            s.cur_lo[q] = s.new_lo[q]
            s.cur_hi[q] = s.new_hi[q]
        if not changed:
            break
    if passes > 1:  # after one pass, the current range is already final
        clip_to_bounds(w, lo, hi, s.lower, s.upper, s.cur_lo, s.cur_hi, m)
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
def reject(w, lo, hi, n, m, p, s, pairs, esd_crit):
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
        clip_to_bounds(w, lo, hi, s.lower, s.upper, s.new_lo, s.new_hi, m)
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
