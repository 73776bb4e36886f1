"""``calstack reduce NIGHT -o OUT``: a whole night from raw frames to calibrated science frames.

First the raw calibration frames are overscan-subtracted and trimmed (where a frame's header
has BIASSEC and TRIMSEC/DATASEC, or as the options say) into ``OUT/processed``, as IRAF's
``ccdproc`` processes every frame before combining; then the masters are built from them
(:func:`calstack.build_night` into ``OUT/masters``: the bias subtracted from darks and flats,
the dark from flats, where the night has them); then every science frame is calibrated with the
masters chosen for it (:func:`calstack.calibrate` into ``OUT/calibrated``; overscan and trim
applied as its rows are read). Masters already in the night's folder are not inputs (nor used).
Every check that needs no master runs before the first file is written: the science frames and
their outputs, their gain and read noise, the processed copies' names, the masters' names. A
science frame that finds no master it needs is an error once the masters are written (each
complete; they stay), before any science frame is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..catalog.conventions import kind_of
from ..catalog.index import ImageIndex
from ..errors import OptionError
from ..io.reader import open_frame, read_bands
from ..io.writer import BandFile, OutputExistsError, atomic_write, check_writable
from ..processing.camera import camera_defaults, read_camera
from ..processing.frames import AUTO, AmplifierFrame, ProcessedFrame, processed
from .calibrate import INDEX_KEYWORDS, calibrate, plan_outputs
from .night import build_night

__all__ = ["Reduced", "process_frames", "reduce_night"]

log = logging.getLogger("calstack")

_BAND_ROWS = 512


class Reduced(NamedTuple):
    """What a night's reduction wrote: the masters, and the calibrated frames."""

    masters: list
    frames: list


def process_frames(rows, folder, *, overscan=AUTO, trim=AUTO, overscan_fit=None,
                   amplifiers=(), overwrite=False) -> list[Path]:
    """Write each frame of ``rows`` (index rows) overscan-subtracted and trimmed into ``folder``
    (same file names, float32; a multi-extension file stays one, each extension processed
    by its own sections; a frame read out by the several ``amplifiers`` of a camera file put
    together from them), its header recording it; none is written when no frame needs it.

    Returns
    -------
    list of pathlib.Path
        The files written (empty when nothing was to be done).
    """
    files: dict[str, list] = {}
    for row in rows:
        files.setdefault(str(row["path"]), []).append(row)
    fit = overscan_fit or {}
    opened = {}
    try:
        for path, hdus in files.items():
            frames = []
            for row in hdus:
                frame = open_frame((path, int(row["hdu"])))
                frames.append(frame)  # closed below, whatever happens
                frames[-1] = processed(frame, frame.header(), path, overscan=overscan,
                                       trim=trim, amplifiers=amplifiers, **fit)
            opened[path] = frames
        if not any(isinstance(f, (ProcessedFrame, AmplifierFrame)) for fs in opened.values()
                   for f in fs):
            return []
        _warn_disagreeing(opened)
        folder = check_writable(folder)
        targets = _processed_targets(folder, list(opened), overwrite)
        return [_write_processed(target, files[path], frames, overwrite)
                for target, (path, frames) in zip(targets, opened.items(), strict=True)]
    finally:
        for frames in opened.values():
            for frame in frames:
                frame.close()


def _processed_targets(folder, paths, overwrite) -> list[Path]:
    """Each frame's processed copy in ``folder`` (its file name), once none is another's, or
    exists without ``overwrite``: checked before the first is written."""
    targets = [folder / Path(path).name for path in paths]
    seen = {}
    for path, target in zip(paths, targets, strict=True):
        if target in seen:
            raise OptionError(f"{seen[target]} and {path} would both be processed into "
                              f"{target}; give frames of different file names (e.g. index "
                              "one folder at a time)")
        seen[target] = path
        if target.exists() and not overwrite:
            raise OutputExistsError(f"{target}: exists; pass overwrite=True (--overwrite) to "
                                    "replace it")
    return targets


def _warn_disagreeing(opened) -> None:
    """Frames of one raw size whose overscan or trim sections differ: allowed (each frame is
    processed by its own), but rarely meant (a keyword edited, another readout); say which."""
    seen = {}
    for path, frames in opened.items():
        for number, frame in enumerate(frames):
            steps = frame.processing if isinstance(frame, ProcessedFrame) else None
            inner = frame.frame if isinstance(frame, (ProcessedFrame, AmplifierFrame)) else frame
            sections = (None if steps is None or steps.overscan is None
                        else steps.overscan.section.fits(),
                        None if steps is None or steps.trim is None else steps.trim.fits())
            first = seen.setdefault((inner.shape, number), (path, sections))
            if first[1] != sections:
                log.warning("%s: overscan/trim sections %s differ from %s's %s, a frame of the "
                            "same size; each is processed by its own: check the BIASSEC/TRIMSEC "
                            "keywords, or give --overscan and --trim", path, sections, first[0],
                            first[1])


