"""Statistics every layer shares: the MAD-to-std factor, the robust std, and how much a
combine of N frames reduces Gaussian noise."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MAD_TO_STD", "expected_noise_reduction", "median_and_robust_std"]

#: Scale from the median absolute deviation to the standard deviation of a normal distribution
#: (astropy's ``mad_std`` constant).
MAD_TO_STD = 1.482602218505602


def median_and_robust_std(values) -> tuple[float, float]:
    """``(median, MAD_TO_STD * MAD)`` of the finite values of ``values`` (NaN, NaN if none)."""
    finite = np.asarray(values, np.float64).ravel()
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return math.nan, math.nan
    median = float(np.median(finite))
    return median, float(MAD_TO_STD * np.median(np.abs(finite - median)))


def expected_noise_reduction(method: str, n: int) -> float | None:
    """How much combining ``n`` frames by ``method`` divides Gaussian noise: sqrt(n) for an
    average, sqrt(2n/pi) for a median (its efficiency), None for a sum (it adds noise up)."""
    if method == "average":
        return math.sqrt(n)
    if method == "median":
        return math.sqrt(2 * n / math.pi)
    return None
