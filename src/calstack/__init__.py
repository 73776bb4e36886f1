"""calstack: master calibration frames from folders of FITS files, fast and within a memory limit.

The public API is listed in ``__all__``. Heavy modules (astropy, numba) are imported on first
use, so that ``import calstack`` and ``calstack --help`` stay fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "ImageIndex": "calstack.index",
    "Group": "calstack.grouping",
    "group_by": "calstack.grouping",
    "unique_values": "calstack.grouping",
    "simulate": "calstack.simulation",
    "show": "calstack.pictures",
    "combine": "calstack.combining",
    "Master": "calstack.master",
    "parse_mem_limit": "calstack.plan",
    "RECIPE": "calstack.options",
    "CalstackError": "calstack.errors",
    "FrameError": "calstack.errors",
    "OptionError": "calstack.errors",
    "UnknownOptionError": "calstack.errors",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'calstack' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
