"""One combine's call of the kernel, prepared once from the options: what every tile runs.

Every backend (and the tests) combines a tile through :meth:`KernelCall.combine_tile`, so they
all run the same kernel with the same inputs. It keeps no state: each call returns its tile's
counts, and the caller adds them up.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
from numba import set_parallel_chunksize

from ..kernels.esd import critical_values
from ..kernels.sorted_ranges import sorting_network
from ..kernels.stack import combine_stack
from ..options import CombineOptions

__all__ = ["KernelCall", "TileCounts", "grow_bytes_per_pixel", "grow_marks"]

_NO_TABLE = np.zeros((1, 1))
_NO_MARKS = np.zeros((0, 0), bool)


class TileCounts(NamedTuple):
    """What one tile's combine rejected."""

    rejected: int  # finite values rejected
    frame_rejected: np.ndarray  # (N,) int64: of each frame


@dataclass(frozen=True)
class KernelCall:
    """The kernel's inputs for ``n_frames`` frames combined with ``options``.

    Parameters
    ----------
    options : CombineOptions
        Validated options (``gain``/``read_noise`` already numbers for ``ccdclip``).
    n_frames : int
        Frames in the stack.
    frame_weights : array_like, optional
        One weight per frame (average and sum); per-pixel weights go to :meth:`combine_tile`.
    per_pixel_weights : bool
        Whether :meth:`combine_tile` will receive per-pixel weights.
    post_scale : array_like, optional
        Per-frame factors applied after rejection (ccdproc's ``scale``).
    """

    options: CombineOptions
    n_frames: int
    frame_weights: np.ndarray | None = None
    per_pixel_weights: bool = False
    post_scale: np.ndarray | None = None
    _inputs: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        n = self.n_frames
        weighted = self.frame_weights is not None or self.per_pixel_weights
        post_scaled = self.post_scale is not None
        params = self.options.kernel_params(n, weighted=weighted, post_scaled=post_scaled)
        # grow's second pass: the values left, combined without rejection (thresholds apply)
        unrejected = replace(self.options, rejection=None, nlow=0, nhigh=0, grow=0.0)
        second = unrejected.kernel_params(n, weighted=weighted, post_scaled=post_scaled)
        weights = (np.ones((n, 1)) if self.frame_weights is None
                   else np.asarray(self.frame_weights, np.float64).reshape(n, 1))
        post = np.ones(n) if not post_scaled else np.asarray(self.post_scale, np.float64)
        crit = (critical_values(n, self.options.esd_max, self.options.esd_alpha)
                if self.options.rejection == "esd" else _NO_TABLE)
        frame_noise = np.array([self.options.frame_scale or np.ones(n),
                                self.options.frame_zero or np.zeros(n)], np.float64)
        object.__setattr__(self, "_inputs", (params, weights, post, frame_noise, crit,
                                             sorting_network(n), second))

    @property
    def halo(self) -> int:
        """Rows a tile needs read above and below it: ``grow``'s reach."""
        return int(self.options.grow)

    def combine_tile(self, tile, data, uncertainty, count, weights=None, above=0) -> TileCounts:
        """Combine ``tile`` into the flat outputs ``data``, ``uncertainty``, ``count``.

        ``tile`` is (N, rows, width), or (N, P): one line of P pixels. ``weights`` (N, P) are
        the tile's per-pixel weights, when the call expects them. With ``grow``, ``tile`` holds
        :attr:`halo` rows (fewer at the image's edges) above and below the rows combined, which
        start at row ``above`` of it; it is overwritten.
        """
        params, second = self._inputs[0], self._inputs[6]
        if not self.options.grow:
            return self._combine(params, tile, data, uncertainty, count, weights)
        return self._combine_grown(params, second, tile, data, uncertainty, count, weights, above)

    def _combine(self, params, tile, data, uncertainty, count, weights, rejected=_NO_MARKS):
        """One kernel call with ``params`` (optionally marking the ``rejected`` values)."""
        _, frame_weights, post, frame_noise, crit, pairs, _ = self._inputs
        line_width = tile.shape[-1]
        tile = tile.reshape(self.n_frames, -1)
        if self.per_pixel_weights:
            weights = np.ascontiguousarray(weights, np.float64)
            if self.frame_weights is not None:
                weights = weights * frame_weights
        else:
            weights = frame_weights
        previous = set_parallel_chunksize(1)  # each thread takes the next group as it frees up
        try:
            rejected_count, frame_rejected = combine_stack(
                tile, weights, post, frame_noise, crit, pairs, params, line_width, data,
                uncertainty, count, rejected)
        finally:
            set_parallel_chunksize(previous)
        return TileCounts(int(rejected_count), frame_rejected)

    def _combine_grown(self, params, second, tile, data, uncertainty, count, weights, above):
        """IRAF's ``grow``: combine the tile with its halo, marking what was rejected; grow the
        marks by ``grow`` pixels in each frame; combine the tile's own rows without what the
        grown marks cover and without rejection; where ``nkeep > 0`` and no value is left, keep
        the first combine's pixel."""
        n, width = self.n_frames, tile.shape[-1]
        tile = tile.reshape(n, -1, width)
        read = tile.shape[1] * width
        size = data.size
        band = slice(above * width, above * width + size)
        first = (np.empty(read, data.dtype), np.empty(read, uncertainty.dtype),
                 np.empty(read, count.dtype))
        first_rejected = np.zeros((n, read), bool)
        self._combine(params, tile, *first, weights, first_rejected)
        values = tile.reshape(n, read)
        source = first_rejected.copy()  # rejected by nlow/nhigh or the algorithm, not by
        with np.errstate(invalid="ignore"):  # thresholds
            if self.options.min_clip is not None:
                source &= values >= self.options.min_clip
            if self.options.max_clip is not None:
                source &= values <= self.options.max_clip
        grown = grow_marks(source.reshape(n, -1, width), self.options.grow).reshape(n, read)
        grown = grown[:, band] & np.isfinite(values[:, band])
        first_rejected = first_rejected[:, band]  # as combined before growing
        flat = tile.reshape(-1)  # the tile's own rows first, in place: one C-contiguous stack
        for i in range(n):
            flat[i * size:(i + 1) * size] = flat[i * read + above * width:
                                                 i * read + above * width + size]
        own = flat[:n * size].reshape(n, -1, width)
        own.reshape(n, size)[grown] = np.nan
        rejected = np.zeros((n, size), bool)
        self._combine(second, own, data, uncertainty, count,
                      None if weights is None else np.asarray(weights)[:, band], rejected)
        rejected |= grown
        if self.options.nkeep > 0:
            emptied = (count == 0) & (first[2][band] > 0)
            for output, before in zip((data, uncertainty, count), first, strict=True):
                output[emptied] = before[band][emptied]
            rejected[:, emptied] = first_rejected[:, emptied]
        frame_rejected = rejected.sum(axis=1)
        return TileCounts(int(frame_rejected.sum()), frame_rejected)


