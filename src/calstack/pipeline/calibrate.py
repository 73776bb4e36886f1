"""``calstack calibrate``: apply the matching masters to science frames, band by band.

For every science frame (frame type LIGHT/OBJECT/SCIENCE, masters left out) the masters are
chosen from a folder (:mod:`calstack.pipeline.selection`), then each band of rows is read once
from the frame and the masters, calibrated (:func:`calstack.processing.apply.calibrate_band`) and
written once into the output, which appears under its name only when complete
(:func:`calstack.io.writer.atomic_write`). The output keeps the frame's header, records what was
done in IRAF's keywords (ZEROCOR, DARKCOR, FLATCOR, CCDPROC) and calstack's (CALBIAS, CALDARK,
CALFLAT, DARKSCAL), and has UNCERT and MASK extensions that ``CCDData.read`` recognises.
Frames are calibrated in parallel threads; bands are sized so that the run stays within
``mem_limit``.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..catalog.conventions import kind_of
from ..catalog.index import DEFAULT_KEYWORDS, ImageIndex
from ..errors import FrameError, OptionError
from ..io.reader import open_auxiliary, open_frame, raw_buffer, read_bands
from ..io.writer import BandFile, atomic_write, check_writable
from ..kernels.statistics import median_and_robust_std
from ..processing.apply import MASK_BITS, Band, Master, calibrate_into
from ..processing.camera import camera_defaults
from ..processing.cosmic import clean_cosmic_rays
from ..processing.darkscale import optimal_dark_scale
from ..processing.frames import AUTO, AmplifierFrame, ProcessedFrame, amplifier_places, processed
from ..processing.noise import noise_model, saturation_level
from ..stacking.cluster import resolve_client, run_tasks
from ..stacking.plan import parse_mem_limit
from .groups import check_targets
from .naming import check_template, safe_value
from .selection import MASTER_KEYWORDS, Choice, choose, masters_in

__all__ = ["INDEX_KEYWORDS", "CalibratedFrame", "calibrate", "plan_outputs"]

log = logging.getLogger("calstack")

#: Bytes per pixel a band needs: the frame (raw buffer + float32), up to three masters with
#: their uncertainties, the result (data, uncertainty, mask) and NumPy's temporaries.
_BYTES_PER_PIXEL = 64

#: The keywords an index of science frames (and of masters) needs for choosing masters.
INDEX_KEYWORDS = tuple(dict.fromkeys((*DEFAULT_KEYWORDS, *MASTER_KEYWORDS)))

#: Bytes per pixel astroscrappy allocates besides (its float32 working images).
_COSMIC_BYTES_PER_PIXEL = 48

#: Rows read at a time to measure a master flat's mean when it is not held in memory.
_MEAN_ROWS = 256

#: Rows of a frame (spread over it) on which an optimised dark scale is measured.
_OPTIMIZE_ROWS = 256

#: Values of each calibrated frame sampled (on a grid) for its level and noise.
_SAMPLES = 65536

#: Keywords that mark a frame as already calibrated (IRAF's ccdproc, calstack).
_PROCESSED = ("FLATCOR", "DARKCOR", "ZEROCOR")



@dataclass(frozen=True)
class CalibratedFrame:
    """One calibrated frame: its input, output, the masters chosen (one choice per image
    extension of a multi-extension frame) and what came out."""

    source: str
    path: Path
    choices: tuple  # of Choice, one per image HDU calibrated
    gain: float  # of the first amplifier where there are several (see ``amplifiers``)
    read_noise: float
    masked_fraction: float
    electrons: bool  # values in electrons (else ADU)
    level: float  # median of the calibrated values (sampled on a grid, masked ones left out)
    noise: float  # their robust standard deviation (1.4826 MAD): sky noise and structure
    amplifiers: tuple = ()  # (name, gain, read noise) of each of several amplifiers on one image

    @property
    def choice(self) -> Choice:
        """The masters of the (first) image."""
        return self.choices[0]

    def describe(self) -> str:
        """The masters chosen, in one line (per extension for several)."""
        if len(self.choices) == 1:
            return self.choice.describe()
        return "; ".join(f"[{i}] {c.describe()}" for i, c in enumerate(self.choices, 1))

    def summary(self) -> dict:
        """For ``--json``: the first image's masters, then every extension's."""
        c = self.choice
        return {"input": self.source, "output": str(self.path),
                "bias": c.bias.path if c.bias else None, "dark": c.dark.path if c.dark else None,
                "dark_factor": c.dark_factor, "dark_rule": c.dark_rule or None,
                "flat": c.flat.path if c.flat else None,
                "extensions": [{"bias": e.bias.hdu if e.bias else None,
                                "dark": e.dark.hdu if e.dark else None,
                                "flat": e.flat.hdu if e.flat else None} for e in self.choices],
                "gain": self.gain,
                "read_noise": self.read_noise, "masked_fraction": self.masked_fraction,
                "unit": "electron" if self.electrons else "adu", "level": self.level,
                "noise": self.noise,
                "amplifiers": [{"name": name, "gain": g, "read_noise": r}
                               for name, g, r in self.amplifiers]}


def _science(index) -> list[dict]:
    """The index rows of science frames, each with its file's ``identity`` when indexed."""
    identities = index.frame_table.meta.get("identity", {})
    return [{**row, "identity": identities.get(row["path"])} for row in index.rows()
            if not row["error"] and not row["master"] and kind_of(row.get("imagetyp")) == "light"]


