"""One combine's call of the kernel, prepared once from the options: what every tile runs.

Every backend (and the tests) combines a tile through :meth:`KernelCall.combine_tile`, so they
all run the same kernel with the same inputs. It keeps no state: each call returns its tile's
counts, and the caller adds them up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..kernels.esd import critical_values
from ..kernels.sorted_ranges import sorting_network
from ..kernels.stack import combine_stack
from ..options import CombineOptions

__all__ = ["KernelCall", "TileCounts"]

_NO_TABLE = np.zeros((1, 1))


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
        weights = (np.ones((n, 1)) if self.frame_weights is None
                   else np.asarray(self.frame_weights, np.float64).reshape(n, 1))
        post = np.ones(n) if not post_scaled else np.asarray(self.post_scale, np.float64)
        crit = (critical_values(n, self.options.esd_max, self.options.esd_alpha)
                if self.options.rejection == "esd" else _NO_TABLE)
        frame_noise = np.array([self.options.frame_scale or np.ones(n),
                                self.options.frame_zero or np.zeros(n)], np.float64)
        object.__setattr__(self, "_inputs", (params, weights, post, frame_noise, crit,
                                             sorting_network(n)))

    def combine_tile(self, tile, data, uncertainty, count, weights=None) -> TileCounts:
        """Combine ``tile`` into the flat outputs ``data``, ``uncertainty``, ``count``.

        ``tile`` is (N, rows, width), or (N, P): one line of P pixels. ``weights`` (N, P) are
        the tile's per-pixel weights, when the call expects them.
        """
        params, frame_weights, post, frame_noise, crit, pairs = self._inputs
        line_width = tile.shape[-1]
        tile = tile.reshape(self.n_frames, -1)
        if self.per_pixel_weights:
            weights = np.ascontiguousarray(weights, np.float64)
            if self.frame_weights is not None:
                weights = weights * frame_weights
        else:
            weights = frame_weights
        rejected, frame_rejected = combine_stack(tile, weights, post, frame_noise, crit, pairs,
                                                 params, line_width, data, uncertainty, count)
        return TileCounts(int(rejected), frame_rejected)


def preload(options: CombineOptions, n_frames: int = 3) -> None:
    """Load the kernel's specialisation for ``options`` (from numba's cache, else compile it)
    without running it, so that the first :meth:`KernelCall.combine_tile` finds it loaded.

    Only the specialisation of the options' working dtype is loaded. The command line calls it
    in a thread while it scans headers; the kernel itself never runs here (a parallel kernel
    must not run in two threads at once).
    """
    from numba import typeof

    dtype = np.dtype(options.dtype)
    params, weights, post, crit, pairs = KernelCall(options, n_frames)._inputs
    args = (np.zeros((n_frames, 1), dtype), weights, post, crit, pairs, params,
            np.zeros(1, dtype), np.zeros(1, dtype), np.zeros(1, np.int16))
    combine_stack.compile(tuple(typeof(a) for a in args))
