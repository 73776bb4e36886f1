"""Which masters calibrate a science frame, chosen from a folder of masters.

A master is a candidate when it was built for the frame's camera setup (every key of
:data:`calstack.catalog.conventions.SETUP` that both headers have agrees, by grouping's rule and
tolerances; the image shape is checked against the frame once trimmed). Among candidates:

- **dark**: the master of the frame's exposure (EXPTIME within its tolerance), used as it is;
  without one, the bias-subtracted master of the nearest exposure by ratio (the longer on a
  tie), scaled by DARKTIME (EXPTIME where either lacks it). A dark that is not bias-subtracted includes the bias: it is used only
  at its own exposure, and then no bias is subtracted besides it.
- **bias**: needed unless the dark includes it.
- **flat**: the master of the frame's filter.

With a dark coefficient (``dark_coefficient``, per degree C; a camera file's), masters of
another sensor temperature (CCD-TEMP, SET-TEMP) are candidates too, the nearest temperature
first; where no dark of the frame's temperature is there, the bias-subtracted dark of the
nearest is scaled by ``exp(coefficient x (T_frame - T_dark))`` as well as by exposure.

Ties go to the master nearest in time (DATE-OBS). A frame without a master it needs is an
error naming what is missing, unless ``allow_missing`` names that kind.
"""

from __future__ import annotations

import datetime
import math
import os
from dataclasses import dataclass, field

from ..catalog.closeness import same_text, same_value
from ..catalog.conventions import DEFAULT_TOLERANCES, SETUP, kind_of
from ..errors import OptionError

__all__ = ["KINDS", "MASTER_KEYWORDS", "Choice", "MasterFile", "choose", "masters_in"]

#: The masters ``calibrate`` applies, in the order it applies them.
KINDS = ("bias", "dark", "flat")

#: Keywords of a master that say it was bias-subtracted (calstack, IRAF's ccdproc).
_BIAS_SUBTRACTED = ("BIASSUB", "ZEROCOR")

#: Keywords the masters' index needs besides the conventions' own.
MASTER_KEYWORDS = ("IMAGETYP", "EXPTIME", "DARKTIME", "FILTER", "DATE-OBS", *_BIAS_SUBTRACTED)

#: Setup keys compared between frame and master (the shape is compared after trimming); an
#: extension of a multi-extension frame takes the master's extension of its EXTNAME and EXTVER.
_SETUP_KEYS = tuple(k for k in SETUP if k not in ("naxis1", "naxis2"))


def _date(value) -> datetime.datetime | None:
    try:
        date = datetime.datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return date if date.tzinfo else date.replace(tzinfo=datetime.UTC)


@dataclass(frozen=True)
class MasterFile:
    """A master of the masters folder, as the index read it."""

    path: str
    hdu: int
    kind: str
    row: dict = field(repr=False)  # the index row: lower-case keyword -> value (None: absent)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def shape(self) -> tuple:
        return (self.row.get("naxis2"), self.row.get("naxis1"))

    @property
    def bias_subtracted(self) -> bool:
        return any(self.row.get(k.lower()) not in (None, False, "", "F") for k in _BIAS_SUBTRACTED)


@dataclass(frozen=True)
class Choice:
    """The masters chosen for one frame, and why."""

    bias: MasterFile | None
    dark: MasterFile | None
    flat: MasterFile | None
    dark_factor: float = 1.0
    dark_rule: str = ""  # 'exposure' (the frame's), 'scaled by DARKTIME', 'scaled by EXPTIME'

    def describe(self) -> str:
        """One line: each master by file name, and the dark's rule."""
        parts = [f"bias {self.bias.name}" if self.bias else "no bias"]
        if self.dark is None:
            parts.append("no dark")
        elif self.dark_rule == "exposure":
            parts.append(f"dark {self.dark.name} (same exposure"
                         f"{', includes the bias' if not self.dark.bias_subtracted else ''})")
        else:
            parts.append(f"dark {self.dark.name} x{self.dark_factor:.6g} ({self.dark_rule})")
        parts.append(f"flat {self.flat.name}" if self.flat else "no flat")
        return ", ".join(parts)


