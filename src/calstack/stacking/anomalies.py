"""Which frames of a group look wrong: a robust z-score of each frame's statistics.

The rule
--------
For each statistic *x* of the frames of one master -- the level (median), the noise (robust
standard deviation, 1.4826 x MAD) and the fraction of the frame's pixels that the combine
rejected -- every frame gets

    z = (x - median of x over the frames) / max(1.4826 x MAD of x over the frames, floor)

and is flagged when ``|z| > THRESHOLD`` (5) for its level or its noise, or ``z > THRESHOLD`` for
its rejected fraction (only more rejection than the others is suspicious). A light leak or a
wrong exposure moves the level (and the noise); a satellite trail, a plane or a burst of
cosmic rays leaves the level alone but makes the combine reject that frame's pixels far more
often than the others'.

The floors keep the rule from flagging differences that chance alone makes when the frames
agree very closely (then the MAD over the frames is tiny); they come from counting statistics
over the ``m`` pixels measured in each frame: the standard error of a median of Gaussian noise
(1.2533 x typical noise / sqrt(m)) for the level, that of a MAD-based std (1.1664 x typical
noise / sqrt(m)) for the noise, and the binomial noise sqrt(p (1 - p) / n) of a fraction ``p``
(the group's median rejected fraction, at least 1 / n) of a frame's ``n`` pixels for the
rejected fraction. Integer-valued frames (raw counts) have a median and a MAD in steps of half
a count, so there the floors are at least half a count for the level and 1.4826 x half a count
for the noise. With fewer than 3 frames nothing is flagged: there is no majority to compare
with.

:func:`anomalies` measures the frames of a master (on a grid of pixels, prepared as the combine
prepared them) and flags them; the command line prints the flags and ``--json`` holds them.
"""

from __future__ import annotations

import math

import numpy as np

from ..io.reader import frame_item
from ..io.sampling import grid_step, read_grid
from ..kernels.statistics import MAD_TO_STD, median_and_robust_std

__all__ = ["CHECK_SIDE", "GRID_SIDE", "MIN_FRAMES", "THRESHOLD", "anomalies", "check_grids",
           "flag_frames", "prepared_grids"]

#: A statistic this many robust standard deviations of the group away from its median flags a frame.
THRESHOLD = 5.0
#: Groups smaller than this are not checked.
MIN_FRAMES = 3

#: Frames are measured on a grid of at most this many pixels a side.
GRID_SIDE = 512
_MEDIAN_SE = math.sqrt(math.pi / 2)  # standard error of a median: x sigma / sqrt(m)
_MAD_STD_SE = 1.1664  # standard error of 1.4826 x MAD: x sigma / sqrt(m)


def _robust_z(values, floor):
    center = np.median(values)
    spread = max(MAD_TO_STD * float(np.median(np.abs(values - center))), floor)
    return (values - center) / spread, float(center)


def flag_frames(medians, noises, rejected=None, *, integer=False, measured,
                n_pixels=None) -> list[tuple[str, ...]]:
    """Why each frame of a group is anomalous (an empty tuple for a normal frame).

    Parameters
    ----------
    medians, noises : array_like
        Each frame's median and robust standard deviation.
    rejected : array_like, optional
        Each frame's fraction of pixels rejected by the combine (None when unknown).
    integer : bool
        The frames hold whole numbers (raw counts): statistics move in steps of half a count.
    measured : int
        How many pixels of each frame the medians and noises were measured on.
    n_pixels : int, optional
        How many pixels each frame has (the rejected fractions' denominator); default
        ``measured``.

    Returns
    -------
    list of tuple of str
        One entry per frame, in order: the reasons it is flagged, as sentences.
    """
    medians = np.asarray(medians, np.float64)
    noises = np.asarray(noises, np.float64)
    reasons = [[] for _ in medians]
    if len(medians) < MIN_FRAMES or not np.isfinite(medians).all() or not np.isfinite(noises).all():
        return [tuple(r) for r in reasons]
    typical = float(np.median(noises)) / math.sqrt(max(measured, 1))
    step = 0.5 if integer else 0.0
    checks = [("level (median)", medians, max(_MEDIAN_SE * typical, step), True, "{:.5g}"),
              ("noise (robust std)", noises, max(_MAD_STD_SE * typical, MAD_TO_STD * step),
               True, "{:.4g}")]
    if rejected is not None:
        rejected = np.asarray(rejected, np.float64)
        n = max(n_pixels or measured, 1)
        p = max(float(np.median(rejected)), 1.0 / n)
        checks.append(("rejected fraction", rejected * 100,
                       100 * math.sqrt(p * (1 - min(p, 1.0)) / n), False, "{:.3g}%"))
    for name, values, floor, both_ways, form in checks:
        z, center = _robust_z(values, floor)
        for i in np.flatnonzero(np.abs(z) > THRESHOLD if both_ways else z > THRESHOLD):
            reasons[i].append(f"{name} {form.format(values[i])} against the group's "
                              f"{form.format(center)} ({z[i]:+.1f} group spreads)")
    return [tuple(r) for r in reasons]


