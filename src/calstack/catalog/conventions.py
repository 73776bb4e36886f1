"""What acquisition and reduction programs write in headers, as data.

The one place that knows header conventions; the index reads through it and grouping decides
with it:

- :data:`ALIASES`: the keywords that carry a frame's type, exposure and filter under other
  names (N.I.N.A., MaxIm DL, SharpCap, SGP, ASIAIR, Gemini/NOIRLab, IRAF);
- :data:`NUMERIC`: keywords whose values are numbers even when a program writes them as text;
- :data:`KINDS`: each kind of calibration frame -- its IMAGETYP spellings, its grouping keys,
  what must be built before it (like banzai's ``settings.py``);
- :data:`SETUP`: the camera setup that frames must share to be combined together;
- :data:`DEFAULT_TOLERANCES`: how close two values of a keyword must be to be the same setting;
- :func:`master_marks`: whether a frame is itself a master (written by calstack, IRAF, Siril,
  MaxIm DL, PixInsight or Astro Pixel Processor).

Pure: no disk access, no astropy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .closeness import Tolerance, fold

__all__ = [
    "ALIASES",
    "DEFAULT_TOLERANCES",
    "KINDS",
    "LIGHT_SPELLINGS",
    "MASTER_KEYWORDS",
    "NUMERIC",
    "SETUP",
    "Kind",
    "as_number",
    "kind_of",
    "master_marks",
    "normalise",
    "read_keywords",
]

#: Canonical keyword -> the keywords that carry it, in order of preference. The index fills the
#: canonical column from the first one present (``FILTER1``/``FILTER2`` join as ``'R+open'``).
ALIASES = {
    "IMAGETYP": ("IMAGETYP", "OBSTYPE", "FRAME", "IMGTYPE"),
    "EXPTIME": ("EXPTIME", "EXPOSURE", "EXP_TIME"),
    "FILTER": ("FILTER", "FILTERS", ("FILTER1", "FILTER2"), "SUBSET"),
}

#: Keywords whose values are numbers; text that reads as a number (``'60.000'``) becomes one,
#: and a non-finite value (``inf``, NaN) is missing.
NUMERIC = frozenset({
    "EXPTIME", "EXPOSURE", "EXP_TIME", "DARKTIME", "GAIN", "EGAIN", "OFFSET", "BLKLEVEL",
    "CCD-TEMP", "SET-TEMP", "SETTEMP", "XBINNING", "YBINNING", "NAXIS1", "NAXIS2", "EXTVER",
    "NCOMBINE", "STACKCNT", "SNAPSHOT", "USBLIMIT", "RDNOISE", "READNOIS",
})


#: Keyword (index column, lower case) -> the default tolerance of grouping and selection.
#: Cameras record the exposure they measured (120.0012 s, 119.9991 s): one setting within
#: max(0.1 %, 10 ms), far below the steps users choose (1 s -> 1.5 s is 50 %). A regulated
#: cooler holds CCD-TEMP within a few tenths of its set-point and set-points differ by 5 degC
#: or more; an unregulated sensor drifts continuously (clusters chain, so a drift stays one
#: group): 2 degC.
DEFAULT_TOLERANCES = {
    "exptime": Tolerance(rel=1e-3, abs=0.01),
    "ccd-temp": Tolerance(abs=2.0),
}


@dataclass(frozen=True)
class Kind:
    """One kind of calibration frame.

    Attributes
    ----------
    name : str
        ``bias``, ``dark``, ``flatdark`` or ``flat`` (the ``{imagetyp}`` of output names).
    spellings : tuple of str
        IMAGETYP values (compared trimmed and case-insensitively) that mean this kind.
    keys : tuple of str
        What splits this kind beyond the camera setup (darks: exposure; flats: filter).
    needs : tuple of str
        Kinds built before it, whose masters it can use.
    """

    name: str
    spellings: tuple
    keys: tuple = ()
    needs: tuple = ()


#: The kinds a night builds, in the order they are built; LIGHT frames are the science.
KINDS = {
    "bias": Kind("bias", ("bias", "zero", "bias frame", "zero frame", "bias_frame", "offset",
                          "offset frame")),
    "dark": Kind("dark", ("dark", "dark frame", "dark current", "dark_frame"), ("exptime",),
                 ("bias",)),
    "flatdark": Kind("flatdark", ("darkflat", "dark flat", "flat dark", "flat-dark", "flatdark",
                                  "dark_flat", "flat_dark", "flat dark frame"), ("exptime",),
                     ("bias",)),
    "flat": Kind("flat", ("flat", "flat field", "flatfield", "flat-field", "flat frame",
                          "flat_field", "dome flat", "domeflat", "sky flat", "skyflat",
                          "twilight flat", "twiflat", "lampflat", "lamp flat"), ("filter",),
                 ("bias", "dark", "flatdark")),
}

#: IMAGETYP values of science frames (never combined into a master by ``calstack masters``).
LIGHT_SPELLINGS = ("light", "object", "light frame", "science", "sci")

#: The camera setup: frames are combined together only when these agree. Each entry is one
#: index column (lower case); a frame without the keyword has the setup value "none".
#: - the detector: INSTRUME, DETECTOR, CCDNAME; the extension: EXTNAME and EXTVER (WFPC2
#:   chips, GMOS amplifiers share EXTNAME 'SCI');
#: - the readout: binning (XBINNING/YBINNING, NOIRLab's CCDSUM), shape, READOUTM (MaxIm DL,
#:   N.I.N.A.) / READMODE;
#: - CMOS settings: GAIN and OFFSET (N.I.N.A., ASIAIR, SharpCap and SGP write the camera's gain
#:   and offset settings there; for a CCD, GAIN is the amplifier's e-/ADU, one value per
#:   camera), EGAIN (MaxIm DL's and N.I.N.A.'s e-/ADU, set by the gain setting); USBLIMIT is a
#:   transfer setting that does not change the pixel values and is not part of the setup;
#: - the cooler: SET-TEMP / SETTEMP (set-point) exactly, CCD-TEMP within 2 degC.
SETUP = ("instrume", "detector", "ccdname", "extname", "extver", "xbinning", "ybinning",
         "ccdsum", "naxis1", "naxis2", "readoutm", "readmode", "gain", "offset", "egain",
         "set-temp", "settemp", "ccd-temp")

#: Keywords by which a frame says it is a master (see :func:`master_marks`).
MASTER_KEYWORDS = ("COMBINED", "NCOMBINE", "IMCMB001", "CCDPROC", "STACKCNT", "SNAPSHOT")


def read_keywords() -> tuple:
    """Every keyword the conventions read (upper case): aliases, setup, master marks."""
    names = []
    for carriers in ALIASES.values():
        for carrier in carriers:
            names.extend(carrier if isinstance(carrier, tuple) else (carrier,))
    names += [k.upper() for k in SETUP if k != "extname"]  # EXTNAME: the index's own column
    names += MASTER_KEYWORDS
    return tuple(dict.fromkeys(names))


def as_number(value):
    """A header value as a number where it reads as one (``'60.000'`` -> 60.0, ``'2'`` -> 2),
    else unchanged; a non-finite number is None (missing)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text.replace("D", "E").replace("d", "e"))
            except ValueError:
                return value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def normalise(header) -> tuple[dict, list]:
    """A header as grouping reads it, and what was wrong with it.

    Numeric keywords (:data:`NUMERIC`) written as text become numbers and non-finite ones are
    dropped; a canonical keyword (:data:`ALIASES`) the header lacks is taken from its first
    alias present. Returns the new mapping and a list of problems (one line each, without the
    file name): a non-finite number, or exposure keywords that disagree.
    """
    out = dict(header)
    problems = []
    for name in NUMERIC.intersection(out):
        value = as_number(out[name])
        if value is None:
            problems.append(f"{name} = {out[name]!r} is not a finite number; treated as missing")
            del out[name]
        else:
            out[name] = value
    for canonical, carriers in ALIASES.items():
        present = [(c, _carried(out, c)) for c in carriers]
        present = [(c, v) for c, v in present if v is not None]
        if present and canonical not in out:
            out[canonical] = present[0][1]
        numeric = [(c, v) for c, v in present if isinstance(v, (int, float))]
        if canonical == "EXPTIME" and len(numeric) > 1:
            first, a = numeric[0]
            for other, b in numeric[1:]:
                if not DEFAULT_TOLERANCES["exptime"].allows(abs(a - b), a, b):
                    problems.append(f"{first} = {a} but {other} = {b}; using {first}")
    return out, problems


