"""The public combines: :func:`combine` (one master), :func:`combine_many` (one per group) and
:func:`prepare` (a job without running it).

Each validates every option, prepares a :class:`~calstack.stacking.job.Job` (frames opened and
checked, scale/zero/weights resolved, tiles planned) and hands it to the one dispatcher,
:func:`calstack.stacking.dispatch.run_many`, which runs it here or on a Dask cluster. Their
options, defaults and documentation come from :data:`calstack.options.OPTIONS`.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import textwrap
from typing import TYPE_CHECKING

import numpy as np

from ..catalog.columns import indexed_frames
from ..errors import OptionError
from ..options import (
    OPTIONS,
    CombineOptions,
    check_names,
    options_in,
    parameters_doc,
    rejection_guide,
)
from .dispatch import run, run_many
from .job import prepare_frames

if TYPE_CHECKING:
    from .master import Master

__all__ = ["combine", "combine_many", "prepare"]

_PREPARE = options_in("combine", "frames")
_COMBINE = options_in("combine", "frames", "run")


def _expand(frames):
    """Accept a list of frames, a :class:`~calstack.catalog.grouping.Group`, or an index."""
    group = hasattr(frames, "paths") and hasattr(frames, "hdus")
    if group or (hasattr(frames, "files") and hasattr(frames, "table")):  # or an ImageIndex
        return indexed_frames(frames)
    if isinstance(frames, (str, os.PathLike, np.ndarray)) and not (
        isinstance(frames, np.ndarray) and frames.ndim == 3
    ):
        raise OptionError("frames must be a list of frames (paths, CCDData or 2-D arrays), "
                          f"not a single {type(frames).__name__}")
    return list(frames)


def combine(frames, **options) -> Master:  # the signature and docstring: below, from OPTIONS
    check_names("combine", options, _COMBINE)
    where = {name: options.pop(name) for name in options_in("run") if name in options}
    with prepare(frames, **options) as job:
        return run(job, **where).to_master()


combine.__signature__ = inspect.Signature(
    [inspect.Parameter("frames", inspect.Parameter.POSITIONAL_OR_KEYWORD),
     *(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=OPTIONS[name].default)
       for name in _COMBINE)], return_annotation="Master")
combine.__doc__ = f"""Combine frames into a master, pixel by pixel, within a memory limit.

    Parameters
    ----------
    frames : list or Group or ImageIndex
        FITS file paths, ``(path, hdu)`` pairs, ``CCDData`` objects or 2-D arrays (mixing is
        allowed); or a :class:`~calstack.Group` / :class:`~calstack.ImageIndex`.
{textwrap.indent(parameters_doc(("combine", "frames", "run")), "    ")}

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

    Which rejection to pick:

{textwrap.indent(rejection_guide(flags=False), "    ")}
    """


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
    check_names("prepare", options, _PREPARE)
    fields = {k: v for k, v in options.items() if k in CombineOptions.__dataclass_fields__}
    rest = {k: v for k, v in options.items() if k not in fields}
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
    with contextlib.closing(results_many(groups, client, parallel=parallel, progress=progress,
                                         options_for=options_for, **options)) as results:
        for result in results:
            yield result.to_master()


def results_many(groups, client=None, *, parallel=None, progress=False, options_for=None,
                 **options):
    """:func:`combine_many`, yielding each plain :class:`~calstack.stacking.result.Result`
    (what the command line writes, without building a ``CCDData``)."""
    def jobs():  # each job's frames close when the next job is taken
        for frames in groups:
            more = options_for(frames) if options_for is not None else {}
            with prepare(frames, **{**options, **more}) as job:
                yield job

    with contextlib.closing(jobs()) as prepared:
        yield from run_many(prepared, client=client, parallel=parallel, progress=progress)
