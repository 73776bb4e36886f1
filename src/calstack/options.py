"""The combine options: one validated, immutable object shared by every backend and kernel.

Names follow astropy's ``sigma_clip`` (``sigma``, ``sigma_lower``, ``sigma_upper``, ``maxiters``,
``cenfunc``, ``stdfunc``). Every check lives here, so that a bad value is reported before any file
is opened, with the option's name and the allowed values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .errors import OptionError, UnknownOptionError, did_you_mean
from .kernels.params import METHOD_CODES, KernelParams
from .kernels.registry import ALGORITHMS, NO_REJECTION

__all__ = ["CombineOptions", "RECIPE", "METHODS", "REJECTIONS", "CENFUNCS", "STDFUNCS"]

METHODS = tuple(METHOD_CODES)
REJECTIONS = (None, *ALGORITHMS)
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
    (``min_clip``/``max_clip``), then ``rejection``, then the ``method``. ``gain`` and
    ``read_noise`` may name header keywords until :func:`calstack.combine` resolves them.
    ``ccdproc_semantics`` (for :mod:`calstack.compat.ccdproc`) counts missing values among the
    highest in extrema clipping and computes the rejection's statistics over all valid values
    (ccdproc clips each step independently), keeping only what every step keeps.
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
    pclip: float = -0.5
    gain: float | str = "GAIN"
    read_noise: float | str = "RDNOISE"
    sense_noise: float = 0.0
    esd_max: float = 0.3
    esd_alpha: float = 0.05
    ccdproc_semantics: bool = False
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
        object.__setattr__(self, "pclip", _number("pclip", self.pclip))
        if self.pclip == 0:
            raise OptionError("pclip=0 is not valid: give a rank offset from the median (>= 1) "
                              "or a fraction of half the values (< 1); negative = low side")
        for name in ("gain", "read_noise"):
            value = getattr(self, name)
            if not isinstance(value, str):
                value = _number(name, value, minimum=0)
                if name == "gain" and value == 0:
                    raise OptionError("gain=0 is not valid: give electrons per ADU (> 0)")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "sense_noise", _number("sense_noise", self.sense_noise, minimum=0))
        esd_max = _number("esd_max", self.esd_max, minimum=0)
        if esd_max <= 0:
            raise OptionError("esd_max must be > 0: a count of outliers (>= 1) or a fraction")
        object.__setattr__(self, "esd_max", esd_max)
        alpha = _number("esd_alpha", self.esd_alpha)
        if not 0 < alpha < 1:
            raise OptionError(f"esd_alpha={alpha} must be between 0 and 1 (e.g. 0.05)")
        object.__setattr__(self, "esd_alpha", alpha)
        object.__setattr__(self, "ccdproc_semantics", bool(self.ccdproc_semantics))

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

    def kernel_params(self, *, weighted=False, post_scaled=False) -> KernelParams:
        """The kernel's parameters (:class:`calstack.kernels.params.KernelParams`).

        ``gain`` and ``read_noise`` must be numbers by now (see :meth:`with_noise_model`).
        """
        noise = self.rejection == "ccdclip"
        if noise and (isinstance(self.gain, str) or isinstance(self.read_noise, str)):
            raise OptionError("ccdclip needs numbers for gain and read_noise")
        return KernelParams(
            method=METHOD_CODES[self.method],
            nlow=self.nlow,
            nhigh=self.nhigh,
            nan_is_high=self.ccdproc_semantics,
            min_clip=-np.inf if self.min_clip is None else self.min_clip,
            max_clip=np.inf if self.max_clip is None else self.max_clip,
            rejection=NO_REJECTION if self.rejection is None else ALGORITHMS[self.rejection].code,
            independent=self.ccdproc_semantics,
            sigma_lower=self.low,
            sigma_upper=self.high,
            cen_median=self.cenfunc == "median",
            std_mad=self.stdfunc == "mad_std",
            maxiters=_UNTIL_CONVERGED if self.maxiters is None else self.maxiters,
            pclip=self.pclip,
            gain=float(self.gain) if noise else 1.0,
            read_noise=float(self.read_noise) if noise else 0.0,
            sense_noise=self.sense_noise,
            esd_max=self.esd_max,
            weighted=weighted,
            post_scaled=post_scaled,
        )

    def with_noise_model(self, header) -> "CombineOptions":
        """Resolve ``gain``/``read_noise`` given as header keywords from ``header``.

        Only ``ccdclip`` (and inverse-variance weights) use them; for anything else the options
        are returned unchanged.
        """
        values = {}
        for name in ("gain", "read_noise"):
            value = getattr(self, name)
            if isinstance(value, str):
                if value.upper() not in header:
                    raise OptionError(
                        f"{name}={value!r} names a header keyword that the first frame lacks; "
                        f"give {name} as a number (--{name.replace('_', '-')} N) or the keyword "
                        "your camera writes")
                values[name] = header[value.upper()]
                if isinstance(values[name], (str, bool)):
                    raise OptionError(f"header keyword {value.upper()}={values[name]!r} is not a "
                                      f"number; give {name} as a number")
        return replace(self, **values) if values else self


def _is_dtype(value) -> bool:
    try:
        np.dtype(value)
    except TypeError:
        return False
    return True
