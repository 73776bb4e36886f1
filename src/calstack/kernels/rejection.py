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

from . import esd
from .jit import njit
from .params import WINSOR_CLIP, WINSOR_CORRECTION
from .registry import (
    AVSIGCLIP,
    CCDCLIP,
    ESD,
    NO_REJECTION,
    PERCENTILE_CLIP,
    SIGCLIP,
    SIGMA_CLIP,
    WINSORIZED_SIGMA_CLIP,
)
from .sorted_ranges import clip_to_bounds, copy_columns, mad, median_of_range, moments
from .statistics import MAD_TO_STD

__all__ = ["Scratch", "avsigclip_terms", "candidates", "reject"]

_WINSOR_TOLERANCE = 5e-4  # relative change of sigma at which winsorizing stops
_WINSOR_MAX_LOOPS = 50

# Clipping bounds, one function per algorithm, one signature: each fills s.center, s.spread,
# s.lower and s.upper for the columns whose range ``lo..hi`` is not empty. ``s.raw`` holds the block's values
# unsorted (frame by frame) when ``p.frame_noise``; ``s.frame_scale``/``s.frame_zero`` the
# factors and offsets that made them from the unscaled values; ``s.line_sigma`` each column's
# sigma of avsigclip (its image line's) or sigclip (its own, each pass).

Scratch = namedtuple("Scratch", "center spread lower upper total mean std dev new_lo new_hi cur_lo "
                                "cur_hi range_lo range_hi raw frame_scale frame_zero line_sigma")


@njit(nogil=True, cache=True)
def _sigma_bounds(w, lo, hi, m, p, s, pairs):
    """Sigma clipping: center (median or mean) -/+ sigma * spread (mad_std or std)."""
    if p.cen_median or p.std_mad:
        median_of_range(w, lo, hi, s.center, m)
    if not (p.cen_median and p.std_mad):
        moments(w, lo, hi, s.total, s.mean, s.std, m)
    if p.std_mad:
        mad(w, lo, hi, s.center, s.dev, pairs, s.spread, m)
    for q in range(m):  # selects rather than a branch, so that the loop vectorises
        filled = hi[q] > lo[q]
        center = s.center[q] if p.cen_median else s.mean[q]
        spread = _spread_floor(s.spread[q] * MAD_TO_STD if p.std_mad else s.std[q], center, p)
        s.center[q] = center if filled else s.center[q]
        s.spread[q] = spread if filled else s.spread[q]
        s.lower[q] = center - spread * p.sigma_lower if filled else s.lower[q]
        s.upper[q] = center + spread * p.sigma_upper if filled else s.upper[q]


@njit(nogil=True, cache=True)
def _spread_floor(spread, center, p):
    """An estimated spread, at least the quantisation step and (``p.noise_floor``) the noise
    model at ``center`` (the frames' mean scale and zero undone)."""
    spread = max(spread, p.quantum)
    if p.noise_floor:
        level = (center + p.noise_zero) / p.noise_scale
        spread = max(spread, p.noise_scale * noise_model_sigma(level, p.gain, p.read_noise,
                                                               p.sense_noise))
    return spread


_PCLIP_MIN_VALUES = 3  # IRAF: fewer values are not percentile-clipped


