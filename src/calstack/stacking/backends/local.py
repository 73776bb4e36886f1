"""The local backend: reader threads fill a stack tile, the numba kernel combines it in parallel."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...errors import OptionError
from ...io.reader import raw_itemsize
from ...progress import as_progress
from ..plan import format_bytes
from ..result import Result

__all__ = ["BandBuffers", "read_band", "run_many"]


class BandBuffers:
    """The buffers :func:`read_band` fills, for bands of up to ``rows`` rows (both backends).

    Parameters
    ----------
    frames : list of calstack.io.reader.Frame
        The frames of the stack.
    calibrations : list of calstack.io.reader.Frame
        The preparation's calibration frames (bias, dark).
    rows, width : int
        The most rows of a band, and the frames' width.
    stack_dtype : numpy.dtype
        The working dtype.
    n_readers : int
        Reader threads: one conversion buffer each.

    Attributes
    ----------
    raws : list of numpy.ndarray of uint8
        The conversion buffers (:func:`calstack.io.reader.raw_buffer`), one per reader.
    """

    def __init__(self, frames, calibrations, rows, width, stack_dtype, n_readers, reuse=None):
        self.n_frames, self.width = len(frames), width
        sizes = self.sizes(frames, calibrations, rows, width, stack_dtype, n_readers)
        old = reuse.buffers() if reuse is not None else [None] * len(sizes)
        new = [np.empty(size, dtype) if buffer is None else buffer.reshape(-1)[:size]
               for (size, dtype), buffer in zip(sizes, old, strict=True)]
        self._stack = new[0]
        self._calibration = [c.reshape(rows, width) for c in new[1:1 + len(calibrations)]]
        self.raws = new[1 + len(calibrations):]

    @staticmethod
    def sizes(frames, calibrations, rows, width, stack_dtype, n_readers) -> list:
        """``(size, dtype)`` of each buffer: the stack, the calibrations', the readers'."""
        raw = rows * width * raw_itemsize([*frames, *calibrations])
        return [(len(frames) * rows * width, np.dtype(stack_dtype)),
                *[(rows * width, np.dtype(stack_dtype))] * len(calibrations),
                *[(raw, np.dtype(np.uint8))] * n_readers]

    def buffers(self) -> list:
        """The whole flat buffers, in :meth:`sizes` order."""
        return [b.base if b.base is not None else b
                for b in [self._stack, *self._calibration, *self.raws]]

    def fits(self, sizes, spare) -> bool:
        """Whether these buffers can serve a job needing ``sizes`` (:meth:`sizes`), holding at
        most ``spare`` bytes more than it needs (so the job stays within its memory limit)."""
        old = self.buffers()
        if len(old) != len(sizes):
            return False
        if any(b.dtype != dtype or b.size < size for b, (size, dtype) in zip(old, sizes, strict=True)):
            return False
        excess = sum(b.nbytes - size * dtype.itemsize
                     for b, (size, dtype) in zip(old, sizes, strict=True))
        return excess <= spare

    def band(self, n_rows):
        """``(tile, calibration)`` for a band of ``n_rows`` rows: the stack tile, C-contiguous
        ``(n_frames, n_rows, width)`` (so the kernel is compiled for one array layout only), and
        one ``(n_rows, width)`` buffer per calibration frame."""
        tile = self._stack[: self.n_frames * n_rows * self.width].reshape(
            self.n_frames, n_rows, self.width)
        return tile, [c[:n_rows] for c in self._calibration]


def read_band(frames, preparation, start, stop, tile, calibration, raws, pool=None):
    """Fill ``tile[i]`` with frame i's prepared rows ``start:stop``.

    Parameters
    ----------
    frames : list of calstack.io.reader.Frame
        The frames.
    preparation : calstack.stacking.preparation.Preparation
        Bias/dark subtraction, scaling and offsets applied as the rows are read.
    start, stop : int
        The band of rows.
    tile : numpy.ndarray (N, stop - start, width)
        Filled in place.
    calibration : list of numpy.ndarray (stop - start, width)
        Buffers for the rows of ``preparation.calibrations``.
    raws : list of numpy.ndarray of uint8
        Conversion buffers, one per reader.
    pool : concurrent.futures.Executor, optional
        Runs one reader per buffer in ``raws``; without it the frames are read in turn.
    """
    for buffer, source in zip(calibration, preparation.calibrations, strict=True):
        source.read_rows(start, stop, buffer, raws[0])
    shares = np.array_split(np.arange(len(frames)), len(raws))

    def read(k):
        for i in shares[k]:
            frames[i].read_rows(start, stop, tile[i], raws[k])
            preparation.apply(i, tile[i], calibration)

    if pool is None:
        for k in range(len(raws)):
            read(k)
    else:
        list(pool.map(read, range(len(raws))))


def available_memory() -> int | None:
    """Bytes of memory this machine can give now (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_memory(plan) -> None:
    """A combine that would allocate more than this machine has is an error before it starts
    (instead of NumPy's MemoryError, or the machine swapping)."""
    available = available_memory()
    if available is not None and plan.estimated_peak > available:
        raise OptionError(f"this combine would use {format_bytes(plan.estimated_peak)} "
                          f"(mem_limit {format_bytes(plan.mem_limit)}) but only "
                          f"{format_bytes(available)} of memory is available; give a smaller "
                          "--mem-limit (mem_limit=)")


def run_many(jobs, *, client=None, progress=False):
    """Run each job in turn on this machine; yield its :class:`~calstack.stacking.result.Result`.

    Parameters
    ----------
    jobs : iterable of calstack.stacking.job.Job
        Prepared combines, readable while this runs.
    client : None
        Nothing (this backend runs here); the parameter is every backend's.
    progress : bool, str or calstack.progress.Progress
        A bar over each job's rows (see :func:`calstack.progress.as_progress`).

    Yields
    ------
    Result
        One per job, in order.
    """
    if client is not None:
        raise OptionError("the local backend runs on this machine; a Dask client goes to the "
                          "dask backend (calstack.stacking.dispatch.run chooses)")
    progress = as_progress(progress)
    held = []  # the band buffers, reused from job to job
    for job in jobs:
        _check_memory(job.plan)
        with progress.task("combine", total=job.plan.shape[0], unit="row") as task:
            yield _run(job, task.update, held)


def _run(job, on_tile, held=None) -> Result:
    """Combine ``job`` tile by tile; ``on_tile`` is called with each tile's number of rows.

    ``held`` is a list holding the band buffers of the job before, if any: they are reused
    when they fit this job's plan, else freed before anything is allocated; this job's are left
    in it. So the band buffers of a run are allocated (and their pages faulted in) once, and the
    outputs and band buffers together stay within the plan's estimate (the result's mask is
    counted among the outputs).
    """
    held = [] if held is None else held
    plan = job.plan
    sizes = BandBuffers.sizes(job.frames, job.preparation.calibrations, plan.rows_read,
                              plan.shape[1], job.stack_dtype, job.n_readers)
    previous = held.pop() if held else None
    if previous is not None and not previous.fits(sizes, plan.mem_limit - plan.estimated_peak):
        previous = None  # freed before the outputs are allocated
    outputs = job.outputs()
    buffers = BandBuffers(job.frames, job.preparation.calibrations, plan.rows_read,
                          plan.shape[1], job.stack_dtype, job.n_readers, reuse=previous)
    del previous
    counts = _combine_tiles(job, *outputs, on_tile, buffers)
    held.append(buffers)
    return job.finish(*outputs, *counts)


def _combine_tiles(job, data, uncertainty, count, on_tile, buffers):
    """Fill the outputs band by band, in ``buffers``; ``(rejected, frame_rejected)``, summed
    over the bands."""
    frames, plan, preparation = job.frames, job.plan, job.preparation
    n_frames = len(frames)
    rejected, frame_rejected = 0, np.zeros(n_frames, np.int64)
    with ThreadPoolExecutor(job.n_readers, thread_name_prefix="calstack-read") as pool:
        for start, stop in plan.tiles:
            first, last = plan.read_range(start, stop)  # with grow's halo
            tile, calibration = buffers.band(last - first)
            read_band(frames, preparation, first, last, tile, calibration, buffers.raws, pool)
            weights = None
            if job.pixel_weights is not None:
                weights = np.stack([np.asarray(w[first:last], np.float64)
                                    for w in job.pixel_weights]).reshape(n_frames, -1)
            counts = job.kernel.combine_tile(tile,
                                             data[start:stop].reshape(-1),
                                             uncertainty[start:stop].reshape(-1),
                                             count[start:stop].reshape(-1), weights,
                                             above=start - first)
            rejected += counts.rejected
            frame_rejected += counts.frame_rejected
            on_tile(stop - start)
    return rejected, frame_rejected
