"""Drop-ins for ccdproc's processing functions: ``subtract_overscan``, ``trim_image``,
``subtract_bias``, ``subtract_dark``, ``gain_correct``, ``flat_correct`` and ``ccd_process``.

ccdproc's signatures, defaults, numbers and exceptions (types and messages), so that code
written for ccdproc runs unchanged; sections are read by calstack's parser and the overscan
collapsed by calstack's :class:`~calstack.processing.overscan.Overscan`; the arithmetic is
astropy's ``CCDData`` arithmetic, as in ccdproc, so values, uncertainties and masks are
ccdproc's. ``add_keyword`` records each step in the header as ccdproc does (its short name, the
arguments as given; images and arrays as placeholders).

For speed on whole folders use ``calstack calibrate`` (one pass per band, in parallel); these
functions work on one image in memory, as ccdproc's do.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np
from astropy import units as u
from astropy.nddata import CCDData, StdDevUncertainty

from ..processing.overscan import Overscan
from ..processing.sections import parse_section

__all__ = ["ccd_process", "create_deviation", "flat_correct", "gain_correct",
           "subtract_bias", "subtract_dark", "subtract_overscan", "trim_image"]


#: The keywords ccdproc records its steps under (the function's name is longer than FITS's 8).
_SHORT_NAMES = {"ccd_process": "ccdproc", "create_deviation": "creatvar",
                "flat_correct": "flatcor", "gain_correct": "gaincor",
                "subtract_bias": "subbias", "subtract_dark": "subdark",
                "subtract_overscan": "suboscan", "trim_image": "trimim"}


def _placeholder(value) -> str:
    """An argument as ccdproc writes it: images and arrays of more than one value by type."""
    if (isinstance(value, u.Quantity) and not value.isscalar) or (
            isinstance(value, (CCDData, np.ndarray)) and np.size(value) > 1):
        return f"<{type(value).__name__}>"
    return str(value)


def _logged(func):
    """ccdproc's ``log_to_metadata``: an ``add_keyword`` argument (True: record the call, its
    arguments as given, under the function's short name; a dict: those cards; False: none)."""
    names = list(inspect.signature(func).parameters)

    @functools.wraps(func)
    def wrapper(*args, add_keyword=True, **kwargs):
        result = func(*args, **kwargs)
        if add_keyword is True:
            given = [*zip(names, args, strict=False), *kwargs.items()]  # positional, then named
            text = ", ".join(f"{k}={_placeholder(v)}" for k, v in given).replace("\n", "")
            short = _SHORT_NAMES[func.__name__]
            result.meta[func.__name__] = (short, "Shortened name for ccdproc command")
            result.meta[short] = text
        elif isinstance(add_keyword, dict):
            result.meta.update(add_keyword)
        return result

    return wrapper


def _section(ccd, text):
    """A ccdproc ``fits_section`` ('[x1:x2,y1:y2]', blanks and ':' allowed) as slices."""
    spaced = text.replace(" ", "").replace(",:]", ",*]").replace("[:,", "[*,")
    return parse_section(spaced, ccd.shape, keyword="fits_section").slices


@_logged
def subtract_overscan(ccd, overscan=None, overscan_axis=1, fits_section=None, median=False,
                      model=None):
    """ccdproc's ``subtract_overscan``: the overscan (an image, or ``fits_section`` of
    ``ccd``) averaged (``median``: median) along ``overscan_axis`` (None: its shorter side),
    optionally fitted by an astropy ``model`` (astropy's linear least squares, as ccdproc)."""
    if not isinstance(ccd, CCDData):
        raise TypeError("ccddata is not a CCDData object.")
    if (overscan is not None and fits_section is not None) or (
            overscan is None and fits_section is None):
        raise TypeError("specify either overscan or fits_section, but not both.")
    if overscan is not None and not isinstance(overscan, CCDData):
        raise TypeError("overscan is not a CCDData object.")
    if fits_section is not None and not isinstance(fits_section, str):
        raise TypeError("overscan is not a string.")
    region = np.asarray(ccd.data[_section(ccd, fits_section)] if fits_section is not None
                        else overscan.data)
    if overscan_axis is None:
        overscan_axis = 0 if region.shape[1] > region.shape[0] else 1
    whole = parse_section(f"[1:{region.shape[1]},1:{region.shape[0]}]", region.shape)
    values = Overscan(whole, method="median" if median else "mean", axis=overscan_axis).vector(
        region)
    if model is not None:
        from astropy.modeling import fitting

        x = np.arange(len(values))
        values = fitting.LinearLSQFitter()(model, x, values)(x)
    shaped = values[:, None] if overscan_axis == 1 else values[None, :]
    result = ccd.copy()
    result.data = ccd.data - shaped
    return result


