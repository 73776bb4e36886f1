"""Pure-NumPy twins of the kernel's rejection steps: the test oracle.

They are written independently of :mod:`calstack.kernels.stack` (whole-array NaN-aware NumPy,
or plain per-pixel loops, instead of per-pixel sorted ranges) and favour obviousness over
speed. :mod:`calstack.kernels.twin` combines with them; tests and benchmarks compare the fast
kernel with it on random stacks.

Every rejection step is one function with one signature, ``reject(data, options)``: it returns
the boolean array of values to reject from ``data`` (shape (N, P), NaN = missing); ``options``
is a :class:`calstack.options.CombineOptions`.
"""

from __future__ import annotations

import numpy as np

from .esd import critical_values, esd_max_outliers
from .params import WINSOR_CLIP, WINSOR_CORRECTION, pclip_rank_offset
from .statistics import MAD_TO_STD

__all__ = [
    "avsigclip",
    "ccdclip",
    "esd",
    "percentile_clip",
    "reject_extrema",
    "reject_thresholds",
    "sigclip",
    "sigma_clip",
    "winsorized_sigma_clip",
]


def reject_extrema(data, options):
    """The ``nlow`` lowest and ``nhigh`` highest values (ranks of a stable sort).

    With ``ccdproc_semantics`` missing values count as the highest, as in ccdproc.
    """
    order = np.argsort(data, axis=0, kind="stable")  # NaN last
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(len(data))[:, None], axis=0)
    valid = np.isfinite(data)
    top = len(data) if options.ccdproc_semantics else valid.sum(axis=0)
    return valid & ((ranks < options.nlow) | (ranks >= top - options.nhigh))


def reject_thresholds(data, options):
    """Values below ``min_clip`` or above ``max_clip``."""
    with np.errstate(invalid="ignore"):
        low = data < options.min_clip if options.min_clip is not None else False
        high = data > options.max_clip if options.max_clip is not None else False
    return np.isfinite(data) & (low | high)


def _center(work, options):
    return np.nanmedian(work, axis=0) if options.cenfunc == "median" else np.nanmean(work, axis=0)


def _noise(level, options):
    gain, read_noise, sense = float(options.gain), float(options.read_noise), options.sense_noise
    return np.sqrt((read_noise / gain) ** 2 + np.maximum(level, 0) / gain + (sense * level) ** 2)


def _frames(options, n):
    scale = np.ones(n) if options.frame_scale is None else np.array(options.frame_scale)
    zero = np.zeros(n) if options.frame_zero is None else np.array(options.frame_zero)
    return scale, zero


def _floored(spread, center, options, n):
    """No estimated spread below the quantisation step, nor (gain and read noise known) below
    the noise model at the frames' mean scale and zero."""
    scale, zero = _frames(options, n)
    spread = np.maximum(spread, options.quantum * scale.max())
    if not isinstance(options.gain, str) and not isinstance(options.read_noise, str):
        spread = np.maximum(spread, scale.mean() * _noise((center + zero.mean()) / scale.mean(),
                                                          options))
    return spread


def _sigma_bounds(work, options):
    center = _center(work, options)
    if options.stdfunc == "mad_std":
        median = np.nanmedian(work, axis=0)
        spread = np.nanmedian(np.abs(work - median), axis=0) * MAD_TO_STD
    else:
        spread = np.nanstd(work, axis=0)
    spread = _floored(spread, center, options, len(work))
    return center, spread, center - spread * options.low, center + spread * options.high


