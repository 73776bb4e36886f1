"""Tile planning: from a memory limit and the frames' geometry to bands of rows (pure, no I/O).

The memory model counts everything a combine allocates:

* the whole-image outputs: data and uncertainty (``out_itemsize`` each), count (int16) and
  mask (bool) — ``2 * out_itemsize + 3`` bytes per pixel;
* per band of rows: the stack of N frames in the working dtype, plus one raw read buffer per
  reader thread for frames that need conversion (integer data, scaling, masks), and
  per-pixel weights or ``grow``'s marks; with ``grow`` each band is read with a halo of rows
  above and below it;
* what the frames hold between reads whatever the band: the state of each ``.gz`` frame's
  stream (:attr:`calstack.io.reader.Frame.held_bytes`);
* a fixed headroom for Python objects and thread scratch.

A band of rows is contiguous on disk, so each frame's part of a tile is one read. A band holds
at most about :data:`BAND_BYTES` (fewer rows if the limit says so): a larger band is no faster,
and every page of a freshly allocated band costs a page fault.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import OptionError

__all__ = [
    "BAND_BYTES",
    "HEADROOM",
    "TilePlan",
    "format_bytes",
    "parse_mem_limit",
    "plan_tiles",
]


#: Bytes kept aside for interpreter objects, thread stacks and kernel scratch.
HEADROOM = 8 * 1024**2

#: The size of a band the planner aims at (stack and conversion buffers): enough rows that the
#: reads are long and the kernel's threads have work, few enough that the band's pages stay in
#: the buffers a run reuses rather than being faulted in anew (issue 18).
BAND_BYTES = 64 * 1024**2

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_mem_limit(value) -> int:
    """Return a memory limit in bytes.

    Parameters
    ----------
    value : int, float or str
        Bytes as a number (``350e6``) or a string with a unit: ``"350MB"``, ``"1.5 GiB"``,
        ``"500M"`` (k, M, G, T are powers of 1000; KiB, MiB, GiB, TiB of 1024).

    Raises
    ------
    OptionError
        If the value is not a positive size.
    """
    if isinstance(value, bool):
        raise OptionError(f"mem_limit={value!r} is not a size; give bytes or a string like '350MB'")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = _PATTERN.match(str(value))
        if not match or match.group(2).lower() not in _UNITS:
            raise OptionError(
                f"mem_limit={value!r} is not a size; give bytes or a number with a unit "
                "(B, kB, MB, GB, KiB, MiB, GiB), e.g. '350MB'"
            )
        number, unit = float(match.group(1)), match.group(2).lower()
    size = number * _UNITS[unit]
    if not math.isfinite(size) or size < 1:
        raise OptionError(f"mem_limit={value!r} must be a positive size, e.g. '350MB'")
    return int(size)


def format_bytes(n: float) -> str:
    """Human-readable size in decimal units (``'350.0 MB'``)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


@dataclass(frozen=True)
class TilePlan:
    """How a stack is cut into bands of rows to stay within a memory limit."""

    shape: tuple[int, int]
    n_frames: int
    rows_per_tile: int
    mem_limit: int
    output_bytes: int
    bytes_per_row: int
    halo: int = 0
    held_bytes: int = 0  # what the frames hold between reads (gzip streams)

    @property
    def tiles(self) -> list[tuple[int, int]]:
        """``(first_row, end_row)`` of every tile, top to bottom."""
        height = self.shape[0]
        return [(r, min(r + self.rows_per_tile, height)) for r in range(0, height, self.rows_per_tile)]

    @property
    def rows_read(self) -> int:
        """The most rows read for one tile: its own and ``halo`` above and below it."""
        return min(self.rows_per_tile + 2 * self.halo, self.shape[0])

    def read_range(self, start: int, stop: int) -> tuple[int, int]:
        """``(first_row, end_row)`` read for the tile ``start:stop``: with ``halo`` rows above
        and below it, within the image."""
        return max(0, start - self.halo), min(self.shape[0], stop + self.halo)

    @property
    def estimated_peak(self) -> int:
        """Bytes the combine is expected to allocate at most (outputs + one tile as read +
        headroom)."""
        return (self.output_bytes + self.held_bytes + self.rows_read * self.bytes_per_row
                + HEADROOM)

    def describe(self) -> str:
        """One line for logs: tiles, rows per tile and the memory estimate against the limit."""
        return (
            f"{self.n_frames} frames of {self.shape[0]}x{self.shape[1]}: {len(self.tiles)} tile(s) "
            f"of {self.rows_per_tile} rows; estimated peak {format_bytes(self.estimated_peak)} "
            f"of mem_limit {format_bytes(self.mem_limit)}"
        )


def plan_tiles(
    *,
    shape: tuple[int, int],
    n_frames: int,
    mem_limit: int,
    stack_itemsize: int,
    raw_itemsize: int,
    out_itemsize: int,
    n_readers: int,
    extra_bytes_per_pixel: int = 0,
    halo: int = 0,
    held_bytes: int = 0,
) -> TilePlan:
    """Plan bands of rows so that a combine's allocations stay under ``mem_limit`` bytes.

    Parameters
    ----------
    shape : (int, int)
        Height and width of every frame.
    n_frames : int
        Number of frames in the stack.
    mem_limit : int
        The limit in bytes.
    stack_itemsize : int
        Bytes per value of the working stack (4 for float32).
    raw_itemsize : int
        Bytes per pixel of a reader's conversion buffer (0 when frames are read in place).
    out_itemsize : int
        Bytes per pixel of the combined data (and of its uncertainty).
    n_readers : int
        Reader threads, each with its own conversion buffer.
    extra_bytes_per_pixel : int
        Further bytes per pixel of a tile (per-pixel weights, ``grow``'s marks).
    halo : int
        Rows read above and below each tile besides its own (``grow``).
    held_bytes : int
        Bytes the frames hold between reads, whatever the tile (gzip streams).

    Raises
    ------
    OptionError
        If even one row per tile does not fit, with the smallest limit that would.
    """
    height, width = shape
    output_bytes = height * width * (2 * out_itemsize + 2 + 1)
    bytes_per_row = width * (n_frames * stack_itemsize + n_readers * raw_itemsize
                             + extra_bytes_per_pixel)
    rows = (mem_limit - output_bytes - held_bytes - HEADROOM) // bytes_per_row - 2 * halo
    if rows < 1:
        needed = output_bytes + held_bytes + (1 + 2 * halo) * bytes_per_row + HEADROOM
        raise OptionError(
            f"mem_limit={format_bytes(mem_limit)} is too small for {n_frames} frames of "
            f"{height}x{width}: the outputs alone take {format_bytes(output_bytes)}; "
            f"give at least mem_limit='{math.ceil(needed / 1e5) / 10:g}MB'"
        )
    return TilePlan(
        shape=(height, width),
        n_frames=n_frames,
        rows_per_tile=int(min(rows, max(1, BAND_BYTES // bytes_per_row), height)),
        mem_limit=mem_limit,
        output_bytes=output_bytes,
        bytes_per_row=bytes_per_row,
        halo=halo,
        held_bytes=held_bytes,
    )
