"""numba's ``njit`` and ``prange`` for calstack's kernels, with numba's BLAS probe skipped.

When numba loads its NumPy support (``numba.np.arraymath``, on the first compile or cache load)
it probes for BLAS by importing ``scipy.linalg``, a tenth of a second of every run's start-up.
The probe's answer only chooses how ``np.convolve`` and ``np.correlate`` compute inner products
in jitted code, and calstack's kernels use neither. Every kernel module imports numba from
here, so that support module is imported first with the probe answering "absent";
``np.dot`` and ``np.linalg`` in jitted code still check for BLAS themselves when they compile.
"""

from __future__ import annotations

import sys

from numba import njit, prange
from numba.core.compiler_lock import global_compiler_lock

__all__ = ["njit", "prange"]


def _no_blas():
    raise ImportError("numba.np.arraymath's BLAS probe, skipped by calstack")


def _import_numpy_support_without_blas_probe() -> None:
    """Import ``numba.np.arraymath`` with ``ensure_blas`` raising during the import (under
    numba's compiler lock: no compile in another thread sees the stand-in), then put the real
    function back in both modules."""
    if "numba.np.arraymath" in sys.modules:
        return
    with global_compiler_lock:
        from numba.np import linalg

        ensure_blas = getattr(linalg, "ensure_blas", None)
        if ensure_blas is None:  # a numba without this probe: nothing to skip
            return
        linalg.ensure_blas = _no_blas
        try:
            from numba.np import arraymath
        finally:
            linalg.ensure_blas = ensure_blas
        if getattr(arraymath, "ensure_blas", None) is _no_blas:
            arraymath.ensure_blas = ensure_blas


_import_numpy_support_without_blas_probe()
