"""The public combines: :func:`combine` (one master), :func:`combine_many` (one per group) and
:func:`prepare` (a job without running it).

Each validates every option, prepares a :class:`~calstack.stacking.job.Job` (frames opened and
checked, scale/zero/weights resolved, tiles planned) and hands it to the one dispatcher,
:func:`calstack.stacking.dispatch.run_many`, which runs it here or on a Dask cluster.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from ..errors import OptionError, UnknownOptionError, did_you_mean
from ..options import CombineOptions
from .dispatch import run, run_many
from .job import prepare_frames
from .master import Master
from .plan import DEFAULT_MEM_LIMIT

__all__ = ["combine", "combine_many", "prepare"]

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
    with prepare(frames, method=method, rejection=rejection, sigma=sigma,
                 sigma_lower=sigma_lower, sigma_upper=sigma_upper, cenfunc=cenfunc,
                 stdfunc=stdfunc, maxiters=maxiters, min_clip=min_clip, max_clip=max_clip,
                 nlow=nlow, nhigh=nhigh, pclip=pclip, gain=gain, read_noise=read_noise,
                 sense_noise=sense_noise, esd_max=esd_max, esd_alpha=esd_alpha, dtype=dtype,
                 scale=scale, zero=zero, scale_to=scale_to, stat_section=stat_section,
                 weights=weights, bias=bias, dark=dark, dark_scale=dark_scale,
                 mem_limit=mem_limit, hdu=hdu, masks=masks, skip_bad=skip_bad,
                 n_readers=n_readers) as job:
        return run(job, client=client, parallel=parallel, progress=progress)


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




def combine_many(groups, client=None, *, parallel=None, progress=False, options_for=None,
                 **options):
    """Combine each of ``groups``; yield the masters in order, each as soon as it is done.

    Here, one group after the other; on a Dask cluster, every group's bands as tasks of one
    graph, so the workers never wait between groups.

    Parameters
    ----------
    groups : iterable
        Each what :func:`combine` takes as frames (a list of paths, a
        :class:`~calstack.Group`...).
    client : distributed.Client, optional
        The cluster (default: run here).
    parallel : {None, 'current-scheduler'}
        As for :func:`combine`.
    progress : bool, str or calstack.progress.Progress
        A bar over each group's rows.
    options_for : callable, optional
        ``options_for(group)`` returns more options for that group (e.g. its master bias).
    **options
        :func:`combine`'s options, for every group.

    Yields
    ------
    Master
        One per group, in order. Each group's frames are open only while it is prepared and
        combined.

    Examples
    --------
    >>> groups = calstack.group_by(index.filter(imagetyp="dark"), "exptime")  # doctest: +SKIP
    >>> masters = combine_many(groups, client, **calstack.RECIPE)  # doctest: +SKIP
    >>> for group in groups:  # next(), not zip: zip would keep the previous master alive
    ...     next(masters).write(f"combined_dark_{group.key['exptime']:.3f}.fit")
    """
    def jobs():  # each job's frames close when the next job is taken
        for frames in groups:
            more = options_for(frames) if options_for is not None else {}
            with prepare(frames, **{**options, **more}) as job:
                yield job

    with contextlib.closing(jobs()) as prepared:
        yield from run_many(prepared, client=client, parallel=parallel, progress=progress)
