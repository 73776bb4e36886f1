"""The public ``combine()``: validate every option, open the frames, plan tiles, run a backend.

A combine is prepared (:func:`prepare_frames`: frames opened and checked, scale/zero/weights
resolved, tiles planned, the :class:`~calstack.kernels.stack.engine.Engine` built) into a :class:`Job`, which
a backend runs: :mod:`calstack.stacking.backends.local` on this machine, or
:mod:`calstack.stacking.backends.dask` on a Dask cluster (``client=``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass

import numpy as np
from astropy.nddata import StdDevUncertainty

from .backends import local
from ..kernels.engine import Engine
from ..errors import FrameError, OptionError, UnknownOptionError, did_you_mean
from .master import Master
from ..options import CombineOptions
from .plan import DEFAULT_MEM_LIMIT, TilePlan, parse_mem_limit, plan_tiles
from ..io.provenance import provenance_header
from .preparation import Preparation, keyword_values, resolve
from ..progress import as_progress
from ..io.reader import MAX_OPEN_FILES, open_frame

__all__ = ["combine", "combine_frames", "prepare", "prepare_frames", "Job"]

log = logging.getLogger("calstack")

_OPTION_FIELDS = tuple(f for f in CombineOptions.__dataclass_fields__ if f != "ccdproc_semantics")
_FRAME_OPTIONS = ("scale", "zero", "scale_to", "stat_section", "weights", "bias", "dark",
                  "dark_scale", "mem_limit", "hdu", "masks", "skip_bad", "n_readers")
_OTHER_OPTIONS = (*_FRAME_OPTIONS, "client", "parallel", "progress")


def _unknown_option(function, name, valid):
    return UnknownOptionError(f"{function}() got an unknown option {name!r}"
                              f"{did_you_mean(name, valid)}; valid options: {', '.join(valid)}")


def _expand(frames):
    """Accept a list of frames, a :class:`~calstack.catalog.grouping.Group`, or an index."""
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
    pclip=-0.5,
    gain="GAIN",
    read_noise="RDNOISE",
    sense_noise=0.0,
    esd_max=0.3,
    esd_alpha=0.05,
    dtype="float32",
    scale=None,
    zero=None,
    scale_to=None,
    stat_section=None,
    weights=None,
    bias=None,
    dark=None,
    dark_scale="EXPTIME",
    mem_limit=DEFAULT_MEM_LIMIT,
    hdu=None,
    masks=None,
    skip_bad=False,
    n_readers=2,
    client=None,
    parallel=None,
    progress=False,
    **unknown,
) -> Master:
    """Combine frames into a master, pixel by pixel, within a memory limit.

    Parameters
    ----------
    frames : list or Group or ImageIndex
        FITS file paths, ``(path, hdu)`` pairs, ``CCDData`` objects or 2-D arrays (mixing is
        allowed); or a :class:`~calstack.catalog.grouping.Group` / :class:`~calstack.ImageIndex`.
    method : {'average', 'median', 'sum'}
        How the kept values of a pixel are combined.
    rejection : {None, 'sigma_clip', 'percentile_clip', 'winsorized_sigma_clip', 'ccdclip', 'esd'}
        Outlier rejection after extrema and thresholds (see Notes for when to pick which). All
        clipping algorithms reject values below ``center - sigma_lower * spread`` or above
        ``center + sigma_upper * spread``; they differ in the spread:

        - ``'sigma_clip'``: ``stdfunc`` of the values around ``cenfunc`` (astropy's
          ``sigma_clip`` along the frame axis);
        - ``'percentile_clip'``: IRAF ``pclip``, the distance from the median to the value
          ``pclip`` ranks away;
        - ``'winsorized_sigma_clip'``: the std of the values winsorized at 1.5 sigma (times
          1.134), iterated until it settles (Siril, PixInsight);
        - ``'ccdclip'``: IRAF ``ccdclip``, the noise model
          ``sqrt((read_noise/gain)**2 + center/gain + (sense_noise*center)**2)``;
        - ``'esd'``: not a clip: the generalized extreme studentized deviate test (Rosner 1983)
          removes up to ``esd_max`` outliers at significance ``esd_alpha``.
    sigma, sigma_lower, sigma_upper : float
        Clipping thresholds in units of the spread; the lower/upper default to ``sigma``.
    cenfunc : {'median', 'mean'}
        Center of sigma clipping and ccdclip.
    stdfunc : {'mad_std', 'std'}
        Spread of sigma clipping: 1.4826 * median absolute deviation, or the standard
        deviation (ddof=0).
    maxiters : int or None
        Clipping passes: 1 is one pass (what ``ccdproc.combine`` does); more iterate until
        nothing changes or the count is reached; None iterates until nothing changes
        (``astropy.stats.sigma_clip``). The last bounds decide, as in astropy.
    min_clip, max_clip : float, optional
        Reject values below / above these absolute thresholds.
    nlow, nhigh : int
        Reject the ``nlow`` lowest and ``nhigh`` highest valid values of each pixel.
    pclip : float
        Percentile clipping: a rank offset from the median (>= 1) or a fraction of half the
        values (< 1); negative = below the median (IRAF's default -0.5).
    gain, read_noise : float or str
        ccdclip's noise model and ``weights='noise'``: electrons per ADU and read noise in
        electrons, or the header keyword holding them (default ``GAIN``, ``RDNOISE``).
    sense_noise : float
        Sensitivity noise as a fraction of the level (IRAF ``snoise``).
    esd_max : float
        ESD: most outliers per pixel, a count (>= 1) or a fraction of the values.
    esd_alpha : float
        ESD: significance level.
    dtype : {'float32', 'float64'}
        dtype of the result and of the working stack. float32 holds 16-bit camera data exactly.
    scale : None, {'median', 'mean', 'mode'}, str or array_like
        Multiply each frame before rejection, so that clipping compares like with like: by
        ``reference / statistic`` of the frame (the statistic over ``stat_section``), by
        ``reference / value`` of a header keyword (e.g. ``'EXPTIME'``), or by the numbers given.
    zero : None, {'median', 'mean', 'mode'} or array_like
        Subtract a per-frame offset after scaling: the frame's statistic minus the mean over
        the frames, or the numbers given.
    scale_to : float, optional
        Reference level of a statistic or keyword ``scale`` (default: the mean over frames;
        1.0 normalises each frame, as for flats).
    stat_section : str, optional
        ``'[x1:x2,y1:y2]'`` (1-based, inclusive): where statistics are measured.
    weights : None, 'noise', str, or array_like
        Weights of the average or sum (the median ignores none: weights are refused with it):
        ``'noise'`` for inverse variance from the noise model, a header keyword such as
        ``'EXPTIME'``, one number per frame, or one 2-D array per frame (per-pixel weights).
        Weights of rejected or missing values do not count.
    bias, dark : path, CCDData or array, optional
        Master bias subtracted from every frame, and master dark (bias-subtracted) subtracted
        after scaling it by ``dark_scale``, before anything else.
    dark_scale : str or None
        Header keyword of the exposure time: the dark is multiplied by frame / dark exposure.
        None subtracts the dark as it is.
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
    client : distributed.Client, optional
        Run on this Dask cluster: bands of rows are combined as tasks on its workers, which read
        the files themselves (they must see them at the same paths); the master is assembled
        here. Frames must be files (not in-memory arrays), and ``mem_limit`` applies to each
        task. See :mod:`calstack.stacking.backends.dask` and :func:`calstack.stacking.cluster.connect`.
    parallel : {None, 'current-scheduler'}
        ``'current-scheduler'`` runs on the Dask client this process has already set up
        (``distributed.get_client()``), as ``client=`` does. None (default) runs here.
    progress : bool, str or calstack.progress.Progress
        Show a progress bar over the rows combined (True: when stderr is a terminal; see
        :func:`calstack.progress.as_progress`). Default: nothing is shown.

    Returns
    -------
    Master
        A ``CCDData`` with data, uncertainty, mask, per-pixel ``ncombine``, per-frame
        ``frame_rejected`` and a provenance header (COMBINED, NCOMBINE, IMCMBnnn, CMB* options,
        CALSTACK version).

    Notes
    -----
    Rejection runs in ccdproc's order: extrema (``nlow``/``nhigh``), thresholds
    (``min_clip``/``max_clip``), then ``rejection``. NaN/Inf values, masked pixels (a
    ``MASK`` extension, a ``CCDData`` mask or ``masks``) and integer BLANK values are missing;
    unlike ccdproc, masked values never enter the clipping statistics.

    Which rejection to pick: ``sigma_clip`` with the median and ``mad_std`` (the reference
    recipe) is robust from about 5 frames; ``percentile_clip`` suits few frames (3 to 6),
    where a std is meaningless; ``ccdclip`` when the camera's gain and read noise are known,
    because the spread then needs no estimate from few values (biases, darks); winsorized sigma
    clipping for many frames (> 15) with bright outliers that inflate a plain std; ``esd`` for
    many frames when the number of outliers varies and you want a significance level rather
    than a threshold; ``nlow``/``nhigh`` when you know how many frames are hit (satellite
    trails in a handful of sky flats).
    """
    if unknown:
        raise _unknown_option("combine", next(iter(unknown)), [*_OPTION_FIELDS, *_OTHER_OPTIONS])
    if client is not None or parallel is not None:
        from .cluster import resolve_client

        client = resolve_client(client, parallel)
    options = CombineOptions(
        method=method, rejection=rejection, sigma=sigma, sigma_lower=sigma_lower,
        sigma_upper=sigma_upper, cenfunc=cenfunc, stdfunc=stdfunc, maxiters=maxiters,
        min_clip=min_clip, max_clip=max_clip, nlow=nlow, nhigh=nhigh, pclip=pclip, gain=gain,
        read_noise=read_noise, sense_noise=sense_noise, esd_max=esd_max, esd_alpha=esd_alpha,
        dtype=dtype,
    )
    return combine_frames(_expand(frames), options, scale=scale, zero=zero, scale_to=scale_to,
                          stat_section=stat_section, weights=weights, bias=bias, dark=dark,
                          dark_scale=dark_scale, mem_limit=mem_limit, hdu=hdu, masks=masks,
                          skip_bad=skip_bad, n_readers=n_readers, client=client,
                          progress=progress)


def prepare(frames, **options):
    """Prepare ``combine(frames, **options)`` without running it (for backends that run many).

    A context manager yielding the :class:`Job`; its frames stay readable until it exits.

    Parameters
    ----------
    frames : list or Group or ImageIndex
        As for :func:`combine`.
    **options
        :func:`combine`'s options, except ``client`` and ``parallel`` (a backend's business).

    Raises
    ------
    UnknownOptionError
        For a name that is not one of those options.
    """
    valid = [*_OPTION_FIELDS, *_FRAME_OPTIONS]
    for name in options:
        if name not in valid:
            raise _unknown_option("prepare", name, valid)
    fields = {k: v for k, v in options.items() if k in _OPTION_FIELDS}
    rest = {k: v for k, v in options.items() if k not in _OPTION_FIELDS}
    return prepare_frames(_expand(frames), CombineOptions(**fields), **rest)


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


def _open_calibration(item, name, shape, stack_dtype, tmpdir):
    if item is None:
        return None
    frame = open_frame(item, stack_dtype=stack_dtype, tmpdir=tmpdir)
    if frame.shape != shape:
        raise FrameError(frame.source, f"the master {name} has shape {frame.shape[0]}x"
                         f"{frame.shape[1]} but the frames are {shape[0]}x{shape[1]}")
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
    engine : Engine
        Combines tiles; its ``frame_rejected`` accumulates over the whole image.
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
    engine: Engine
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

    def finish(self, data, uncertainty, count, rejected) -> Master:
        """The :class:`Master` from the filled outputs and the number of values rejected."""
        kept = int(count.sum(dtype=np.int64))
        fraction = rejected / (kept + rejected) if kept + rejected else 0.0
        meta = provenance_header(self.header, [f.name for f in self.frames], self.options,
                                 rejected_fraction=fraction, skipped=self.skipped,
                                 preparation=self.preparation, **self.described)
        master = Master(data, unit=self.unit,
                        uncertainty=StdDevUncertainty(uncertainty, copy=False),
                        mask=count == 0, meta=meta, copy=False)
        master.ncombine = count
        master.rejected_fraction = fraction
        master.frame_rejected = self.engine.frame_rejected / float(np.prod(self.plan.shape))
        master.sources = [str(f.source) for f in self.frames]
        master.preparation = self.preparation
        master.scale_factors = self.preparation.scale
        master.zero_offsets = self.preparation.zero
        master.weights = self.engine.frame_weights
        master.plan = self.plan
        master.skipped = self.skipped
        return master


def run_local(job: Job, progress=False) -> Master:
    """Run ``job`` on this machine (:mod:`calstack.stacking.backends.local`), with a progress bar over
    its rows if asked (see :func:`calstack.progress.as_progress`)."""
    data, uncertainty, count = job.outputs()
    with as_progress(progress).task("combine", total=job.plan.shape[0], unit="row") as task:
        rejected = local.run(job.frames, job.plan, job.engine, job.preparation,
                             stack_dtype=job.stack_dtype, data=data, uncertainty=uncertainty,
                             count=count, n_readers=job.n_readers,
                             pixel_weights=job.pixel_weights, on_tile=task.update)
    return job.finish(data, uncertainty, count, rejected)


def combine_frames(items, options, *, client=None, progress=False, **kwargs) -> Master:
    """:func:`combine` with validated ``options`` and a list of frames.

    ``client`` (a ``distributed.Client``) runs it on a Dask cluster; ``progress`` shows a bar
    when it runs here; the other parameters are :func:`prepare_frames`'s.
    """
    with prepare_frames(items, options, **kwargs) as job:
        if client is None:
            return run_local(job, progress)
        from .backends import dask as cluster_backend

        return cluster_backend.run(job, client)


@contextlib.contextmanager
def prepare_frames(items, options, *, scale=None, zero=None, scale_to=None, stat_section=None,
                   weights=None, bias=None, dark=None, dark_scale="EXPTIME", post_scale=None,
                   mem_limit=DEFAULT_MEM_LIMIT, hdu=None, masks=None, skip_bad=False,
                   n_readers=2):
    """Open, check and plan the combine of ``items`` with validated ``options``.

    A context manager yielding the :class:`Job`; the frames are closed (and gzip copies
    removed) when it exits. ``post_scale`` (per-frame factors applied after rejection) serves
    :mod:`calstack.compat.ccdproc`, which reproduces ccdproc's order. The other parameters are
    :func:`combine`'s.
    """
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
            if skipped and (pixel_weights is not None or post_scale is not None
                            or not isinstance(scale, (str, type(None)))
                            or not isinstance(zero, (str, type(None)))
                            or not isinstance(weights, (str, type(None)))):
                raise OptionError("per-frame scale, zero or weights cannot be matched to the "
                                  "frames once unreadable ones are skipped; fix or remove them")
            options.check_frame_count(len(opened))
            unit = _check_consistent(opened)
            header = opened[0].header()
            if options.rejection == "ccdclip" or (isinstance(weights, str) and weights == "noise"):
                options = options.with_noise_model(header)
            preparation = Preparation(
                bias=_open_calibration(bias, "bias", opened[0].shape, stack_dtype, tmpdir),
                dark=_open_calibration(dark, "dark", opened[0].shape, stack_dtype, tmpdir))
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
            n_readers = min(n_readers, len(opened))
            plan = plan_tiles(
                shape=opened[0].shape, n_frames=len(opened) + len(calibrations), mem_limit=limit,
                stack_itemsize=stack_dtype.itemsize,
                raw_itemsize=max(f.raw_itemsize for f in [*opened, *calibrations]),
                out_itemsize=stack_dtype.itemsize, n_readers=n_readers,
                extra_bytes_per_pixel=8 * len(opened) if pixel_weights is not None else 0,
            )
            log.info("combine: %s", plan.describe())
            engine = Engine(options, len(opened), frame_weights=frame_weights,
                            per_pixel_weights=pixel_weights is not None, post_scale=post_scale)
            yield Job(frames=opened, options=options, preparation=preparation, engine=engine,
                      plan=plan, pixel_weights=pixel_weights, n_readers=n_readers,
                      header=header, unit=unit, skipped=skipped,
                      described=dict(scale=scale, zero=zero, weights=weights))
        finally:
            for frame in [*opened, *calibrations]:
                frame.close()