def _carried(header, carrier):
    """The value of one alias: a keyword, or keywords joined by '+' (FILTER1 + FILTER2)."""
    if isinstance(carrier, str):
        value = header.get(carrier)
        return None if isinstance(value, str) and not value.strip() else value
    parts = [str(header[k]).strip() for k in carrier if str(header.get(k) or "").strip()]
    return "+".join(parts) or None


def kind_of(imagetyp) -> str | None:
    """The kind (``'bias'``, ``'dark'``, ``'flatdark'``, ``'flat'``) an IMAGETYP value means,
    ``'light'`` for science frames, or None."""
    if imagetyp is None:
        return None
    text = fold(imagetyp)
    for kind in KINDS.values():
        if text in kind.spellings:
            return kind.name
    return "light" if text in LIGHT_SPELLINGS else None


def _truthy(value) -> bool:
    return value is True or (isinstance(value, str) and fold(value) in ("t", "true", "1"))


def _count(value) -> float:
    value = as_number(value)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def master_marks(header) -> str | None:
    """Why a frame's header says it is a master, or None.

    ``header`` maps upper-case keywords to values. The marks: ``COMBINED = T`` (calstack, the
    reference recipe), ``NCOMBINE > 1`` with ``IMCMB001`` (IRAF imcombine, ccdproc) or with
    ``CCDPROC`` (IRAF ccdred's zerocombine, darkcombine and flatcombine, which write no
    IMCMBnnn), Siril's ``STACKCNT``, MaxIm DL's ``SNAPSHOT > 1``, and an IMAGETYP that says
    "master" (PixInsight's WBPP and Astro Pixel Processor write ``'Master Dark'``,
    ``'MASTER FLAT'``...).
    """
    if _truthy(header.get("COMBINED")):
        return "COMBINED = T"
    if _count(header.get("NCOMBINE")) > 1 and header.get("IMCMB001") is not None:
        return f"NCOMBINE = {header['NCOMBINE']} with IMCMB001"
    if _count(header.get("NCOMBINE")) > 1 and header.get("CCDPROC") is not None:
        return f"NCOMBINE = {header['NCOMBINE']} with CCDPROC (IRAF ccdred)"
    if _count(header.get("STACKCNT")) >= 1:
        return f"STACKCNT = {header['STACKCNT']} (Siril)"
    if _count(header.get("SNAPSHOT")) > 1:
        return f"SNAPSHOT = {header['SNAPSHOT']} (MaxIm DL)"
    for name in ALIASES["IMAGETYP"]:
        value = header.get(name)
        if isinstance(value, str) and "master" in fold(value):
            return f"{name} = {value.strip()!r}"
    return None
