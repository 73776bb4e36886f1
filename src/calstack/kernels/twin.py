"""The whole combine the slow, obvious way: the twin of :func:`calstack.kernels.stack.combine_stack`.

Rejection steps are :mod:`calstack.kernels.reference`'s, the algorithm chosen through the
registry; everything else is whole-array NaN-aware NumPy.
"""

from __future__ import annotations

import warnings

import numpy as np

from .reference import reject_extrema, reject_thresholds
from .registry import ALGORITHMS
from .statistics import MAD_TO_STD

__all__ = ["combine_reference"]


def _by_lines(algorithm, width):
    """The algorithm's twin for values (N, P) of lines of ``width`` pixels."""
    if not algorithm.lines:
        return algorithm.reference
    return lambda data, options: algorithm.reference(
        data.reshape(len(data), -1, width), options).reshape(data.shape)


def _reject(data, options, width):
    """NaN every rejected value of ``data`` (lines of ``width`` pixels), step by step (or
    independently, as ccdproc)."""
    steps = [reject_extrema, reject_thresholds]
    if options.rejection:
        steps.append(_by_lines(ALGORITHMS[options.rejection], width))
    if options.ccdproc_semantics:
        masks = [step(data, options) for step in steps]
        for mask in masks:
            data[mask] = np.nan
    else:
        for step in steps:
            data[step(data, options)] = np.nan


def combine_reference(stack, options, *, weights=None, post_scale=None):
    """Combine ``stack`` of shape (N, ...) the slow, obvious way.

    Parameters
    ----------
    stack : array_like
        N frames stacked on axis 0; NaN and Inf are missing values. The last axis is the
        frames' lines (of which avsigclip fits one sigma each).
    options : calstack.options.CombineOptions
        The options.
    weights : array_like, optional
        Per-frame (N,) or per-value (same shape as ``stack``) weights of the average or sum;
        rejected and missing values' weights do not count.
    post_scale : array_like, optional
        Per-frame factors applied after rejection (ccdproc's ``scale``).

    Returns
    -------
    data, uncertainty, count, frame_rejected : numpy.ndarray
        float64 combined values and uncertainties (NaN where nothing was kept), int counts, and
        the number of each frame's finite values that were rejected.
    """
    data = np.array(stack, dtype=np.float64)
    shape = data.shape
    width = shape[-1] if len(shape) > 1 else 1
    data = data.reshape(len(data), -1)
    data[~np.isfinite(data)] = np.nan
    valid = np.isfinite(data)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        kept = data.copy()
        _reject(kept, options, width)
        rejected = valid & np.isnan(kept)
        result = _combine_kept(kept, options, weights, post_scale)
        if options.grow:
            rejected, result = _grow(data, rejected, result, options, width, weights, post_scale)
    combined, uncertainty, count = result
    nothing = count == 0
    combined = np.where(nothing, np.nan, combined).reshape(shape[1:])
    uncertainty = np.where(nothing, np.nan, uncertainty).reshape(shape[1:])
    return combined, uncertainty, count.reshape(shape[1:]), rejected.sum(axis=1)


def _combine_kept(data, options, weights, post_scale):
    """Combined value, uncertainty and count of the finite values of ``data`` (N, P)."""
    kept = np.isfinite(data)
    if post_scale is not None:
        data = data * np.asarray(post_scale, float)[:, None]
    count = kept.sum(axis=0)
    if options.method == "median":
        combined = np.nanmedian(data, axis=0)
        deviation = np.nanmedian(np.abs(data - combined), axis=0) * MAD_TO_STD
        return combined, deviation / np.sqrt(count), count
    spread = np.nanstd(data, axis=0)
    if weights is None:
        combined = np.nansum(data, axis=0) if options.method == "sum" else np.nanmean(data, axis=0)
    else:
        w = np.broadcast_to(np.asarray(weights, float).reshape(len(data), -1), data.shape)
        w = np.where(kept, w, 0.0)
        total = np.nansum(w * data, axis=0)
        combined = total if options.method == "sum" else total / w.sum(axis=0)
    uncertainty = spread * np.sqrt(count) if options.method == "sum" else spread / np.sqrt(count)
    return combined, uncertainty, count


def _grow(data, rejected, result, options, width, weights, post_scale):
    """IRAF's ``grow`` after the first combine: every value rejected by extrema or the
    algorithm (not thresholds) rejects its frame's values within ``grow`` pixels; the rest,
    within the thresholds, are combined without rejection; with ``nkeep > 0`` a pixel left
    empty keeps ``result``. Returns the rejected values and the result."""
    thresholds = reject_thresholds(data, options)
    frames = (rejected & ~thresholds).reshape(len(data), -1, width)
    reach, radius = int(options.grow), options.grow
    grown = np.zeros_like(frames)
    lines = frames.shape[1]
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            if dx * dx + dy * dy <= radius * radius:
                grown[:, max(0, dy):lines + min(0, dy), max(0, dx):width + min(0, dx)] |= frames[
                    :, max(0, -dy):lines + min(0, -dy), max(0, -dx):width + min(0, -dx)]
    gone = np.isfinite(data) & (grown.reshape(data.shape) | thresholds)
    second = _combine_kept(np.where(gone, np.nan, data), options, weights, post_scale)
    if options.nkeep <= 0:
        return gone, second
    emptied = (second[2] == 0) & (result[2] > 0)
    return (np.where(emptied, rejected, gone),
            tuple(np.where(emptied, before, after) for before, after in zip(result, second,
                                                                            strict=True)))