def grow_bytes_per_pixel(n_frames: int, itemsize: int) -> int:
    """What ``grow`` allocates per pixel of a tile as read: the marks (rejected, grown and
    their temporaries, a byte per value each) and the first combine's outputs."""
    return 7 * n_frames + 2 * itemsize + 2


def grow_marks(marks, radius):
    """``marks`` (N, rows, width) of bool, each frame's grown by a disc of ``radius`` pixels
    (offsets with dx**2 + dy**2 <= radius**2, IRAF's ``grow``)."""
    from scipy.ndimage import binary_dilation  # only a run that grows needs scipy.ndimage

    reach = int(radius)
    offsets = np.arange(-reach, reach + 1)
    disc = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2
    return np.stack([binary_dilation(frame, structure=disc) for frame in marks])


def preload(options: CombineOptions, n_frames: int = 3) -> None:
    """Load the kernel's specialisation for ``options`` (from numba's cache, else compile it)
    without running it, so that the first :meth:`KernelCall.combine_tile` finds it loaded.

    Only the specialisation of the options' working dtype is loaded. The command line calls it
    in a thread while it scans headers; the kernel itself never runs here (a parallel kernel
    must not run in two threads at once).
    """
    from numba import typeof

    if isinstance(options.gain, str) or isinstance(options.read_noise, str):
        # header keywords, read with the frames; the specialisation depends on no value
        options = replace(options, gain=1.0, read_noise=0.0)
    dtype = np.dtype(options.dtype)
    params, weights, post, frame_noise, crit, pairs, _ = KernelCall(options, n_frames)._inputs
    args = (np.zeros((n_frames, 1), dtype), weights, post, frame_noise, crit, pairs, params, 1,
            np.zeros(1, dtype), np.zeros(1, dtype), np.zeros(1, np.int16), _NO_MARKS)
    combine_stack.compile(tuple(typeof(a) for a in args))
