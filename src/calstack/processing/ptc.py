"""The camera's gain and read noise from pairs of frames (Janesick's photon transfer method).

Two flats of one level differ by their noise alone (the flat field's structure and the bias
cancel), so half the variance of their difference is one frame's temporal variance, in ADU²:
``var = level / gain + (read noise / gain)²`` with ``level`` the flat's mean above the bias. Two
biases give the read noise the same way: ``read noise = gain · std(B1 - B2) / √2``. With pairs at
several levels the gain is the fit of the photon transfer curve (variance less the read
variance against the level: a line through the origin of slope 1/gain); pairs at saturation
are left out of it: those whose frames reach the saturation level, and those where the curve
has turned over — at full well the pixels stop filling and their variance collapses, so a
pair whose variance falls more than a fifth below the line of the pairs under it, and every
pair above it, are saturated, and the highest level fitted is where the response saturates.
With three exposure times or more, a pair whose level departs by more than 1 % from the line
(against exposure time) of the lower half of the levels is non-linear, and left out too.
The spread of a difference is sigma-clipped (5 sigma, astropy's ``sigma_clipped_stats``) so
that cosmic rays and hot pixels do not count as noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["FlatPair", "PhotonTransfer", "difference_variance", "flat_pair", "photon_transfer"]

_CLIP = 5.0


def difference_variance(a, b, *, bias_level=None) -> tuple[float, float]:
    """Half the clipped variance of ``a - b`` (one frame's temporal variance), and the mean of
    ``a`` and ``b``, non-finite values left out. With ``bias_level`` (flats), ``b``'s signal
    above it is first scaled to ``a``'s (a drift of the lamp between the two); biases are
    differenced as they are."""
    from astropy.stats import sigma_clipped_stats

    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    good = np.isfinite(a) & np.isfinite(b)
    mean_a, mean_b = float(a[good].mean()), float(b[good].mean())
    difference = a - b
    if bias_level is not None and mean_b != bias_level:
        ratio = (mean_a - bias_level) / (mean_b - bias_level)
        difference = a - (bias_level + (b - bias_level) * ratio)
    _, _, std = sigma_clipped_stats(difference[good], sigma=_CLIP, maxiters=10)
    return float(std) ** 2 / 2.0, (mean_a + mean_b) / 2.0


@dataclass(frozen=True)
class FlatPair:
    """One pair of flats: its level above the bias (ADU), one frame's variance (ADU²), the
    gain it gives alone (e-/ADU), and whether it is saturated or non-linear (either: left out
    of the fit)."""

    names: tuple[str, str]
    exptime: float | None
    level: float
    variance: float
    gain: float
    saturated: bool = False
    nonlinear: bool = False


def flat_pair(a, b, *, bias_level, read_variance, names, exptime=None, saturation=None):
    """The :class:`FlatPair` of flats ``a`` and ``b`` (ADU), over a bias of ``bias_level``
    (ADU) with a read variance of ``read_variance`` (ADU²); ``saturation``: the raw level at
    which a pair is saturated (by its 99.9th percentile)."""
    variance, mean = difference_variance(a, b, bias_level=bias_level)
    level = mean - bias_level
    signal = variance - read_variance
    gain = level / signal if signal > 0 else math.nan
    saturated = False
    if saturation is not None:
        top = max(float(np.nanpercentile(a, 99.9)), float(np.nanpercentile(b, 99.9)))
        saturated = top >= saturation
    return FlatPair(tuple(names), exptime, level, variance, gain, saturated)


@dataclass(frozen=True)
class PhotonTransfer:
    """A camera's measured noise model.

    Attributes
    ----------
    gain : float
        e-/ADU: the photon transfer fit over the pairs not saturated.
    read_noise : float
        e-: from the bias pair, times the gain.
    read_noise_adu : float
        ADU.
    pairs : tuple of FlatPair
        Every flat pair, the saturated ones too (marked).
    linearity : float or None
        The largest departure (fraction) of a pair's level from a line through the origin
        against exposure time, where three or more exposure times are measured.
    saturation : float or None
        Where the curve turned over: the highest level (ADU above the bias) of the pairs
        below the first pair whose variance collapsed; None where no pair did.
    """

    gain: float
    read_noise: float
    read_noise_adu: float
    pairs: tuple
    linearity: float | None
    saturation: float | None = None


def photon_transfer(pairs, read_noise_adu) -> PhotonTransfer:
    """Fit the photon transfer curve of ``pairs`` (:class:`FlatPair`).

    Parameters
    ----------
    pairs : sequence of FlatPair
    read_noise_adu : float
        The read noise (ADU) measured from two biases.

    Raises
    ------
    ValueError
        No pair is left below saturation with a signal above the read noise.
    """
    pairs, turned = _turned_over(pairs, read_noise_adu**2)
    pairs = _nonlinear(pairs)
    used = [p for p in pairs if not p.saturated and not p.nonlinear and p.level > 0
            and p.variance > read_noise_adu**2]
    if not used:
        raise ValueError("no flat pair below saturation with a level above the read noise")
    gain = 1.0 / _slope(used, read_noise_adu**2)
    timed = [(p.exptime, p.level) for p in pairs if p.exptime and not p.saturated
             and p.level > 0]
    linearity = None
    if len({t for t, _ in timed}) >= 3:
        t, m = np.array(timed).T
        rate = float(np.dot(t, m) / np.dot(t, t))
        linearity = float(np.max(np.abs(m / (rate * t) - 1.0)))
    saturation = max(p.level for p in pairs if not p.saturated) if turned else None
    return PhotonTransfer(gain, gain * read_noise_adu, read_noise_adu, tuple(pairs), linearity,
                          saturation)


#: A pair whose variance is below this fraction of the line under it has turned over.
_TURNED = 0.8
#: A pair whose level departs more than this from the line of the lower half of the levels
#: (against exposure time) is non-linear.
_NONLINEAR = 0.01


def _nonlinear(pairs) -> list:
    """``pairs`` with those of a non-linear level marked (three exposure times or more)."""
    timed = sorted((i for i, p in enumerate(pairs) if p.exptime and not p.saturated
                    and p.level > 0), key=lambda i: pairs[i].level)
    if len({pairs[i].exptime for i in timed}) < 3:
        return list(pairs)
    low = timed[:max(2, (len(timed) + 1) // 2)]
    t = np.array([pairs[i].exptime for i in low])
    m = np.array([pairs[i].level for i in low])
    rate = float(np.dot(t, m) / np.dot(t, t))
    far = {i for i in timed if abs(pairs[i].level / (rate * pairs[i].exptime) - 1) > _NONLINEAR}
    return [replace(p, nonlinear=True) if i in far else p for i, p in enumerate(pairs)]


def _slope(pairs, read_variance) -> float:
    """The slope (1/gain) of the line through the origin of variance less the read variance
    against level."""
    level = np.array([p.level for p in pairs])
    signal = np.array([p.variance for p in pairs]) - read_variance
    return float(np.dot(level, signal) / np.dot(level, level))


def _turned_over(pairs, read_variance) -> tuple[list, bool]:
    """``pairs`` with those at and above the turn-over of the curve marked saturated, and
    whether there was one: in order of level, the first pair whose variance less the read
    variance is below :data:`_TURNED` of the line of the pairs under it."""
    order = sorted(range(len(pairs)), key=lambda i: pairs[i].level)
    below, turned = [], None
    for i in order:
        p = pairs[i]
        if p.saturated or p.level <= 0 or p.variance <= read_variance:
            continue
        if below and p.variance - read_variance < _TURNED * _slope(below, read_variance) * p.level:
            turned = p.level
            break
        below.append(p)
    if turned is None:
        return list(pairs), False
    return [replace(p, saturated=True) if p.level >= turned else p for p in pairs], True