class _Planes:
    """A master's data (and UNCERT) for reading bands; ``factor`` multiplies them (a dark's
    exposure scaling, a flat's normalisation by its mean). Held whole in memory by the run's
    :class:`_MasterCache` when it has room, else read band by band."""

    def __init__(self, master, shape, cache, *, factor=1.0, flat=False):
        self.whole = cache.planes(master, shape)
        self.data = self.sigma = None
        if self.whole is None:
            self.data = open_frame((master.path, master.hdu))
            self.sigma = _uncertainty(master)
        self.factor = factor
        self.mean = None
        if flat:
            self.mean = cache.mean(master)
            if not self.mean > 0:
                raise FrameError(master.path, "master flat has no positive values; rebuild it")
            self.factor = 1.0 / self.mean

    def rows(self, start, stop, width) -> Master:
        if self.whole is not None:
            data, sigma = self.whole
            return Master(data[start:stop], None if sigma is None else sigma[start:stop],
                          self.factor)
        return Master(*_read(self.data, self.sigma, start, stop, width), self.factor)

    def close(self):
        for frame in (self.data, self.sigma):
            if frame is not None:
                frame.close()


def _uncertainty(master):
    return open_auxiliary(master.path, master.hdu, "UNCERT")


def _read(data_frame, sigma_frame, start, stop, width) -> tuple:
    data = np.empty((stop - start, width), np.float32)
    data_frame.read_rows(start, stop, data, raw_buffer([data_frame], stop - start, width))
    sigma = None
    if sigma_frame is not None:
        sigma = np.empty_like(data)
        sigma_frame.read_rows(start, stop, sigma, raw_buffer([sigma_frame], stop - start, width))
    return data, sigma


class _MasterCache:
    """The masters of a run held in memory once read, within ``budget`` bytes (each is read
    once for all the frames that use it, not once per frame), and each flat's mean; by file
    and HDU (each extension of a multi-extension master is its own)."""

    def __init__(self, budget):
        self.budget = budget
        self._planes, self._means = {}, {}
        self._lock = threading.Lock()

    def planes(self, master, shape):
        """The master's (data, uncertainty) arrays, or None where the budget has no room."""
        key = (master.path, master.hdu)
        with self._lock:
            if key not in self._planes:
                data = open_frame((master.path, master.hdu))
                sigma = _uncertainty(master)
                size = shape[0] * shape[1] * 4 * (2 if sigma is not None else 1)
                if size <= self.budget:
                    self.budget -= size
                    self._planes[key] = _read(data, sigma, 0, shape[0], shape[1])
                else:
                    self._planes[key] = None
                for frame in (data, sigma):
                    if frame is not None:
                        frame.close()
            return self._planes[key]

    def mean(self, master, weights=None) -> float:
        """The mean of a flat's finite positive values; with ``weights`` (``(y0, y1, x0, x1,
        weight)`` of regions that cover it), the mean of weight x value."""
        key = (master.path, master.hdu, weights)
        with self._lock:
            if key not in self._means:
                whole = self._planes.get(key[:2])
                if whole is not None:
                    self._means[key] = _mean_positive([(0, whole[0])], weights)
                else:
                    frame = open_frame((master.path, master.hdu))
                    try:
                        self._means[key] = _mean_positive(read_bands(frame, _MEAN_ROWS),
                                                          weights)
                    finally:
                        frame.close()
            return self._means[key]


def _mean_positive(bands, weights=None) -> float:
    """The mean of a flat's finite positive values over its ``(first row, band)`` bands (its
    normalisation, as ccdproc's mean), the same whether it is read whole or in bands; with
    ``weights`` (regions ``(y0, y1, x0, x1, weight)``), each value times its region's weight."""
    total, count = 0.0, 0
    for start, band in bands:
        for y0, y1, x0, x1, weight in weights or ((0, start + len(band), 0, band.shape[1], 1.0),):
            part = band[max(0, y0 - start):max(0, y1 - start), x0:x1]
            good = part[np.isfinite(part) & (part > 0)]
            total += weight * float(good.sum(dtype=np.float64))
            count += good.size
    return total / count if count else math.nan


