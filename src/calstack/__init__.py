"""calstack: master calibration frames from folders of FITS files, fast and within a memory limit.

The public API is listed in ``__all__``. Heavy modules (astropy, numba) are imported on first
use, so that ``import calstack`` and ``calstack --help`` stay fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "ImageIndex": "calstack.catalog.index",
    "Group": "calstack.catalog.grouping",
    "group_by": "calstack.catalog.grouping",
    "unique_values": "calstack.catalog.grouping",
    "combine": "calstack.stacking.combining",
    "prepare": "calstack.stacking.combining",
    "combine_many": "calstack.stacking.combining",
    "Master": "calstack.stacking.master",
    "parse_mem_limit": "calstack.stacking.plan",
    "connect": "calstack.stacking.cluster",
    "combine_groups": "calstack.pipeline.groups",
    "BuiltMaster": "calstack.pipeline.groups",
    "IMAGETYP_SYNONYMS": "calstack.pipeline.groups",
    "build_night": "calstack.pipeline.night",
    "calibrate": "calstack.pipeline.calibrate",
    "reduce_night": "calstack.pipeline.reduce",
    "summary_table": "calstack.pipeline.night",
    "show": "calstack.viz.pictures",
    "Report": "calstack.viz.report",
    "write_report": "calstack.viz.report",
    "simulate": "calstack.sim.simulation",
    "ALGORITHMS": "calstack.kernels.registry",
    "RECIPE": "calstack.options",
    "CombineOptions": "calstack.options",
    "Progress": "calstack.progress",
    "CalstackError": "calstack.errors",
    "FrameError": "calstack.errors",
    "OptionError": "calstack.errors",
    "UnknownOptionError": "calstack.errors",
}

__all__ = ["__version__", *sorted(_LAZY)]  # noqa: PLE0604 - the lazy names are strings


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'calstack' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
