"""What happens to each frame's values before rejection: bias and dark subtraction, then
multiplicative scaling and zero offsets, so that clipping compares like with like.

Statistics for scaling (median, mean, mode) are measured on a region of each (bias- and
dark-subtracted) frame, read in bands of rows and subsampled to about a million values, so the
pass costs one read of the frames and little memory.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

from ..errors import FrameError, OptionError
from ..io.reader import raw_buffer

__all__ = ["STATISTICS", "Preparation", "frame_statistics", "parse_section", "quantisation_step"]

#: Statistics a frame can be scaled or offset by. The mode is Pearson's estimate
#: 3 median - 2 mean (as SExtractor uses for the sky).
STATISTICS = ("median", "mean", "mode")
_SAMPLES = 1_000_000  # values per frame that the statistics use at most
_BAND_BYTES = 16 * 2**20
_QUANTUM_VALUES = 65536  # values of the first frame that the quantisation step is measured on
_QUANTUM_SHARE = 0.99  # of them on the step's grid


@dataclass
class Preparation:
    """Per-frame steps applied to the values as they are read, in this order.

    Attributes
    ----------
    bias : Frame, optional
        Subtracted from every frame.
    dark : Frame, optional
        Subtracted from every frame, times ``dark_factors[i]``.
    dark_factors : numpy.ndarray, optional
        Per-frame dark multipliers (exposure time of the frame / of the dark).
    scale : numpy.ndarray, optional
        Per-frame multipliers.
    zero : numpy.ndarray, optional
        Per-frame offsets subtracted after scaling.
    bad_pixels : Frame, optional
        A bad-pixel mask: where it is nonzero, every frame's value is missing (NaN).
    """

    bias: object = None
    dark: object = None
    dark_factors: np.ndarray | None = None
    scale: np.ndarray | None = None
    zero: np.ndarray | None = None
    bad_pixels: object = None

    @property
    def calibrations(self) -> list:
        """The calibration frames whose rows every tile needs (bias, dark, bad pixels)."""
        return [f for f in (self.bias, self.dark, self.bad_pixels) if f is not None]

    def apply(self, i: int, values: np.ndarray, calibration_rows) -> None:
        """Prepare frame ``i``'s ``values`` in place; ``calibration_rows`` are the same rows of
        :attr:`calibrations`, in order."""
        rows = iter(calibration_rows)
        if self.bias is not None:
            values -= next(rows)
        if self.dark is not None:
            dark = next(rows)
            factor = self.dark_factors[i]
            if factor == 1:
                values -= dark
            else:
                values -= factor * dark
        if self.scale is not None and self.scale[i] != 1:
            values *= self.scale[i]
        if self.zero is not None and self.zero[i] != 0:
            values -= self.zero[i]
        if self.bad_pixels is not None:
            values[next(rows) != 0] = np.nan


def parse_section(text, shape):
    """``'[x1:x2,y1:y2]'`` (FITS/IRAF: 1-based, inclusive, x = column) to (rows, columns) slices.

    ``'*'`` selects a whole axis, as in IRAF.
    """
    if text is None:
        return slice(0, shape[0]), slice(0, shape[1])
    match = re.fullmatch(r"\s*\[\s*(\*|\d+\s*:\s*\d+)\s*,\s*(\*|\d+\s*:\s*\d+)\s*\]\s*", str(text))
    if not match:
        raise OptionError(f"stat_section={text!r} is not a section like '[x1:x2,y1:y2]' "
                          "(1-based, inclusive, x = column)")
    slices = []
    for part, size, axis in ((match.group(2), shape[0], "y"), (match.group(1), shape[1], "x")):
        if part == "*":
            slices.append(slice(0, size))
            continue
        first, last = (int(v) for v in part.split(":"))
        if not 1 <= first <= last <= size:
            raise OptionError(f"stat_section={text!r}: {axis} range {first}:{last} is outside "
                              f"the frame (1:{size}) or reversed")
        slices.append(slice(first - 1, last))
    return tuple(slices)


def frame_statistics(frames, preparation, section, stack_dtype):
    """Median, mean and mode of each frame's ``section`` after bias/dark subtraction.

    Parameters
    ----------
    frames : list of Frame
        The frames.
    preparation : Preparation
        Its bias and dark are subtracted first (its scale and zero are ignored).
    section : str or None
        Region ``'[x1:x2,y1:y2]'``; None = the whole frame.
    stack_dtype : numpy.dtype
        Dtype the frames are read into.

    Returns
    -------
    dict of str to numpy.ndarray
        ``{'median': ..., 'mean': ..., 'mode': ...}``, one value per frame.
    """
    rows, cols = parse_section(section, frames[0].shape)
    width = frames[0].shape[1]
    n_values = (rows.stop - rows.start) * (cols.stop - cols.start)
    step = max(1, math.ceil(math.sqrt(n_values / _SAMPLES)))
    band = max(1, _BAND_BYTES // (width * np.dtype(stack_dtype).itemsize))
    calibration_only = replace(preparation, scale=None, zero=None)
    raw = raw_buffer([*frames, *preparation.calibrations], band, width)
    values = np.empty((band, width), stack_dtype)
    calib = [np.empty((band, width), stack_dtype) for _ in preparation.calibrations]
    result = {name: np.empty(len(frames)) for name in STATISTICS}
    for i, frame in enumerate(frames):
        samples = []
        for start in range(rows.start, rows.stop, band):
            stop = min(rows.stop, start + band)
            for buffer, source in zip(calib, preparation.calibrations, strict=True):
                source.read_rows(start, stop, buffer[: stop - start], raw)
            frame.read_rows(start, stop, values[: stop - start], raw)
            calibration_only.apply(i, values[: stop - start], [c[: stop - start] for c in calib])
            first = -(start - rows.start) % step  # every step-th row of the section
            taken = values[first : stop - start : step, cols][:, ::step]
            samples.append(taken[np.isfinite(taken)].astype(np.float64))
        sample = np.concatenate(samples)
        if sample.size == 0:
            raise FrameError(frame.source, "has no valid values in the statistics section; "
                             "choose another --stat-section")
        median, mean = float(np.median(sample)), float(np.mean(sample))
        result["median"][i], result["mean"][i] = median, mean
        result["mode"][i] = 3 * median - 2 * mean
    return result


def keyword_values(frames, keyword: str, option: str) -> np.ndarray:
    """The numeric value of header ``keyword`` in every frame (for ``option``)."""
    values = []
    for frame in frames:
        header = frame.header()
        value = header.get(keyword.upper())
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            found = "is missing" if value is None else f"is {value!r}, not a number"
            raise FrameError(frame.source, f"header keyword {keyword.upper()} {found}; {option} "
                             f"needs it in every frame (or give {option} as numbers)")
        values.append(float(value))
    return np.array(values)


def _per_frame(value, n, option):
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (n,):
        raise OptionError(f"{option} has shape {array.shape}; give one number per frame ({n})")
    if not np.isfinite(array).all():
        raise OptionError(f"{option} has non-finite values; give finite numbers")
    return array


def _needs_statistics(*values) -> bool:
    return any(isinstance(v, str) and v in STATISTICS for v in values)


def resolve(frames, preparation, *, scale, zero, scale_to, stat_section, weights, options,
            stack_dtype):
    """Turn the scale, zero and weights options into per-frame numbers.

    Parameters
    ----------
    frames : list of Frame
        The frames.
    preparation : Preparation
        Its bias/dark are applied before any statistic is measured; its ``scale`` and ``zero``
        are set here.
    scale : None, {'median', 'mean', 'mode'}, str or array_like
        A statistic (factor = reference / the frame's statistic), a header keyword (factor =
        reference / the frame's value, e.g. ``'EXPTIME'``), or the factors themselves.
    zero : None, {'median', 'mean', 'mode'} or array_like
        A statistic of the scaled frames (offset = the frame's statistic - reference), or the
        offsets themselves; subtracted after scaling.
    scale_to : float or 'first', optional
        The reference level of a statistic or keyword ``scale``; by default the mean over the
        frames, so the result keeps the frames' typical level. ``1.0`` normalises every frame
        (flats). ``'first'``: the first frame's level, for ``scale`` and ``zero`` alike (IRAF's
        reference frame); otherwise the reference of ``zero`` is the mean.
    stat_section : str, optional
        Region for the statistics.
    weights : None, 'noise', str, or array_like
        ``'noise'``: inverse variance from the noise model at each frame's median (needs gain
        and read_noise); a header keyword (e.g. ``'EXPTIME'``); one number per frame. Per-pixel
        weights are not resolved here.
    options : CombineOptions
        For the noise model.
    stack_dtype : numpy.dtype
        Dtype the frames are read into.

    Returns
    -------
    numpy.ndarray or None
        Per-frame weights.
    """
    n = len(frames)
    first = isinstance(scale_to, str)
    if first and scale_to != "first":
        raise OptionError(f"scale_to={scale_to!r} is not valid; give a level (e.g. 1.0) or "
                          "'first' (the first frame's level)")
    stats = None
    if _needs_statistics(scale, zero) or (isinstance(weights, str) and weights == "noise"):
        stats = frame_statistics(frames, preparation, stat_section, stack_dtype)
    if scale is not None:
        if isinstance(scale, str):
            level = stats[scale] if scale in STATISTICS else keyword_values(frames, scale, "scale")
            if not np.all(level > 0):
                bad = frames[int(np.argmin(level > 0))].source
                raise FrameError(bad, f"has {scale} {level.min():g} <= 0, so it cannot be scaled "
                                 f"by it; check the frame or choose another --scale")
            reference = (float(level[0]) if first else float(np.mean(level)) if scale_to is None
                         else float(scale_to))
            preparation.scale = reference / level
        else:
            preparation.scale = _per_frame(scale, n, "scale")
    if zero is not None:
        if isinstance(zero, str):
            if zero not in STATISTICS:
                raise OptionError(f"zero={zero!r} is not valid; use one of {', '.join(STATISTICS)} "
                                  "or one offset per frame")
            level = stats[zero] * (1.0 if preparation.scale is None else preparation.scale)
            preparation.zero = level - float(level[0] if first else np.mean(level))
        else:
            preparation.zero = _per_frame(zero, n, "zero")
    if weights is None or not isinstance(weights, str):
        return None if weights is None else _per_frame(weights, n, "weights")
    if weights == "noise":
        factor = np.ones(n) if preparation.scale is None else preparation.scale
        variance = np.array([((options.read_noise / options.gain) ** 2
                              + max(m, 0.0) / options.gain) for m in stats["median"]]) * factor**2
        if not np.all(variance > 0):
            raise OptionError("weights='noise' found a zero noise variance (read noise 0 and a "
                              "frame median <= 0); give read_noise or other weights")
        return 1.0 / variance
    return keyword_values(frames, weights, "weights")


def quantisation_step(frame, stack_dtype) -> float:
    """The quantisation step of ``frame``'s values (before any preparation), or 0 if there is none.

    Measured on about 65536 values from the middle rows: when every one is a whole number, the
    step is the greatest common divisor of their differences from the median, or the largest
    power of two
    (up to 256) that 99 % of them are multiples of (12-bit data scaled by 16 with a few
    saturated values: 16).

    Parameters
    ----------
    frame : Frame
        The frame (the first of a stack).
    stack_dtype : numpy.dtype
        Dtype the frames are read into.

    Returns
    -------
    float
        The step, in the frame's units.
    """
    height, width = frame.shape
    rows = min(height, max(1, _QUANTUM_VALUES // width))
    start = (height - rows) // 2
    values = np.empty((rows, width), stack_dtype)
    frame.read_rows(start, start + rows, values, raw_buffer([frame], rows, width))
    sample = values[np.isfinite(values)].astype(np.float64)
    if sample.size == 0 or not np.all(sample == np.round(sample)) or np.abs(sample).max() > 2**52:
        return 0.0
    middle = sample.size // 2
    offsets = (sample - np.partition(sample, middle)[middle]).astype(np.int64)
    step = int(np.gcd.reduce(offsets))
    if step == 0:  # one value throughout: no step to speak of
        return 0.0
    for power in (256, 128, 64, 32, 16, 8, 4, 2):
        if power > step and np.mean(offsets % power == 0) >= _QUANTUM_SHARE:
            return float(power)
    return float(step)
