"""When two header values are the same: the one rule the index, grouping and a night share.

Numbers (:func:`close`): within a relative ``1e-6`` (absolute floor ``1e-9``) by default, which
absorbs float32/float64 round-off and formatting noise but never merges genuinely different
settings (7 s vs 7.001 s); integers exactly; with an explicit ``tolerance``, within that absolute
distance instead. Strings (:func:`fold`, :func:`same_text`): trimmed of blanks and compared
case-insensitively (``'Dark '`` is ``'DARK'``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

__all__ = ["DEFAULT_ABS_TOL", "DEFAULT_REL_TOL", "Tolerance", "close", "fold", "same_text",
           "same_value"]

DEFAULT_REL_TOL = 1e-6
DEFAULT_ABS_TOL = 1e-9


@dataclass(frozen=True)
class Tolerance:
    """How close two numbers must be to be one setting: within ``max(rel * max(|a|, |b|), abs)``
    (a keyword's default, e.g. exposure times within max(0.1 %, 10 ms))."""

    rel: float = 0.0
    abs: float = 0.0

    def allows(self, diff: float, a: float, b: float) -> bool:
        """Whether a difference ``diff = |a - b|`` is within this tolerance."""
        return diff <= max(self.rel * max(abs(a), abs(b)), self.abs)


def close(a, b, tolerance=None) -> bool:
    """Whether two numbers are the same setting.

    Parameters
    ----------
    a, b : int or float
        The numbers.
    tolerance : float or Tolerance, optional
        Absolute tolerance: ``|a - b| <= tolerance``, or a :class:`Tolerance`. Default: ``|a - b| <= max(1e-6 * max(|a|,
        |b|), 1e-9)`` (:func:`math.isclose` with ``rel_tol=1e-6, abs_tol=1e-9``) for floats,
        equality when both are ints.

    Returns
    -------
    bool
        An infinity is close only to itself; NaN to nothing.
    """
    if a == b:
        return True
    diff = abs(a - b)  # exact for ints
    if math.isinf(diff) or math.isnan(diff):
        return False
    if isinstance(tolerance, Tolerance):
        return tolerance.allows(diff, a, b)
    if tolerance is not None:
        return diff <= tolerance
    if isinstance(a, int) and isinstance(b, int):
        return False
    return diff <= max(DEFAULT_REL_TOL * max(abs(a), abs(b)), DEFAULT_ABS_TOL)


def fold(value) -> str:
    """The form in which text values are compared: trimmed, lower case."""
    return str(value).strip().lower()


def same_text(a, b) -> bool:
    """Whether two values read as the same text (trimmed, case-insensitive)."""
    return fold(a) == fold(b)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def same_value(a, b, tolerance=None) -> bool:
    """Whether two header values are the same: two numbers by :func:`close`, anything else
    (strings, logicals, a missing value) by :func:`same_text`."""
    if _is_number(a) and _is_number(b):
        return close(a, b, tolerance)
    return same_text(a, b)
