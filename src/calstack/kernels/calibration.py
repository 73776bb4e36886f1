"""The calibration kernel: bias, dark, flat and gain applied to rows of a science frame in one
pass, with each value's uncertainty and mask bits.

Its NumPy twin, which defines the arithmetic, is
:func:`calstack.processing.apply.calibrate_band`; ``tests/test_calibrate.py`` checks one against
the other (Hypothesis) and the twin against ccdproc.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from .jit import njit

__all__ = ["CalibrationParams", "calibrate_rows"]

#: Scalars of :func:`calibrate_rows`: each master's factor (1 for a bias, the dark's exposure
#: scaling, the flat's normalisation), the noise model, the saturation level (``inf``: none), the unit, and
#: which masters (and their uncertainties) are given.
CalibrationParams = namedtuple("CalibrationParams", [
    "bias_factor", "dark_factor", "flat_factor", "gain", "read_noise", "saturation", "electrons",
    "has_bias", "has_bias_sigma", "has_dark", "has_dark_sigma", "has_flat", "has_flat_sigma",
    "missing_bit", "saturated_bit", "flat_bit",
])


@njit(nogil=True, cache=True, error_model="numpy")  # no division check: the loop vectorises
def calibrate_rows(raw, bias, bias_sigma, dark, dark_sigma, flat, flat_sigma, p, data, sigma,
                   mask):
    """Fill ``data``, ``sigma`` and ``mask`` (rows x columns) from ``raw`` and the masters' rows
    (any not given: a 1x1 array, ignored), by the rule of ``calibrate_band``.

    Every division is by the gain (> 0, checked before) or by a flat value only where that is
    positive, so NumPy's error model (no zero-division check, which would keep LLVM from
    vectorising the loop: 2x slower) changes no value."""
    read_variance = (p.read_noise / p.gain) ** 2
    for i in range(raw.shape[0]):
        for j in range(raw.shape[1]):
            value = np.float64(raw[i, j])
            variance = 0.0
            if p.has_bias:
                value -= p.bias_factor * bias[i, j]
                if p.has_bias_sigma:
                    variance += (p.bias_factor * bias_sigma[i, j]) ** 2
            variance += max(value, 0.0) / p.gain + read_variance
            if p.has_dark:
                value -= p.dark_factor * dark[i, j]
                if p.has_dark_sigma:
                    variance += (p.dark_factor * dark_sigma[i, j]) ** 2
            bits = 0 if math.isfinite(value) else p.missing_bit
            if raw[i, j] >= p.saturation:
                bits |= p.saturated_bit
            if p.has_flat:
                f = np.float64(np.float32(np.float32(p.flat_factor) * flat[i, j]))  # as stored
                if f > 0:
                    value /= f
                    variance /= f * f
                    if p.has_flat_sigma:
                        variance += (value * p.flat_factor * flat_sigma[i, j] / f) ** 2
                else:
                    bits |= p.flat_bit
                    value = math.nan
                    variance = math.nan
            if p.electrons:
                value *= p.gain
                variance *= p.gain * p.gain
            data[i, j] = value
            sigma[i, j] = math.sqrt(variance)
            mask[i, j] = bits
