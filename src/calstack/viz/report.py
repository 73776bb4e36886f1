"""One self-contained HTML page that shows what each master is made of, and which frames look wrong.

For each master: its input frames with their statistics (median, robust std, fraction of the
frame's pixels rejected), a single frame beside the master on the same stretch (the reference
guide's picture), the per-pixel count map, histograms of a frame and of the master, and the
measured noise reduction against the sqrt(N) expectation. Frames that look anomalous
(:mod:`calstack.stacking.anomalies`) are listed at the top.

Design
------
* **Self-contained.** Pictures are PNGs embedded as ``data:`` URIs, the style is inline CSS, and
  there is no script and no external URL: the file can be mailed, archived or opened offline.
* **Memory-bounded.** A master's section is computed when it is added (:meth:`Report.add`) and
  only small results are kept: the per-frame numbers and three PNGs (a few hundred kB). Frames
  are read once each, on a grid of at most :data:`GRID_SIDE` pixels a side
  (:mod:`calstack.io.sampling`), so hundreds of 4096x4096 frames cost about 1 MB each, one at a
  time.
* **Masters in memory or on disk.** :meth:`Report.add` takes a :class:`~calstack.Master` (from
  :func:`calstack.combine`: its data, counts and ``frame_rejected`` are used as they are) or a
  :class:`~calstack.pipeline.groups.BuiltMaster` (from :func:`~calstack.pipeline.groups.combine_groups`): then
  the written master file is re-read on the same grid (its data, and its ``NCOMB`` extension
  block by block), so a job's report needs only the list of what it built and no master stays
  in memory while the next one is combined. Per-frame rejection then comes from
  ``BuiltMaster.frame_rejected``; where it is unknown the report shows "n/a".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..catalog.columns import indexed_frames
from ..errors import OptionError
from ..io.sampling import grid_step, pixel_noise, read_block_min, read_grid
from ..io.writer import OutputExistsError, atomic_write, check_writable
from ..kernels.statistics import expected_noise_reduction, median_and_robust_std
from ..progress import as_progress
from ..stacking.anomalies import GRID_SIDE, flag_frames, is_integer, prepared_grids
from .pictures import draw_histograms, draw_image, new_figure, png_bytes, stretch_limits
from .report_html import render

__all__ = [
    "GRID_SIDE",
    "CameraSection",
    "FrameRow",
    "MasterSection",
    "Report",
    "check_report_path",
    "write_report",
]

#: Frames and masters are looked at on a grid of at most this many pixels a side.
_DPI = 80
_WIDE, _NARROW, _HEIGHT = 10.0, 5.0, 4.2  # figure sizes, inches


@dataclass(frozen=True)
class FrameRow:
    """One input frame of a master, as the report lists it."""

    name: str
    path: str
    median: float
    noise: float  # robust std (1.4826 x MAD) on the grid
    rejected: float | None  # fraction of the frame's pixels rejected; None = unknown
    flags: tuple  # why the frame is anomalous; empty for a normal frame


@dataclass(frozen=True)
class CameraSection:
    """The camera measured by :func:`calstack.pipeline.characterize.characterize`, with its
    photon transfer picture (PNG bytes)."""

    characterized: object  # calstack.pipeline.characterize.Characterized
    picture: bytes


@dataclass(frozen=True)
class MasterSection:
    """What the report shows about one master: numbers and PNG bytes, no image arrays."""

    label: str
    path: str  # the master's file ('' for a master in memory)
    shape: tuple
    keywords: dict  # provenance keywords shown (IMAGETYP, EXPTIME, CMBMETH, ...)
    prepared: str  # what was done to the frames before the combine ('' = nothing)
    frames: tuple  # of FrameRow, in input order
    frame_noise: float  # median over the frames of their robust std
    master_noise: float  # robust std of the master
    frame_pixel_noise: float  # median over the frames of their pixel-to-pixel noise
    master_pixel_noise: float  # pixel-to-pixel noise of the master
    expected_reduction: float | None  # sqrt(N) for an average, sqrt(2N/pi) for a median
    short_blocks: float  # fraction of count-map blocks with a pixel where values were rejected
    step: int  # grid spacing (pixels)
    pictures: dict  # 'compare', 'counts', 'histogram' -> PNG bytes

    @property
    def reduction(self) -> float:
        """Measured noise reduction: a frame's pixel-to-pixel noise over the master's."""
        return _ratio(self.frame_pixel_noise, self.master_pixel_noise)

    @property
    def spread_reduction(self) -> float:
        """A frame's robust std over the master's (fixed structure included)."""
        return _ratio(self.frame_noise, self.master_noise)

    @property
    def flagged(self) -> list:
        """The frames flagged as anomalous."""
        return [row for row in self.frames if row.flags]


def _ratio(a, b) -> float:
    return a / b if b > 0 else math.nan


def check_report_path(path, *, folder=None, overwrite=False) -> Path:
    """Check, before any work, that a report can be written at ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The report's file; its folder is created if needed.
    folder : str or os.PathLike, optional
        The run's output folder (the command line's ``--output-dir``): the report must lie
        inside it, like every other output of the run.
    overwrite : bool
        Whether an existing file may be replaced.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    OptionError
        ``path`` is a folder, or lies outside ``folder``.
    OutputExistsError
        ``path`` exists and not ``overwrite``.
    """
    path = Path(path)
    if path.is_dir():
        raise OptionError(f"--report {path}: is a folder; give the report's file name "
                          "(e.g. night.html) inside it")
    if folder is not None:
        inside = Path(os.path.realpath(folder))
        if inside not in Path(os.path.realpath(path)).parents:
            raise OptionError(f"--report {path}: lies outside the output folder {folder}; every "
                              f"output of a run is written inside it: give "
                              f"{Path(folder) / path.name}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists; pass --overwrite (overwrite=True) to replace "
                                "it, or choose another --report name")
    check_writable(path.parent)
    return path


class Report:
    """An HTML report, built master by master.

    Parameters
    ----------
    title : str
        The page's title.
    progress : bool, str or calstack.progress.Progress
        Show a progress bar over the frames read (see :func:`calstack.progress.as_progress`).

    Examples
    --------
    >>> report = Report()                                     # doctest: +SKIP
    >>> for group in calstack.group_by(darks, "exptime"):    # doctest: +SKIP
    ...     report.add(calstack.combine(group, rejection="sigma_clip"))
    >>> report.write("darks.html")                            # doctest: +SKIP
    """

    def __init__(self, *, title="calstack report", progress=False):
        self.title = title
        self.progress = as_progress(progress)
        self.sections: list[MasterSection] = []
        self.calibrated: list = []  # CalibratedFrame of a reduction, in one table
        self.camera: CameraSection | None = None
        self.defects: list = []  # DefectMask of calstack defects, each its classes counted

    def add_camera(self, characterized) -> CameraSection:
        """Show the camera ``characterize`` measured: gain, read noise, linearity, the flat
        pairs and the photon transfer picture.

        Parameters
        ----------
        characterized : calstack.pipeline.characterize.Characterized

        Returns
        -------
        CameraSection
        """
        from .ptc import photon_transfer_figure

        figure, _ = photon_transfer_figure(list(characterized.amplifiers))
        self.camera = CameraSection(characterized, png_bytes(figure, dpi=_DPI))
        return self.camera

    def add(self, master, *, frames=None, label=None) -> MasterSection:
        """Compute the section of one master now; its frames are read once each, on a grid.

        Parameters
        ----------
        master : Master or BuiltMaster
            A master in memory, or one written by ``combine_groups`` (re-read from its file).
        frames : list, optional
            The input frames in input order (paths, ``(path, hdu)`` pairs, ``CCDData`` or
            arrays). Default: ``master.sources``, or the built master's sources (with their
            HDUs). Give them for a master combined from in-memory frames.
        label : str, optional
            Section heading (default: ``BuiltMaster.label()``, e.g. "dark exptime=90.000", or
            the image type, exposure time and filter of a master's header).

        Returns
        -------
        MasterSection
        """
        from astropy.io import fits

        from ..pipeline.groups import BuiltMaster
        from ..stacking.master import Master

        if isinstance(master, Master):
            header, path = master.meta, ""
            shape = master.data.shape
            data, counts = (master.data, None), (master.ncombine, None)
            sources = master.sources
            rejected = master.frame_rejected
            preparation = master.preparation
            label = label or _header_label(header)
        elif isinstance(master, BuiltMaster):
            path = str(master.path)
            header = fits.getheader(path)
            shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
            data, counts = (path, None), (path, "NCOMB")
            indexed = {item[0]: item for item in indexed_frames(master.group)}
            sources = [indexed.get(source, (source, None)) for source in master.sources]
            rejected = master.frame_rejected or None
            preparation = master.preparation
            label = label or master.label()
        else:
            raise OptionError(f"Report.add takes a calstack Master or a BuiltMaster, not "
                              f"{type(master).__name__}")
        frames = [f if isinstance(f, tuple) else (f, None)
                  for f in (sources if frames is None else frames)]
        _check_frames(label, frames, rejected)
        section = _section(label, path, header, shape, data, counts, frames, rejected,
                           preparation, progress=self.progress)
        self.sections.append(section)
        return section

    def write(self, path, *, overwrite=False) -> Path:
        """Write the page (atomically); returns its path."""
        text = render(self.sections, calibrated=self.calibrated, camera=self.camera,
                      defects=self.defects, title=self.title)
        path = atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"),
                            overwrite=overwrite)
        self.progress.line(f"report: {len(self.sections)} master(s) -> {path}")
        return path


def write_report(path, masters, *, calibrated=(), camera=None, defects=(),
                 title="calstack report", overwrite=False, progress=False) -> Path:
    """Write one self-contained HTML report about ``masters``.

    Parameters
    ----------
    path : str or os.PathLike
        The HTML file (written atomically).
    masters : list of Master or BuiltMaster
        What to report on, e.g. the list :func:`~calstack.pipeline.groups.combine_groups` returns
        (each written master is re-read, one at a time).
    calibrated : list of CalibratedFrame, optional
        Science frames calibrated with them (:func:`calstack.calibrate`): one table.
    camera : Characterized, optional
        The camera measured (:func:`calstack.pipeline.characterize.characterize`): gain, read
        noise and the photon transfer picture.
    defects : list of DefectMask, optional
        Bad-pixel masks (:func:`calstack.pipeline.defects.find_defects`): their classes
        counted.
    title : str
        The page's title.
    overwrite : bool
        Replace an existing file.
    progress : bool, str or calstack.progress.Progress
        Show progress while frames are read.

    Returns
    -------
    pathlib.Path
    """
    check_report_path(path, overwrite=overwrite)
    report = Report(title=title, progress=progress)
    for master in masters:
        report.add(master)
    report.calibrated = list(calibrated)
    if camera is not None:
        report.add_camera(camera)
    report.defects = list(defects)
    return report.write(path, overwrite=overwrite)


# --------------------------------------------------------------------------- computing
def _header_label(header) -> str:
    parts = [str(header.get("IMAGETYP", "")).strip().lower()]
    exptime = header.get("EXPTIME")
    if isinstance(exptime, (int, float)) and not isinstance(exptime, bool):
        parts.append(f"exptime={exptime:g}")
    if str(header.get("FILTER", "")).strip():
        parts.append(f"filter={str(header['FILTER']).strip()}")
    return " ".join(p for p in parts if p) or "master"


def _check_frames(label, frames, rejected):
    if not frames:
        raise OptionError(f"{label}: the master names no input frames; pass frames= (its "
                          "inputs, in input order) to Report.add")
    if rejected is not None and len(rejected) != len(frames):
        raise OptionError(f"{label}: {len(frames)} frames given for a master of "
                          f"{len(rejected)}; pass the frames it was combined from, in order")
    for source, *_ in frames:
        if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
            raise OptionError(f"{label}: input frame {os.fspath(source)!r} is not a file; pass "
                              "frames= (what it was combined from, in order) to Report.add")


def _path(source) -> str:
    """A frame's file, or the type of an in-memory frame."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return type(source).__name__


def _name(source) -> str:
    return os.path.basename(_path(source))


def _prepared(preparation) -> str:
    """How the frames were prepared before the combine, in words ('' if they were not)."""
    if preparation is None:
        return ""
    steps = [("bias subtracted", preparation.bias is not None),
             ("dark subtracted", preparation.dark is not None),
             ("scaled", preparation.scale is not None),
             ("offset", preparation.zero is not None)]
    return ", ".join(text for text, done in steps if done)


def _section(label, path, header, shape, data, counts, frames, rejected, preparation, *,
             progress):
    step = grid_step(shape, GRID_SIDE)
    master = read_grid(data[0], step, hdu=data[1])
    kept = read_block_min(counts[0], step, hdu=counts[1])
    stats, first, integer = [], None, True
    with progress.task(f"report {label}", total=len(frames), unit="frame") as task:
        grids = prepared_grids(frames, preparation, shape)  # as combined
        for (source, *_), grid in zip(frames, grids, strict=True):
            if grid.shape != master.shape:
                raise OptionError(f"{label}: frame {_name(source)} is not the size of the "
                                  "master; pass the frames it was combined from")
            first = grid if first is None else first
            stats.append((*median_and_robust_std(grid), pixel_noise(grid)))
            integer = integer and is_integer(grid)
            task.update()
    medians, noises, pixel_noises = (np.array(values) for values in zip(*stats, strict=True))
    flags = flag_frames(medians, noises, rejected, integer=integer, measured=master.size,
                        n_pixels=int(np.prod(shape)))
    rows = tuple(FrameRow(name=_name(source), path=_path(source),
                          median=float(medians[i]), noise=float(noises[i]),
                          rejected=None if rejected is None else float(rejected[i]),
                          flags=flags[i])
                 for i, (source, *_) in enumerate(frames))
    n = len(frames)
    keywords = {k: header[k] for k in ("IMAGETYP", "EXPTIME", "FILTER", "NCOMBINE", "CMBMETH",
                                       "CMBREJ", "CMBAUTO", "CMBSLOW", "CMBSHIGH", "CMBREJFR",
                                       "BUNIT", "VERIFIED", "VERFAIL")
                if k in header}
    prepared = _prepared(preparation)
    return MasterSection(
        label=label, path=path, shape=tuple(shape), keywords=keywords, prepared=prepared,
        frames=rows,
        frame_noise=float(np.median(noises)), master_noise=median_and_robust_std(master)[1],
        frame_pixel_noise=float(np.median(pixel_noises)), master_pixel_noise=pixel_noise(master),
        expected_reduction=expected_noise_reduction(str(header.get("CMBMETH", "")).strip(), n),
        short_blocks=float(np.mean(kept < n)), step=step,
        pictures=_pictures(first, rows[0].name, prepared, master, kept, shape, n, step))


def _pictures(first, first_name, prepared, master, kept, shape, n, step) -> dict:
    vmin, vmax = stretch_limits(first, "zscale")
    compare = new_figure((_WIDE, _HEIGHT))
    single = f"Single frame ({prepared})" if prepared else "Single frame"
    for k, (image, title) in enumerate(((first, f"{single}\n{first_name}"),
                                        (master, f"Master of {n} frames"))):
        draw_image(compare, compare.add_subplot(1, 2, k + 1), image, shape, vmin, vmax,
                   title=title)
    compare.tight_layout()
    counts = new_figure((_NARROW, _HEIGHT))
    draw_image(counts, counts.add_subplot(), kept, shape, 0, n, cmap="viridis",
               title=f"Values kept per pixel (of {n})" + (f"\nminimum over {step}x{step} blocks"
                                                          if step > 1 else ""),
               label="values kept")
    counts.tight_layout()
    histogram = new_figure((_NARROW, _HEIGHT))
    draw_histograms(histogram.add_subplot(), [first, master], [first_name, "master"], vmin, vmax,
                    title="Single frame vs master")
    histogram.tight_layout()
    return {name: png_bytes(figure, dpi=_DPI)
            for name, figure in (("compare", compare), ("counts", counts),
                                 ("histogram", histogram))}


# --------------------------------------------------------------------------- rendering