def _history(choice: Choice, planes: dict, electrons: bool, amplifiers, flat_factors) -> list[tuple]:
    """The header cards recording the calibration: IRAF's words, calstack's keys (and each of
    several amplifiers' gain and read noise)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    cards = []
    if choice.bias:
        cards += [("ZEROCOR", f"Zero level correction image is {choice.bias.name}"),
                  ("CALBIAS", choice.bias.name, "master bias subtracted")]
    if choice.dark:
        cards += [("DARKCOR", (f"Dark count correction image is {choice.dark.name}, scale "
                   f"{choice.dark_factor:.6g}")),
                  ("CALDARK", choice.dark.name, "master dark subtracted"),
                  ("DARKSCAL", choice.dark_factor, "dark factor (by DARKRULE)"),
                  ("DARKRULE", choice.dark_rule[:68],
                   "how the dark was scaled" if len(choice.dark_rule) <= 42 else "")]
    several = len(amplifiers) > 1
    if choice.flat:
        scale = planes["flat"].mean
        cards += [("FLATCOR", f"Flat field image is {choice.flat.name}, scale {scale:.6g}"),
                  ("CALFLAT", choice.flat.name, "master flat divided (normalised by its mean)"),
                  ("FLATSCAL", scale, "mean of the master flat")]
        if several and electrons:
            cards.append(("FLATGSCL", amplifiers[0].gain / flat_factors[0],
                          "mean of gain x flat (e-)"))
    if electrons:
        cards.append(("GAINCOR", "per amplifier (AMPGAINn)" if several else amplifiers[0].gain,
                      "values in electrons" if several else
                      "multiplied by this gain: values in electrons"))
    if several:
        for number, amp in enumerate(amplifiers, start=1):
            cards += [(f"AMPGAIN{number}", amp.gain, f"e-/ADU of {amp.name}"[:40]),
                      (f"AMPRDN{number}", amp.read_noise, f"e- read noise of {amp.name}"[:40]),
                      (f"AMPOVV{number}", amp.overscan_variance, "its overscan's variance / RN^2")]
    elif amplifiers[0].overscan_variance:
        cards.append(("OVSCNVAR", amplifiers[0].overscan_variance,
                      "overscan variance / read noise^2 (in UNCERT)"))
    cards.append(("CCDPROC", f"{now} CCD processing done (calstack)"))
    cards.append(("MASKBITS", " ".join(f"{v}={k}" for k, v in MASK_BITS.items()), "MASK bits"))
    return cards


@dataclass(frozen=True)
class _Amplifier:
    """The part of an image one amplifier read, with its noise model and saturation."""

    name: str
    rows: slice
    columns: slice
    gain: float
    read_noise: float
    saturation: float | None
    overscan_variance: float = 0.0  # of the overscan subtracted, / the read noise's

    @property
    def noise(self) -> float:
        """The read noise of a calibrated value: the read noise and the overscan's (e-)."""
        return self.read_noise * math.sqrt(1.0 + self.overscan_variance)


