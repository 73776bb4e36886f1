"""The public ``combine()``: validate every option, open the frames, plan tiles, run a backend."""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np
from astropy.nddata import StdDevUncertainty

from .backends import local
from .engine import Engine
from .errors import FrameError, OptionError, UnknownOptionError, did_you_mean
from .master import Master
from .options import CombineOptions
from .plan import DEFAULT_MEM_LIMIT, parse_mem_limit, plan_tiles
from .provenance import provenance_header
from .reader import MAX_OPEN_FILES, open_frame

__all__ = ["combine"]

log = logging.getLogger("calstack")

_OTHER_OPTIONS = ("mem_limit", "hdu", "masks", "skip_bad", "n_readers")


def _expand(frames):
    """Accept a list of frames, a :class:`~calstack.grouping.Group`, or an index."""
    if hasattr(frames, "paths") and hasattr(frames, "hdus"):  # a Group
        return list(zip(frames.paths, frames.hdus))
    if hasattr(frames, "files") and hasattr(frames, "table"):  # an ImageIndex
        table = frames.table
        return [(p, int(h)) for p, h, e in zip(table["path"], table["hdu"], table["error"]) if not e]
    if isinstance(frames, (str, os.PathLike, np.ndarray)) and not (
        isinstance(frames, np.ndarray) and frames.ndim == 3
    ):
        raise OptionError("frames must be a list of frames (paths, CCDData or 2-D arrays), "
                          f"not a single {type(frames).__name__}")
    return list(frames)


def _check_consistent(frames):
    first = frames[0]
    for frame in frames[1:]:
        if frame.shape != first.shape:
            raise FrameError(frame.source, f"has shape {frame.shape[0]}x{frame.shape[1]} but "
                             f"{first.name} has {first.shape[0]}x{first.shape[1]}; combine frames "
                             "of one size only (group by NAXIS1/NAXIS2 or binning)")
    units = {f.unit.strip().lower(): f for f in frames if f.unit and f.unit.strip()}
    if len(units) > 1:
        (u1, f1), (u2, f2) = list(units.items())[:2]
        raise FrameError(f2.source, f"has BUNIT={f2.unit!r} but {f1.name} has BUNIT={f1.unit!r}; "
                         "combine frames of one unit only")
    return next(iter(units.values())).unit if units else "adu"


