"""Overscan subtraction and trimming of raw CCD frames, as IRAF's ``ccdproc`` and ccdproc's
``subtract_overscan``/``trim_image`` do them.

The overscan region (``BIASSEC``, or a section given) is collapsed across the serial direction,
by mean, median or a sigma-clipped mean, into one value per line; that vector is used as it is,
or fitted along the readout direction by a polynomial, Legendre or Chebyshev series or a cubic
spline (IRAF's spline3, or its linear spline1), with IRAF's iterative rejection (``low_reject``, ``high_reject``, ``niterate``: the
residuals' rms as sigma, at least 5 points kept), and subtracted from every pixel of its line.
``order`` is IRAF's: the number of coefficients of a series (1 = a constant, 2 = a line), the
number of pieces of a spline. The fits are NumPy's and SciPy's.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np

from ..errors import OptionError
from .sections import Section

__all__ = ["FUNCTIONS", "METHODS", "Overscan", "processing_cards"]

#: How the overscan is collapsed across the serial direction.
METHODS = ("mean", "median", "clipped")

#: How the collapsed overscan is fitted along the readout direction (None: used as it is).
FUNCTIONS = (None, "polynomial", "legendre", "chebyshev", "spline1", "spline3")

_SERIES = {"polynomial": np.polynomial.Polynomial, "legendre": np.polynomial.Legendre,
           "chebyshev": np.polynomial.Chebyshev}
_MIN_POINTS = 5  # IRAF's icfit: no rejection with fewer points left


@dataclass(frozen=True)
class Overscan:
    """How a frame's overscan is measured and subtracted.

    Parameters
    ----------
    section : Section
        The overscan region.
    method : {'mean', 'median', 'clipped'}
        Collapse across the serial direction (``clipped``: the mean after 3-sigma clipping,
        astropy's ``sigma_clip``).
    function : {None, 'polynomial', 'legendre', 'chebyshev', 'spline1', 'spline3'}
        Fit along the readout direction; None uses each line's value.
    order : int
        IRAF's order: coefficients of a series, pieces of a spline.
    low_reject, high_reject : float
        Rejection of the fit's points below / above this many sigmas (0: none).
    niterate : int
        Rejection iterations (0: none).
    axis : {0, 1, None}
        The axis collapsed: 1 (overscan columns beside the data: one value per row), 0
        (overscan rows: one per column), None: the region's shorter side (ccdproc's rule).
    """

    section: Section
    method: str = "mean"
    function: str | None = None
    order: int = 1
    low_reject: float = 3.0
    high_reject: float = 3.0
    niterate: int = 1
    axis: int | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise OptionError(f"overscan method {self.method!r} is not one of "
                              f"{', '.join(METHODS)}")
        if self.function not in FUNCTIONS:
            raise OptionError(f"overscan function {self.function!r} is not one of "
                              f"{', '.join(f for f in FUNCTIONS if f)} (or none)")
        if self.order < 1:
            raise OptionError(f"overscan order {self.order} must be >= 1 (IRAF's: 1 = a constant)")
        if self.axis not in (0, 1, None):
            raise OptionError(f"overscan axis {self.axis} must be 0, 1 or None")

    @property
    def collapsed_axis(self) -> int:
        """The axis collapsed (1: one value per row)."""
        if self.axis is not None:
            return self.axis
        rows, columns = self.section.shape
        return 0 if columns > rows else 1

    def vector(self, data) -> np.ndarray:
        """The overscan collapsed into one value per line (float64)."""
        region = np.asarray(data[self.section.slices], np.float64)
        axis = self.collapsed_axis
        if self.method == "median":
            return np.median(region, axis=axis)
        if self.method == "clipped":
            from astropy.stats import sigma_clip

            return np.ma.mean(sigma_clip(region, sigma=3.0, axis=axis), axis=axis).filled(np.nan)
        return np.mean(region, axis=axis)

    def model(self, data) -> np.ndarray:
        """The overscan to subtract, one value per line (float64): the vector, or its fit."""
        values = self.vector(data)
        if self.function is None:
            return values
        return fit_with_rejection(values, self.function, self.order, self.low_reject,
                                  self.high_reject, self.niterate)

    def subtract(self, data) -> tuple[np.ndarray, np.ndarray]:
        """``data`` less its overscan (float64), and the model subtracted."""
        model = self.model(data)
        shaped = model[:, None] if self.collapsed_axis == 1 else model[None, :]
        return np.asarray(data, np.float64) - shaped, model

    def variance_fraction(self, lines: int) -> float:
        """The variance of the subtracted model, per pixel, as a fraction of one overscan
        pixel's (read-noise) variance: the mean of ``n`` values per line has 1/n of it (the
        median pi/2n, a 3-sigma clipped mean about 1/n), and a fit of ``p`` parameters to
        ``lines`` lines averages p/lines of each line's."""
        n = self.section.shape[self.collapsed_axis]
        per_line = (np.pi / 2 if self.method == "median" else 1.0) / n
        if self.function is None:
            return per_line
        parameters = self.order + (0 if self.function in _SERIES else
                                   (1 if self.function == "spline1" else 3))
        return per_line * min(1.0, parameters / max(1, lines))

    def describe(self, model) -> str:
        """IRAF's words for what was subtracted (the OVERSCAN keyword, after its time stamp)."""
        return f"Overscan section is {self.section.fits()} with mean={np.mean(model):.7g}"

    def fit_text(self) -> str:
        """How the overscan was measured (the OVSCNFIT keyword)."""
        fit = (f", {self.function} order {self.order}, reject {self.low_reject:g}/"
               f"{self.high_reject:g} x{self.niterate}" if self.function else ", per line")
        return f"{self.method}{fit}"