class _Image:
    """One image HDU of a science frame made ready: opened and checked, its masters chosen and
    opened, its header completed; :meth:`bands` calibrates it band by band, each amplifier's
    part of it with that amplifier's gain and read noise."""

    def __init__(self, row, masters, cache, *, tolerances, allow_missing, gain, read_noise,
                 saturation, electrons, processing, bad_pixels=None, dark_scale="exposure",
                 dark_coefficient=None, extensions=None):
        self.source = str(row["path"])
        gain, read_noise = _extension_noise(row, extensions, gain, read_noise)
        self.frame = open_frame((self.source, int(row["hdu"]), row.get("identity")))
        self.planes = {}
        try:
            header = self.header = self.frame.header()
            done = [k for k in _PROCESSED if k in header]
            if done:
                raise FrameError(self.source, f"is already calibrated ({done[0]} = "
                                 f"{header[done[0]]!r}); give the raw frames")
            raw_saturation = saturation_level(header, self.frame, saturation)
            self.frame = processed(self.frame, header, self.source, **processing)
            if isinstance(self.frame, (ProcessedFrame, AmplifierFrame)):  # raw: as rows are read
                for key, value, comment in self.frame.cards():
                    header[key] = (value, comment)
            self.shape = self.frame.shape
            self.amplifiers = self._amplifiers(processing.get("amplifiers", ()), gain,
                                               read_noise, raw_saturation)
            self.bad = None if bad_pixels is None else bad_pixels[1]
            if self.bad is not None and self.bad.shape != self.shape:
                raise FrameError(bad_pixels[0], f"the bad-pixel mask is {self.bad.shape[0]}x"
                                 f"{self.bad.shape[1]} but {self.source} is {self.shape[0]}x"
                                 f"{self.shape[1]} (after trim); give the mask of this setup")
            self.choice = choose(row, self.source, self.shape, masters, tolerances=tolerances,
                                 allow_missing=allow_missing,
                                 dark_coefficient=dark_coefficient)
            self.gain, self.read_noise = self.amplifiers[0].gain, self.amplifiers[0].read_noise
            self.electrons = electrons
            for kind in ("bias", "dark", "flat"):
                master = getattr(self.choice, kind)
                if master is not None:
                    self.planes[kind] = _Planes(
                        master, self.shape, cache, flat=kind == "flat",
                        factor=self.choice.dark_factor if kind == "dark" else 1.0)
            if dark_scale == "optimize" and "dark" in self.planes:
                self._optimize_dark()
            self.flat_factors = self._flat_factors(cache)
            for key, *value in _history(self.choice, self.planes, electrons, self.amplifiers,
                                        self.flat_factors):
                header[key] = tuple(value) if len(value) > 1 else value[0]
            header["BUNIT"] = "electron" if electrons else header.get("BUNIT", "adu")
            if bad_pixels is not None:
                header["BADPIX"] = (Path(bad_pixels[0]).name[:68], "bad-pixel mask: MASK bit 8")
        except BaseException:
            self.close()
            raise

    def _optimize_dark(self) -> None:
        """Scale the dark by the factor that minimises this frame's noise
        (:func:`~calstack.processing.darkscale.optimal_dark_scale`), measured on up to
        :data:`_OPTIMIZE_ROWS` rows spread over the frame; a dark that includes the bias
        (not bias-subtracted) keeps its exposure's factor, since scaling it would scale the
        bias too."""
        choice = self.choice
        if not choice.dark.bias_subtracted:
            return
        height, width = self.shape
        rows = np.unique(np.linspace(0, height - 1, min(height, _OPTIMIZE_ROWS)).astype(int))
        raw = raw_buffer([self.frame], 1, width)
        frame = np.empty((len(rows), width), np.float32)
        bias = np.zeros_like(frame)
        dark = np.empty_like(frame)
        for k, row in enumerate(rows):
            self.frame.read_rows(row, row + 1, frame[k:k + 1], raw)
            dark[k] = self.planes["dark"].rows(row, row + 1, width).data[0]
            if "bias" in self.planes:
                bias[k] = self.planes["bias"].rows(row, row + 1, width).data[0]
        factor = optimal_dark_scale(frame, dark, bias)
        if factor is None:
            return
        self.planes["dark"].factor = factor
        self.choice = replace(choice, dark_factor=factor, dark_rule=(
            f"optimised; {choice.dark_rule}: {choice.dark_factor:.4g}"))

    def _amplifiers(self, layout, gain, read_noise, saturation) -> tuple[_Amplifier, ...]:
        """The image as one amplifier, or as the camera's several (put together here, by
        :class:`AmplifierFrame`, or before: its AMPSECn cards). Each read noise includes the
        noise of the overscan subtracted here (:attr:`ProcessedFrame.overscan_variance`)."""
        header, source = self.header, self.source
        if len(layout) < 2:
            parts = [(None, slice(0, self.shape[0]), slice(0, self.shape[1]), gain, read_noise,
                      self.frame if isinstance(self.frame, ProcessedFrame) else None)]
        elif isinstance(self.frame, AmplifierFrame):
            parts = [(amp, *p.place.slices, amp.gain, amp.read_noise, part) for amp, p, part in
                     zip(layout, self.frame.placements, self.frame.parts, strict=True)]
        else:
            parts = [(amp, *place.slices, amp.gain, amp.read_noise, None) for amp, place in
                     zip(layout, amplifier_places(header, layout, self.shape, source),
                         strict=True)]
        amplifiers = []
        for amp, rows, columns, g, r, processing in parts:
            level = saturation if processing is None else processing.processed_level(saturation)
            amplifiers.append(_Amplifier(
                "1" if amp is None else str(amp.name), rows, columns,
                *noise_model(header, g, r, source), level,
                0.0 if processing is None else processing.overscan_variance))
        return tuple(amplifiers)

    def _flat_factors(self, cache) -> tuple[float, ...] | None:
        """What each amplifier's flat values are multiplied by: 1 / the flat's mean, or, in
        electrons with several amplifiers, gain / the mean of gain x flat (the flat in
        electrons: the ADU flat's steps between amplifiers of other gains stay divided out)."""
        flat = self.planes.get("flat")
        if flat is None:
            return None
        if len(self.amplifiers) == 1 or not self.electrons:
            return (flat.factor,) * len(self.amplifiers)
        weighted = cache.mean(self.choice.flat, tuple(
            (a.rows.start, a.rows.stop, a.columns.start, a.columns.stop, a.gain)
            for a in self.amplifiers))
        if not weighted > 0:
            raise FrameError(self.choice.flat.path, "master flat has no positive values; "
                             "rebuild it")
        return tuple(a.gain / weighted for a in self.amplifiers)

    def uncertainty_header(self):
        header = fits.Header()
        header["UTYPE"] = ("StdDevUncertainty", "standard deviation of each value")
        header["BUNIT"] = self.header["BUNIT"]
        return header

    def reserve(self, cosmic_rays):
        """Header cards whose values come with the data, so that the header keeps its size."""
        if cosmic_rays:
            self.header["CRCLEAN"] = (0, "cosmic-ray pixels cleaned (astroscrappy)")

    def bands(self, rows, *, cosmic_rays=False):
        """``(first row, Band)`` of the calibrated image, ``rows`` rows at a time (the whole
        image with ``cosmic_rays``, cleaned); each Band is reused for the next."""
        height, width = self.shape
        rows = height if cosmic_rays else min(rows, height)
        raw = raw_buffer([self.frame], rows, width)
        values = np.empty((rows, width), np.float32)
        result = Band(np.empty_like(values), np.empty_like(values), np.empty(values.shape,
                                                                               np.uint8))
        for start in range(0, height, rows):
            n = min(rows, height - start)
            self.frame.read_rows(start, start + n, values[:n], raw)
            band = Band(result.data[:n], result.uncertainty[:n], result.mask[:n])
            masters = {kind: p.rows(start, start + n, width) for kind, p in self.planes.items()}
            for number, amp in enumerate(self.amplifiers):
                first, last = max(start, amp.rows.start), min(start + n, amp.rows.stop)
                if first >= last:
                    continue
                part = (slice(first - start, last - start), amp.columns)
                calibrate_into(
                    values[part], Band(band.data[part], band.uncertainty[part], band.mask[part]),
                    gain=amp.gain, read_noise=amp.noise, saturation=amp.saturation,
                    electrons=self.electrons,
                    **{kind: _part(m, part, self.flat_factors[number] if kind == "flat"
                                   else m.factor) for kind, m in masters.items()})
            if self.bad is not None:
                band.mask[self.bad[start:start + n]] |= MASK_BITS["bad"]
            if cosmic_rays:
                hits = clean_cosmic_rays(band)
                self.header["CRCLEAN"] = (hits, "cosmic-ray pixels cleaned (astroscrappy)")
            yield start, band
        self.frame.verify()

    def close(self):
        self.frame.close()
        for p in self.planes.values():
            p.close()


