"""``from calstack.ccdproc_compat import combine``: the path the README documents for the
ccdproc drop-ins, which live in :mod:`calstack.compat.ccdproc`."""

from .compat.ccdproc import *
from .compat.ccdproc import __all__  # noqa: F401