def masters_in(index) -> list[MasterFile]:
    """The bias, dark and flat masters of an :class:`~calstack.catalog.index.ImageIndex`: frames
    it marks as masters (``master`` column) whose frame type is one of :data:`KINDS`."""
    found = []
    for row in index.rows():
        kind = kind_of(row.get("imagetyp"))
        if row["error"] or not row["master"] or kind not in KINDS:
            continue
        found.append(MasterFile(str(row["path"]), int(row["hdu"]), kind, row))
    return found


def _differences(frame: dict, master: MasterFile, tolerances, ignore=()) -> list[str]:
    """Setup keys both have (but ``ignore``) on which they differ, as ``'GAIN 120 vs 0'``."""
    out = []
    for key in _SETUP_KEYS:
        if key in ignore:
            continue
        a, b = frame.get(key), master.row.get(key)
        if a is not None and b is not None and not same_value(
                a, b, tolerances.get(key, DEFAULT_TOLERANCES.get(key))):
            out.append(f"{key.upper()} {a!r} vs {b!r}")
    return out


def _exposure(row, key):
    value = row.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _scaling_order(mine, theirs, distance):
    """Darks to scale, best first: the nearest exposure by ratio, the longer on a tie (scaled
    down, its noise shrinks), then the nearest in time; none with no exposure."""
    if not mine or not theirs or mine <= 0 or theirs <= 0:
        return (math.inf, 0.0, distance)
    return (round(abs(math.log(mine / theirs)), 9), -theirs, distance)


#: The sensor's temperature keys: with a dark coefficient a master of another temperature is a
#: candidate (the nearest first), its dark current scaled.
_TEMPERATURE_KEYS = ("ccd-temp", "set-temp", "settemp")


