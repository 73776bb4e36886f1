"""The kernel's scalar parameters: one immutable record of numbers per combine."""

from __future__ import annotations

from collections import namedtuple

__all__ = [
           "AVERAGE",
           "MEDIAN",
           "METHOD_CODES",
           "SUM",
           "WINSOR_CLIP",
           "WINSOR_CORRECTION",
           "KernelParams",
]

#: The ``method`` parameter of the kernel.
AVERAGE, MEDIAN, SUM = 0, 1, 2
METHOD_CODES = {"average": AVERAGE, "median": MEDIAN, "sum": SUM}

#: Winsorized sigma clipping: values beyond ``WINSOR_CLIP`` sigma are moved to that bound, and the
#: std of the winsorized values is multiplied by ``WINSOR_CORRECTION`` (Siril, PixInsight).
WINSOR_CLIP = 1.5
WINSOR_CORRECTION = 1.134

#: What :func:`calstack.kernels.stack.combine_stack` reads of a combine's options (built by
#: :meth:`calstack.options.CombineOptions.kernel_params`).
KernelParams = namedtuple("KernelParams", [
    "method",          # METHOD_CODES
    "nlow", "nhigh",   # extrema: drop this many lowest / highest values
    "nan_is_high",     # extrema count missing values as the highest (ccdproc's clip_extrema)
    "min_clip", "max_clip",
    "rejection",       # the algorithm's code (calstack.kernels.registry.ALGORITHMS)
    "independent",     # rejection statistics over all valid values, not the extrema/threshold
                       # survivors; the kept range is the intersection (ccdproc's order)
    "sigma_lower", "sigma_upper",
    "cen_median", "std_mad",
    "maxiters",
    "pclip",           # percentile clip: rank offset (>= 1) or fraction of half the values
    "gain", "read_noise", "sense_noise",  # ccdclip noise model (e-/ADU, e-, fraction)
    "esd_max",         # esd: most outliers, a count (>= 1) or a fraction of the values
    "weighted",        # weighted average / sum with ``weights``
    "post_scaled",     # multiply kept values by ``post_scale`` before combining
])