@_logged
def trim_image(ccd, fits_section=None):
    """ccdproc's ``trim_image``: a copy of ``ccd`` cut to ``fits_section`` (all of it if None;
    pass a sliced image to trim by slicing)."""
    if fits_section is not None and not isinstance(fits_section, str):
        raise TypeError("fits_section must be a string.")
    trimmed = ccd.copy()
    if fits_section:
        trimmed = trimmed[_section(ccd, fits_section)]
    return trimmed


def _units_error(ccd, master):
    return u.UnitsError(f"Unit '{ccd.unit}' of the uncalibrated image does not match unit "
                        f"'{master.unit}' of the calibration image")


@_logged
def subtract_bias(ccd, master):
    """ccdproc's ``subtract_bias``: ``ccd - master`` (uncertainties and masks propagated)."""
    try:
        result = ccd.subtract(master)
    except ValueError as err:
        if "operand units" in str(err):
            raise _units_error(ccd, master) from err
        raise
    result.meta = ccd.meta.copy()
    return result


def _value_from(keyword, header):
    """A ccdproc ``Keyword``'s value from a header (anything with ``value_from``), or the
    header's value of a keyword name."""
    return keyword.value_from(header) if hasattr(keyword, "value_from") else header[keyword]


@_logged
def subtract_dark(ccd, master, dark_exposure=None, data_exposure=None, exposure_time=None,
                  exposure_unit=None, scale=False):
    """ccdproc's ``subtract_dark``: ``ccd - master``, the master scaled by the exposure ratio
    with ``scale`` (exposures given as Quantities, or read from the headers' ``exposure_time``
    in ``exposure_unit``)."""
    if ccd.shape != master.shape:
        raise ValueError(f"operands could not be subtracted with shapes {ccd.shape} "
                         f"{master.shape}")
    if not (isinstance(ccd, CCDData) and isinstance(master, CCDData)):
        raise TypeError("ccd and master must both be CCDData objects.")
    if data_exposure is not None and dark_exposure is not None and exposure_time is not None:
        raise TypeError("specify either exposure_time or (dark_exposure and data_exposure), "
                        "not both.")
    if data_exposure is None and dark_exposure is None:
        if exposure_time is None:
            raise TypeError("must specify either exposure_time or both dark_exposure and "
                            "data_exposure.")
        data_exposure = _value_from(exposure_time, ccd.header)
        dark_exposure = _value_from(exposure_time, master.header)
    if not (isinstance(dark_exposure, u.Quantity) and isinstance(data_exposure, u.Quantity)):
        if exposure_time:
            try:
                data_exposure *= exposure_unit
                dark_exposure *= exposure_unit
            except TypeError as err:
                raise TypeError("must provide unit for exposure time.") from err
        else:
            raise TypeError("exposure times must be astropy.units.Quantity objects.")
    try:
        used = master.copy().multiply(data_exposure / dark_exposure) if scale else master
        result = ccd.subtract(used)
    except (u.UnitsError, u.UnitConversionError, ValueError) as err:
        raise _units_error(ccd, master) from err
    result.meta = ccd.meta.copy()
    return result


@_logged
def gain_correct(ccd, gain, gain_unit=None):
    """ccdproc's ``gain_correct``: ``ccd`` times the gain (a Quantity, a ``Keyword``, or a
    number in ``gain_unit``)."""
    if hasattr(gain, "value_from"):
        value = gain.value_from(ccd.header)
    elif isinstance(gain, (int, float, np.number)) and gain_unit is not None:
        value = gain * u.Unit(gain_unit)
    else:
        value = gain
    result = ccd.multiply(value)
    result.meta = ccd.meta.copy()
    return result