def _pclip_bounds(work, options):
    median = np.nanmedian(work, axis=0)
    lower = np.full(work.shape[1], -np.inf)
    upper = np.full(work.shape[1], np.inf)
    spread = np.full(work.shape[1], np.nan)
    offset = pclip_rank_offset(options.pclip, len(work))  # of the stack's frames, not a pixel's
    for q in range(work.shape[1]):
        values = np.sort(work[np.isfinite(work[:, q]), q])
        k = len(values)
        if k == 0:
            continue
        rank = max(0, (k - 1) // 2 - offset) if options.pclip < 0 else min(k - 1, k // 2 + offset)
        spread[q] = abs(median[q] - values[rank])
        if k >= 3 and spread[q] > 0:  # IRAF: fewer values, or no spread, reject nothing
            lower[q] = median[q] - spread[q] * options.low
            upper[q] = median[q] + spread[q] * options.high
    return median, spread, lower, upper


def _winsorized_bounds(work, options):
    median = np.nanmedian(work, axis=0)
    spread = np.full(work.shape[1], np.nan)
    for q in range(work.shape[1]):
        values = work[np.isfinite(work[:, q]), q]
        if len(values) == 0:
            continue
        sigma = values.std()
        for _ in range(50):
            winsorized = np.clip(values, median[q] - WINSOR_CLIP * sigma,
                                 median[q] + WINSOR_CLIP * sigma)
            new = WINSOR_CORRECTION * winsorized.std()
            settled = abs(new - sigma) <= 5e-4 * sigma
            sigma = new
            if settled:
                break
        spread[q] = sigma
    spread = _floored(spread, median, options, len(work))
    return median, spread, median - spread * options.low, median + spread * options.high


def _ccdclip_center(work, options):
    if options.cenfunc == "median":
        return np.nanmedian(work, axis=0)
    center = np.full(work.shape[1], np.nan)
    for q in range(work.shape[1]):
        values = np.sort(work[np.isfinite(work[:, q]), q])
        if len(values) >= 3:  # IRAF: the mean without the lowest and the highest
            values = values[1:-1]
        if len(values):
            center[q] = values.mean()
    return center


def _clip_ends_by_frame(work, center, frame_sigma, options):
    """Bounds that reject values from the ends while they lie outside the center -/+ their own
    frame's sigma (``frame_sigma(q, c)``: each frame's, (N,); tied frames: the most lenient):
    the lowest and highest values kept."""
    lower = np.full(work.shape[1], -np.inf)
    upper = np.full(work.shape[1], np.inf)
    for q in range(work.shape[1]):
        column = work[:, q]
        values = np.sort(column[np.isfinite(column)])
        if not len(values):
            continue
        c = center[q]
        sigmas = frame_sigma(q, c)
        sigma = [sigmas[column == v].max() for v in values]
        a, b = 0, len(values)
        while a < b and values[a] < c - options.low * sigma[a]:
            a += 1
        while b > a and values[b - 1] > c + options.high * sigma[b - 1]:
            b -= 1
        lower[q], upper[q] = (values[a], values[b - 1]) if b > a else (np.inf, -np.inf)
    return lower, upper


def _ccdclip_bounds(work, options):
    center = _ccdclip_center(work, options)
    if options.frame_scale is None and options.frame_zero is None:
        spread = _noise(center, options)
        return center, spread, center - spread * options.low, center + spread * options.high
    # each frame's model at the unscaled level
    scale, zero = _frames(options, len(work))
    spread = scale.mean() * _noise((center + zero.mean()) / scale.mean(), options)
    lower, upper = _clip_ends_by_frame(
        work, center, lambda _q, c: scale * _noise((c + zero) / scale, options), options)
    return center, spread, lower, upper


def _avsigclip_sigma(line, options):
    """avsigclip's sigma of one image line ``line`` (N, width): sqrt(sum((x - c)**2 / max(1,
    level)) / (n - 1)) over the pixels with at least 3 values (the level of each value's frame
    when frames were scaled), 0 where that is undefined."""
    center = _ccdclip_center(line, options)
    scale, zero = _frames(options, len(line))
    level = np.maximum(1.0, (center[None, :] + zero[:, None]) * scale[:, None])
    counted = np.isfinite(line).sum(axis=0) >= 3
    values = line[:, counted]
    finite = np.isfinite(values)
    terms = np.where(finite, (values - center[counted]) ** 2 / level[:, counted], 0.0)
    count = finite.sum()
    return float(np.sqrt(terms.sum() / (count - 1))) if count > 1 else 0.0


def _iraf_bounds_of(data, sigma_of, options, *, poisson):
    """The bounds of avsigclip or sigclip for ``data`` (N, P): ``sigma_of(work, center)`` each
    pixel's sigma (P,); the center is the median, or the mean without the extremes on a pixel's
    first pass and the plain mean after. The bounds are center -/+ sigma, times the square root
    of the level (at least 1) with ``poisson``, and per frame, at each frame's level, when frames
    were scaled."""
    original = np.isfinite(data).sum(axis=0)
    scale, zero = _frames(options, len(data))
    scaled = options.frame_scale is not None or options.frame_zero is not None

    def bounds(work, options):
        center = _ccdclip_center(work, options)
        if options.cenfunc == "mean":
            touched = np.isfinite(work).sum(axis=0) != original
            center = np.where(touched, np.nanmean(work, axis=0), center)
        sigma = sigma_of(work, center)
        spread = sigma * np.sqrt(np.maximum(1.0, (center + zero.mean()) * scale.mean())) \
            if poisson else sigma
        if scaled:
            lower, upper = _clip_ends_by_frame(
                work, center, lambda q, c: sigma[q] * np.sqrt(np.maximum(1.0, (c + zero) * scale)),
                options)
        else:
            width = sigma * np.sqrt(np.maximum(1.0, center)) if poisson else sigma
            lower, upper = center - width * options.low, center + width * options.high
        none = ~(sigma > 0)
        return center, spread, np.where(none, -np.inf, lower), np.where(none, np.inf, upper)

    return bounds


def _sigclip_sigma(work, center, options):
    """sigclip's std (ddof=1) of each pixel's values about ``center``; each deviation divided
    by the square root of its frame's level (at least 1) when frames were scaled."""
    if options.frame_scale is None and options.frame_zero is None:
        level = np.ones_like(work)
    else:
        scale, zero = _frames(options, len(work))
        level = np.maximum(1.0, (center[None, :] + zero[:, None]) * scale[:, None])
    count = np.isfinite(work).sum(axis=0)
    total = np.nansum((work - center) ** 2 / level, axis=0)
    return np.where(count > 1, np.sqrt(total / np.maximum(count - 1, 1)), 0.0)


def _keep(data, reject, center, spread, options):
    """IRAF's ``nkeep``: give back the rejected values nearest the center, nearer end first (both
    ends when their distances differ by at most 0.001 spreads), until ``nkeep`` are kept (or
    at most ``-nkeep`` rejected)."""
    for q in range(data.shape[1]):
        order = np.argsort(data[:, q], kind="stable")
        values = data[order, q]
        k0 = int(np.isfinite(values).sum())
        keep = _keep_count(k0, options)
        kept = np.flatnonzero(~reject[order, q][:k0])
        if len(kept) >= keep:
            continue
        c = center[q]
        if len(kept):
            x, y = kept[0], kept[-1] + 1
        else:
            x = y = int((values[:k0] < c).sum())
        while y - x < keep:
            if x == 0:
                y += 1
            elif y == k0:
                x -= 1
            else:
                below, above = abs(c - values[x - 1]), abs(values[y] - c)
                tie = abs(below - above) <= 1e-3 * spread[q]
                x -= (below < above) or tie
                y += (above < below) or tie
        reject[order[x:y], q] = False
    return reject


def _keep_count(count, options):
    """IRAF's ``maxkeep``: how many of ``count`` values ``nkeep`` keeps at least."""
    if options.nkeep >= 0:
        return np.minimum(count, options.nkeep)
    return np.maximum(0, count + options.nkeep)


def _iterate(data, options, bounds, *, iraf=False, fewest=2):
    """Apply ``bounds`` up to ``maxiters`` times; the last bounds reject (astropy's rule), or
    (``iraf``) every value rejected on the way, a pixel clipped no more once it has fewer than
    ``fewest`` values or no more than ``nkeep``; never reject within the quantisation step of
    the center; then ``nkeep``."""
    maxiters = np.inf if options.maxiters is None else options.maxiters
    quantum = options.quantum * _frames(options, len(data))[0].max()
    work = data.copy()
    need = np.maximum(fewest, _keep_count(np.isfinite(data).sum(axis=0), options) + 1)
    center = np.full(data.shape[1:], np.nan)
    spread = np.full(data.shape[1:], np.nan)
    lower = np.full(data.shape[1:], -np.inf)
    upper = np.full(data.shape[1:], np.inf)
    iteration = 0
    while iteration < maxiters:
        iteration += 1
        active = np.isfinite(work).sum(axis=0) >= need if iraf else np.ones(data.shape[1], bool)
        new_center, new_spread, new_lower, new_upper = bounds(np.where(active, work, np.nan),
                                                              options)
        if quantum > 0:
            new_lower = np.minimum(new_lower, new_center - quantum)
            new_upper = np.maximum(new_upper, new_center + quantum)
        has_values = np.isfinite(work).any(axis=0) & active
        center = np.where(has_values, new_center, center)
        spread = np.where(has_values, new_spread, spread)
        lower = np.where(has_values, new_lower, lower)
        upper = np.where(has_values, new_upper, upper)
        with np.errstate(invalid="ignore"):
            new = ((work < lower) | (work > upper)) & active
        if not new.any():
            break
        work[new] = np.nan
    if iraf:
        reject = np.isfinite(data) & np.isnan(work)
    else:
        with np.errstate(invalid="ignore"):
            reject = (data < lower) | (data > upper)
    return _keep(data, reject, center, spread, options)


def sigma_clip(data, options):
    """Sigma clipping around the median or mean, spread mad_std or std."""
    return _iterate(data, options, _sigma_bounds)


def percentile_clip(data, options):
    """IRAF ``pclip``: spread = distance from the median to a value ``pclip`` ranks away (the
    offset fixed from the number of frames); fewer than 3 values or a zero spread: none."""
    return _iterate(data, options, _pclip_bounds)


def winsorized_sigma_clip(data, options):
    """Median -/+ sigma times the (corrected) std of the winsorized values."""
    return _iterate(data, options, _winsorized_bounds)


def ccdclip(data, options):
    """IRAF ``ccdclip``: spread from the noise model (gain, read noise, sensitivity noise) at the
    unscaled level, around the median or the mean without the extremes."""
    return _iterate(data, options, _ccdclip_bounds, iraf=True)


def avsigclip(data, options):
    """IRAF ``avsigclip``, on ``data`` of shape (N, lines, width): one sigma per line, fitted to
    the square root of the level (at least 1) over the line's pixels, then clipping as ccdclip
    does around the median or the mean without the extremes (3 values at least)."""
    reject = np.zeros(data.shape, bool)
    for line in range(data.shape[1]):
        values = data[:, line, :]
        sigma = np.full(values.shape[1], _avsigclip_sigma(values, options))
        bounds = _iraf_bounds_of(values, lambda _work, _center, s=sigma: s, options,
                                 poisson=True)
        reject[:, line, :] = _iterate(values, options, bounds, iraf=True, fewest=3)
    return reject


def sigclip(data, options):
    """IRAF ``sigclip``: the std (ddof=1) of each pixel's values about the median or the mean
    without the extremes, re-estimated each pass, rejected values staying rejected (3 values at
    least)."""
    bounds = _iraf_bounds_of(data, lambda work, center: _sigclip_sigma(work, center, options),
                             options, poisson=False)
    return _iterate(data, options, bounds, iraf=True, fewest=3)


def esd(data, options):
    """Generalized ESD test (Rosner 1983), pixel by pixel."""
    crit = critical_values(len(data), options.esd_max, options.esd_alpha)
    reject = np.zeros(data.shape, bool)
    for q in range(data.shape[1]):
        rows = list(np.flatnonzero(np.isfinite(data[:, q])))
        k = len(rows)
        removed, n_outliers = [], 0
        for i in range(1, esd_max_outliers(k, options.esd_max) + 1):
            values = data[rows, q]
            std = values.std(ddof=1)
            if std == 0:
                break
            deviation = np.abs(values - values.mean())
            farthest = np.flatnonzero(deviation == deviation.max())
            top = values[farthest].max()  # of equally far values: the highest
            ties = farthest[values[farthest] == top]
            # of tied values, as a stable sort ranks them: the high end gives up its last frame,
            # the low end its first
            pick = ties[-1] if top > values.mean() else ties[0]
            removed.append(rows.pop(pick))
            if deviation.max() / std > crit[k, i]:
                n_outliers = i
        reject[removed[:n_outliers], q] = True
    return reject
