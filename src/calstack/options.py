"""The combine options: one validated, immutable object shared by every backend and kernel.

Names follow astropy's ``sigma_clip`` (``sigma``, ``sigma_lower``, ``sigma_upper``, ``maxiters``,
``cenfunc``, ``stdfunc``). Every check lives here, so that a bad value is reported before any file
is opened, with the option's name and the allowed values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import OptionError, UnknownOptionError, did_you_mean

__all__ = ["CombineOptions", "RECIPE", "METHODS", "REJECTIONS", "CENFUNCS", "STDFUNCS"]

METHODS = ("average", "median", "sum")
REJECTIONS = (None, "sigma_clip")
CENFUNCS = ("median", "mean")
STDFUNCS = ("mad_std", "std")
DTYPES = ("float32", "float64")

#: The reference recipe's settings: ``ccdproc.combine(method='average', sigma_clip=True,
#: sigma_clip_low_thresh=5, sigma_clip_high_thresh=5, sigma_clip_func=np.ma.median,
#: sigma_clip_dev_func=mad_std)``.
RECIPE = dict(method="average", rejection="sigma_clip", sigma_lower=5.0, sigma_upper=5.0,
              cenfunc="median", stdfunc="mad_std", maxiters=1)

#: ``maxiters=None`` means "until nothing changes"; a pixel of N values converges in < N passes.
_UNTIL_CONVERGED = 2**30


def _choice(name, value, allowed):
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        hint = did_you_mean(str(value), [a for a in allowed if a]) if isinstance(value, str) else ""
        raise OptionError(f"{name}={value!r} is not valid{hint}; allowed values: {shown}")
    return value


def _number(name, value, *, minimum=None, allow_none=False, integer=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise OptionError(f"{name}={value!r} must be a number")
    if integer and int(value) != value:
        raise OptionError(f"{name}={value!r} must be a whole number")
    value = int(value) if integer else float(value)
    if math.isnan(value):
        raise OptionError(f"{name} must not be NaN")
    if minimum is not None and value < minimum:
        raise OptionError(f"{name}={value!r} must be >= {minimum}")
    return value


@dataclass(frozen=True)
class CombineOptions:
    """Validated combine options (see :func:`calstack.combine` for their meaning).

    Rejection steps run in ccdproc's order: extrema (``nlow``/``nhigh``), then thresholds
    (``min_clip``/``max_clip``), then ``rejection`` (sigma clipping), then the ``method``.
    """

    method: str = "average"
    rejection: str | None = None
    sigma: float = 3.0
    sigma_lower: float | None = None
    sigma_upper: float | None = None
    cenfunc: str = "median"
    stdfunc: str = "mad_std"
    maxiters: int | None = 1
    min_clip: float | None = None
    max_clip: float | None = None
    nlow: int = 0
    nhigh: int = 0
    dtype: str = "float32"

    def __post_init__(self):
        _choice("method", self.method, METHODS)
        _choice("rejection", self.rejection, REJECTIONS)
        _choice("cenfunc", self.cenfunc, CENFUNCS)
        _choice("stdfunc", self.stdfunc, STDFUNCS)
        _choice("dtype", np.dtype(self.dtype).name if _is_dtype(self.dtype) else self.dtype, DTYPES)
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        for name in ("sigma", "sigma_lower", "sigma_upper"):
            value = _number(name, getattr(self, name), minimum=0, allow_none=name != "sigma")
            object.__setattr__(self, name, value)
        for name in ("min_clip", "max_clip"):
            object.__setattr__(self, name, _number(name, getattr(self, name), allow_none=True))
        if self.min_clip is not None and self.max_clip is not None and self.min_clip > self.max_clip:
            raise OptionError(
                f"min_clip={self.min_clip} is above max_clip={self.max_clip}: every value would "
                "be rejected; swap them"
            )
        for name in ("nlow", "nhigh"):
            object.__setattr__(self, name, _number(name, getattr(self, name), minimum=0, integer=True))
        maxiters = _number("maxiters", self.maxiters, minimum=1, allow_none=True, integer=True)
        object.__setattr__(self, "maxiters", maxiters)

    @classmethod
    def from_kwargs(cls, **kwargs):
        """Build options from keyword arguments; an unknown name raises with a did-you-mean hint."""
        known = cls.__dataclass_fields__
        for name in kwargs:
            if name not in known:
                raise UnknownOptionError(
                    f"unknown option {name!r}{did_you_mean(name, known)}; "
                    f"valid options: {', '.join(known)}"
                )
        return cls(**kwargs)

    @property
    def low(self) -> float:
        """Lower sigma-clipping threshold (``sigma_lower``, or ``sigma`` when that is None)."""
        return self.sigma if self.sigma_lower is None else self.sigma_lower

    @property
    def high(self) -> float:
        """Upper sigma-clipping threshold (``sigma_upper``, or ``sigma`` when that is None)."""
        return self.sigma if self.sigma_upper is None else self.sigma_upper

    def check_frame_count(self, n: int) -> None:
        """Raise if extrema clipping would reject every value of a stack of ``n`` frames."""
        if self.nlow + self.nhigh >= n > 0:
            raise OptionError(
                f"nlow={self.nlow} + nhigh={self.nhigh} rejects all {n} frames; "
                f"choose nlow + nhigh <= {n - 1}"
            )

    def kernel_args(self) -> tuple:
        """The scalar arguments of :func:`calstack.kernels.combine_stack`, in its order."""
        return (
            METHODS.index(self.method),
            self.nlow,
            self.nhigh,
            -np.inf if self.min_clip is None else self.min_clip,
            np.inf if self.max_clip is None else self.max_clip,
            self.rejection == "sigma_clip",
            self.low,
            self.high,
            self.cenfunc == "median",
            self.stdfunc == "mad_std",
            _UNTIL_CONVERGED if self.maxiters is None else self.maxiters,
        )


def _is_dtype(value) -> bool:
    try:
        np.dtype(value)
    except TypeError:
        return False
    return True
