"""``from calstack.ccdproc_compat import combine, ccd_process, ...``: the path the README
documents for the ccdproc drop-ins, which live in :mod:`calstack.compat.ccdproc` (``combine``)
and :mod:`calstack.compat.processing` (``subtract_overscan``, ``trim_image``, ``subtract_bias``,
``subtract_dark``, ``gain_correct``, ``flat_correct``, ``create_deviation``, ``ccd_process``)."""

from .compat.ccdproc import combine
from .compat.processing import (
    ccd_process,
    create_deviation,
    flat_correct,
    gain_correct,
    subtract_bias,
    subtract_dark,
    subtract_overscan,
    trim_image,
)

__all__ = ["ccd_process", "combine", "create_deviation", "flat_correct", "gain_correct",
           "subtract_bias", "subtract_dark", "subtract_overscan", "trim_image"]
