"""Provenance header of a master: what went in, and how it was combined.

Keywords (all 8 characters or fewer, so they stay plain FITS cards):

========  =========================================================
COMBINED  T: this is a combined frame (the reference recipe's mark)
NCOMBINE  number of input frames (IRAF)
IMCMBnnn  input file names, IMCMB001... (IRAF; at most 999); a name that is not printable ASCII
          or is over 68 characters is escaped, and written whole in a HISTORY card
CMB*      every combine option's card (:data:`calstack.options.OPTIONS`): method, rejection,
          nlow/nhigh always; min_clip/max_clip when set; the options the rejection algorithm
          reads (its registry entry), e.g. CMBSLOW, CMBSHIGH, CMBITER, CMBCEN, CMBSTD
CMBSCALE  how frames were scaled before rejection (per-frame factors in HISTORY)
CMBZERO   how zero offsets were found (per-frame offsets in HISTORY)
CMBWEIGH  weights of the average or sum
BIASSUB   master bias subtracted from every frame
DARKSUB   master dark subtracted, times frame / dark exposure
BADPIX    bad-pixel mask whose pixels were missing in every frame
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
from ..options import OPTIONS
from .fitsheader import printable

__all__ = ["LAYOUT_KEYWORDS", "provenance_header"]

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
    recorded = {"bias": None if preparation.bias is None else str(preparation.bias.name)[:68],
                "dark": None if preparation.dark is None else str(preparation.dark.name)[:68],
                "bad_pixels": None if preparation.bad_pixels is None
                else str(preparation.bad_pixels.name)[:68],
                "scale": None if scale is None else _describe(scale),
                "zero": None if zero is None else _describe(zero),
                "weights": None if weights is None else _describe(weights)}
    for name, value in recorded.items():
        if value is not None:
            header[OPTIONS[name].card[0]] = (value, OPTIONS[name].card[1])
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
                card.image.encode("ascii")  # astropy passes some cards it cannot write
        except (fits.VerifyError, ValueError):  # (UnicodeEncodeError is a ValueError)
            dropped.append(ascii(key)[1:-1] or "(blank)")
            continue
        header.append(card)
    if dropped:
        header.add_history(f"calstack dropped invalid cards of the first frame: {', '.join(dropped)}")
    header["COMBINED"] = (True, "combined from several frames by calstack")
    header["NCOMBINE"] = (len(names), "number of frames combined")
    for i, name in enumerate(list(names)[:999], start=1):
        text = printable(str(name))
        header[f"IMCMB{i:03d}"] = (text[:68], "input frame" if len(text) <= 53 else "")
        if text != str(name) or len(text) > 68:
            header.add_history(f"calstack IMCMB{i:03d} is {text}")
    for option in OPTIONS.values():
        if option.kind in ("combine", "internal") and option.card is not None:
            value = option.value_for_card(options)
            if value is not None:
                header[option.card[0]] = (value, option.card[1])
    header["CMBREJFR"] = (round(float(rejected_fraction), 8), "fraction of input values rejected")
    _preparation_cards(header, names, preparation, scale, zero, weights)
    if skipped:
        header["CMBSKIP"] = (len(skipped), "unreadable frames skipped")
        for path, reason in skipped:
            header.add_history(f"calstack skipped {os.path.basename(path)}: {reason}")
    header["CALSTACK"] = (__version__, "calstack version")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    header["CMBDATE"] = (now, "UTC time of combination")
    return header
