"""The reference guide's picture: frames side by side on one robust stretch, as a PNG.

Drawn with matplotlib's Agg canvas (no pyplot state, no display needed) and written atomically.
:func:`show` is ``calstack show``; the drawing helpers (:func:`new_figure`, :func:`draw_image`,
:func:`draw_histograms`, :func:`png_bytes`) also draw the report's pictures.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from ..errors import FrameError, OptionError
from ..io.writer import atomic_write, check_writable

__all__ = [
    "STRETCHES",
    "draw_histograms",
    "draw_image",
    "frame_title",
    "new_figure",
    "png_bytes",
    "show",
    "stretch_limits",
    "symmetric_limits",
]

STRETCHES = ("zscale", "percentile", "minmax")
_MAX_PIXELS = 1500  # a side longer than this is subsampled for display
_DIFF_CMAP = "RdBu_r"  # a diverging map: zero is white, positive red, negative blue
_HIST_BINS = 120


def _load(frame):
    """(data, header or None, name) of a path, CCDData or array."""
    from astropy.io import fits
    from astropy.nddata import CCDData

    if isinstance(frame, CCDData):
        return np.asarray(frame.data, dtype=np.float64), fits.Header(frame.meta), "CCDData"
    if isinstance(frame, np.ndarray):
        return frame.astype(np.float64), None, "array"
    path = Path(frame)
    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = next((h for h in hdul if h.data is not None and h.data.ndim == 2), None)
            if hdu is None:
                raise FrameError(path, "has no 2-D image to show")
            return hdu.data.astype(np.float64), hdu.header.copy(), path.name
    except OSError as exc:
        raise FrameError(path, f"cannot be read: {exc}") from exc


def _downsample(data):
    """Every k-th pixel, so that no side exceeds the display size. Subsampling keeps a single
    frame's pixel noise visible; block averaging would smooth it away and make the single frame
    look as clean as the master."""
    step = math.ceil(max(data.shape) / _MAX_PIXELS)
    return data[::step, ::step] if step > 1 else data


def _check_stretch(stretch):
    if stretch not in STRETCHES:
        raise OptionError(f"stretch={stretch!r} is not valid; allowed values: "
                          f"{', '.join(map(repr, STRETCHES))}")


def stretch_limits(data, stretch="zscale", percentiles=(1.0, 99.5)):
    """Display limits ``(vmin, vmax)`` of ``data`` for a stretch.

    Parameters
    ----------
    data : numpy.ndarray
        The image; non-finite values are ignored.
    stretch : {'zscale', 'percentile', 'minmax'}
        IRAF's zscale, a percentile interval, or the full range.
    percentiles : (float, float)
        Lower and upper percentiles for ``'percentile'``.
    """
    from astropy.visualization import AsymmetricPercentileInterval, MinMaxInterval, ZScaleInterval

    _check_stretch(stretch)
    values = data[np.isfinite(data)]
    if values.size == 0:
        return 0.0, 1.0
    interval = {"zscale": ZScaleInterval(),
                "percentile": AsymmetricPercentileInterval(*percentiles),
                "minmax": MinMaxInterval()}[stretch]
    vmin, vmax = interval.get_limits(values)
    return float(vmin), float(vmax) if vmax > vmin else float(vmin) + 1.0


def symmetric_limits(data, stretch="zscale", percentiles=(1.0, 99.5)):
    """Limits ``(-v, v)`` around zero for a difference image: ``v`` is the larger magnitude of
    the stretch's limits (so zero is the middle of the colour map)."""
    vmin, vmax = stretch_limits(data, stretch, percentiles)
    half = max(abs(vmin), abs(vmax)) or 1.0
    return -half, half


def frame_title(header, name) -> str:
    """A panel title from a header, like the guide's ("10 dark images combined", "Single
    calibrated dark"), with a second line: the file name, exposure time and filter."""
    if header is None:
        return name
    kind = str(header.get("IMAGETYP", "")).strip().lower() or "frame"
    if header.get("COMBINED") and header.get("NCOMBINE"):
        head = f"{header['NCOMBINE']} {kind} images combined"
    elif "IMAGETYP" in header and kind != "frame":
        head = f"Single calibrated {kind}"
    else:
        return name
    details = [name]
    exptime = header.get("EXPTIME")
    if isinstance(exptime, (int, float)) and not isinstance(exptime, bool):
        details.append(f"{exptime:g} s")
    if str(header.get("FILTER", "")).strip():
        details.append(f"filter {str(header['FILTER']).strip()}")
    return f"{head}\n{', '.join(details)}"


def new_figure(figsize):
    """A matplotlib ``Figure`` on an Agg canvas (no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure


def draw_image(figure, ax, image, shape, vmin, vmax, *, cmap="gray", title="", label=None):
    """Draw ``image`` (possibly a subsampled grid of a frame of ``shape``) with a colour bar,
    axes in the frame's own pixels."""
    extent = (-0.5, shape[1] - 0.5, -0.5, shape[0] - 0.5)
    shown = ax.imshow(image, vmin=vmin, vmax=vmax, cmap=cmap, origin="lower",
                      interpolation="nearest", extent=extent)
    bar = figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    if label:
        bar.set_label(label)
    ax.set_title(title)
    return shown