def _part(master: Master, part, factor) -> Master:
    """The ``part`` (rows, columns) of a master's band, its values multiplied by ``factor``."""
    return Master(master.data[part], None if master.uncertainty is None
                  else master.uncertainty[part], factor)


def _calibrate_file(rows, masters, output, *, band_rows, cosmic_rays, overwrite, cache,
                    **options) -> CalibratedFrame:
    """Calibrate the image HDUs ``rows`` of one file into ``output``: one image, or a
    multi-extension file mirroring the input's extensions (each with its UNCERT and MASK, of
    EXTVER its position, as calstack writes masters)."""
    images = []
    try:
        for row in rows:
            images.append(_Image(row, masters, cache, **options))
            images[-1].reserve(cosmic_rays)
        single = len(rows) == 1 and int(rows[0]["hdu"]) == 0
        if single:
            image = images[0]
            layout = [(image.header, np.float32, image.shape, None, None),
                      (image.uncertainty_header(), np.float32, image.shape, "UNCERT", None),
                      (None, np.uint8, image.shape, "MASK", None)]
        else:
            layout = [(images[0].frame.primary_header(), np.float32, None, None, None)]
            for position, (row, image) in enumerate(zip(rows, images, strict=True), start=1):
                layout += [(image.header, np.float32, image.shape, row.get("extname") or "SCI",
                            image.header.get("EXTVER")),
                           (image.uncertainty_header(), np.float32, image.shape, "UNCERT",
                            position),
                           (None, np.uint8, image.shape, "MASK", position)]
        masked, pixels, samples = 0, 0, []

        def write(tmp):
            nonlocal masked, pixels
            with BandFile(tmp, layout) as out:
                for number, image in enumerate(images):
                    first = 0 if single else 1 + 3 * number
                    step = max(1, int(math.sqrt(image.shape[0] * image.shape[1] / _SAMPLES)))
                    for start, band in image.bands(band_rows, cosmic_rays=cosmic_rays):
                        if cosmic_rays and start == 0:  # CRCLEAN is known: rewrite the header
                            out.rewrite_header(first, image.header)
                        out.write_rows(first, start, band.data)
                        out.write_rows(first + 1, start, band.uncertainty)
                        out.write_rows(first + 2, start, band.mask)
                        masked += int(np.count_nonzero(band.mask))
                        grid = (slice(-start % step, None, step), slice(None, None, step))
                        samples.append(band.data[grid][band.mask[grid] == 0])
                    pixels += image.shape[0] * image.shape[1]

        atomic_write(output, write, overwrite=overwrite)
    finally:
        for image in images:
            image.close()
    level, noise = median_and_robust_std(np.concatenate(samples))
    several = images[0].amplifiers if len(images[0].amplifiers) > 1 else ()
    return CalibratedFrame(str(rows[0]["path"]), output, tuple(i.choice for i in images),
                           images[0].gain, images[0].read_noise, masked / pixels,
                           images[0].electrons, level, noise,
                           tuple((a.name, a.gain, a.read_noise) for a in several))