def choose(frame: dict, source: str, shape: tuple, masters: list[MasterFile], *,
           tolerances=None, allow_missing=(), dark_coefficient=None) -> Choice:
    """The masters for one frame.

    Parameters
    ----------
    frame : dict
        The frame's index row (lower-case keywords).
    source : str
        The frame's file, for messages.
    shape : tuple of int
        The frame's shape once trimmed: a master's must be the same.
    masters : list of MasterFile
        The candidates (:func:`masters_in`).
    tolerances : dict, optional
        Per-key tolerances (default :data:`~calstack.catalog.conventions.DEFAULT_TOLERANCES`).
    allow_missing : iterable of {'bias', 'dark', 'flat'}
        Kinds the frame may go without.
    dark_coefficient : float, optional
        Per degree C: the dark current at CCD-TEMP T is ``exp(dark_coefficient * (T - T0))``
        times that at T0. Given, masters of another sensor temperature are candidates (the
        nearest temperature first, then the nearest in time) and a dark of another
        temperature is scaled by it too, where no dark of the frame's temperature is there.

    Raises
    ------
    OptionError
        A master the frame needs has no candidate: names the frame, the kind, and how the
        nearest master differs.
    """
    tolerances = dict(tolerances or {})
    allow_missing = set(allow_missing)
    when = _date(frame.get("date-obs"))

    ignore = _TEMPERATURE_KEYS if dark_coefficient is not None else ()
    mine_t = _exposure(frame, "ccd-temp")
    if ignore and mine_t is None:
        raise OptionError(f"{source}: has no CCD-TEMP to scale a master dark by temperature; "
                          "add it, or leave out the dark coefficient")

    def warmth(m):  # degrees from the frame's temperature (with a dark coefficient)
        theirs = _exposure(m.row, "ccd-temp")
        return 0.0 if not ignore else math.inf if theirs is None else abs(theirs - mine_t)

    def distance(m):  # in time: the nearest first; undated ones last
        other = _date(m.row.get("date-obs"))
        return abs((other - when).total_seconds()) if when and other else float("inf")

    def candidates(kind, extra=lambda _m: True, why=""):
        of_kind = [m for m in masters if m.kind == kind]
        same = [m for m in of_kind if not _differences(frame, m, tolerances, ignore) and extra(m)]
        fitting = [m for m in same if tuple(m.shape) == tuple(shape)]
        if fitting or kind in allow_missing:
            return sorted(fitting, key=lambda m: (warmth(m), distance(m)))
        if same:
            reason = (f"the master {kind} {same[0].name} is {same[0].shape[1]}x{same[0].shape[0]} "
                      f"but the frame (trimmed) is {shape[1]}x{shape[0]}; check the trim "
                      "section or build masters from frames trimmed the same way")
        elif of_kind:
            near = min(of_kind, key=lambda m: len(_differences(frame, m, tolerances)))
            differ = _differences(frame, near, tolerances) or [why]
            reason = f"the nearest, {near.name}, differs in {', '.join(differ)}"
        else:
            reason = "the masters folder has none"
        raise OptionError(f"{source}: no master {kind} for this frame ({reason}); build one "
                          f"(calstack masters) or pass --allow-missing {kind}")

    exptime = _exposure(frame, "exptime")
    tolerance = tolerances.get("exptime", DEFAULT_TOLERANCES["exptime"])
    darks = candidates("dark")
    warmer = False  # whether the dark is of another temperature, scaled to the frame's
    if ignore and darks:
        tolerance_t = tolerances.get("ccd-temp", DEFAULT_TOLERANCES["ccd-temp"])
        at_mine = [m for m in darks if warmth(m) < math.inf
                   and same_value(mine_t, _exposure(m.row, "ccd-temp"), tolerance_t)]
        if at_mine:
            darks = at_mine
        else:
            darks = [m for m in darks if warmth(m) < math.inf]
            warmer = True
            if not darks and "dark" not in allow_missing:
                raise OptionError(f"{source}: no master dark at CCD-TEMP {mine_t:g} and none "
                                  "with a CCD-TEMP to scale by temperature; build darks with "
                                  "their temperature recorded, or pass --allow-missing dark")
    dark, factor, rule = None, 1.0, ""
    same_exposure = [m for m in darks if exptime is not None and _exposure(m.row, "exptime")
                     is not None and same_value(exptime, _exposure(m.row, "exptime"), tolerance)]
    if same_exposure and not warmer:
        dark, rule = same_exposure[0], "exposure"
    elif darks:
        scalable = [m for m in darks if m.bias_subtracted]
        key = "darktime" if frame.get("darktime") is not None and all(
            m.row.get("darktime") is not None for m in scalable) else "exptime"
        mine = _exposure(frame, key)
        problem = (f"no master dark of its exposure ({exptime}s), and the darks there "
                   f"({', '.join(m.name for m in darks[:3])}) include the bias, so they cannot "
                   "be scaled; build darks with --subtract-bias, or darks of this exposure"
                   if not scalable else
                   f"has no {key.upper()} to scale a master dark by; add it" if mine is None
                   else None)
        if problem and "dark" not in allow_missing:
            raise OptionError(f"{source}: {problem}, or pass --allow-missing dark")
        if not problem:  # with --allow-missing dark, a dark that cannot be used is none
            dark = min(scalable, key=lambda m: (
                warmth(m), _scaling_order(mine, _exposure(m.row, key), distance(m))))
            theirs = _exposure(dark.row, key)
            if not theirs:
                raise OptionError(f"{dark.path}: master dark has {key.upper()} = {theirs}, so "
                                  "it cannot be scaled to the frame's exposure; rebuild it with "
                                  "its exposure time recorded")
            factor, rule = mine / theirs, f"scaled by {key.upper()}"
            if warmer:
                theirs_t = _exposure(dark.row, "ccd-temp")
                factor *= math.exp(dark_coefficient * (mine_t - theirs_t))
                rule += f" and CCD-TEMP {theirs_t:g} to {mine_t:g} C"
    needs_bias = dark is None or dark.bias_subtracted
    biases = candidates("bias") if needs_bias else []
    flats = candidates("flat", lambda m: same_text(m.row.get("filter"), frame.get("filter")),
                       why=f"FILTER {frame.get('filter')!r}")
    return Choice(bias=biases[0] if biases else None, dark=dark,
                  flat=flats[0] if flats else None, dark_factor=factor, dark_rule=rule)