def combine(
    frames,
    *,
    method="average",
    rejection=None,
    sigma=3.0,
    sigma_lower=None,
    sigma_upper=None,
    cenfunc="median",
    stdfunc="mad_std",
    maxiters=1,
    min_clip=None,
    max_clip=None,
    nlow=0,
    nhigh=0,
    dtype="float32",
    mem_limit=DEFAULT_MEM_LIMIT,
    hdu=None,
    masks=None,
    skip_bad=False,
    n_readers=2,
    **unknown,
) -> Master:
    """Combine frames into a master, pixel by pixel, within a memory limit.

    Parameters
    ----------
    frames : list or Group or ImageIndex
        FITS file paths, ``(path, hdu)`` pairs, ``CCDData`` objects or 2-D arrays (mixing is
        allowed); or a :class:`~calstack.grouping.Group` / :class:`~calstack.ImageIndex`.
    method : {'average', 'median', 'sum'}
        How the kept values of a pixel are combined.
    rejection : {None, 'sigma_clip'}
        Outlier rejection. ``'sigma_clip'`` rejects values below
        ``center - sigma_lower * spread`` or above ``center + sigma_upper * spread``
        (astropy's ``sigma_clip`` along the frame axis).
    sigma, sigma_lower, sigma_upper : float
        Clipping thresholds in units of the spread; the lower/upper default to ``sigma``.
    cenfunc : {'median', 'mean'}
        Center of the sigma clipping.
    stdfunc : {'mad_std', 'std'}
        Spread of the sigma clipping: 1.4826 * median absolute deviation, or the standard
        deviation (ddof=0).
    maxiters : int or None
        Sigma-clipping passes: 1 is one pass (what ``ccdproc.combine`` does); more iterate until
        nothing changes or the count is reached; None iterates until nothing changes
        (``astropy.stats.sigma_clip``).
    min_clip, max_clip : float, optional
        Reject values below / above these absolute thresholds.
    nlow, nhigh : int
        Reject the ``nlow`` lowest and ``nhigh`` highest valid values of each pixel.
    dtype : {'float32', 'float64'}
        dtype of the result and of the working stack. float32 holds 16-bit camera data exactly.
    mem_limit : int, float or str
        Bytes (``350e6``) or a size string (``'350MB'``): the most this combine allocates,
        outputs included. The stack is processed in bands of rows that fit.
    hdu : int or str, optional
        HDU number or EXTNAME to read from files (default: the first image HDU).
    masks : list of array_like of bool, optional
        One mask per in-memory frame, True = ignore the pixel.
    skip_bad : bool
        Skip frames that cannot be read (not FITS, truncated, no image...) instead of failing;
        they are listed in ``master.skipped`` and in the header (``CMBSKIP``, HISTORY).
    n_readers : int
        Threads reading frames.

    Returns
    -------
    Master
        A ``CCDData`` with data, uncertainty, mask, per-pixel ``ncombine`` and a provenance
        header (COMBINED, NCOMBINE, IMCMBnnn, CMB* options, CALSTACK version).

    Notes
    -----
    Rejection runs in ccdproc's order: extrema (``nlow``/``nhigh``), thresholds
    (``min_clip``/``max_clip``), then sigma clipping. NaN/Inf values, masked pixels (a
    ``MASK`` extension, a ``CCDData`` mask or ``masks``) and integer BLANK values are missing.
    Unlike ccdproc, masked values never enter the clipping statistics.
    """
    if unknown:
        name = next(iter(unknown))
        valid = [*CombineOptions.__dataclass_fields__, *_OTHER_OPTIONS]
        raise UnknownOptionError(f"combine() got an unknown option {name!r}"
                                 f"{did_you_mean(name, valid)}; valid options: {', '.join(valid)}")
    options = CombineOptions(
        method=method, rejection=rejection, sigma=sigma, sigma_lower=sigma_lower,
        sigma_upper=sigma_upper, cenfunc=cenfunc, stdfunc=stdfunc, maxiters=maxiters,
        min_clip=min_clip, max_clip=max_clip, nlow=nlow, nhigh=nhigh, dtype=dtype,
    )
    limit = parse_mem_limit(mem_limit)
    if not isinstance(n_readers, int) or n_readers < 1:
        raise OptionError(f"n_readers={n_readers!r} must be a whole number >= 1")
    items = _expand(frames)
    if not items:
        raise OptionError("no frames to combine: the selection is empty; check the folder and "
                          "the selection (e.g. imagetyp)")
    if masks is not None and len(masks) != len(items):
        raise OptionError(f"masks has {len(masks)} entries for {len(items)} frames; give one per frame")
    if len(items) > np.iinfo(np.int16).max:
        raise OptionError(f"{len(items)} frames is more than calstack combines at once (32767); "
                          "combine in batches and then combine the batch results")
    stack_dtype = np.dtype(options.dtype)
    keep_open = len(items) <= MAX_OPEN_FILES
    opened, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="calstack-") as tmpdir:
        try:
            for i, item in enumerate(items):
                try:
                    opened.append(open_frame(item, hdu=hdu, stack_dtype=stack_dtype,
                                             tmpdir=tmpdir, keep_open=keep_open,
                                             mask=None if masks is None else masks[i]))
                except FrameError as exc:
                    if not skip_bad:
                        raise
                    skipped.append((exc.path, exc.reason))
                    log.warning("skipping %s", exc)
            if not opened:
                raise OptionError(f"none of the {len(items)} frames can be read "
                                  f"(first: {skipped[0][0]}: {skipped[0][1]})")
            options.check_frame_count(len(opened))
            unit = _check_consistent(opened)
            n_readers = min(n_readers, len(opened))
            plan = plan_tiles(
                shape=opened[0].shape, n_frames=len(opened), mem_limit=limit,
                stack_itemsize=stack_dtype.itemsize,
                raw_itemsize=max(f.raw_itemsize for f in opened),
                out_itemsize=stack_dtype.itemsize, n_readers=n_readers,
            )
            log.info("combine: %s", plan.describe())
            header = opened[0].header()
            data = np.empty(plan.shape, stack_dtype)
            uncertainty = np.empty(plan.shape, stack_dtype)
            count = np.empty(plan.shape, np.int16)
            engine = Engine(options, len(opened))
            rejected = local.run(opened, plan, engine, stack_dtype=stack_dtype, data=data,
                                 uncertainty=uncertainty, count=count, n_readers=n_readers)
        finally:
            for frame in opened:
                frame.close()
    kept = int(count.sum(dtype=np.int64))
    fraction = rejected / (kept + rejected) if kept + rejected else 0.0
    meta = provenance_header(header, [f.name for f in opened], options, rejected_fraction=fraction,
                             skipped=skipped)
    master = Master(data, unit=unit, uncertainty=StdDevUncertainty(uncertainty, copy=False),
                    mask=count == 0, meta=meta, copy=False)
    master.ncombine = count
    master.rejected_fraction = fraction
    master.plan = plan
    master.skipped = skipped
    return master
