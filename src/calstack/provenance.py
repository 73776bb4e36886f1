"""Provenance header of a master: what went in, and how it was combined.

Keywords (all 8 characters or fewer, so they stay plain FITS cards):

========  =========================================================
COMBINED  T: this is a combined frame (the reference recipe's mark)
NCOMBINE  number of input frames (IRAF)
IMCMBnnn  input file names, IMCMB001... (IRAF; at most 999)
CMBMETH   average, median or sum
CMBREJ    rejection algorithm, or 'none'
CMBSLOW   sigma_lower     CMBSHIGH  sigma_upper
CMBCEN    cenfunc         CMBSTD    stdfunc      CMBITER  maxiters (0 = until converged)
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

from . import __version__

__all__ = ["provenance_header", "LAYOUT_KEYWORDS"]

#: Keywords that describe the input file's layout, not the data: never copied to a master.
LAYOUT_KEYWORDS = {
    "SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND", "BZERO", "BSCALE",
    "BLANK", "XTENSION", "PCOUNT", "GCOUNT", "EXTNAME", "EXTVER", "CHECKSUM", "DATASUM",
    "INHERIT", "ZIMAGE", "ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2", "ZCMPTYPE", "ZTILE1", "ZTILE2",
    "ZQUANTIZ", "ZDITHER0", "ZSIMPLE", "ZEXTEND", "ZPCOUNT", "ZGCOUNT", "TFIELDS",
}


def provenance_header(first: fits.Header, names, options, *, rejected_fraction: float,
                      skipped=()) -> fits.Header:
    """Return the master's header: ``first`` without layout keywords, plus provenance cards."""
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
    if options.rejection == "sigma_clip":
        header["CMBSLOW"] = (options.low, "sigma_lower")
        header["CMBSHIGH"] = (options.high, "sigma_upper")
        header["CMBCEN"] = (options.cenfunc, "cenfunc")
        header["CMBSTD"] = (options.stdfunc, "stdfunc")
        header["CMBITER"] = (options.maxiters or 0, "maxiters (0 = until nothing changes)")
    header["CMBNLOW"] = (options.nlow, "lowest values dropped per pixel")
    header["CMBNHIGH"] = (options.nhigh, "highest values dropped per pixel")
    if options.min_clip is not None:
        header["CMBMIN"] = (options.min_clip, "values below were rejected")
    if options.max_clip is not None:
        header["CMBMAX"] = (options.max_clip, "values above were rejected")
    header["CMBREJFR"] = (round(float(rejected_fraction), 8), "fraction of input values rejected")
    if skipped:
        header["CMBSKIP"] = (len(skipped), "unreadable frames skipped")
        for path, reason in skipped:
            header.add_history(f"calstack skipped {os.path.basename(path)}: {reason}")
    header["CALSTACK"] = (__version__, "calstack version")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    header["CMBDATE"] = (now, "UTC time of combination")
    return header
