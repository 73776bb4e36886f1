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

The floors keep the rule from flagging differences that do not matter when the frames agree
very closely (then the MAD over the frames is tiny): a tenth of the group's typical noise (the
median of the frames' robust std) for the level, 5 % of it for the noise, and 1e-4 (0.01 % of
the pixels) for the rejected fraction. Integer-valued frames (raw counts) have a median and a
MAD in steps of half a count, so there the floors are at least half a count for the level and
1.4826 x half a count for the noise: a frame is never flagged for one or two such steps. With
fewer than 3 frames nothing is flagged: there is no majority to compare with.
"""

from __future__ import annotations

import numpy as np

from ..kernels.statistics import MAD_TO_STD

__all__ = ["MIN_FRAMES", "THRESHOLD", "flag_frames"]

#: A statistic this many robust standard deviations of the group away from its median flags a frame.
THRESHOLD = 5.0
#: Groups smaller than this are not checked.
MIN_FRAMES = 3

_LEVEL_FLOOR = 0.1  # x typical noise
_NOISE_FLOOR = 0.05  # x typical noise
_REJECTED_FLOOR = 1e-4  # fraction of pixels


def _robust_z(values, floor):
    center = np.median(values)
    spread = max(MAD_TO_STD * float(np.median(np.abs(values - center))), floor)
    return (values - center) / spread, float(center)


def flag_frames(medians, noises, rejected=None, *, integer=False) -> list[tuple[str, ...]]:
    """Why each frame of a group is anomalous (an empty tuple for a normal frame).

    Parameters
    ----------
    medians, noises : array_like
        Each frame's median and robust standard deviation.
    rejected : array_like, optional
        Each frame's fraction of pixels rejected by the combine (None when unknown).
    integer : bool
        The frames hold whole numbers (raw counts): statistics move in steps of half a count.

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
    typical = float(np.median(noises))
    step = 0.5 if integer else 0.0
    checks = [("level (median)", medians, max(_LEVEL_FLOOR * typical, step), True, "{:.5g}"),
              ("noise (robust std)", noises, max(_NOISE_FLOOR * typical, MAD_TO_STD * step),
               True, "{:.4g}")]
    if rejected is not None:
        checks.append(("rejected fraction", np.asarray(rejected, np.float64) * 100,
                       _REJECTED_FLOOR * 100, False, "{:.3g}%"))
    for name, values, floor, both_ways, form in checks:
        z, center = _robust_z(values, floor)
        for i in np.flatnonzero(np.abs(z) > THRESHOLD if both_ways else z > THRESHOLD):
            reasons[i].append(f"{name} {form.format(values[i])} against the group's "
                              f"{form.format(center)} ({z[i]:+.1f} group spreads)")
    return [tuple(r) for r in reasons]
