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
from .params import WINSOR_CLIP, WINSOR_CORRECTION
from .statistics import MAD_TO_STD

__all__ = [
    "ccdclip",
    "esd",
    "percentile_clip",
    "reject_extrema",
    "reject_thresholds",
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


def _sigma_bounds(work, options):
    center = _center(work, options)
    if options.stdfunc == "mad_std":
        median = np.nanmedian(work, axis=0)
        spread = np.nanmedian(np.abs(work - median), axis=0) * MAD_TO_STD
    else:
        spread = np.nanstd(work, axis=0)
    return center - spread * options.low, center + spread * options.high


def _pclip_bounds(work, options):
    median = np.nanmedian(work, axis=0)
    spread = np.full(work.shape[1], np.nan)
    for q in range(work.shape[1]):
        values = np.sort(work[np.isfinite(work[:, q]), q])
        k = len(values)
        if k == 0:
            continue
        a = abs(options.pclip)
        offset = int(a) if a >= 1 else max(1, int(np.floor(a * k / 2 + 0.5)))
        rank = max(0, (k - 1) // 2 - offset) if options.pclip < 0 else min(k - 1, k // 2 + offset)
        spread[q] = abs(median[q] - values[rank])
    return median - spread * options.low, median + spread * options.high


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
    return median - spread * options.low, median + spread * options.high


def _ccdclip_bounds(work, options):
    center = _center(work, options)
    gain, read_noise, sense = float(options.gain), float(options.read_noise), options.sense_noise
    spread = np.sqrt((read_noise / gain) ** 2 + np.maximum(center, 0) / gain + (sense * center) ** 2)
    return center - spread * options.low, center + spread * options.high


def _iterate(data, options, bounds):
    """Apply ``bounds`` up to ``maxiters`` times; the last bounds reject (astropy's rule)."""
    maxiters = np.inf if options.maxiters is None else options.maxiters
    work = data.copy()
    lower = np.full(data.shape[1:], -np.inf)
    upper = np.full(data.shape[1:], np.inf)
    iteration = 0
    while iteration < maxiters:
        iteration += 1
        new_lower, new_upper = bounds(work, options)
        has_values = np.isfinite(work).any(axis=0)
        lower = np.where(has_values, new_lower, lower)
        upper = np.where(has_values, new_upper, upper)
        with np.errstate(invalid="ignore"):
            new = (work < lower) | (work > upper)
        if not new.any():
            break
        work[new] = np.nan
    with np.errstate(invalid="ignore"):
        return (data < lower) | (data > upper)


def sigma_clip(data, options):
    """Sigma clipping around the median or mean, spread mad_std or std."""
    return _iterate(data, options, _sigma_bounds)


def percentile_clip(data, options):
    """IRAF ``pclip``: spread = distance from the median to a value ``pclip`` ranks away."""
    return _iterate(data, options, _pclip_bounds)


def winsorized_sigma_clip(data, options):
    """Median -/+ sigma times the (corrected) std of the winsorized values."""
    return _iterate(data, options, _winsorized_bounds)


def ccdclip(data, options):
    """IRAF ``ccdclip``: spread from the noise model (gain, read noise, sensitivity noise)."""
    return _iterate(data, options, _ccdclip_bounds)


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