def _write_processed(target, rows, frames, overwrite) -> Path:
    single = len(rows) == 1 and int(rows[0]["hdu"]) == 0
    headers = []
    for frame in frames:
        header = frame.header()
        raw = isinstance(frame, (ProcessedFrame, AmplifierFrame))
        for key, value, comment in (frame.cards() if raw else ()):
            header[key] = (value, comment)
        headers.append(header)
    if single:
        layout = [(headers[0], np.float32, frames[0].shape, None, None)]
    else:
        first = frames[0]
        layout = [((first.frame if isinstance(first, (ProcessedFrame, AmplifierFrame))
                    else first).primary_header(), np.float32, None, None, None)]
        layout += [(h, np.float32, f.shape, row.get("extname"), h.get("EXTVER"))
                   for row, h, f in zip(rows, headers, frames, strict=True)]

    def write(tmp):
        with BandFile(tmp, layout) as out:
            for number, frame in enumerate(frames):
                for start, band in read_bands(frame, _BAND_ROWS):
                    out.write_rows(number if single else number + 1, start, band)
                frame.verify()

    return atomic_write(target, write, overwrite=overwrite)


def reduce_night(index, output_dir, *, tolerances=None, overwrite=False, mem_limit="1GB",
                 on_master=None, on_frame=None, also_writes=(), calibrate_options=None,
                 **master_options) -> Reduced:
    """Build a night's masters and calibrate its science frames with them.

    Parameters
    ----------
    index : ImageIndex
        The night's frames: biases, darks, flats and science frames, raw or not.
    output_dir : str or os.PathLike
        ``processed/`` (raw calibration frames overscan-subtracted and trimmed, where they
        need it), ``masters/`` and ``calibrated/`` are written in it.
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
        ``saturation``, ``electrons``, ``cosmic_rays``, ``overscan``, ``trim``,
        ``overscan_fit``, ``template``, ``camera``), the overscan ones for the calibration
        frames too, the camera's gain and read noise for the combines' noise model.
    **master_options
        Options of :func:`calstack.build_night` (``group_by``, the combine options...); its
        ``client`` calibrates the science frames on the cluster too.

    Returns
    -------
    Reduced
    """
    output_dir = Path(output_dir)
    options = dict(calibrate_options or {})
    if options.get("camera") is not None:  # read once, for all three steps
        options["camera"] = read_camera(options["camera"])
    given = camera_defaults(options.get("camera"), **{
        k: options.get(k, AUTO if k in ("overscan", "trim") else None)
        for k in ("gain", "read_noise", "saturation", "overscan", "trim")})
    for name in ("gain", "read_noise"):  # the camera's noise model for the combines too
        if master_options.get(name) is None and given[name] is not None:
            master_options[name] = given[name]
    plan_outputs(index, output_dir / "calibrated", template=options.get("template", "{name}"),
                 overwrite=overwrite, gain=given["gain"], read_noise=given["read_noise"],
                 amplifiers=given["amplifiers"],
                 extensions=given["extensions"])  # before any master is built
    rows = [row for row in index.rows() if not row.get("master") and not row.get("error")]
    science = [kind_of(row.get("imagetyp")) == "light" for row in rows]
    calibration = [row for row, s in zip(rows, science, strict=True) if not s]
    processed = process_frames(calibration, output_dir / "processed", overwrite=overwrite,
                               overscan_fit=options.get("overscan_fit"),
                               **{k: given[k] for k in ("overscan", "trim", "amplifiers")})
    frames_index = (ImageIndex([str(p) for p in processed], keywords=INDEX_KEYWORDS,
                               cache=False) if processed
                    else index.subset([kind_of(r.get("imagetyp")) != "light"
                                       for r in index.rows()]))
    kinds = {kind_of(row.get("imagetyp")) for row in calibration}
    bias = "bias" in kinds
    masters = build_night(frames_index, output_dir / "masters", tolerances=tolerances,
                          subtract_bias=bias, subtract_dark=bias and "dark" in kinds,
                          overwrite=overwrite, mem_limit=mem_limit, on_master=on_master,
                          also_writes=also_writes, **master_options)
    frames = calibrate(index, output_dir / "masters", output_dir / "calibrated",
                       tolerances=tolerances, overwrite=overwrite, mem_limit=mem_limit,
                       on_frame=on_frame, client=master_options.get("client"), **options)
    return Reduced(masters, frames)