def _extension_noise(row, extensions, gain, read_noise) -> tuple:
    """The gain and read noise of a frame's image HDU: the camera file's for its EXTNAME
    (``extensions``: upper-case EXTNAME to ``(gain, read_noise)``), else those given."""
    return (extensions or {}).get(str(row.get("extname") or "").upper(), (gain, read_noise))


def plan_outputs(index, output_dir, *, template="{name}", overwrite=False, gain=None,
                 read_noise=None, amplifiers=(), extensions=None) -> tuple[list, list]:
    """The science frames of ``index`` grouped by file, and each file's output, once every
    check that needs no master has passed (:func:`calibrate` runs it first, ``calstack
    reduce`` before it builds any master).

    Parameters
    ----------
    index : ImageIndex
        The frames (science frames among them).
    output_dir : str or os.PathLike
        Where the calibrated frames go (created here if needed).
    template, overwrite, gain, read_noise :
        As :func:`calibrate` takes them.
    amplifiers : sequence of Amplifier
        The camera file's amplifiers: with several, each frame's gain and read noise are
        checked when it is opened, with its amplifier sections; else here.
    extensions : dict, optional
        EXTNAME (upper case) to the camera file's ``(gain, read_noise)`` of that extension.

    Returns
    -------
    files : list of list of dict
        Each file's science rows (its image HDUs), in index order.
    targets : list of pathlib.Path
        Each file's output.

    Raises
    ------
    OptionError
        No science frame, a bad template, an output that exists (without ``overwrite``), is a
        folder, an input, or another output.
    FrameError
        A science frame (of one amplifier) with no gain or read noise, in its header or given.
    """
    rows = _science(index)
    if not rows:
        raise OptionError(f"no science frames (IMAGETYP LIGHT/OBJECT) in "
                          f"{', '.join(index.locations)}; check the "
                          "folder, or its frame types with 'calstack index'")
    folder = check_writable(output_dir)
    files = {}  # each file's image HDUs, in index order: one output per file
    for row in rows:
        files.setdefault(str(row["path"]), []).append(row)
    files = list(files.values())
    targets = [folder / _name(template, hdus[0]) for hdus in files]
    if len(set(targets)) < len(targets):
        raise OptionError(f"template {template!r} gives two frames one name; add {{stem}}")
    check_targets(template, targets, folder, index)
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise OptionError(f"{existing[0]}: exists; pass --overwrite to replace it")
    for row in rows if len(amplifiers) < 2 else ():  # (several: checked with their sections)
        frame = open_frame((str(row["path"]), int(row["hdu"]), row.get("identity")))
        try:
            noise_model(frame.header(), *_extension_noise(row, extensions, gain, read_noise),
                        str(row["path"]))
        finally:
            frame.close()
    return files, targets


