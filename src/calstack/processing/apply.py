"""Applying masters to a band of a science frame: bias, dark, flat, gain; uncertainty and mask.

Pure NumPy on arrays of rows (``float32`` in, ``float32`` out): :func:`calibrate_band` is the
whole arithmetic, used alike by ``calstack calibrate`` (band by band, frame by frame) and by
the tests against ccdproc. NaN in any input is a missing value.

The uncertainty is the standard deviation of each calibrated value: the read noise, the Poisson
noise of the signal (the frame less its bias, so the bias level adds no photon noise, unlike
ccdproc's ``create_deviation`` on raw frames), and each master's own uncertainty, propagated as
independent errors (``CCDData`` arithmetic's rule). The flat is normalised by its mean, as
ccdproc's ``flat_correct`` and IRAF's ``ccdproc`` do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MASK_BITS", "Band", "Master", "calibrate_band"]

#: Bits of a calibrated frame's MASK extension: a value is flagged by each that applies.
MASK_BITS = {
    "missing": 1,    # no value: non-finite in the frame, or masked (NaN) in a master
    "saturated": 2,  # the raw value is at or above the saturation level
    "flat": 4,       # the flat is zero, negative or missing there: no calibrated value
    "bad": 8,        # a bad pixel of the defect mask
    "cosmic": 16,    # a cosmic ray (cleaned)
}


@dataclass(frozen=True)
class Master:
    """A band of one master: its values and their uncertainty (standard deviation, or None),
    already scaled (a dark by its exposure factor, a flat normalised)."""

    data: np.ndarray
    uncertainty: np.ndarray | None = None


@dataclass
class Band:
    """A calibrated band: values, their uncertainty (standard deviation), MASK bits."""

    data: np.ndarray
    uncertainty: np.ndarray
    mask: np.ndarray


def calibrate_band(raw, *, bias=None, dark=None, flat=None, gain, read_noise,
                   saturation=None, electrons=True) -> Band:
    """Calibrate rows of a science frame.

    Parameters
    ----------
    raw : numpy.ndarray
        The frame's values (ADU, overscan already subtracted where it had one); NaN = missing.
    bias, dark, flat : Master, optional
        The masters' rows (ADU): the bias level, the dark (already multiplied by its exposure
        factor; it includes the bias when ``bias`` is None), the flat normalised to mean 1.
    gain : float
        Electrons per ADU.
    read_noise : float
        Read noise in electrons.
    saturation : float, optional
        Raw values at or above it are flagged ``saturated`` (their values are kept).
    electrons : bool
        Give the result in electrons (values times ``gain``); else in ADU.

    Returns
    -------
    Band
        ``data = (raw - bias - dark) / flat`` (times ``gain`` in electrons), its uncertainty,
        and the mask bits (:data:`MASK_BITS`). Where the flat is not positive the value is NaN.
    """
    signal = raw.astype(np.float32, copy=True)
    variance = np.zeros_like(signal)
    if bias is not None:
        signal -= bias.data
        _add_square(variance, bias.uncertainty)
    # Poisson noise of the charge collected: the frame less its bias (a dark that includes the
    # bias leaves the dark current's share out, a small underestimate)
    variance += np.maximum(signal, 0) / gain
    variance += (read_noise / gain) ** 2
    if dark is not None:
        signal -= dark.data
        _add_square(variance, dark.uncertainty)
    mask = np.where(np.isfinite(signal), 0, MASK_BITS["missing"]).astype(np.uint8)
    if saturation is not None:
        with np.errstate(invalid="ignore"):
            mask[raw >= saturation] |= MASK_BITS["saturated"]
    if flat is not None:
        with np.errstate(invalid="ignore"):
            unusable = ~(flat.data > 0)
        mask[unusable] |= MASK_BITS["flat"]
        factor = np.where(unusable, np.nan, flat.data)
        with np.errstate(invalid="ignore", divide="ignore"):
            signal /= factor
            variance /= factor**2
            if flat.uncertainty is not None:
                variance += (signal * flat.uncertainty / factor) ** 2
    if electrons:
        signal *= gain
        variance *= gain**2
    return Band(signal, np.sqrt(variance, out=variance), mask)


def _add_square(variance, sigma):
    if sigma is not None:
        variance += np.square(sigma, dtype=np.float32)
