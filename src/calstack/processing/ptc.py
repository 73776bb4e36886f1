"""The camera's gain and read noise from pairs of frames (Janesick's photon transfer method).

Two flats of one level differ by their noise alone (the flat field's structure and the bias
cancel), so half the variance of their difference is one frame's temporal variance, in ADU²:
``var = level / gain + (read noise / gain)²`` with ``level`` the flat's mean above the bias. Two
biases give the read noise the same way: ``read noise = gain · std(B1 - B2) / √2``. With pairs at
several levels the gain is the fit of the photon transfer curve (variance less the read
variance against the level: a line through the origin of slope 1/gain); pairs at saturation
are left out of it. The spread of a difference is sigma-clipped (5 sigma, astropy's
``sigma_clipped_stats``) so that cosmic rays and hot pixels do not count as noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    gain it gives alone (e-/ADU), and whether it is saturated (left out of the fit)."""

    names: tuple[str, str]
    exptime: float | None
    level: float
    variance: float
    gain: float
    saturated: bool = False


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
        Every flat pair, the saturated ones too.
    linearity : float or None
        The largest departure (fraction) of a pair's level from a line through the origin
        against exposure time, where three or more exposure times are measured.
    """

    gain: float
    read_noise: float
    read_noise_adu: float
    pairs: tuple
    linearity: float | None


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
    used = [p for p in pairs if not p.saturated and p.level > 0
            and p.variance > read_noise_adu**2]
    if not used:
        raise ValueError("no flat pair below saturation with a level above the read noise")
    level = np.array([p.level for p in used])
    signal = np.array([p.variance for p in used]) - read_noise_adu**2
    slope = float(np.dot(level, signal) / np.dot(level, level))  # a line through the origin
    gain = 1.0 / slope
    timed = [(p.exptime, p.level) for p in used if p.exptime]
    linearity = None
    if len({t for t, _ in timed}) >= 3:
        t, m = np.array(timed).T
        rate = float(np.dot(t, m) / np.dot(t, t))
        linearity = float(np.max(np.abs(m / (rate * t) - 1.0)))
    return PhotonTransfer(gain, gain * read_noise_adu, read_noise_adu, tuple(pairs), linearity)
