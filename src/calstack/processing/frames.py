"""A raw frame read overscan-subtracted and trimmed, band by band: what a frame's header asks
(``BIASSEC``, ``TRIMSEC``/``DATASEC``) or the options say, decided once per frame
(:func:`processing_for`) and applied as its rows are read (:class:`ProcessedFrame`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..errors import FrameError
from ..io.reader import Frame, raw_buffer, read_bands
from .overscan import Overscan, processing_cards
from .sections import Section, parse_section

__all__ = ["AUTO", "ProcessedFrame", "Processing", "processed", "processing_for"]

#: ``overscan``/``trim`` from the header's BIASSEC / TRIMSEC (else DATASEC) where it has them.
AUTO = "auto"

#: Keywords that say a frame's overscan was subtracted / it was trimmed (IRAF, calstack).
_DONE = {"overscan": ("OVERSCAN",), "trim": ("TRIM",)}


@dataclass(frozen=True)
class Processing:
    """The overscan to subtract and the region to keep of one frame (either may be None)."""

    overscan: Overscan | None = None
    trim: Section | None = None

    def __bool__(self) -> bool:
        return self.overscan is not None or self.trim is not None


def _section(value, header, keys, shape, source, option):
    """A section from the option's text, or (AUTO) the first of the header's ``keys``."""
    if value is None or str(value).lower() == "none":
        return None
    if str(value).lower() != AUTO:
        if str(value).lstrip().startswith("["):
            return parse_section(value, shape, source=source, keyword=option)
        keys = (str(value).strip().upper(),)  # the keyword that holds it (a camera file's)
        if not isinstance(header.get(keys[0]), str):
            raise FrameError(source, f"has no section keyword {keys[0]} (named by {option} or "
                             "the camera file); give the section as '[x1:x2,y1:y2]'")
    for key in keys:
        text = header.get(key)
        if isinstance(text, str) and text.strip():
            return parse_section(text, shape, source=source, keyword=key)
    return None


def processing_for(header, shape, source, *, overscan=AUTO, trim=AUTO, **fit) -> Processing:
    """What to do to a raw frame before anything else.

    Parameters
    ----------
    header : astropy.io.fits.Header or dict
        The frame's header.
    shape : (int, int)
        Its image's shape.
    source : str
        The file, for messages.
    overscan, trim : str or None
        A section (``'[x1:x2,y1:y2]'``) or the keyword holding one, ``'auto'`` (the header's BIASSEC; TRIMSEC, else
        DATASEC) or None / ``'none'``. ``auto`` does nothing where the header says it was done
        already (OVERSCAN, TRIM).
    **fit
        :class:`~calstack.processing.overscan.Overscan`'s ``method``, ``function``, ``order``,
        ``low_reject``, ``high_reject``, ``niterate``, ``axis``.
    """
    done = {what: any(k in header for k in keys) for what, keys in _DONE.items()}
    bias = None if done["overscan"] and str(overscan).lower() == AUTO else _section(
        overscan, header, ("BIASSEC",), shape, source, "--overscan")
    region = None if done["trim"] and str(trim).lower() == AUTO else _section(
        trim, header, ("TRIMSEC", "DATASEC"), shape, source, "--trim")
    if region is not None and region.shape == tuple(shape):
        region = None  # the whole image: nothing to trim
    return Processing(None if bias is None else Overscan(bias, **fit), region)


def processed(frame: Frame, header, source, **options) -> Frame:
    """``frame`` as :func:`processing_for` its ``header`` and ``options`` say: a
    :class:`ProcessedFrame` where there is something to do, else ``frame`` itself."""
    steps = processing_for(header, frame.shape, source, **options)
    return ProcessedFrame(frame, steps) if steps else frame


class ProcessedFrame(Frame):
    """``frame`` read with its overscan subtracted and trimmed (:class:`Processing`).

    The overscan model is measured once, when the frame is opened (the frame is read once more
    for it, band by band), over the lines kept by the trim as IRAF's ``ccdproc`` does (ccdproc's
    ``subtract_overscan``, which knows no trim, fits every line of the section: the same where
    the trim keeps every line), and each band of rows read is then corrected and cut to the
    trim region. ``dtype`` is the inner frame's working dtype (``stack_dtype`` it was opened with).
    """

    def __init__(self, frame: Frame, processing: Processing, dtype=np.float32):
        self.frame, self.processing = frame, processing
        self.name, self.source, self.unit = frame.name, frame.source, frame.unit
        full = frame.shape
        self.region = processing.trim or Section(0, full[0], 0, full[1])
        self.shape = self.region.shape
        # the inner frame reads whole rows into a buffer sized for the trimmed width
        self.raw_itemsize = math.ceil(frame.raw_itemsize * full[1] / self.shape[1])
        self.model = None
        overscan = processing.overscan
        if overscan is not None:
            section = overscan.section
            if overscan.collapsed_axis == 1:
                if section.y0 > self.region.y0 or section.y1 < self.region.y1:
                    raise FrameError(frame.source, f"its overscan {section.fits()} does not "
                                     f"span the rows of the data kept ({self.region.fits()}); "
                                     "give --overscan and --trim sections that agree")
                # as IRAF's ccdproc: the overscan of the lines kept only is measured and fitted
                section = replace(section, y0=self.region.y0, y1=self.region.y1)
            self.model = replace(overscan, section=section).model(
                _OverscanReader(frame, section, dtype))
            self.model_y0 = section.y0

    def read_rows(self, start, stop, out, raw):  # noqa: ARG002 - the inner frame has its own
        first = self.region.y0 + start
        rows = np.empty((stop - start, self.frame.shape[1]), out.dtype)  # the frame's dtype
        self.frame.read_rows(first, first + rows.shape[0], rows,
                             raw_buffer([self.frame], rows.shape[0], self.frame.shape[1]))
        rows = rows.astype(np.float64)
        overscan = self.processing.overscan
        if overscan is not None:
            if overscan.collapsed_axis == 1:
                offset = first - self.model_y0
                rows -= self.model[offset:offset + rows.shape[0], None]
            else:
                rows[:, overscan.section.slices[1]] -= self.model[None, :]
        out[...] = rows[:, self.region.slices[1]]

    def header(self):
        return self.frame.header()

    def processed_level(self, level: float | None) -> float | None:
        """A raw level (a saturation) on the processed values: less the mean overscan."""
        if level is None or self.model is None:
            return level
        return level - float(np.mean(self.model))

    def cards(self) -> list[tuple]:
        """The header cards recording what was done (IRAF's and ccdproc's keywords)."""
        return processing_cards(overscan=self.processing.overscan, model=self.model,
                                trim=self.processing.trim)

    def verify(self):
        self.frame.verify()

    def close(self):
        self.frame.close()


class _OverscanReader:
    """The rows of a frame's overscan section, read in bands, indexable as ``data[section]``
    (what :meth:`Overscan.model` takes)."""

    _BAND = 256

    def __init__(self, frame, section, dtype):
        self.frame, self.section, self.dtype = frame, section, dtype

    def __getitem__(self, slices):
        rows, columns = slices
        out = np.empty((rows.stop - rows.start, columns.stop - columns.start), np.float64)
        for start, band in read_bands(self.frame, self._BAND, start=rows.start, stop=rows.stop,
                                      dtype=self.dtype):
            out[start - rows.start:start - rows.start + len(band)] = band[:, columns]
        return out
