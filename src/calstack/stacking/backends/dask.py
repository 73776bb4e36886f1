"""The Dask backend: bands of rows combined as tasks on a ``distributed`` cluster.

A prepared :class:`~calstack.stacking.job.Job` is cut into bands of rows, one task each. A task
re-opens the frames from their paths on its worker (so every worker must see the files at the
same paths: a shared filesystem), reads and prepares its band with the local backend's
:func:`~calstack.stacking.backends.local.read_band`, combines it with the job's
:class:`~calstack.stacking.kernel_call.KernelCall`, and returns the band's data, uncertainty and
counts. The
client writes each band into the whole-image outputs as it arrives and builds the master, which
is bit-for-bit the local backend's: every pixel goes through the same kernel with the same
inputs. Nothing is written by the workers, and nothing but paths and per-frame numbers is sent
to them.

Memory: ``mem_limit`` bounds each task (one band's stack); the client holds the whole-image
outputs and one band at a time. Bands are at most the local plan's tiles, and cut finer so that
every worker thread gets a few.

Refused, with an error that says what to do: in-memory frames (arrays, ``CCDData``, also as
bias or dark) and per-pixel weights, which live in this process; gzip files, which every task
would decompress from the file's start. A worker that dies mid-run costs only its tasks: Dask
runs them again elsewhere.

:func:`run_many` runs the bands of many jobs (e.g. every group of ``calstack combine``) as tasks
of one graph, and yields each master, in order, once its bands are in; it takes the same
arguments as the local backend's, and :func:`calstack.stacking.dispatch.run_many` chooses.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from ...errors import FileChangedError, FrameError, OptionError
from ...io.reader import frame_item, open_frame
from ...progress import as_progress
from ..cluster import ClusterError, require_distributed, resolve_client
from ..kernel_call import KernelCall
from ..plan import TilePlan
from ..preparation import Preparation
from .local import BandBuffers, read_band

__all__ = ["TASKS_PER_THREAD", "run_many"]

log = logging.getLogger("calstack")

#: Bands per worker thread (at least :data:`_MIN_THREADS` threads are assumed, so a cluster
#: that is still starting its workers gets enough tasks too).
TASKS_PER_THREAD = 3
_MIN_THREADS = 4


@dataclass(frozen=True)
class _Work:
    """What every band task of one job needs: paths and numbers, no open file, no pixels."""

    frames: tuple  # (absolute path, HDU number, identity) of each frame
    preparation: Preparation  # bias and dark as (path, HDU number, identity)
    kernel: KernelCall
    shape: tuple
    plan: TilePlan  # its halo: the rows read around a band (grow)
    stack_dtype: np.dtype
    n_readers: int


class _Band(NamedTuple):
    start: int
    stop: int
    data: np.ndarray
    uncertainty: np.ndarray
    count: np.ndarray
    rejected: int
    frame_rejected: np.ndarray


def _spec(frame, what):
    """``(absolute path, HDU, identity)`` by which a worker re-opens ``frame``: a file whose
    identity differs on the worker (changed, or another file at that path) is an error."""
    item = frame_item(frame)
    if item is None:
        raise OptionError(f"{what} {frame.name!r} is in memory; with a Dask client the workers "
                          "read every frame from a file: write it to FITS first, or combine "
                          "without client=")
    if frame.source.lower().endswith(".gz"):
        raise FrameError(frame.source, "is gzip-compressed: on a Dask cluster every band task "
                         "would decompress the file from its start; gunzip it (or fpack it: .fz is read "
                         "band by band), or combine without client=")
    path, hdu, identity = item
    return os.path.abspath(path), hdu, identity


def _work(job) -> _Work:
    if job.pixel_weights is not None:
        raise OptionError("per-pixel weights are arrays in this process; with a Dask client give "
                          "weights per frame (numbers, a keyword or 'noise'), or combine without "
                          "client=")
    prep = job.preparation
    preparation = replace(prep, bias=None if prep.bias is None else _spec(prep.bias, "the bias"),
                          dark=None if prep.dark is None else _spec(prep.dark, "the dark"),
                          bad_pixels=None if prep.bad_pixels is None else _spec(
                              prep.bad_pixels, "the bad-pixel mask"))
    return _Work(frames=tuple(_spec(f, "frame") for f in job.frames), preparation=preparation,
                 kernel=job.kernel, shape=job.plan.shape, plan=job.plan,
                 stack_dtype=job.stack_dtype,
                 n_readers=job.n_readers)


def _reopen(spec, work):
    """The frame at ``spec`` on this worker: the very file the client opened (its identity)."""
    try:
        return open_frame(spec, stack_dtype=work.stack_dtype, keep_open=False)
    except FrameError as exc:
        from distributed import get_worker

        hint = "" if isinstance(exc, FileChangedError) else (
            ": every worker must see the files at the same paths")
        raise type(exc)(exc.path, f"{exc.reason} (on Dask worker {get_worker().address}"
                        f"{hint})") from None


def _combine_band(work: _Work, start: int, stop: int) -> _Band:
    """The task: read, prepare and combine rows ``start:stop`` of every frame."""
    frames, calibrations = [], []
    try:
        frames = [_reopen(spec, work) for spec in work.frames]
        bias, dark, bad = (None if spec is None else _reopen(spec, work) for spec in (
            work.preparation.bias, work.preparation.dark, work.preparation.bad_pixels))
        preparation = replace(work.preparation, bias=bias, dark=dark, bad_pixels=bad)
        calibrations = preparation.calibrations
        rows, width = stop - start, work.shape[1]
        first, last = work.plan.read_range(start, stop)  # with grow's halo
        buffers = BandBuffers(frames, calibrations, last - first, width, work.stack_dtype,
                              work.n_readers)
        tile, calibration = buffers.band(last - first)
        with ThreadPoolExecutor(work.n_readers, thread_name_prefix="calstack-read") as pool:
            read_band(frames, preparation, first, last, tile, calibration, buffers.raws, pool)
        data = np.empty((rows, width), work.stack_dtype)
        uncertainty = np.empty((rows, width), work.stack_dtype)
        count = np.empty((rows, width), np.int16)
        counts = work.kernel.combine_tile(tile, data.reshape(-1), uncertainty.reshape(-1),
                                          count.reshape(-1), above=start - first)
        return _Band(start, stop, data, uncertainty, count, *counts)
    finally:
        for frame in [*frames, *calibrations]:
            frame.close()


def _submit(job, client, priority):
    """Submit ``job``'s band tasks; their futures."""
    work = _work(job)
    for frame in [*job.frames, *job.preparation.calibrations]:
        frame.close()  # the client is done reading (many jobs may wait here at once)
    threads = max(sum(client.nthreads().values()), _MIN_THREADS)
    height = job.plan.shape[0]
    rows = min(job.plan.rows_per_tile, math.ceil(height / (TASKS_PER_THREAD * threads)))
    job.plan = replace(job.plan, rows_per_tile=rows)
    log.info("dask: %d tasks of %d rows for %d worker thread(s)", len(job.plan.tiles), rows,
             threads)
    token = uuid.uuid4().hex
    return [client.submit(_combine_band, work, start, stop, key=f"calstack-band-{token}-{start}",
                          priority=priority)
            for start, stop in job.plan.tiles]