def prepared_grids(frames, preparation, shape, *, side=GRID_SIDE):
    """Yield each frame of a master read on a grid (:func:`calstack.io.sampling.read_grid`,
    at most ``side`` pixels a side), prepared as the combine prepared it (bias and dark
    subtracted, scaled: ``preparation.apply``), so frames compare as the combine compared them.

    Parameters
    ----------
    frames : sequence of (item, hdu) or (path, hdu, identity)
        The frames, in the master's input order; a file with an identity
        (:func:`calstack.io.reader.file_identity`) must still have it.
    preparation : calstack.stacking.preparation.Preparation or None
        The master's ``preparation``.
    shape : tuple of int
        The master's shape.
    side : int
        The grid's most pixels a side.
    """
    step = grid_step(shape, side)
    calibration = [read_grid(frame_item(c) or c, step) for c in
                   (preparation.calibrations if preparation is not None else ())]
    for i, (source, hdu, *identity) in enumerate(frames):
        grid = read_grid((source, hdu, *identity) if identity else source, step, hdu=hdu)
        if preparation is not None:
            preparation.apply(i, grid, calibration)
        yield grid


def is_integer(grid) -> bool:
    """Whether a grid holds whole numbers only (raw counts)."""
    finite = grid[np.isfinite(grid)]
    return bool(np.all(finite == np.round(finite)))


#: The grid side of :func:`anomalies` (after each master is written: a light read, 1/32 of the
#: rows of a 4096-pixel frame).
CHECK_SIDE = 128


def check_grids(frames, master) -> list[np.ndarray]:
    """The frames of ``master`` read on the check grid (at most :data:`CHECK_SIDE` pixels a
    side, :func:`prepared_grids`): what :func:`anomalies` and the verification of the master
    measure.

    Parameters
    ----------
    frames : sequence of (item, hdu) or (path, hdu, identity)
        The frames the master was combined from, in its input order (see
        :func:`prepared_grids`).
    master : Master
        The master (its shape and ``preparation``).
    """
    return list(prepared_grids(frames, master.preparation, np.shape(master.data),
                               side=CHECK_SIDE))


def anomalies(grids, master) -> list[tuple[str, ...]]:
    """The reasons each frame of ``master`` looks wrong (:func:`flag_frames`), measured on its
    frames' grids (:func:`check_grids`) with the master's per-frame rejected fractions.

    Parameters
    ----------
    grids : list of numpy.ndarray
        The frames the master was combined from on the check grid, in its input order.
    master : Master
        The master (its shape and ``frame_rejected``).

    Returns
    -------
    list of tuple of str
        One entry per frame: the reasons it is flagged (empty for a normal frame).
    """
    if len(grids) < MIN_FRAMES:
        return [() for _ in grids]
    stats = [median_and_robust_std(grid) for grid in grids]
    integer = all(is_integer(grid) for grid in grids)
    medians, noises = (np.array(values) for values in zip(*stats, strict=True))
    return flag_frames(medians, noises, master.frame_rejected, integer=integer,
                       measured=grids[0].size, n_pixels=int(np.prod(np.shape(master.data))))
