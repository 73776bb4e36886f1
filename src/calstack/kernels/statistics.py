"""Robust statistics every layer shares: the MAD-to-std factor and the robust std."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MAD_TO_STD", "median_and_robust_std"]

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
