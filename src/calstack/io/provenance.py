"""Provenance header of a master: what went in, and how it was combined.

Keywords (all 8 characters or fewer, so they stay plain FITS cards):

========  =========================================================
COMBINED  T: this is a combined frame (the reference recipe's mark)
NCOMBINE  number of input frames (IRAF)
IMCMBnnn  input file names, IMCMB001... (IRAF; at most 999)
CMBMETH   average, median or sum
CMBREJ    rejection algorithm, or 'none'
CMBSLOW   sigma_lower     CMBSHIGH  sigma_upper  (clipping algorithms)
CMBCEN    cenfunc         CMBSTD    stdfunc      CMBITER  maxiters (0 = until converged)
CMBPCLIP  pclip (percentile_clip)
CMBGAIN   gain            CMBRDNS   read noise   CMBSNOIS  sense noise (ccdclip)
CMBESDMX  esd_max         CMBESDAL  esd_alpha    (esd)
CMBSCALE  how frames were scaled before rejection (per-frame factors in HISTORY)
CMBZERO   how zero offsets were found (per-frame offsets in HISTORY)
CMBWEIGH  weights of the average or sum
BIASSUB   master bias subtracted from every frame
DARKSUB   master dark subtracted, times frame / dark exposure (DARKSCL: the keyword)
CMBNLOW   nlow            CMBNHIGH  nhigh
CMBMIN    min_clip        CMBMAX    max_clip     (only when set)
CMBREJFR  fraction of finite input values rejected
CMBSKIP   number of unreadable frames skipped (``skip_bad``), each named in a HISTORY card
CALSTACK  calstack version
========  =========================================================
"""

from __future__ import annotations

import datetime
import os
import warnings

from astropy.io import fits

from .. import __version__

__all__ = ["provenance_header", "LAYOUT_KEYWORDS"]

#: Keywords that describe the input file's layout, not the data: never copied to a master.
LAYOUT_KEYWORDS = {
    "SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND", "BZERO", "BSCALE",
    "BLANK", "XTENSION", "PCOUNT", "GCOUNT", "EXTNAME", "EXTVER", "CHECKSUM", "DATASUM",
    "INHERIT", "ZIMAGE", "ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2", "ZCMPTYPE", "ZTILE1", "ZTILE2",
    "ZQUANTIZ", "ZDITHER0", "ZSIMPLE", "ZEXTEND", "ZPCOUNT", "ZGCOUNT", "TFIELDS",
}


def _describe(value) -> str:
    return value if isinstance(value, str) else "given per frame"


def _preparation_cards(header, names, preparation, scale, zero, weights):
    if preparation is None:
        return
    if preparation.bias is not None:
        header["BIASSUB"] = (str(preparation.bias.name)[:68], "master bias subtracted")
    if preparation.dark is not None:
        header["DARKSUB"] = (str(preparation.dark.name)[:68], "master dark subtracted")
    if scale is not None:
        header["CMBSCALE"] = (_describe(scale), "frames scaled before rejection")
    if zero is not None:
        header["CMBZERO"] = (_describe(zero), "zero offsets subtracted before rejection")
    if weights is not None:
        header["CMBWEIGH"] = (_describe(weights), "weights of the combination")
    if preparation.scale is not None or preparation.zero is not None:
        for i, name in enumerate(list(names)[:999]):
            factor = 1.0 if preparation.scale is None else preparation.scale[i]
            offset = 0.0 if preparation.zero is None else preparation.zero[i]
            header.add_history(f"calstack scale {factor:.6g} zero {offset:.6g} {os.path.basename(str(name))}")


def provenance_header(first: fits.Header, names, options, *, rejected_fraction: float,
                      skipped=(), preparation=None, scale=None, zero=None,
                      weights=None) -> fits.Header:
    """Return the master's header: ``first`` without layout keywords, plus provenance cards.

    ``preparation`` (a :class:`calstack.stacking.preparation.Preparation`) and the ``scale``, ``zero``
    and ``weights`` options, when given, are recorded too.
    """
    header = fits.Header()
    dropped = []
    for card in first.cards:
        key = card.keyword
        if key in LAYOUT_KEYWORDS or key.startswith(("IMCMB", "TTYPE", "TFORM", "ZNAME", "ZVAL")):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                card.verify("exception")
        except (fits.VerifyError, ValueError):
            dropped.append(key or "(blank)")
            continue
        header.append(card)
    if dropped:
        header.add_history(f"calstack dropped invalid cards of the first frame: {', '.join(dropped)}")
    header["COMBINED"] = (True, "combined from several frames by calstack")
    header["NCOMBINE"] = (len(names), "number of frames combined")
    for i, name in enumerate(list(names)[:999], start=1):
        header[f"IMCMB{i:03d}"] = (str(name)[:68], "input frame")
    header["CMBMETH"] = (options.method, "combine method")
    header["CMBREJ"] = (options.rejection or "none", "rejection algorithm")
    if options.rejection not in (None, "esd"):
        header["CMBSLOW"] = (options.low, "sigma_lower")
        header["CMBSHIGH"] = (options.high, "sigma_upper")
        header["CMBITER"] = (options.maxiters or 0, "maxiters (0 = until nothing changes)")
    if options.rejection in ("sigma_clip", "ccdclip"):
        header["CMBCEN"] = (options.cenfunc, "cenfunc")
    if options.rejection == "sigma_clip":
        header["CMBSTD"] = (options.stdfunc, "stdfunc")
    if options.rejection == "percentile_clip":
        header["CMBPCLIP"] = (options.pclip, "pclip")
    if options.rejection == "ccdclip":
        header["CMBGAIN"] = (float(options.gain), "gain [e-/ADU] of the noise model")
        header["CMBRDNS"] = (float(options.read_noise), "read noise [e-] of the noise model")
        header["CMBSNOIS"] = (options.sense_noise, "sensitivity noise of the noise model")
    if options.rejection == "esd":
        header["CMBESDMX"] = (options.esd_max, "most outliers sought (count or fraction)")
        header["CMBESDAL"] = (options.esd_alpha, "significance level of the ESD test")
    header["CMBNLOW"] = (options.nlow, "lowest values dropped per pixel")
    header["CMBNHIGH"] = (options.nhigh, "highest values dropped per pixel")
    if options.min_clip is not None:
        header["CMBMIN"] = (options.min_clip, "values below were rejected")
    if options.max_clip is not None:
        header["CMBMAX"] = (options.max_clip, "values above were rejected")
    header["CMBREJFR"] = (round(float(rejected_fraction), 8), "fraction of input values rejected")
    _preparation_cards(header, names, preparation, scale, zero, weights)
    if skipped:
        header["CMBSKIP"] = (len(skipped), "unreadable frames skipped")
        for path, reason in skipped:
            header.add_history(f"calstack skipped {os.path.basename(path)}: {reason}")
    header["CALSTACK"] = (__version__, "calstack version")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    header["CMBDATE"] = (now, "UTC time of combination")
    return header
