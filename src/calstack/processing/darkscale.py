"""The dark scale that minimises a calibrated frame's noise (Siril's ``-opt``, PixInsight's
dark optimisation), for a frame whose dark current the exposure times do not predict: another
temperature, a wrong EXPTIME, no dark of its exposure. Pure: arrays in, a number out.

The factor ``k`` minimises the pixel-to-pixel noise of ``frame - bias - k * dark``: the sum of
squares of its differences between horizontal neighbours, where the sky, the flat field and
any smooth structure cancel and the dark's own structure (hot and warm pixels, columns) does
not. That is a least-squares line through the origin of the frame's differences against the
dark's, refitted with the values beyond ``clip`` robust sigma left out (stars' edges, cosmic
rays), until no value changes side.
"""

from __future__ import annotations

import numpy as np

from ..kernels.statistics import MAD_TO_STD

__all__ = ["optimal_dark_scale"]


def optimal_dark_scale(frame, dark, bias=None, *, clip=5.0, iterations=10) -> float | None:
    """The factor of ``dark`` that minimises the noise of ``frame - bias - factor * dark``.

    Parameters
    ----------
    frame, dark, bias : numpy.ndarray
        2-D arrays of one shape (rows of the frame, and the same rows of the masters);
        ``bias`` None: the frame is bias-free. Non-finite values are left out.
    clip : float
        Differences further than this many robust sigma from the fit are left out.
    iterations : int
        At most this many refits.

    Returns
    -------
    float or None
        The factor; None where the dark has no structure to fit (no finite difference that
        is not zero).
    """
    signal = np.asarray(frame, np.float64)
    if bias is not None:
        signal = signal - np.asarray(bias, np.float64)
    dy = np.diff(signal, axis=1).ravel()
    dd = np.diff(np.asarray(dark, np.float64), axis=1).ravel()
    good = np.isfinite(dy) & np.isfinite(dd)
    factor = None
    for _ in range(iterations):
        weight = float(np.dot(dd[good], dd[good]))
        if not weight > 0:
            return factor
        factor = float(np.dot(dy[good], dd[good])) / weight
        residual = dy - factor * dd
        centre = np.median(residual[good])
        sigma = MAD_TO_STD * np.median(np.abs(residual[good] - centre))
        kept = good & (np.abs(residual - centre) <= clip * sigma) if sigma > 0 else good
        if np.array_equal(kept, good):
            break
        good = kept
    return factor
