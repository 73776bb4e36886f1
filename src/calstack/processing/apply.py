"""Applying masters to a band of a science frame: bias, dark, flat, gain; uncertainty and mask.

:func:`calibrate_band` is the whole arithmetic in NumPy (``float32`` in, ``float32`` out), the
definition the tests hold against ccdproc; :func:`calibrate_into` does the same in one pass of
the numba kernel (:func:`calstack.kernels.calibration.calibrate_rows`, tested against it), for
``calstack calibrate``. NaN in any input is a missing value.

The uncertainty is the standard deviation of each calibrated value: the read noise, the Poisson
noise of the signal (the frame less its bias, so the bias level adds no photon noise, unlike
ccdproc's ``create_deviation`` on raw frames), and each master's own uncertainty, propagated as
independent errors (``CCDData`` arithmetic's rule). The flat is normalised by its mean, as
ccdproc's ``flat_correct`` and IRAF's ``ccdproc`` do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MASK_BITS", "Band", "Master", "calibrate_band", "calibrate_into"]

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
    both to be multiplied by ``factor`` (a dark's exposure scaling, a flat's normalisation)."""

    data: np.ndarray
    uncertainty: np.ndarray | None = None
    factor: float = 1.0

    def scaled(self) -> tuple:
        """Values and uncertainty times the factor."""
        if self.factor == 1.0:
            return self.data, self.uncertainty
        sigma = None if self.uncertainty is None else self.uncertainty * np.float32(
            abs(self.factor))
        return self.data * np.float32(self.factor), sigma


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
        The masters' rows (ADU): the bias level, the dark (its factor the exposure scaling; it
        includes the bias when ``bias`` is None), the flat (its factor normalises it to mean 1).
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
        level, sigma = bias.scaled()
        signal -= level
        _add_square(variance, sigma)
    # Poisson noise of the charge collected: the frame less its bias (a dark that includes the
    # bias leaves the dark current's share out, a small underestimate)
    variance += np.maximum(signal, 0) / gain
    variance += (read_noise / gain) ** 2
    if dark is not None:
        level, sigma = dark.scaled()
        signal -= level
        _add_square(variance, sigma)
    mask = np.where(np.isfinite(signal), 0, MASK_BITS["missing"]).astype(np.uint8)
    if saturation is not None:
        with np.errstate(invalid="ignore"):
            mask[raw >= saturation] |= MASK_BITS["saturated"]
    if flat is not None:
        response, sigma = flat.scaled()
        with np.errstate(invalid="ignore"):
            unusable = ~(response > 0)
        mask[unusable] |= MASK_BITS["flat"]
        factor = np.where(unusable, np.nan, response)
        with np.errstate(invalid="ignore", divide="ignore"):
            signal /= factor
            variance /= factor**2
            if sigma is not None:
                variance += (signal * sigma / factor) ** 2
    if electrons:
        signal *= gain
        variance *= gain**2
    return Band(signal, np.sqrt(variance, out=variance), mask)


_NONE = np.zeros((1, 1), np.float32)  # the kernel's stand-in for a master not given


def calibrate_into(raw, out: Band, *, bias=None, dark=None, flat=None, gain, read_noise,
                   saturation=None, electrons=True) -> Band:
    """:func:`calibrate_band` into the arrays of ``out``, in one pass of the numba kernel.

    ``raw`` and ``out``'s arrays are C-contiguous rows of one shape (``float32``, ``float32``,
    ``float32``, ``uint8``); the masters' arrays too. Returns ``out``.
    """
    from ..kernels.calibration import CalibrationParams, calibrate_rows

    def arrays(master):
        if master is None:
            return _NONE, _NONE
        return master.data, _NONE if master.uncertainty is None else master.uncertainty

    params = CalibrationParams(
        bias_factor=float(bias.factor) if bias else 1.0, dark_factor=float(dark.factor) if dark else 1.0,
        flat_factor=float(flat.factor) if flat else 1.0, gain=float(gain),
        read_noise=float(read_noise),
        saturation=np.inf if saturation is None else float(saturation), electrons=bool(electrons),
        has_bias=bias is not None, has_bias_sigma=bias is not None and bias.uncertainty is not None,
        has_dark=dark is not None, has_dark_sigma=dark is not None and dark.uncertainty is not None,
        has_flat=flat is not None, has_flat_sigma=flat is not None and flat.uncertainty is not None,
        missing_bit=MASK_BITS["missing"], saturated_bit=MASK_BITS["saturated"],
        flat_bit=MASK_BITS["flat"])
    calibrate_rows(raw, *arrays(bias), *arrays(dark), *arrays(flat), params, out.data,
                   out.uncertainty, out.mask)
    return out


def _add_square(variance, sigma):
    if sigma is not None:
        variance += np.square(sigma, dtype=np.float32)
