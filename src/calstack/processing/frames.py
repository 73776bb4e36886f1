"""A raw frame read overscan-subtracted and trimmed, band by band: what a frame's header asks
(``BIASSEC``, ``TRIMSEC``/``DATASEC``) or the options say, decided once per frame
(:func:`processing_for`) and applied as its rows are read (:class:`ProcessedFrame`); a frame
read out by several amplifiers (a camera file's layout) is each amplifier's data less its own
overscan, put together into one image (:func:`place_amplifiers`, :class:`AmplifierFrame`)."""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, replace

import numpy as np

from ..errors import FrameError
from ..io.reader import Frame, raw_buffer, read_bands
from .overscan import Overscan, processing_cards
from .sections import Section, parse_section, reversed_axes

__all__ = ["AUTO", "AmplifierFrame", "Placement", "ProcessedFrame", "Processing",
           "amplifier_places", "place_amplifiers", "processed", "processing_for"]

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


def processed(frame: Frame, header, source, *, amplifiers=(), **options) -> Frame:
    """``frame`` as :func:`processing_for` its ``header`` and ``options`` say: a
    :class:`ProcessedFrame` where there is something to do, else ``frame`` itself; with the
    ``amplifiers`` of a camera file (more than one), an :class:`AmplifierFrame` (``frame``
    itself where the header says it was put together already: OVERSCAN or TRIM)."""
    if len(amplifiers) > 1:
        if any(key in header for keys in _DONE.values() for key in keys):
            return frame
        fit = {k: v for k, v in options.items() if k not in ("overscan", "trim")}
        return AmplifierFrame(frame, place_amplifiers(amplifiers, header, frame.shape, source),
                              fit)
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

    @property
    def overscan_variance(self) -> float:
        """The subtracted overscan's variance per pixel, as a fraction of the read noise's
        (:meth:`Overscan.variance_fraction`; 0 without an overscan)."""
        if self.model is None:
            return 0.0
        return self.processing.overscan.variance_fraction(len(self.model))

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


#: Any detector coordinate is accepted (DETSEC need not lie on the frame read).
_DETECTOR = (2**31, 2**31)


@dataclass(frozen=True)
class Placement:
    """Where one amplifier's data goes in the image put together: its raw ``data`` and
    ``overscan`` sections, its ``place`` there, and whether it is flipped there (its DETSEC
    written the other way round from its DATASEC)."""

    amplifier: object  # calstack.processing.camera.Amplifier: its name, gain, read noise
    data: Section
    overscan: Section | None
    place: Section
    flip_y: bool = False
    flip_x: bool = False


def _covering(kept, size) -> np.ndarray:
    """The index in the image put together of each of ``size`` raw positions (-1: dropped),
    where ``kept`` are the ``(start, stop)`` ranges of the data sections."""
    used = np.zeros(size, bool)
    for start, stop in kept:
        used[start:stop] = True
    return np.where(used, np.cumsum(used) - 1, -1)


def place_amplifiers(amplifiers, header, shape, source) -> tuple[Placement, ...]:
    """Place a camera file's amplifiers (each with its ``data`` section) in one image.

    Without ``detector`` sections the data sections are packed as they lie on the frame: the
    rows and columns that are in no amplifier's data (overscan, prescan) are left out. With
    them (DETSEC) each amplifier goes where its detector section says, in units of its data
    pixels (a detector section that is a whole multiple of the data's size is binned), and is
    flipped where one of the two sections is written last to first.

    Parameters
    ----------
    amplifiers : sequence of calstack.processing.camera.Amplifier
        Sections as text or the header keywords holding them.
    header : astropy.io.fits.Header or dict
        The raw frame's header.
    shape : (int, int)
        The raw image's shape.
    source : str
        The file, for messages.

    Raises
    ------
    FrameError, OptionError
        A section missing or outside the frame, an overscan that is not beside its data, or
        amplifiers that do not fill one rectangle exactly once (overlapping, or leaving holes).
    """
    parts = []
    for amp in amplifiers:
        where = f"amplifier {amp.name}"
        data = _section(amp.data, header, (), shape, source, f"{where} data")
        overscan = _section(amp.overscan, header, (), shape, source, f"{where} overscan")
        detector = _section(amp.detector, header, (), _DETECTOR, source, f"{where} detector")
        parts.append((amp, data, overscan, detector))
    if parts[0][3] is None:
        rows = _covering([(d.y0, d.y1) for _, d, _, _ in parts], shape[0])
        columns = _covering([(d.x0, d.x1) for _, d, _, _ in parts], shape[1])
        placed = [Placement(amp, data, overscan, Section(
            int(rows[data.y0]), int(rows[data.y0]) + data.shape[0],
            int(columns[data.x0]), int(columns[data.x0]) + data.shape[1]))
            for amp, data, overscan, _ in parts]
    else:
        placed = _by_detector(parts, source)
    _check_tiling(placed, source)
    return tuple(placed)


def _by_detector(parts, source) -> list[Placement]:
    binning = set()
    for amp, data, _, detector in parts:
        by, bx = (d / n for d, n in zip(detector.shape, data.shape, strict=True))
        if by != int(by) or bx != int(bx) or by < 1 or bx < 1:
            raise FrameError(source, f"amplifier {amp.name}: detector section "
                             f"{detector.fits()} is not a whole multiple of its data section "
                             f"{data.fits()}; fix the camera file's 'detector' or the DETSEC")
        binning.add((int(by), int(bx)))
    if len(binning) > 1:
        raise FrameError(source, f"the amplifiers' detector sections give different binnings "
                         f"{sorted(binning)}; fix the camera file's 'detector' or the DETSECs")
    (by, bx), = binning
    y_first = min(d.y0 for *_, d in parts)
    x_first = min(d.x0 for *_, d in parts)
    placed = []
    for amp, data, overscan, detector in parts:
        y0, x0 = (detector.y0 - y_first) // by, (detector.x0 - x_first) // bx
        flips = [a != b for a, b in zip(reversed_axes(data.text), reversed_axes(detector.text),
                                        strict=True)]
        placed.append(Placement(amp, data, overscan,
                                Section(y0, y0 + data.shape[0], x0, x0 + data.shape[1]), *flips))
    return placed


