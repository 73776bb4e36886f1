"""One combine, ready to run on tiles: the kernel's inputs built once from the options.

Every backend (and the tests) combines a tile through :meth:`Engine.combine_tile`, so they all
run the same code with the same parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .esd import critical_values
from .stack import combine_stack, sorting_network
from ..options import CombineOptions

__all__ = ["Engine"]

_NO_TABLE = np.zeros((1, 1))


@dataclass
class Engine:
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
    frame_rejected: np.ndarray = field(init=False)

    def __post_init__(self):
        n = self.n_frames
        weighted = self.frame_weights is not None or self.per_pixel_weights
        post_scaled = self.post_scale is not None
        self.params = self.options.kernel_params(weighted=weighted, post_scaled=post_scaled)
        self._weights = (np.ones((n, 1)) if self.frame_weights is None
                         else np.asarray(self.frame_weights, np.float64).reshape(n, 1))
        self._post = np.ones(n) if not post_scaled else np.asarray(self.post_scale, np.float64)
        self._crit = (critical_values(n, self.options.esd_max, self.options.esd_alpha)
                      if self.options.rejection == "esd" else _NO_TABLE)
        self._pairs = sorting_network(n)
        self.frame_rejected = np.zeros(n, np.int64)

    def combine_tile(self, tile, data, uncertainty, count, weights=None) -> int:
        """Combine ``tile`` (N, P) into the flat outputs ``data``, ``uncertainty``, ``count``.

        ``weights`` (N, P) are the tile's per-pixel weights, when the engine expects them. The
        number of each frame's values rejected accumulates in :attr:`frame_rejected`.

        Returns
        -------
        int
            Finite values rejected in this tile.
        """
        if self.per_pixel_weights:
            weights = np.ascontiguousarray(weights, np.float64)
            if self.frame_weights is not None:
                weights = weights * self._weights
        else:
            weights = self._weights
        return int(combine_stack(tile, weights, self._post, self._crit, self._pairs, self.params,
                                 data, uncertainty, count, self.frame_rejected))
