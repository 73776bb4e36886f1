"""A combine made ready to run: frames opened and checked, scale/zero/weights resolved, the
tile plan made and the kernel call prepared (:func:`prepare_frames`), held in a :class:`Job`
that a backend runs (:func:`calstack.stacking.dispatch.run`) and turns into a ``Master``.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace

import numpy as np

from ..errors import FileChangedError, FrameError, OptionError
from ..io.provenance import provenance_header
from ..io.reader import MAX_OPEN_FILES, open_frame, raw_itemsize
from ..options import AUTO, OPTIONS, CombineOptions, check_names, options_in
from .kernel_call import KernelCall, grow_bytes_per_pixel
from .plan import TilePlan, parse_mem_limit, plan_tiles
from .preparation import Preparation, keyword_values, quantisation_step, resolve
from .result import Result

__all__ = ["Job", "prepare_frames"]

log = logging.getLogger("calstack")

#: Rejections whose estimated spread the noise model floors, where gain and read noise are known.
_FLOORED = ("sigma_clip", "winsorized_sigma_clip")


def _check_consistent(frames):
    first = frames[0]
    for frame in frames[1:]:
        if frame.shape != first.shape:
            raise FrameError(frame.source, f"has shape {frame.shape[0]}x{frame.shape[1]} but "
                             f"{first.name} has {first.shape[0]}x{first.shape[1]}; combine frames "
                             "of one size only (group by NAXIS1/NAXIS2 or binning)")
    units = {f.unit.strip().lower(): f for f in frames if f.unit and f.unit.strip()}
    if len(units) > 1:
        (_, f1), (_, f2) = list(units.items())[:2]
        raise FrameError(f2.source, f"has BUNIT={f2.unit!r} but {f1.name} has BUNIT={f1.unit!r}; "
                         "combine frames of one unit only")
    return _unit(next(iter(units.values()))) if units else "adu"


#: BUNIT spellings astropy does not parse, and the unit they mean.
_UNIT_SPELLINGS = {"counts": "count", "electrons": "electron", "e-": "electron", "adus": "adu",
                   "e-/s": "electron / s", "electrons/s": "electron / s", "adu/s": "adu / s"}


def _unit(frame):
    """The unit of a frame's BUNIT for the master: as astropy reads it, else in lower case or
    one of the usual spellings (``'ADU'``, ``'COUNTS'``), else dimensionless with a warning (the
    master's header keeps the text)."""
    from astropy import units

    text = frame.unit.strip()
    for candidate in (text, text.lower(), _UNIT_SPELLINGS.get(text.lower())):
        if candidate is None:
            continue
        try:
            return units.Unit(candidate).to_string()
        except ValueError:
            continue
    log.warning("%s: BUNIT %r is not a unit astropy knows; the master keeps it as text",
                frame.source, text)
    return units.dimensionless_unscaled


def _pixel_weights(weights, options):
    """The per-pixel weights (one 2-D array per frame), or None when the weights are per frame,
    named (``'noise'``, a keyword) or absent; refuses weights with the median."""
    if weights is None:
        return None
    if options.method == "median":
        raise OptionError("weights apply to method='average' or 'sum'; a median ignores them: "
                          "drop weights or choose another method")
    if isinstance(weights, str) or len(weights) == 0 or np.ndim(weights[0]) != 2:
        return None
    return weights


def _open_calibration(item, name, shape, stack_dtype, first=None):
    if item is None:
        return None
    frame = open_frame(item, stack_dtype=stack_dtype)
    if frame.shape != shape:
        frame.close()
        frames = f"the frames ({first}) are" if first else "the frames are"
        raise FrameError(frame.source, f"the {'master ' if first is None else ''}{name} has "
                         f"shape {frame.shape[0]}x{frame.shape[1]} but {frames} "
                         f"{shape[0]}x{shape[1]}")
    return frame


@dataclass
class Job:
    """One combine, opened, checked and planned: what a backend runs.

    Attributes
    ----------
    frames : list of calstack.io.reader.Frame
        The frames (readable until the :func:`prepare_frames` context exits).
    options : CombineOptions
        The options, ``gain``/``read_noise`` resolved where needed.
    preparation : Preparation
        Bias/dark subtraction, scaling and offsets applied as values are read.
    kernel : KernelCall
        Combines tiles (each call returns its own counts).
    plan : TilePlan
        The bands of rows (a backend may cut them finer).
    pixel_weights : sequence of 2-D arrays, optional
        Per-pixel weights, one array per frame.
    n_readers : int
        Reader threads.
    header : astropy.io.fits.Header
        The first frame's header.
    unit : str
        The frames' unit.
    skipped : list of (str, str)
        Unreadable frames skipped, and why.
    described : dict
        ``scale``, ``zero`` and ``weights`` as given, for the provenance header.
    """

    frames: list
    options: CombineOptions
    preparation: Preparation
    kernel: KernelCall
    plan: TilePlan
    pixel_weights: object
    n_readers: int
    header: object
    unit: str
    skipped: list
    described: dict

    @property
    def stack_dtype(self) -> np.dtype:
        """The working and output dtype."""
        return np.dtype(self.options.dtype)

    def outputs(self):
        """New whole-image ``data``, ``uncertainty`` and ``count`` arrays for a backend to fill."""
        return (np.empty(self.plan.shape, self.stack_dtype),
                np.empty(self.plan.shape, self.stack_dtype),
                np.empty(self.plan.shape, np.int16))

    def finish(self, data, uncertainty, count, rejected, frame_rejected) -> Result:
        """The :class:`~calstack.stacking.result.Result` from the filled outputs, the number of values rejected and the
        number of each frame's values rejected (the sums of the tiles' counts)."""
        for frame in self.frames:  # what was combined is what was opened
            frame.verify()
        kept = int(count.sum(dtype=np.int64))
        if kept == 0:
            log.warning("%s...: no pixel of the %d frames has a value (all NaN, BLANK or masked); "
                        "the master is all NaN", self.frames[0].name, len(self.frames))
        fraction = rejected / (kept + rejected) if kept + rejected else 0.0
        meta = provenance_header(self.header, [f.name for f in self.frames], self.options,
                                 rejected_fraction=fraction, skipped=self.skipped,
                                 preparation=self.preparation, **self.described)
        from astropy import units

        return Result(data, uncertainty, count == 0, meta, units.Unit(self.unit), count,
                      fraction, frame_rejected / float(np.prod(self.plan.shape)),
                      sources=[str(f.source) for f in self.frames], preparation=self.preparation,
                      weights=self.kernel.frame_weights, plan=self.plan, skipped=self.skipped)


@contextlib.contextmanager
def prepare_frames(items, options, *, post_scale=None, **frame_options):
    """Open, check and plan the combine of ``items`` with validated ``options``.

    A context manager yielding the :class:`Job`; the frames are closed when it exits.
    ``frame_options`` are :func:`calstack.combine`'s ``'frames'`` options
    (:data:`calstack.options.OPTIONS`; the table's defaults for those not given).
    ``post_scale`` (per-frame factors applied after rejection) serves
    :mod:`calstack.compat.ccdproc`, which reproduces ccdproc's order.
    """
    names = options_in("frames")
    check_names("prepare_frames", frame_options, names)
    given = {name: frame_options.get(name, OPTIONS[name].default) for name in names}
    (scale, zero, scale_to, stat_section, weights, bias, dark, bad_pixels, dark_scale, mem_limit,
     hdu, masks, skip_bad, n_readers) = (given[name] for name in (
        "scale", "zero", "scale_to", "stat_section", "weights", "bias", "dark", "bad_pixels",
        "dark_scale", "mem_limit", "hdu", "masks", "skip_bad", "n_readers"))
    limit = parse_mem_limit(mem_limit)
    if not isinstance(n_readers, int) or n_readers < 1:
        raise OptionError(f"n_readers={n_readers!r} must be a whole number >= 1")
    if not items:
        raise OptionError("no frames to combine: the selection is empty; check the folder and "
                          "the selection (e.g. imagetyp)")
    if masks is not None and len(masks) != len(items):
        raise OptionError(f"masks has {len(masks)} entries for {len(items)} frames; give one per frame")
    if len(items) > np.iinfo(np.int16).max:
        raise OptionError(f"{len(items)} frames is more than calstack combines at once (32767); "
                          "combine in batches and then combine the batch results")
    pixel_weights = _pixel_weights(weights, options)
    if pixel_weights is not None and len(pixel_weights) != len(items):
        raise OptionError(f"weights has {len(pixel_weights)} arrays for {len(items)} frames")
    stack_dtype = np.dtype(options.dtype)
    keep_open = len(items) <= MAX_OPEN_FILES
    opened, skipped, calibrations = [], [], []
    try:
        for i, item in enumerate(items):
            try:
                opened.append(open_frame(item, hdu=hdu, stack_dtype=stack_dtype,
                                         keep_open=keep_open,
                                         mask=None if masks is None else masks[i]))
            except FrameError as exc:
                if not skip_bad or isinstance(exc, FileChangedError):  # not unreadable
                    raise
                skipped.append((exc.path, exc.reason))
                log.warning("skipping %s", exc)
        if not opened:
            raise OptionError(f"none of the {len(items)} frames can be read "
                              f"(first: {skipped[0][0]}: {skipped[0][1]})")
        if skipped and (pixel_weights is not None or post_scale is not None
                        or not isinstance(scale, (str, type(None)))
                        or not isinstance(zero, (str, type(None)))
                        or not isinstance(weights, (str, type(None)))):
            raise OptionError("per-frame scale, zero or weights cannot be matched to the "
                              "frames once unreadable ones are skipped; fix or remove them")
        options.check_frame_count(len(opened))
        unit = _check_consistent(opened)
        header = opened[0].header()
        if options.rejection == AUTO:
            options, why = options.resolve_auto(header, unit, len(opened))
            log.info("combine: rejection auto: %s", why)
        if options.rejection == "ccdclip" or (isinstance(weights, str) and weights == "noise"):
            options = options.with_noise_model(header, unit)
        elif options.rejection in _FLOORED and not options.ccdproc_semantics:
            options = options.with_noise_model(header, unit, required=False)
        preparation = Preparation(
            bias=_open_calibration(bias, "bias", opened[0].shape, stack_dtype),
            dark=_open_calibration(dark, "dark", opened[0].shape, stack_dtype),
            bad_pixels=_open_calibration(bad_pixels, "bad-pixel mask", opened[0].shape,
                                         stack_dtype, opened[0].source))
        calibrations = preparation.calibrations
        if preparation.dark is not None:
            preparation.dark_factors = np.ones(len(opened))
            if dark_scale:
                exposure = keyword_values([preparation.dark], dark_scale, "dark_scale")[0]
                preparation.dark_factors = (
                    keyword_values(opened, dark_scale, "dark_scale") / exposure)
        frame_weights = resolve(opened, preparation, scale=scale, zero=zero,
                                scale_to=scale_to, stat_section=stat_section,
                                weights=None if pixel_weights is not None else weights,
                                options=options, stack_dtype=stack_dtype)
        if not options.ccdproc_semantics:  # the values' step, and what made them
            scale_, zero_ = preparation.scale, preparation.zero
            options = replace(
                options, quantum=quantisation_step(opened[0], stack_dtype),
                frame_scale=None if scale_ is None else tuple(scale_),
                frame_zero=None if zero_ is None else tuple(zero_))
        n_readers = min(n_readers, len(opened))
        plan = plan_tiles(
            shape=opened[0].shape, n_frames=len(opened) + len(calibrations), mem_limit=limit,
            stack_itemsize=stack_dtype.itemsize,
            raw_itemsize=raw_itemsize([*opened, *calibrations]),
            out_itemsize=stack_dtype.itemsize, n_readers=n_readers,
            extra_bytes_per_pixel=(8 * len(opened) if pixel_weights is not None else 0)
            + (grow_bytes_per_pixel(len(opened), stack_dtype.itemsize) if options.grow else 0),
            halo=int(options.grow),
            held_bytes=sum(f.held_bytes for f in [*opened, *calibrations]),
        )
        log.info("combine: %s", plan.describe())
        kernel = KernelCall(options, len(opened), frame_weights=frame_weights,
                            per_pixel_weights=pixel_weights is not None,
                            post_scale=post_scale)
        yield Job(frames=opened, options=options, preparation=preparation, kernel=kernel,
                  plan=plan, pixel_weights=pixel_weights, n_readers=n_readers,
                  header=header, unit=unit, skipped=skipped,
                  described=dict(scale=scale, zero=zero, weights=weights))
    finally:
        for frame in [*opened, *calibrations]:
            frame.close()