def _check_tiling(placed, source) -> None:
    """The places fill one rectangle from (0, 0), each pixel once."""
    height = max(p.place.y1 for p in placed)
    width = max(p.place.x1 for p in placed)
    for i, a in enumerate(placed):
        for b in placed[i + 1:]:
            if a.place.y0 < b.place.y1 and b.place.y0 < a.place.y1 and \
                    a.place.x0 < b.place.x1 and b.place.x0 < a.place.x1:
                raise FrameError(source, f"amplifiers {a.amplifier.name} and "
                                 f"{b.amplifier.name} overlap (data {a.data.fits()} and "
                                 f"{b.data.fits()}); fix the camera file's sections")
    area = sum(p.place.shape[0] * p.place.shape[1] for p in placed)
    if area != height * width or min(p.place.y0 for p in placed) or min(
            p.place.x0 for p in placed):
        raise FrameError(source, f"the amplifiers' data sections leave holes in the "
                         f"{width}x{height} image they make; give each amplifier's whole "
                         "data section (and 'detector' where they do not lie side by side)")


class AmplifierFrame(Frame):
    """A single-HDU raw frame read out by several amplifiers, read as one image: each
    amplifier's data section less its own overscan (measured once, as a
    :class:`ProcessedFrame` of that section), at its :class:`Placement`.

    A band of the image reads the raw rows of every amplifier that has rows in it, each
    amplifier's rows on their own (amplifiers side by side read the same raw rows each).
    """

    def __init__(self, frame: Frame, placements, fit=None, dtype=np.float32):
        self.frame, self.placements = frame, tuple(placements)
        self.name, self.source, self.unit = frame.name, frame.source, frame.unit
        self.shape = (max(p.place.y1 for p in self.placements),
                      max(p.place.x1 for p in self.placements))
        self.parts = tuple(ProcessedFrame(frame, Processing(
            None if p.overscan is None else Overscan(p.overscan, **(fit or {})), p.data), dtype)
            for p in self.placements)
        self.raw_itemsize = max(part.raw_itemsize for part in self.parts) + 8  # and a block

    def read_rows(self, start, stop, out, raw):  # noqa: ARG002 - each part has its own
        for placement, part in zip(self.placements, self.parts, strict=True):
            place = placement.place
            first, last = max(start, place.y0), min(stop, place.y1)
            if first >= last:
                continue
            a, b = first - place.y0, last - place.y0
            if placement.flip_y:
                a, b = place.shape[0] - b, place.shape[0] - a
            block = np.empty((b - a, place.shape[1]), out.dtype)
            part.read_rows(a, b, block, None)
            out[first - start:last - start, place.x0:place.x1] = block[
                ::-1 if placement.flip_y else 1, ::-1 if placement.flip_x else 1]

    def header(self):
        return self.frame.header()

    def cards(self) -> list[tuple]:
        """Header cards recording what was done: OVERSCAN and TRIM (so that IRAF, ccdproc and
        calstack see the frame as processed), and each amplifier's place (``AMPSECn``, read
        back by :func:`amplifier_places`), name, data section and overscan."""
        now = datetime.datetime.now()
        stamp = f"{now:%b} {now.day:2d} {now:%H:%M}"
        n = len(self.parts)
        cards = [("OVERSCAN", f"{stamp} Overscan of each of {n} amplifiers subtracted (AMPOVSn)",
                  ""),
                 ("TRIM", f"{stamp} Put together from {n} amplifiers (AMPSECn)", ""),
                 ("HIERARCH subtract_overscan", f"amplifiers={n}", "")]
        for number, (placement, part) in enumerate(zip(self.placements, self.parts,
                                                       strict=True), start=1):
            overscan = part.processing.overscan
            cards += [(f"AMPNAM{number}", str(placement.amplifier.name)[:40], "amplifier"),
                      (f"AMPSEC{number}", placement.place.fits(),
                       f"here; raw {placement.data.fits()}"[:36]),
                      (f"AMPOVS{number}", "none" if overscan is None else
                       overscan.describe(part.model)[:66], "")]
        cards.append(("CCDPROC", f"{stamp} CCD processing done", "by calstack"))
        return cards

    def verify(self):
        self.frame.verify()

    def close(self):
        self.frame.close()


def amplifier_places(header, amplifiers, shape, source) -> tuple[Section, ...]:
    """Where each of a camera's ``amplifiers`` lies on a frame put together by calstack, from
    its ``AMPSECn`` cards (:meth:`AmplifierFrame.cards`).

    Raises
    ------
    FrameError
        The frame has no such cards, or another number of amplifiers.
    """
    places = []
    while f"AMPSEC{len(places) + 1}" in header:
        number = len(places) + 1
        places.append(parse_section(header[f"AMPSEC{number}"], shape, source=source,
                                    keyword=f"AMPSEC{number}"))
    if len(places) != len(amplifiers):
        raise FrameError(source, f"is processed already but has {len(places)} amplifier "
                         f"sections (AMPSECn) where the camera file has {len(amplifiers)} "
                         "amplifiers; give the raw frame, or the camera file it was made with")
    return tuple(places)
