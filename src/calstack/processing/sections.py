"""Image sections as FITS and IRAF write them: ``'[x1:x2,y1:y2]'``, 1-based and inclusive, x the
column (NAXIS1) and y the row (NAXIS2), ``*`` for a whole axis (``BIASSEC``, ``TRIMSEC``,
``DATASEC``, ``--overscan``, ``--trim``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import OptionError

__all__ = ["Section", "parse_section", "reversed_axes"]

_RANGE = re.compile(r"^\s*(?:(\*)|(-?\d+)\s*:\s*(-?\d+)|(-?\d+))\s*$")


@dataclass(frozen=True)
class Section:
    """A rectangle of an image: rows ``y0:y1`` and columns ``x0:x1``, 0-based, end excluded
    (NumPy's slices), and the text it came from."""

    y0: int
    y1: int
    x0: int
    x1: int
    text: str = ""

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, columns)`` for indexing an array."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    def fits(self) -> str:
        """The section in FITS notation, 1-based inclusive (``'[103:130,1:100]'``)."""
        return f"[{self.x0 + 1}:{self.x1},{self.y0 + 1}:{self.y1}]"


def _axis(text, size, what):
    match = _RANGE.match(text)
    if not match:
        raise ValueError(f"{what} range {text!r} is not 'first:last', a number or '*'")
    star, first, last, single = match.groups()
    if star:
        return 0, size
    first, last = (int(single), int(single)) if single else (int(first), int(last))
    low, high = min(first, last), max(first, last)  # IRAF's reversed ranges flip the image
    if low < 1 or high > size:
        raise ValueError(f"{what} range {first}:{last} lies outside 1:{size}")
    return low - 1, high


def parse_section(text, shape, *, source=None, keyword=None) -> Section:
    """Parse a FITS/IRAF section for an image of ``shape`` (rows, columns).

    Parameters
    ----------
    text : str
        ``'[x1:x2,y1:y2]'`` (1-based, inclusive; ``*`` a whole axis; blanks ignored; a
        reversed range is the same region, as for overscan and trimming).
    shape : (int, int)
        The image's shape in NumPy order (NAXIS2, NAXIS1).
    source, keyword : str, optional
        The file and keyword (or option) the section came from, for the error message.

    Raises
    ------
    OptionError
        The text is not a section, or the section lies outside the image: the message names the
        file, the keyword and the image's size.
    """
    where = f"{source}: " if source else ""
    name = keyword or "section"
    inner = str(text).strip()
    try:
        if not (inner.startswith("[") and inner.endswith("]")) or inner.count(",") != 1:
            raise ValueError("write it as '[x1:x2,y1:y2]' (1-based, inclusive)")
        xs, ys = inner[1:-1].split(",")
        x0, x1 = _axis(xs, shape[1], "column")
        y0, y1 = _axis(ys, shape[0], "row")
    except ValueError as exc:
        raise OptionError(f"{where}{name} = {text!r} for a {shape[1]}x{shape[0]} image: {exc}; "
                          f"fix the keyword or give the section as an option") from None
    return Section(y0, y1, x0, x1, inner)


def reversed_axes(text) -> tuple[bool, bool]:
    """Whether a section's ``(rows, columns)`` ranges are written last to first (IRAF's
    ``'[2048:1025,*]'``: the region read flipped), for a section :func:`parse_section` accepts."""
    xs, ys = str(text).strip()[1:-1].split(",")

    def backwards(part):
        match = _RANGE.match(part)
        return bool(match and match.group(2) is not None and int(match.group(2)) > int(match.group(3)))

    return backwards(ys), backwards(xs)