def calibrate(frames, masters_dir, output_dir, *, template="{name}", recursive=False,
              tolerances=None, allow_missing=(), gain=None, read_noise=None, saturation=None,
              electrons=True, cosmic_rays=False, overscan=AUTO, trim=AUTO, overscan_fit=None,
              overwrite=False, mem_limit="1GB", workers=None, cache=True,
              on_frame=None, bad_pixels=None, camera=None, dark_scale="exposure",
              dark_coefficient=None, client=None) -> list[CalibratedFrame]:
    """Calibrate science frames with the masters of a folder.

    Parameters
    ----------
    frames : ImageIndex, str, os.PathLike or list of these
        Science frames: an index (with :data:`INDEX_KEYWORDS`), or files and/or folders to
        index (frames that are not LIGHT/OBJECT, and masters, are left out).
    masters_dir : str or os.PathLike
        The folder of masters (``calstack masters`` output, or IRAF's, ccdproc's).
    output_dir : str or os.PathLike
        Where the calibrated frames go (created if needed).
    template : str
        Output file name: ``{name}`` (the input's file name), ``{stem}``, or any indexed
        keyword in lower case (``{filter}``).
    recursive : bool
        Scan subfolders of ``frames`` (when not an index).
    tolerances : dict, optional
        Per-keyword tolerances for matching masters (see :func:`calstack.group_by`).
    allow_missing : iterable of {'bias', 'dark', 'flat'}
        Kinds a frame may go without.
    gain, read_noise : float or str, optional
        e-/ADU and e-, or header keywords; default: EGAIN (or GAIN beside RDNOISE) and RDNOISE.
    saturation : float or str, optional
        Raw level of saturation, or the keyword holding it (default: SATURATE, else the
        largest integer the file holds).
    electrons : bool
        Write the result in electrons (default) or in ADU.
    cosmic_rays : bool
        Find and clean cosmic rays (astroscrappy, an optional dependency): their pixels get
        the ``cosmic`` MASK bit and cleaned values, the header CRCLEAN their number. Each frame
        is then calibrated whole (astroscrappy works on a whole image), so fewer frames are in
        flight at once within ``mem_limit``.
    overscan, trim : str or None
        Raw frames: the overscan section subtracted, the region kept (``'[x1:x2,y1:y2]'``),
        ``'auto'`` (default: the header's BIASSEC; TRIMSEC, else DATASEC, where it has them
        and no OVERSCAN/TRIM says they were done), or None.
    overscan_fit : dict, optional
        How the overscan is measured: :class:`~calstack.processing.overscan.Overscan`'s
        ``method``, ``function``, ``order``, ``low_reject``, ``high_reject``, ``niterate``.
    overwrite : bool
        Replace existing outputs (never an input).
    mem_limit : str or int
        Memory for the bands of all frames in flight.
    workers : int, optional
        Frames calibrated at once (default: the CPU count, at most the number of frames).
    cache : bool or path
        The header cache (see :class:`~calstack.catalog.index.ImageIndex`).
    on_frame : callable, optional
        Called with each :class:`CalibratedFrame` as it is written.
    bad_pixels : str or os.PathLike, optional
        A bad-pixel mask (``calstack defects``) of the frames' shape after trim: its nonzero
        pixels get the ``bad`` MASK bit (values kept).
    camera : str, os.PathLike or Camera, optional
        A camera file (:mod:`calstack.processing.camera`): its gain, read noise, saturation and
        its amplifiers' overscan and data sections stand in for ``gain``, ``read_noise``,
        ``saturation``, ``overscan`` and ``trim`` where those are not given; its
        ``[[extension]]`` numbers for the extension of that EXTNAME of a multi-extension frame.
    dark_scale : {'exposure', 'optimize'}
        How a master dark is scaled to a frame: by the exposure times (the rule of
        :mod:`~calstack.pipeline.selection`), or by the factor that minimises the frame's
        noise (Siril's ``-opt``: another temperature, a wrong EXPTIME), measured on each
        frame; a dark that includes the bias keeps its exposure's factor. The factor and the
        rule are in the header (DARKSCAL) and ``--json``.
    dark_coefficient : float, optional
        Per degree C (default: the camera file's): masters of another CCD-TEMP are used
        where the frame's temperature has none, a dark scaled by ``exp(dark_coefficient x
        (T_frame - T_dark))`` besides its exposure (:mod:`~calstack.pipeline.selection`).
    client : distributed.Client, optional
        Calibrate on this Dask cluster: each file is a task, read and written by a worker
        (the frames, masters and output folder at the same paths on every worker), within
        ``mem_limit`` each; the outputs are those of a local run, bit for bit.

    Returns
    -------
    list of CalibratedFrame
        In the order of the inputs.

    Raises
    ------
    OptionError, FrameError
        Before anything is written: no science frame, a bad option, an output name that is an
        input; per frame: no matching master, a frame already calibrated.
    """
    client = resolve_client(client)
    given = camera_defaults(camera, gain=gain, read_noise=read_noise, saturation=saturation,
                            overscan=overscan, trim=trim, dark_coefficient=dark_coefficient)
    gain, read_noise, saturation, overscan, trim = (
        given[k] for k in ("gain", "read_noise", "saturation", "overscan", "trim"))
    if dark_scale not in ("exposure", "optimize"):
        raise OptionError(f"--dark-scale {dark_scale}: give exposure or optimize")
    allow_missing = tuple(allow_missing)
    unknown = set(allow_missing) - {"bias", "dark", "flat"}
    if unknown:
        raise OptionError(f"--allow-missing {min(unknown)}: give bias, dark or flat")
    index = frames if isinstance(frames, ImageIndex) else ImageIndex(
        frames, recursive=recursive, cache=cache, keywords=INDEX_KEYWORDS)
    files, targets = plan_outputs(index, output_dir, template=template, overwrite=overwrite,
                                  gain=gain, read_noise=read_noise,
                                  amplifiers=given["amplifiers"], extensions=given["extensions"])
    rows = [row for hdus in files for row in hdus]
    masters = masters_in(ImageIndex(masters_dir, keywords=INDEX_KEYWORDS, cache=cache))
    workers = 1 if client is not None else max(1, min(workers or os.cpu_count() or 1,
                                                        len(files)))
    width = max(int(r.get("naxis1") or 1) for r in rows)
    height = max(int(r.get("naxis2") or 1) for r in rows)
    limit = parse_mem_limit(mem_limit)
    if cosmic_rays:  # whole frames, with astroscrappy's own arrays besides
        frame_bytes = width * height * (_BYTES_PER_PIXEL + _COSMIC_BYTES_PER_PIXEL)
        if frame_bytes > limit // 2:
            raise OptionError(f"--cosmic-rays cleans whole frames: one {width}x{height} frame "
                              f"needs ~{frame_bytes / 1e6:.0f} MB, above half of --mem-limit "
                              f"{mem_limit} (the other half holds the masters); raise it")
        workers = max(1, min(workers, limit // 2 // frame_bytes))
    # half the limit holds the masters (each read once), half the bands of the frames in flight
    band_rows = max(1, min(height, limit // 2 // (workers * width * _BYTES_PER_PIXEL)))
    options = dict(tolerances=tolerances, allow_missing=allow_missing, gain=gain,
                   read_noise=read_noise, saturation=saturation, electrons=electrons,
                   cosmic_rays=cosmic_rays, band_rows=band_rows, overwrite=overwrite,
                   dark_scale=dark_scale, dark_coefficient=given["dark_coefficient"],
                   extensions=given["extensions"],
                   processing=dict(overscan=overscan, trim=trim, amplifiers=given["amplifiers"],
                                   **(overscan_fit or {})),
                   bad_pixels=None if bad_pixels is None else (bad_pixels, _mask(bad_pixels)))
    items = [(hdus, masters, target) for hdus, target in zip(files, targets, strict=True)]
    if client is not None:
        return run_tasks(client, _calibrate_task, items, shared=options, on_result=on_frame,
                         budget=limit // 2)
    cache = _MasterCache(limit // 2)

    def one(item):
        result = _calibrate_file(*item, cache=cache, **options)
        if on_frame is not None:
            on_frame(result)
        return result

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, items))


def _calibrate_task(item, shared, budget) -> CalibratedFrame:
    """One file calibrated on a Dask worker with the run's options (``shared``), its masters
    held within ``budget`` bytes."""
    return _calibrate_file(*item, cache=_MasterCache(budget), **shared)


def _mask(path) -> np.ndarray:
    """A bad-pixel mask's image as booleans (nonzero = bad)."""
    frame = open_frame(path)
    try:
        bad = np.empty(frame.shape, bool)
        for start, band in read_bands(frame, _MEAN_ROWS):
            bad[start:start + len(band)] = band != 0
        return bad
    finally:
        frame.close()


def _name(template, row) -> str:
    """``template`` filled for one science frame: ``{name}`` and ``{stem}`` of its file, and
    its indexed keywords in lower case, each made safe for a file name
    (:func:`~calstack.pipeline.naming.safe_value`)."""
    check_template(template)
    name = os.path.basename(str(row["path"]))
    stem = name.split(".")[0]
    fields = {k: v if v is None or isinstance(v, (int, float)) else safe_value(v)
              for k, v in row.items() if isinstance(k, str)}
    try:
        return template.format(**{**fields, "name": name, "stem": stem})
    except (KeyError, IndexError, ValueError) as exc:
        raise OptionError(f"--template {template!r}: {exc} is not a field; use {{name}}, {{stem}} "
                          "or an indexed keyword in lower case") from None