def _bins(values, vmin, vmax):
    """Common bins around the display range; whole counts stay whole (no empty comb bins)."""
    width = vmax - vmin
    low, high = vmin - width / 2, vmax + width / 2
    if values.size and np.all(values == np.round(values)):
        size = max(1, math.ceil((high - low) / _HIST_BINS))
        return np.arange(math.floor(low) - 0.5, math.ceil(high) + 0.5 + size, size)
    return np.linspace(low, high, _HIST_BINS + 1)


def draw_histograms(ax, images, labels, vmin, vmax, *, title="Histogram"):
    """Histograms of ``images`` on common bins around the display range ``vmin..vmax`` (marked
    by dashed lines), log counts: a master's distribution is narrower than a frame's. Bins are
    whole counts wide when the first image holds whole numbers (raw frames)."""
    finite = [v[np.isfinite(v)] for v in (np.asarray(image, np.float64) for image in images)]
    bins = _bins(finite[0], vmin, vmax)
    for values, label in zip(finite, labels, strict=True):
        ax.hist(values, bins=bins, histtype="step", linewidth=1.4, label=label)
    for limit in (vmin, vmax):
        ax.axvline(limit, color="0.5", linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("value (dashed: display range)")
    ax.set_ylabel("pixels")
    ax.set_title(title)
    ax.legend(fontsize="small")


def png_bytes(figure, *, dpi=80) -> bytes:
    """The figure as PNG bytes with a 256-colour palette (a third of the size of RGBA for
    noisy images; grey-scale pictures lose nothing)."""
    from PIL import Image

    figure.set_dpi(dpi)
    figure.canvas.draw()
    rgb = Image.fromarray(np.asarray(figure.canvas.buffer_rgba())[..., :3])
    buffer = io.BytesIO()
    rgb.quantize(256).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def show(frames, output, *, titles=None, stretch="zscale", percentiles=(1.0, 99.5), cmap=None,
         diff=False, hist=False, figsize=None, dpi=100) -> Path:
    """Draw frames side by side on the stretch of the first one, each with a colour bar.

    Parameters
    ----------
    frames : list
        FITS paths, ``CCDData`` objects or 2-D arrays (e.g. a single frame and its master).
    output : str or os.PathLike
        PNG file to write (atomically).
    titles : list of str, optional
        Panel titles (one per image panel); the default reads the header, like the guide:
        "Single calibrated dark", "10 dark images combined", with the file name, exposure time
        and filter on a second line.
    stretch : {'zscale', 'percentile', 'minmax'}
        How display limits are found (on the first frame, then shared by all panels).
    percentiles : (float, float)
        Limits for ``stretch='percentile'``.
    cmap : str, optional
        Matplotlib colour map (default ``'gray'``; ``'RdBu_r'`` for ``diff``).
    diff : bool
        Show the first frame minus the second (e.g. master minus a frame) in one panel, on a
        stretch symmetric around zero; needs exactly two frames of one shape.
    hist : bool
        Add a panel with the histograms of the images shown, on the display range.
    figsize : (float, float), optional
        Figure size in inches (default 6 per panel by 5.5).
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    pathlib.Path
        The picture written.
    """
    _check_stretch(stretch)
    check_writable(Path(output).parent)  # before the work: created if missing, or one line
    loaded = [_load(f) for f in frames]
    if not loaded:
        raise OptionError("show needs at least one frame")
    if diff:
        loaded = [_difference(loaded)]
    if titles is not None and len(titles) != len(loaded):
        raise OptionError(f"{len(titles)} titles for {len(loaded)} "
                          f"{'difference panel' if diff else 'frames'}; give one per panel")
    images = [_downsample(data) for data, _, _ in loaded]
    if diff:
        vmin, vmax = symmetric_limits(images[0], stretch, percentiles)
    else:
        vmin, vmax = stretch_limits(images[0], stretch, percentiles)
    panels = len(images) + bool(hist)
    figure = new_figure(figsize or (6.0 * panels, 5.5))
    names = []
    for k, (image, (data, header, name)) in enumerate(zip(images, loaded, strict=True)):
        ax = figure.add_subplot(1, panels, k + 1)
        draw_image(figure, ax, image, data.shape, vmin, vmax,
                   cmap=cmap or (_DIFF_CMAP if diff else "gray"),
                   title=titles[k] if titles else frame_title(header, name))
        names.append(name)
    if hist:
        draw_histograms(figure.add_subplot(1, panels, panels), images, names, vmin, vmax)
    figure.tight_layout()
    return atomic_write(output, lambda tmp: figure.savefig(tmp, format="png", dpi=dpi),
                        overwrite=True)


def _difference(loaded):
    """(first - second, no header, 'A minus B') of two loaded frames."""
    if len(loaded) != 2:
        raise OptionError(f"diff shows the first frame minus the second: give exactly 2 frames, "
                          f"not {len(loaded)}")
    (a, _, name_a), (b, _, name_b) = loaded
    if a.shape != b.shape:
        raise OptionError(f"diff: {name_a} is {a.shape[0]}x{a.shape[1]} but {name_b} is "
                          f"{b.shape[0]}x{b.shape[1]}; give two frames of one size")
    return a - b, None, f"{name_a} minus {name_b}"
