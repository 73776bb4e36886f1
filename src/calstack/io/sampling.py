"""Memory-bounded looks at whole frames: a regular grid of pixels, and block minima.

The report never holds a whole frame. A frame is looked at through a grid: every ``step``-th
pixel of every ``step``-th row, read one row at a time through :func:`calstack.io.reader.open_frame`
(so integer data with BZERO/BSCALE, BLANK values, MASK extensions, ``.fz`` and ``.gz`` files
read as they do for a combine). For a 4096x4096 frame and a grid of at most 512 pixels a side,
that is 512 reads of one row: 8 MB read, 1 MB kept, however many frames there are.
Subsampling (rather than averaging blocks) keeps a single frame's pixel noise as it is, so
statistics and pictures of the grid show the noise of the frame.
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels.statistics import median_and_robust_std
from .reader import Frame, open_frame, raw_buffer

__all__ = ["grid_step", "pixel_noise", "read_block_min", "read_grid"]



def grid_step(shape, max_side: int) -> int:
    """The smallest step that keeps a grid of ``shape`` within ``max_side`` pixels a side."""
    return max(1, math.ceil(max(shape) / max_side))


def _with_frame(item, *, hdu, visit):
    """Return ``visit(frame)`` of a Frame, or of a frame opened (and closed) here."""
    if isinstance(item, Frame):
        return visit(item)
    frame = open_frame(item, hdu=hdu, stack_dtype=np.float32)
    try:
        return visit(frame)
    finally:
        frame.close()


def read_grid(item, step: int, *, hdu=None) -> np.ndarray:
    """Every ``step``-th pixel of every ``step``-th row of a frame, as float32 (NaN = missing).

    Parameters
    ----------
    item : str, os.PathLike, tuple, CCDData, numpy.ndarray or calstack.io.reader.Frame
        The frame (anything :func:`calstack.io.reader.open_frame` takes, or a Frame).
    step : int
        Grid spacing in pixels.
    hdu : int or str, optional
        HDU of a file (default: the first image).
    """

    def visit(frame):
        height, width = frame.shape
        rows = range(0, height, step)
        grid = np.empty((len(rows), len(range(0, width, step))), np.float32)
        row = np.empty((1, width), np.float32)
        raw = raw_buffer([frame], 1, width)
        for k, r in enumerate(rows):
            frame.read_rows(r, r + 1, row, raw)
            grid[k] = row[0, ::step]
        return grid

    return _with_frame(item, hdu=hdu, visit=visit)


def read_block_min(item, step: int, *, hdu=None) -> np.ndarray:
    """The minimum of every ``step`` x ``step`` block of a frame (e.g. a count map, where one
    low value in a block must stay visible), read ``step`` rows at a time."""

    def visit(frame):
        height, width = frame.shape
        blocks_x = len(range(0, width, step))
        grid = np.empty((len(range(0, height, step)), blocks_x), np.float32)
        band = np.empty((step, width), np.float32)
        padded = np.full((step, blocks_x * step), np.inf, np.float32)
        raw = raw_buffer([frame], step, width)
        for k, r in enumerate(range(0, height, step)):
            n = min(step, height - r)
            frame.read_rows(r, r + n, band[:n], raw)
            padded[:n, :width] = band[:n]
            grid[k] = padded[:n].reshape(n, blocks_x, step).min(axis=(0, 2))
        return grid

    return _with_frame(item, hdu=hdu, visit=visit)


def pixel_noise(grid) -> float:
    """Pixel-to-pixel noise of an image: the robust std of the differences between vertically
    neighbouring pixels, over sqrt(2). Smooth structure (gradients, vignetting) and column
    patterns cancel in the differences, so this is the noise that averaging frames reduces."""
    return median_and_robust_std(np.diff(np.asarray(grid, np.float64), axis=0))[1] / math.sqrt(2)