def _assemble(job, futures, client, on_band):
    """The job's master from its band futures, each written into the outputs as it finishes
    (``on_band`` is called with its number of rows)."""
    distributed = require_distributed()
    data, uncertainty, count = job.outputs()
    rejected, frame_rejected = 0, np.zeros(len(job.frames), np.int64)
    for future in distributed.as_completed(futures, loop=client.loop):
        try:
            band = future.result()
        except distributed.KilledWorker as exc:
            raise ClusterError(f"Dask workers kept dying while combining {job.frames[0].source} "
                               f"and others ({exc}); they may run out of memory: lower mem_limit "
                               "(it bounds each task) or give the workers more memory") from exc
        rows = slice(band.start, band.stop)
        data[rows], uncertainty[rows], count[rows] = band.data, band.uncertainty, band.count
        rejected += band.rejected
        frame_rejected += band.frame_rejected
        on_band(band.stop - band.start)
    return job.finish(data, uncertainty, count, rejected, frame_rejected)


def run_many(jobs, *, client=None, progress=False):
    """Run the bands of every job as tasks of one graph; yield each master as it is done.

    Each job's tasks are submitted as soon as the job is taken from ``jobs`` (so the workers
    start while later jobs are prepared), earlier jobs first. The masters come out in the order
    of ``jobs``, each as soon as its bands are in; the client holds one master's outputs at a
    time while later bands wait on the workers. An error cancels every task of the run.

    Parameters
    ----------
    jobs : iterable of calstack.stacking.job.Job
        Prepared combines (:func:`calstack.prepare`), readable while this runs.
    client : distributed.Client
        The cluster.
    progress : bool, str or calstack.progress.Progress
        A bar over each job's rows, advanced as its bands come in.

    Yields
    ------
    Result
        One per job, in order.
    """
    client = resolve_client(client)
    if client is None:
        raise OptionError("the dask backend needs a distributed.Client; without a cluster, the "
                          "local backend runs here (calstack.stacking.dispatch.run chooses)")
    progress = as_progress(progress)
    pending = deque()
    try:
        for order, job in enumerate(jobs):
            pending.append((job, _submit(job, client, priority=-order)))
        while pending:
            job, futures = pending[0]
            with progress.task("combine", total=job.plan.shape[0], unit="row") as task:
                master = _assemble(job, futures, client, task.update)
            pending.popleft()  # its futures go: the workers forget its bands
            yield master
    except BaseException:
        client.cancel([f for _, futures in pending for f in futures])
        raise

