"""The local backend: reader threads fill a stack tile, the numba kernel combines it in parallel."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["run", "read_band"]


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
    for buffer, source in zip(calibration, preparation.calibrations):
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


def run(frames, plan, engine, preparation, *, stack_dtype, data, uncertainty, count, n_readers,
        pixel_weights=None, on_tile=None) -> int:
    """Combine ``frames`` tile by tile into ``data``, ``uncertainty`` and ``count``.

    Parameters
    ----------
    frames : list of calstack.io.reader.Frame
        The open frames, all of ``plan.shape``.
    plan : calstack.stacking.plan.TilePlan
        The bands of rows to process.
    engine : calstack.kernels.stack.engine.Engine
        Combines each tile (and counts each frame's rejected values).
    preparation : calstack.stacking.preparation.Preparation
        Applied to the values as they are read.
    stack_dtype : numpy.dtype
        Working dtype of the stack.
    data, uncertainty, count : numpy.ndarray
        Whole-image outputs, filled in place.
    n_readers : int
        Reader threads (each with its own conversion buffer, as planned).
    pixel_weights : sequence of 2-D arrays, optional
        Per-pixel weights, one array per frame.
    on_tile : callable, optional
        Called with the number of rows of each tile once it is combined (progress).

    Returns
    -------
    int
        Number of finite input values rejected.
    """
    n_frames = len(frames)
    height, width = plan.shape
    rows = plan.rows_per_tile
    buffer = np.empty(n_frames * rows * width, stack_dtype)
    calibration = [np.empty((rows, width), stack_dtype) for _ in preparation.calibrations]
    raw_bytes = rows * width * max(f.raw_itemsize for f in [*frames, *preparation.calibrations])
    raws = [np.empty(raw_bytes, np.uint8) for _ in range(n_readers)]
    rejected = 0
    with ThreadPoolExecutor(n_readers, thread_name_prefix="calstack-read") as pool:
        for start, stop in plan.tiles:
            # every tile is C-contiguous, so the kernel is compiled for one array layout only
            tile = buffer[: n_frames * (stop - start) * width].reshape(n_frames, stop - start, width)
            read_band(frames, preparation, start, stop, tile,
                      [c[: stop - start] for c in calibration], raws, pool)
            weights = None
            if pixel_weights is not None:
                weights = np.stack([np.asarray(w[start:stop], np.float64) for w in pixel_weights])
            rejected += engine.combine_tile(
                tile.reshape(n_frames, -1),
                data[start:stop].reshape(-1),
                uncertainty[start:stop].reshape(-1),
                count[start:stop].reshape(-1),
                None if weights is None else weights.reshape(n_frames, -1),
            )
            if on_tile is not None:
                on_tile(stop - start)
    return int(rejected)
