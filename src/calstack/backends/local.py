"""The local backend: reader threads fill a stack tile, the numba kernel combines it in parallel."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np


__all__ = ["run"]


def run(frames, plan, engine, *, stack_dtype, data, uncertainty, count, n_readers) -> int:
    """Combine ``frames`` tile by tile into ``data``, ``uncertainty`` and ``count``.

    Parameters
    ----------
    frames : list of calstack.reader.Frame
        The open frames, all of ``plan.shape``.
    plan : calstack.plan.TilePlan
        The bands of rows to process.
    engine : calstack.engine.Engine
        Combines each tile (and counts each frame's rejected values).
    stack_dtype : numpy.dtype
        Working dtype of the stack.
    data, uncertainty, count : numpy.ndarray
        Whole-image outputs, filled in place.
    n_readers : int
        Reader threads (each with its own conversion buffer, as planned).

    Returns
    -------
    int
        Number of finite input values rejected.
    """
    n_frames = len(frames)
    width = plan.shape[1]
    buffer = np.empty(n_frames * plan.rows_per_tile * width, stack_dtype)
    raw_bytes = plan.rows_per_tile * width * max(f.raw_itemsize for f in frames)
    raws = [np.empty(raw_bytes, np.uint8) for _ in range(n_readers)]
    shares = np.array_split(np.arange(n_frames), n_readers)
    rejected = 0
    with ThreadPoolExecutor(n_readers, thread_name_prefix="calstack-read") as pool:
        for start, stop in plan.tiles:
            # every tile is C-contiguous, so the kernel is compiled for one array layout only
            tile = buffer[: n_frames * (stop - start) * width].reshape(n_frames, stop - start, width)

            def read(k, start=start, stop=stop, tile=tile):
                for i in shares[k]:
                    frames[i].read_rows(start, stop, tile[i], raws[k])

            list(pool.map(read, range(n_readers)))
            rejected += engine.combine_tile(
                tile.reshape(n_frames, -1),
                data[start:stop].reshape(-1),
                uncertainty[start:stop].reshape(-1),
                count[start:stop].reshape(-1),
            )
    return int(rejected)