@njit(nogil=True, cache=True)
def _pclip_bounds(w, lo, hi, m, p, s, _pairs):
    """Percentile clipping (IRAF ``pclip``): the spread is the distance from the median to the
    value ``p.pclip`` ranks below it (``< 0``) or above it (``> 0``), a rank offset fixed from the
    stack's number of frames; a zero spread, or fewer than 3 values, rejects nothing."""
    median_of_range(w, lo, hi, s.center, m)
    offset = int(abs(p.pclip))
    for q in range(m):
        k = hi[q] - lo[q]
        if k > 0:
            r = max(0, (k - 1) // 2 - offset) if p.pclip < 0 else min(k - 1, k // 2 + offset)
            spread = abs(s.center[q] - np.float64(w[lo[q] + r, q]))
            s.spread[q] = spread
            if k < _PCLIP_MIN_VALUES or spread == 0.0:
                s.lower[q] = -np.inf
                s.upper[q] = np.inf
            else:
                s.lower[q] = s.center[q] - spread * p.sigma_lower
                s.upper[q] = s.center[q] + spread * p.sigma_upper


@njit(nogil=True, cache=True)
def noise_model_sigma(level, gain, read_noise, sense_noise):
    """IRAF ``ccdclip`` noise in data units at ``level``:
    sqrt((read_noise/gain)**2 + level/gain + (sense_noise*level)**2); negative levels count as 0
    in the Poisson term."""
    return math.sqrt((read_noise / gain) ** 2 + max(level, 0.0) / gain + (sense_noise * level) ** 2)


@njit(nogil=True, cache=True)
def _mean_without_extremes(w, lo, hi, out, m):
    """IRAF's average of ccdclip and avsigclip: the mean without the lowest and the highest
    value (of 3 or more values; the plain mean of fewer)."""
    for q in range(m):
        a = lo[q]
        b = hi[q]
        if b - a >= 3:
            a += 1
            b -= 1
        if b > a:
            total = 0.0
            for r in range(a, b):
                total += np.float64(w[r, q])
            out[q] = total / (b - a)


@njit(nogil=True, cache=True)
def _frame_sigma(s, q, value, center, p, n_frames):
    """The sigma, in the values' units, of the frame holding ``value`` at column ``q``, at the
    unscaled level of ``center`` (the most lenient of tied frames): ccdclip's noise model, or
    avsigclip's and sigclip's sigma (``s.line_sigma``) times the square root of the level (at
    least 1) in the values' units."""
    sigma = 0.0
    for i in range(n_frames):
        if s.raw[i, q] == value:
            scale = s.frame_scale[i]
            level = (center + s.frame_zero[i]) / scale
            if p.rejection == AVSIGCLIP or p.rejection == SIGCLIP:
                frame = s.line_sigma[q] * math.sqrt(max(1.0, level * scale * scale))
            else:
                frame = scale * noise_model_sigma(level, p.gain, p.read_noise, p.sense_noise)
            sigma = max(sigma, frame)
    return sigma


@njit(nogil=True, cache=True)
def _clip_ends_by_frame(w, lo, hi, q, c, p, s):
    """Reject values from the ends of column ``q`` while they lie outside ``c`` -/+ their own
    frame's sigma (:func:`_frame_sigma`), as IRAF does for scaled frames; the bounds become the
    lowest and highest values kept."""
    n_frames = w.shape[0]
    a = lo[q]
    b = hi[q]
    while a < b:
        if np.float64(w[a, q]) >= c - p.sigma_lower * _frame_sigma(s, q, w[a, q], c, p, n_frames):
            break
        a += 1
    while b > a:
        if np.float64(w[b - 1, q]) <= c + p.sigma_upper * _frame_sigma(s, q, w[b - 1, q], c, p,
                                                                      n_frames):
            break
        b -= 1
    s.lower[q] = w[a, q] if b > a else np.inf
    s.upper[q] = w[b - 1, q] if b > a else -np.inf


@njit(nogil=True, cache=True)
def _irafs_first_center(w, lo, hi, m, p, s):
    """IRAF's center in ``s.center``: the median, or (cenfunc mean) the mean without the
    extremes (ccdclip's every pass; avsigclip's and sigclip's first)."""
    if p.cen_median:
        median_of_range(w, lo, hi, s.center, m)
    else:
        _mean_without_extremes(w, lo, hi, s.center, m)


@njit(nogil=True, cache=True)
def _ccdclip_bounds(w, lo, hi, m, p, s, _pairs):
    """Noise-model clipping (IRAF ``ccdclip``): center -/+ sigma * noise_model_sigma(level), the
    center the median or (cenfunc mean) the mean without the extremes. With ``p.frame_noise``
    the model is each frame's, at the unscaled level (:func:`_clip_ends_by_frame`)."""
    _irafs_first_center(w, lo, hi, m, p, s)
    for q in range(m):
        if hi[q] <= lo[q]:
            continue
        c = s.center[q]
        if not p.frame_noise:
            spread = noise_model_sigma(c, p.gain, p.read_noise, p.sense_noise)
            s.spread[q] = spread
            s.lower[q] = c - spread * p.sigma_lower
            s.upper[q] = c + spread * p.sigma_upper
            continue
        s.spread[q] = p.noise_scale * noise_model_sigma(
            (c + p.noise_zero) / p.noise_scale, p.gain, p.read_noise, p.sense_noise)
        _clip_ends_by_frame(w, lo, hi, q, c, p, s)


@njit(nogil=True, cache=True)
def _iraf_center(w, lo, hi, m, p, s):
    """avsigclip's and sigclip's center: the median, or (cenfunc mean) the mean without the
    extremes on a pixel's first pass and the plain mean of the values kept after (IRAF)."""
    _irafs_first_center(w, lo, hi, m, p, s)
    if p.cen_median:
        return
    moments(w, lo, hi, s.total, s.mean, s.std, m)
    for q in range(m):
        if hi[q] > lo[q] and (lo[q] != s.range_lo[q] or hi[q] != s.range_hi[q]):
            s.center[q] = s.mean[q]


@njit(nogil=True, cache=True)
def _avsigclip_bounds(w, lo, hi, m, p, s, _pairs):
    """IRAF ``avsigclip``: center -/+ sigma * line_sigma * sqrt(max(1, level)), the line's sigma
    fitted once over the line's pixels (:func:`avsigclip_terms`); a line sigma of 0 rejects
    nothing. With ``p.frame_noise`` the level is each frame's, in its units
    (:func:`_clip_ends_by_frame`)."""
    _iraf_center(w, lo, hi, m, p, s)
    for q in range(m):
        if hi[q] <= lo[q]:
            continue
        c = s.center[q]
        sigma = s.line_sigma[q]
        s.spread[q] = sigma * math.sqrt(max(1.0, (c + p.noise_zero) * p.noise_scale))
        _sigma_bounds_or_none(w, lo, hi, q, c, sigma, sigma * math.sqrt(max(1.0, c)), p, s)


@njit(nogil=True, cache=True)
def _sigma_bounds_or_none(w, lo, hi, q, c, sigma, spread, p, s):
    """avsigclip's and sigclip's bounds of column ``q``: none for a ``sigma`` of 0, each
    frame's at its level with ``p.frame_noise`` (:func:`_clip_ends_by_frame`), else ``c``
    -/+ the thresholds times ``spread``."""
    if sigma == 0.0:
        s.lower[q] = -np.inf
        s.upper[q] = np.inf
    elif p.frame_noise:
        _clip_ends_by_frame(w, lo, hi, q, c, p, s)
    else:
        s.lower[q] = c - spread * p.sigma_lower
        s.upper[q] = c + spread * p.sigma_upper


@njit(nogil=True, cache=True)
def _squared_deviations(w, lo, hi, q, c, p, s, poisson):
    """Sum over column ``q``'s values in ``lo..hi`` of (value - c)**2, divided by max(1,
    level): each value's frame's level in its units with ``p.frame_noise`` (by value), else
    ``c`` (``poisson``) or 1."""
    total = 0.0
    if p.frame_noise:
        low = w[lo[q], q]
        high = w[hi[q] - 1, q]
        for i in range(w.shape[0]):
            x = s.raw[i, q]
            if x >= low and x <= high:
                total += (np.float64(x) - c) ** 2 / max(1.0, (c + s.frame_zero[i])
                                                       * s.frame_scale[i])
        return total
    for r in range(lo[q], hi[q]):
        total += (np.float64(w[r, q]) - c) ** 2
    return total / max(1.0, c) if poisson else total


@njit(nogil=True, cache=True)
def avsigclip_terms(w, lo, hi, m, p, s, terms, counts):
    """avsigclip's contributions to its line sigma: for each column with at least 3 values in
    ``lo..hi``, the sum of (value - center)**2 / max(1, level) over them (the level of each
    value's frame with ``p.frame_noise``), and their number, in ``terms[:m]`` and
    ``counts[:m]`` (0 for the other columns). The line's sigma is
    ``sqrt(sum(terms) / (sum(counts) - 1))`` (IRAF)."""
    _irafs_first_center(w, lo, hi, m, p, s)
    for q in range(m):
        k = hi[q] - lo[q]
        enough = k >= _AVSIGCLIP_MIN_VALUES
        terms[q] = _squared_deviations(w, lo, hi, q, s.center[q], p, s, True) if enough else 0.0
        counts[q] = k if enough else 0


@njit(nogil=True, cache=True)
def _sigclip_bounds(w, lo, hi, m, p, s, _pairs):
    """IRAF ``sigclip``: center -/+ sigma * the std (ddof=1) of the values about the center;
    with ``p.frame_noise`` each value's deviation is divided by the square root of its frame's
    level (at least 1), and its bound multiplied by it (:func:`_clip_ends_by_frame`). A zero
    std rejects nothing."""
    _iraf_center(w, lo, hi, m, p, s)
    for q in range(m):
        k = hi[q] - lo[q]
        if k <= 0:
            continue
        c = s.center[q]
        sigma = math.sqrt(_squared_deviations(w, lo, hi, q, c, p, s, False) / (k - 1)) if k > 1 \
            else 0.0
        s.line_sigma[q] = sigma
        s.spread[q] = sigma
        _sigma_bounds_or_none(w, lo, hi, q, c, sigma, sigma, p, s)


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
        sigma = _spread_floor(sigma, c, p)
        s.spread[q] = sigma
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
    elif p.rejection == AVSIGCLIP:
        _avsigclip_bounds(w, lo, hi, m, p, s, pairs)
    elif p.rejection == SIGCLIP:
        _sigclip_bounds(w, lo, hi, m, p, s, pairs)
    if p.quantum > 0.0:  # never reject a value within the quantisation step of the center
        for q in range(m):
            if hi[q] > lo[q]:
                s.lower[q] = min(s.lower[q], s.center[q] - p.quantum)
                s.upper[q] = max(s.upper[q], s.center[q] + p.quantum)


_CCDCLIP_MIN_VALUES = 2  # IRAF: fewer values are not clipped by ccdclip
_SIGCLIP_MIN_VALUES = 3  # IRAF: nor by avsigclip and sigclip
_AVSIGCLIP_MIN_VALUES = 3  # IRAF: nor do they count in avsigclip's line sigma
_RESIDUAL_TOLERANCE = 1e-3  # IRAF: residuals (in spreads) this close are equal (nkeep)


@njit(nogil=True, cache=True)
def _keep_count(k, nkeep):
    """How many of ``k`` values ``nkeep`` keeps at least (IRAF's ``maxkeep``)."""
    return min(k, nkeep) if nkeep >= 0 else max(0, k + nkeep)


@njit(nogil=True, cache=True)
def _clip_iteratively(w, lo, hi, m, p, s, pairs):
    """Narrow ``lo..hi`` by up to ``maxiters`` passes of the rejection's bounds; as in
    ``astropy.stats.sigma_clip``, the last bounds decide over the whole starting range. IRAF's
    algorithms (ccdclip, avsigclip, sigclip) clip as IRAF does instead: rejected values stay
    rejected, and a pixel is clipped no further once it has fewer than 2 (avsigclip, sigclip: 3)
    values or no more than ``nkeep``."""
    iraf = p.rejection == CCDCLIP or p.rejection == AVSIGCLIP or p.rejection == SIGCLIP
    fewest = _CCDCLIP_MIN_VALUES if p.rejection == CCDCLIP else _SIGCLIP_MIN_VALUES
    copy_columns(s.cur_lo, lo, m)
    copy_columns(s.cur_hi, hi, m)
    s.lower[:m] = -np.inf
    s.upper[:m] = np.inf
    passes = 0
    for _ in range(p.maxiters):
        passes += 1
        if iraf:  # the pixels still clipped; the others are passed as empty
            for q in range(m):
                need = max(fewest, _keep_count(hi[q] - lo[q], p.nkeep) + 1)
                active = s.cur_hi[q] - s.cur_lo[q] >= need
                s.new_lo[q] = s.cur_lo[q]
                s.new_hi[q] = s.cur_hi[q] if active else s.cur_lo[q]
            _bounds(w, s.new_lo, s.new_hi, m, p, s, pairs)
            for q in range(m):
                if s.new_hi[q] == s.new_lo[q]:
                    s.lower[q] = -np.inf
                    s.upper[q] = np.inf
        else:
            _bounds(w, s.cur_lo, s.cur_hi, m, p, s, pairs)
        clip_to_bounds(w, s.cur_lo, s.cur_hi, s.lower, s.upper, s.new_lo, s.new_hi, m)
        changed = 0  # counted branch-free, so that the loop vectorises
        for q in range(m):
            changed += (s.new_lo[q] != s.cur_lo[q]) | (s.new_hi[q] != s.cur_hi[q])
        copy_columns(s.cur_lo, s.new_lo, m)
        copy_columns(s.cur_hi, s.new_hi, m)
        if changed == 0:
            break
    if passes > 1 and not iraf:  # after one pass, the current range is already final
        clip_to_bounds(w, lo, hi, s.lower, s.upper, s.cur_lo, s.cur_hi, m)
    copy_columns(lo, s.cur_lo, m)
    copy_columns(hi, s.cur_hi, m)


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
def _keep_at_least(w, a, b, lo, hi, n, m, p, s):
    """IRAF's ``nkeep``: where clipping left fewer than ``nkeep`` values (or rejected more than
    ``-nkeep``), give back the rejected values nearest the last center, nearer end first (both
    when their distances differ by at most 0.001 spreads, IRAF's tolerance). ``lo..hi`` (or ``0..n``, ``p.independent``) is the range clipping
    started from."""
    for q in range(m):
        a0 = 0 if p.independent else lo[q]
        b0 = n[q] if p.independent else hi[q]
        keep = _keep_count(b0 - a0, p.nkeep)
        x = a[q]
        y = b[q]
        if y - x >= keep:
            continue
        c = s.center[q]
        if y <= x:  # nothing kept: start from where the center lies
            x = a0
            while x < b0 and w[x, q] < c:
                x += 1
            y = x
        while y - x < keep:
            if x == a0:
                y += 1
            elif y == b0:
                x -= 1
            else:
                below = abs(c - np.float64(w[x - 1, q]))
                above = abs(np.float64(w[y, q]) - c)
                tie = abs(below - above) <= _RESIDUAL_TOLERANCE * s.spread[q]
                if below < above or tie:
                    x -= 1
                if above < below or tie:
                    y += 1
        a[q] = x
        b[q] = y


@njit(nogil=True, cache=True)
def candidates(w, lo, hi, n, m, p, s):
    """Each column's range of the ``n`` valid sorted values left by extrema and thresholds, the
    range the rejection algorithm starts from."""
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
        copy_columns(lo, s.new_lo, m)
        copy_columns(hi, s.new_hi, m)


@njit(nogil=True, cache=True)
def reject(w, lo, hi, n, m, p, s, pairs, esd_crit):
    """Narrow each column's kept range: extrema, thresholds, then the rejection algorithm."""
    candidates(w, lo, hi, n, m, p, s)
    if p.rejection == NO_REJECTION:
        return
    a = s.range_lo
    b = s.range_hi
    if p.independent:  # statistics over every valid value; keep what every step keeps
        a[:m] = 0
        copy_columns(b, n, m)
    else:
        copy_columns(a, lo, m)
        copy_columns(b, hi, m)
    if p.rejection == ESD:
        _esd(w, a, b, m, p, esd_crit)
    else:
        _clip_iteratively(w, a, b, m, p, s, pairs)
        _keep_at_least(w, a, b, lo, hi, n, m, p, s)
    for q in range(m):
        lo[q] = max(lo[q], a[q])
        hi[q] = max(lo[q], min(hi[q], b[q]))
