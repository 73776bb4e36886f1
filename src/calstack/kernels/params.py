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
           "pclip_rank_offset",
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
    "pclip",           # percentile clip: rank offset (>= 1) or fraction of half the values,
                       # of the stack's N frames (IRAF)
    "nkeep",           # clipping keeps at least nkeep values (>= 0) or rejects at most -nkeep
    "quantum",         # the values' quantisation step (stack units): no clipping spread is
                       # smaller, and no value within it of the center is rejected
    "gain", "read_noise", "sense_noise",  # ccdclip noise model (e-/ADU, e-, fraction)
    "frame_noise",     # ccdclip: the model per frame, on unscaled values (Scratch.frame_scale)
    "noise_floor",     # sigma clipping: the noise model is a floor of the spread
    "noise_scale", "noise_zero",  # the frames' mean scale and zero, for that floor
    "esd_max",         # esd: most outliers, a count (>= 1) or a fraction of the values
    "weighted",        # weighted average / sum with ``weights``
    "post_scaled",     # multiply kept values by ``post_scale`` before combining
])


def pclip_rank_offset(pclip: float, n_frames: int) -> int:
    """IRAF's percentile-clip rank offset from the median, fixed from the stack's number of
    frames: ``|pclip|`` ranks (``|pclip| >= 1``) or that fraction of ``n_frames // 2``,
    truncated, then held within ``1 .. n_frames // 2``."""
    half = n_frames // 2
    offset = abs(pclip) * half if abs(pclip) < 1 else abs(pclip)
    return max(1, min(half, int(offset)))
