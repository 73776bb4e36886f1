"""``calstack reduce NIGHT -o OUT``: a whole night from raw frames to calibrated science frames.

The masters first (:func:`calstack.build_night` into ``OUT/masters``: the bias subtracted from
darks and flats, the dark from flats, where the night has them), then every science frame
calibrated with the masters chosen for it (:func:`calstack.calibrate` into
``OUT/calibrated``). Masters already in the night's folder are not inputs (nor used). A science
frame that finds no master it needs is an error once the masters are written (each complete;
they stay), before any science frame is.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..catalog.conventions import kind_of
from .calibrate import calibrate
from .night import build_night

__all__ = ["Reduced", "reduce_night"]


class Reduced(NamedTuple):
    """What a night's reduction wrote: the masters, and the calibrated frames."""

    masters: list
    frames: list


def reduce_night(index, output_dir, *, tolerances=None, overwrite=False, mem_limit="1GB",
                 on_master=None, on_frame=None, also_writes=(), calibrate_options=None,
                 **master_options) -> Reduced:
    """Build a night's masters and calibrate its science frames with them.

    Parameters
    ----------
    index : ImageIndex
        The night's frames: biases, darks, flats and science frames.
    output_dir : str or os.PathLike
        ``masters/`` and ``calibrated/`` are written in it.
    tolerances : dict, optional
        Per-keyword tolerances of grouping and of matching masters to frames.
    overwrite : bool
        Replace existing masters and calibrated frames.
    mem_limit : str or int
        Memory limit of each combine, and of the calibration's bands.
    on_master, on_frame : callable, optional
        Called with each master (:class:`~calstack.pipeline.groups.BuiltMaster`) and each
        calibrated frame (:class:`~calstack.pipeline.calibrate.CalibratedFrame`) when written.
    also_writes : sequence of path
        Other files the run writes (the report).
    calibrate_options : dict, optional
        Options of :func:`calstack.calibrate` (``allow_missing``, ``gain``, ``read_noise``,
        ``saturation``, ``electrons``, ``template``).
    **master_options
        Options of :func:`calstack.build_night` (``group_by``, the combine options...).

    Returns
    -------
    Reduced
    """
    output_dir = Path(output_dir)
    rows = index.rows()
    kinds = {kind_of(row.get("imagetyp")) for row in rows if not row.get("master")}
    bias = "bias" in kinds
    science = [kind_of(row.get("imagetyp")) == "light" for row in rows]
    masters = build_night(index.subset([not s for s in science]), output_dir / "masters", tolerances=tolerances,
                          subtract_bias=bias, subtract_dark=bias and "dark" in kinds,
                          overwrite=overwrite, mem_limit=mem_limit, on_master=on_master,
                          also_writes=also_writes, **master_options)
    frames = calibrate(index, output_dir / "masters", output_dir / "calibrated",
                       tolerances=tolerances, overwrite=overwrite, mem_limit=mem_limit,
                       on_frame=on_frame, **(calibrate_options or {}))
    return Reduced(masters, frames)
