"""Pure-NumPy reference implementation of every combine path: the test oracle.

It is written independently of :mod:`calstack.kernels` (whole-array NaN-aware NumPy instead of
per-pixel sorted ranges) and favours obviousness over speed. Tests and benchmarks compare the
fast kernels with it on random stacks.
"""

from __future__ import annotations

import warnings

import numpy as np

from .kernels import MAD_TO_STD
from .options import CombineOptions

__all__ = ["combine_reference"]


def _reject_extrema(data, nlow, nhigh):
    """NaN the ``nlow`` lowest and ``nhigh`` highest finite values along axis 0."""
    ranks = np.argsort(np.argsort(data, axis=0, kind="stable"), axis=0, kind="stable")
    n_valid = np.isfinite(data).sum(axis=0)
    drop = (ranks < nlow) | ((ranks >= n_valid - nhigh) & (ranks < n_valid))
    data[drop] = np.nan


def _sigma_clip(data, options):
    """Iterate bounds on a working copy; the last bounds reject from ``data`` (astropy's rule)."""
    maxiters = np.inf if options.maxiters is None else options.maxiters
    work = data.copy()
    lower = np.full(data.shape[1:], -np.inf)
    upper = np.full(data.shape[1:], np.inf)
    iteration = 0
    while iteration < maxiters:
        iteration += 1
        center = np.nanmedian(work, axis=0) if options.cenfunc == "median" else np.nanmean(work, axis=0)
        if options.stdfunc == "mad_std":
            median = np.nanmedian(work, axis=0)
            spread = np.nanmedian(np.abs(work - median), axis=0) * MAD_TO_STD
        else:
            spread = np.nanstd(work, axis=0)
        has_values = np.isfinite(center)
        lower = np.where(has_values, center - spread * options.low, lower)
        upper = np.where(has_values, center + spread * options.high, upper)
        with np.errstate(invalid="ignore"):
            new = (work < lower) | (work > upper)
        if not new.any():
            break
        work[new] = np.nan
    with np.errstate(invalid="ignore"):
        data[(data < lower) | (data > upper)] = np.nan


def combine_reference(stack, options: CombineOptions | None = None, **kwargs):
    """Combine ``stack`` of shape (N, ...) the slow, obvious way.

    Parameters
    ----------
    stack : array_like
        N frames stacked on axis 0; NaN and Inf are missing values.
    options : CombineOptions, optional
        The options; or give them as keyword arguments.

    Returns
    -------
    data, uncertainty, count : numpy.ndarray
        float64 combined values and uncertainties (NaN where nothing was kept) and int counts.
    """
    options = options or CombineOptions.from_kwargs(**kwargs)
    data = np.array(stack, dtype=np.float64)
    data[~np.isfinite(data)] = np.nan
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if options.nlow or options.nhigh:
            _reject_extrema(data, options.nlow, options.nhigh)
        if options.min_clip is not None:
            data[data < options.min_clip] = np.nan
        if options.max_clip is not None:
            data[data > options.max_clip] = np.nan
        if options.rejection == "sigma_clip":
            _sigma_clip(data, options)
        count = np.isfinite(data).sum(axis=0)
        if options.method == "median":
            combined = np.nanmedian(data, axis=0)
            deviation = np.nanmedian(np.abs(data - combined), axis=0) * MAD_TO_STD
            uncertainty = deviation / np.sqrt(count)
        elif options.method == "sum":
            combined = np.nansum(data, axis=0)
            uncertainty = np.nanstd(data, axis=0) * np.sqrt(count)
        else:
            combined = np.nanmean(data, axis=0)
            uncertainty = np.nanstd(data, axis=0) / np.sqrt(count)
    nothing = count == 0
    combined = np.where(nothing, np.nan, combined)
    uncertainty = np.where(nothing, np.nan, uncertainty)
    return combined, uncertainty, count