@_logged
def flat_correct(ccd, flat, min_value=None, norm_value=None):
    """ccdproc's ``flat_correct``: ``ccd`` divided by the flat normalised by its mean (or
    ``norm_value``), flat values below ``min_value`` raised to it, masked flat values 1."""
    use = flat
    if min_value is not None:
        use = flat.copy()
        use.data[use.data < min_value] = min_value
    if norm_value is not None and norm_value > 0:
        mean = norm_value if hasattr(norm_value, "unit") else norm_value * use.unit
    elif norm_value is not None:
        raise ValueError("norm_value must be greater than zero.")
    else:
        mean = use.data.mean() * use.unit
    normed = use.divide(mean)
    if normed.mask is not None and normed.mask.any():
        normed.data[normed.mask] = 1.0
    result = ccd.divide(normed)
    result.meta = ccd.meta.copy()
    return result


@_logged
def create_deviation(ccd_data, gain=None, readnoise=None, disregard_nan=False):
    """ccdproc's ``create_deviation``: the uncertainty sqrt(gain * data + readnoise**2) / gain
    (negative values NaN, or 0 with ``disregard_nan``)."""
    if gain is not None and not isinstance(gain, u.Quantity):
        raise TypeError("gain must be a astropy.units.Quantity.")
    if readnoise is None:
        raise ValueError("must provide a readnoise.")
    if not isinstance(readnoise, u.Quantity):
        raise TypeError("readnoise must be a astropy.units.Quantity.")
    if gain is None:
        gain = 1.0 * u.dimensionless_unscaled
    if gain.unit * ccd_data.unit != readnoise.unit:
        raise u.UnitsError("units of data, gain and readnoise do not match.")
    g, r = float(gain / gain.unit), float(readnoise / readnoise.unit)
    data = g * ccd_data.data
    data[data < 0] = 0 if disregard_nan else np.nan
    result = ccd_data.copy()
    result.uncertainty = StdDevUncertainty((data + r**2) ** 0.5 / g)
    return result


@_logged
def ccd_process(ccd, oscan=None, trim=None, error=False, master_bias=None, dark_frame=None,
                master_flat=None, bad_pixel_mask=None, gain=None, readnoise=None,
                oscan_median=True, oscan_model=None, min_value=None, dark_exposure=None,
                data_exposure=None, exposure_key=None, exposure_unit=None, dark_scale=False,
                gain_corrected=True):
    """ccdproc's ``ccd_process``: overscan, trim, deviation, bad-pixel mask, gain (first, when
    the masters are ``gain_corrected``, else last), bias, dark, flat, in ccdproc's order."""
    result = ccd.copy()
    if isinstance(oscan, CCDData):
        result = subtract_overscan(result, overscan=oscan, median=oscan_median,
                                   model=oscan_model)
    elif isinstance(oscan, str):
        result = subtract_overscan(result, fits_section=oscan, median=oscan_median,
                                   model=oscan_model)
    elif oscan is not None:
        raise TypeError("oscan is not None, a string, or CCDData object.")
    if isinstance(trim, str):
        result = trim_image(result, fits_section=trim)
    elif trim is not None:
        raise TypeError("trim is not None or a string.")
    if error and gain is not None and readnoise is not None:
        result = create_deviation(result, gain=gain, readnoise=readnoise)
    elif error:
        raise ValueError("gain and readnoise must be specified to create error frame.")
    if isinstance(bad_pixel_mask, np.ndarray):
        result.mask = bad_pixel_mask
    elif bad_pixel_mask is not None:
        raise TypeError("bad_pixel_mask is not None or numpy.ndarray.")
    if not (gain is None or isinstance(gain, u.Quantity)):
        raise TypeError("gain is not None or astropy.units.Quantity.")
    if gain is not None and gain_corrected:
        result = gain_correct(result, gain)
    if isinstance(master_bias, CCDData):
        result = subtract_bias(result, master_bias)
    elif master_bias is not None:
        raise TypeError("master_bias is not None or a CCDData object.")
    if isinstance(dark_frame, CCDData):
        result = subtract_dark(result, dark_frame, dark_exposure=dark_exposure,
                               data_exposure=data_exposure, exposure_time=exposure_key,
                               exposure_unit=exposure_unit, scale=dark_scale)
    elif dark_frame is not None:
        raise TypeError("dark_frame is not None or a CCDData object.")
    if isinstance(master_flat, CCDData):
        result = flat_correct(result, master_flat, min_value=min_value)
    elif master_flat is not None:
        raise TypeError("master_flat is not None or a CCDData object.")
    if gain is not None and not gain_corrected:
        result = gain_correct(result, gain)
    return result