def fit_with_rejection(values, function, order, low_reject, high_reject, niterate):
    """Fit ``values`` (one per line) by ``function`` of IRAF's ``order``, rejecting points
    beyond ``low_reject``/``high_reject`` times the residuals' rms up to ``niterate`` times, as
    IRAF's icfit does; the fit's values at every line."""
    x = np.arange(len(values), dtype=np.float64)
    good = np.isfinite(values)
    fit = _fit(x, values, good, function, order)
    for _ in range(max(0, niterate)):
        residuals = values - fit(x)
        if good.sum() < _MIN_POINTS or (low_reject <= 0 and high_reject <= 0):
            break
        sigma = np.sqrt(np.mean(residuals[good] ** 2))
        new = good & (((residuals < -low_reject * sigma) if low_reject > 0 else False)
                      | ((residuals > high_reject * sigma) if high_reject > 0 else False))
        if not new.any():
            break
        good &= ~new
        fit = _fit(x, values, good, function, order)
    return fit(x)


def _fit(x, y, good, function, order):
    domain = [x[0], x[-1]] if len(x) > 1 else [x[0], x[0] + 1]
    if function in _SERIES:
        degree = min(order - 1, max(0, int(good.sum()) - 1))
        return _SERIES[function].fit(x[good], y[good], degree, domain=domain)
    from scipy.interpolate import make_lsq_spline

    degree = 1 if function == "spline1" else 3
    interior = np.linspace(domain[0], domain[1], order + 1)[1:-1]
    knots = np.concatenate([[domain[0]] * (degree + 1), interior, [domain[1]] * (degree + 1)])
    try:
        return make_lsq_spline(x[good], y[good], knots, k=degree)
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise OptionError(f"overscan {function} of {order} pieces cannot be fitted to "
                          f"{int(good.sum())} lines ({exc}); lower --overscan-order") from None


def processing_cards(*, overscan=None, model=None, trim=None) -> list[tuple]:
    """Header cards (keyword, value, comment) recording the overscan subtracted and the trim,
    in IRAF's keywords and words (OVERSCAN, TRIM, CCDSEC, LTV1/LTV2, CCDPROC, each text after
    IRAF's time stamp) and ccdproc's (``subtract_overscan``,
    ``trim_image``), so that either tool sees the frame as processed."""
    now = _iraf_time()
    cards = []
    if overscan is not None:
        cards += [("OVERSCAN", f"{now} {overscan.describe(model)}", ""),
                  ("OVSCNFIT", overscan.fit_text(), ""),
                  ("HIERARCH subtract_overscan", (f"fits_section={overscan.section.fits()}, "
                   f"overscan_axis={overscan.collapsed_axis}"), "")]
    if trim is not None:
        cards += [("TRIM", f"{now} Trim data section is {trim.fits()}", ""),
                  ("CCDSEC", trim.fits(), "region of the CCD read"),
                  ("LTV1", float(-trim.x0), "physical = image + LTV offset (IRAF)"),
                  ("LTV2", float(-trim.y0), "physical = image + LTV offset (IRAF)"),
                  ("HIERARCH trim_image", f"fits_section={trim.fits()}", "")]
    if cards:
        cards.append(("CCDPROC", f"{now} CCD processing done", "by calstack"))
    return cards


def _iraf_time() -> str:
    """The time stamp IRAF puts before its processing keywords' text: 'Dec  3 16:21'."""
    now = datetime.datetime.now()
    return f"{now:%b} {now.day:2d} {now:%H:%M}"
