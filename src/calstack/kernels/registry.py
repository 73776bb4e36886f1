"""The rejection algorithms, one entry each: name, kernel code, reference twin, header cards.

Adding an algorithm means writing its kernel function (:mod:`calstack.kernels.rejection`,
dispatched on :attr:`Algorithm.code`), its twin (:mod:`calstack.kernels.reference`) and one entry here. The
options (:mod:`calstack.options`), the provenance header, ``combine()``'s docstring, the
command line's help, the tests and the benchmarks all read :data:`ALGORITHMS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

__all__ = [
    "ALGORITHMS",
    "AVSIGCLIP",
    "CCDCLIP",
    "ESD",
    "NO_REJECTION",
    "PERCENTILE_CLIP",
    "SIGCLIP",
    "SIGMA_CLIP",
    "WINSORIZED_SIGMA_CLIP",
    "Algorithm",
]

#: Kernel codes (``KernelParams.rejection``).
(NO_REJECTION, SIGMA_CLIP, PERCENTILE_CLIP, WINSORIZED_SIGMA_CLIP, CCDCLIP, ESD, AVSIGCLIP,
 SIGCLIP) = range(8)

_CLIP = ("sigma_lower", "sigma_upper", "maxiters", "nkeep")


@dataclass(frozen=True)
class Algorithm:
    """One rejection algorithm.

    Attributes
    ----------
    name : str
        The ``rejection`` option's value.
    code : int
        The kernel's code for it.
    twin : str
        The name of its NumPy twin in :mod:`calstack.kernels.reference`,
        ``twin(data, options) -> bool array of the values to reject`` (:attr:`reference`).
    options : tuple of str
        The combine options it reads; their header cards record them in every master.
    spread : str
        What it compares the values with (one line).
    pick : str
        When to choose it (one line: the "which rejection?" guidance).
    lines : bool
        Whether its spread is pooled over each image line: the kernel is given the frames'
        width, and the twin values of shape (N, lines, width) instead of (N, P).
    """

    name: str
    code: int
    twin: str
    options: tuple
    spread: str
    pick: str
    lines: bool = False

    @property
    def reference(self):
        """The NumPy twin (imported on first use: the command line reads this registry)."""
        return getattr(importlib.import_module("calstack.kernels.reference"), self.twin)


ALGORITHMS = {a.name: a for a in (
    Algorithm("sigma_clip", SIGMA_CLIP, "sigma_clip", (*_CLIP, "cenfunc", "stdfunc"),
              "stdfunc (mad_std: 1.4826 MAD; std) of the values around cenfunc",
              "the reference recipe (median, mad_std): robust from ~5 frames; the default for "
              "darks and biases with cosmic rays"),
    Algorithm("percentile_clip", PERCENTILE_CLIP, "percentile_clip", (*_CLIP, "pclip"),
              "distance from the median to the value pclip ranks away, the offset fixed from "
              "the number of frames (IRAF pclip)",
              "few frames (3-6), where a standard deviation means little"),
    Algorithm("winsorized_sigma_clip", WINSORIZED_SIGMA_CLIP, "winsorized_sigma_clip",
              _CLIP, "std of the values winsorized at 1.5 sigma, x1.134, iterated (Siril, "
              "PixInsight)",
              "many frames (> 15) with bright outliers that would inflate a plain std "
              "(satellite trails, hot pixels in flats)"),
    Algorithm("ccdclip", CCDCLIP, "ccdclip",
              (*_CLIP, "cenfunc", "gain", "read_noise", "sense_noise"),
              "noise model sqrt((read_noise/gain)^2 + level/gain + (sense_noise*level)^2) at "
              "the unscaled level, around the median or the mean without the extremes (IRAF "
              "ccdclip)",
              "the camera's gain and read noise are known: the spread comes from the noise "
              "model, not from a handful of values; good for biases and darks"),
    Algorithm("avsigclip", AVSIGCLIP, "avsigclip", (*_CLIP, "cenfunc"),
              "one sigma per image line, fitted to the square root of the level over the "
              "line's pixels, around the median or the mean without the extremes (IRAF "
              "avsigclip)",
              "few frames (3-10) with Poisson-like noise and no known gain: a line's pixels "
              "pool what one pixel's handful of values cannot", lines=True),
    Algorithm("sigclip", SIGCLIP, "sigclip", (*_CLIP, "cenfunc"),
              "std (ddof=1) of the values about the median or the mean without the extremes, "
              "rejected values staying rejected, 3 values at least (IRAF sigclip)",
              "IRAF's sigclip numbers, from ~10 frames; sigma_clip is astropy's rule"),
    Algorithm("esd", ESD, "esd", ("esd_max", "esd_alpha"),
              "generalized extreme studentized deviate test (Rosner 1983)",
              "many frames and an unknown number of outliers per pixel: a test at significance "
              "esd_alpha instead of a fixed threshold"),
)}
