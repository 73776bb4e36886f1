"""Finding defective pixels in master darks and flats: a bitmask, one bit per class.

Pure functions of arrays (NumPy and ``scipy.ndimage``); :mod:`calstack.pipeline.defects` reads
the masters and writes the mask. Each class is found against the pixel's surroundings, the
residual of the master less its moving median (``scipy.ndimage.median_filter``):

- ``hot``, ``warm`` (dark): a residual above ``warm_sigma`` times the dark's robust spread
  (1.4826 MAD of the residual, cp_pipe's bright-pixel test in sigmas), ``hot`` where that
  excess is also at least ``hot_current`` e-/s (5 e-/s: cp_pipe's ``darkCurrentThreshold``,
  LSST's LCA-128), ``warm`` below it;
- ``dead``, ``low_qe`` (flat): a residual below ``-lsigma`` times the local percentile sigma
  (half the 69.1 - 30.9 percentile range over ``ncsig`` x ``nlsig``): ccdproc's ``ccdmask``
  (IRAF's), its low side, with its filters and defaults; ``dead`` where the response is also
  below ``dead_fraction`` of the local median, ``low_qe`` above it;
- ``column`` (dark and flat): a column whose running median over ``column_length`` rows departs
  from its neighbours (the residual) by more than ``column_sigma`` times the running median's
  own noise (1.2533 sigma / sqrt(length)), over that length: pixels each within the noise, a
  column out of it;
- ``saturated``: dark values at or above ``saturation``, and pixels with no value in a master
  (NaN: its MASK extension, every frame's value rejected).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..errors import OptionError

__all__ = ["DEFECT_BITS", "DEFECT_DOCS", "dark_defects", "flat_defects", "merge_masks"]

#: The bits of a defect mask, one per class.
DEFECT_BITS = {"hot": 1, "warm": 2, "dead": 4, "low_qe": 8, "column": 16, "saturated": 32}

#: What each class means, for the mask's header.
DEFECT_DOCS = {
    "hot": "dark current above the hot threshold (e-/s), significant",
    "warm": "dark excess above warm_sigma, below the hot threshold",
    "dead": "flat below -lsigma local sigma and dead_fraction of local median",
    "low_qe": "flat below -lsigma local sigma (ccdmask), above dead_fraction",
    "column": "column departing from its neighbours over column_length rows",
    "saturated": "dark at saturation, or no value in a master (MASK)",
}

#: Efficiency of the median: its noise over N values is this times sigma / sqrt(N).
_MEDIAN_NOISE = math.sqrt(math.pi / 2)

#: Rows a bad-column stretch is grown by at each end.
_GROW = 3


def _robust_std(values) -> float:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan
    return 1.4826 * float(np.median(np.abs(finite - np.median(finite))))


def _residual(image, size):
    """The image less its moving median (NaN filled with the median of the finite values)."""
    data = np.asarray(image, np.float64)
    missing = ~np.isfinite(data)
    if missing.any():
        data = np.where(missing, np.nanmedian(data) if (~missing).any() else 0.0, data)
    return data - ndimage.median_filter(data, size=size), missing


def _columns(residual, sigma, length, nsigma, edge):
    """Pixels of column stretches whose running median (``length`` rows) departs from 0 by
    more than ``nsigma`` times its noise, each stretch grown by :data:`_GROW` rows at its ends
    (where the centred window is half in the stretch, the running median is borderline); the
    ``edge`` columns at each side, which have neighbours on one side only (their moving median
    cannot follow a gradient there), are not judged."""
    length = min(length, residual.shape[0])
    if length < 3:
        return np.zeros(residual.shape, bool)
    running = ndimage.median_filter(residual / sigma, size=(length, 1), mode="reflect")
    found = np.abs(running) > nsigma * _MEDIAN_NOISE / math.sqrt(length)
    if edge:
        found[:, :edge] = found[:, -edge:] = False
    return ndimage.binary_dilation(found, structure=np.ones((2 * _GROW + 1, 1), bool))


def _check(name, value, minimum=0.0):
    if not (isinstance(value, (int, float)) and not isinstance(value, bool)) or not value > minimum:
        raise OptionError(f"{name}={value!r} must be a number > {minimum:g}")
    return value


def dark_defects(dark, *, exposure, gain, hot_current=5.0, warm_sigma=5.0, column_sigma=5.0,
                 column_length=50, saturation=None, size=7) -> np.ndarray:
    """Hot, warm, column and saturated pixels of a bias-subtracted master dark.

    Parameters
    ----------
    dark : numpy.ndarray
        The master dark (ADU, bias subtracted); NaN = no value.
    exposure : float
        Its exposure (s).
    gain : float
        Electrons per ADU.
    hot_current : float
        Excess dark current (e-/s) from which a significant pixel is hot rather than warm.
    warm_sigma : float
        Significance (robust sigmas of the dark's residual) of a hot or warm pixel.
    column_sigma : float
        Significance of a bad column's running median.
    column_length : int
        Rows over which a column is judged.
    saturation : float, optional
        Dark values at or above it are ``saturated``.
    size : int
        Side of the moving median.

    Returns
    -------
    numpy.ndarray of uint8
        :data:`DEFECT_BITS` of each pixel.
    """
    _check("exposure", exposure)
    _check("gain", gain)
    for name, value in (("hot_current", hot_current), ("warm_sigma", warm_sigma),
                        ("column_sigma", column_sigma)):
        _check(name, value)
    residual, missing = _residual(dark, size)
    sigma = _robust_std(residual)
    mask = np.zeros(residual.shape, np.uint8)
    significant = residual > warm_sigma * sigma
    hot = significant & (residual * gain / exposure >= hot_current)
    mask[hot] |= DEFECT_BITS["hot"]
    mask[significant & ~hot] |= DEFECT_BITS["warm"]
    if sigma > 0:
        mask[_columns(residual, sigma, int(column_length), column_sigma, size // 2)] |= \
            DEFECT_BITS["column"]
    if saturation is not None:
        with np.errstate(invalid="ignore"):
            mask[np.asarray(dark) >= saturation] |= DEFECT_BITS["saturated"]
    mask[missing] |= DEFECT_BITS["saturated"]
    return mask


def flat_defects(flat, *, lsigma=9.0, dead_fraction=0.5, column_sigma=5.0, column_length=50,
                 ncmed=7, nlmed=7, ncsig=15, nlsig=15) -> np.ndarray:
    """Dead, low-QE, column and saturated (no value) pixels of a master flat.

    Parameters
    ----------
    flat : numpy.ndarray
        The master flat (any normalisation); NaN = no value.
    lsigma : float
        A pixel below its moving median by more than ``lsigma`` local sigmas is dead or low
        QE (ccdproc's ``ccdmask`` ``lsigma``, its default).
    dead_fraction : float
        Of those, the ones whose response is below this fraction of the local median are dead.
    column_sigma, column_length : float, int
        As :func:`dark_defects`'s, on the residual in local sigmas.
    ncmed, nlmed, ncsig, nlsig : int
        ``ccdmask``'s column and line sizes of the moving median and of the sigma's box.

    Returns
    -------
    numpy.ndarray of uint8
        :data:`DEFECT_BITS` of each pixel.
    """
    _check("lsigma", lsigma)
    _check("dead_fraction", dead_fraction)
    _check("column_sigma", column_sigma)
    residual, missing = _residual(flat, (nlmed, ncmed))
    local = np.asarray(flat, np.float64) - residual  # the moving median
    high = ndimage.percentile_filter(residual, 69.1, size=(nlsig, ncsig))
    low = ndimage.percentile_filter(residual, 30.9, size=(nlsig, ncsig))
    sigma = (high - low) / 2.0
    mask = np.zeros(residual.shape, np.uint8)
    cold = residual < -lsigma * sigma
    with np.errstate(invalid="ignore", divide="ignore"):
        dead = cold & (np.asarray(flat, np.float64) < dead_fraction * local)
    mask[dead] |= DEFECT_BITS["dead"]
    mask[cold & ~dead] |= DEFECT_BITS["low_qe"]
    spread = _robust_std(residual)  # ccdmask's "sigma" is half of it (69.1 - 30.9: +-0.5 sigma)
    if spread > 0:
        mask[_columns(residual, spread, int(column_length), column_sigma, ncmed // 2)] |= \
            DEFECT_BITS["column"]
    mask[missing] |= DEFECT_BITS["saturated"]
    return mask


def merge_masks(masks, fraction=0.7) -> np.ndarray:
    """Merge defect masks of several nights, as cp_pipe does.

    Parameters
    ----------
    masks : sequence of numpy.ndarray
        Bitmasks of one shape (nonzero = bad).
    fraction : float
        A pixel is bad when it is bad in at least this fraction of the masks (cp_pipe's
        ``combinationFraction``, 0.7).

    Returns
    -------
    numpy.ndarray of uint8
        The bits each pixel had in the masks, where it is bad in enough of them; 0 elsewhere.
    """
    if not 0 < fraction <= 1:
        raise OptionError(f"fraction={fraction!r} must be in (0, 1], e.g. 0.7")
    if not masks:
        raise OptionError("no masks to merge")
    votes = np.zeros(masks[0].shape, np.int32)
    bits = np.zeros(masks[0].shape, np.uint8)
    for mask in masks:
        votes += mask != 0
        bits |= mask.astype(np.uint8)
    return np.where(votes >= fraction * len(masks) - 1e-9, bits, 0).astype(np.uint8)
