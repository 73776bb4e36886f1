"""The reference guide's picture: frames side by side on one robust stretch, as a PNG.

Drawn with matplotlib's Agg canvas (no pyplot state, no display needed) and written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import FrameError, OptionError
from .writer import atomic_write

__all__ = ["show", "stretch_limits", "STRETCHES"]

STRETCHES = ("zscale", "percentile", "minmax")
_MAX_PIXELS = 1500  # a side longer than this is subsampled for display


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

    if stretch not in STRETCHES:
        raise OptionError(f"stretch={stretch!r} is not valid; allowed values: "
                          f"{', '.join(map(repr, STRETCHES))}")
    values = data[np.isfinite(data)]
    if values.size == 0:
        return 0.0, 1.0
    interval = {"zscale": ZScaleInterval(),
                "percentile": AsymmetricPercentileInterval(*percentiles),
                "minmax": MinMaxInterval()}[stretch]
    vmin, vmax = interval.get_limits(values)
    return float(vmin), float(vmax) if vmax > vmin else float(vmin) + 1.0


def _title(header, name):
    if header is None:
        return name
    kind = str(header.get("IMAGETYP", "")).strip().lower() or "frame"
    if header.get("COMBINED") and header.get("NCOMBINE"):
        return f"{header['NCOMBINE']} {kind} images combined"
    if "IMAGETYP" in header:
        return f"Single calibrated {kind}" if kind != "frame" else name
    return name


def show(frames, output, *, titles=None, stretch="zscale", percentiles=(1.0, 99.5), cmap="gray",
         figsize=None, dpi=100) -> Path:
    """Draw frames side by side on the stretch of the first one, each with a colour bar.

    Parameters
    ----------
    frames : list
        FITS paths, ``CCDData`` objects or 2-D arrays (e.g. a single frame and its master).
    output : str or os.PathLike
        PNG file to write (atomically).
    titles : list of str, optional
        Panel titles; the default reads the header, like the guide: "Single calibrated dark",
        "10 dark images combined".
    stretch : {'zscale', 'percentile', 'minmax'}
        How display limits are found (on the first frame, then shared by all panels).
    percentiles : (float, float)
        Limits for ``stretch='percentile'``.
    cmap : str
        Matplotlib colour map.
    figsize : (float, float), optional
        Figure size in inches (default 6 per panel by 5.5).
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    pathlib.Path
        The picture written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if stretch not in STRETCHES:
        raise OptionError(f"stretch={stretch!r} is not valid; allowed values: "
                          f"{', '.join(map(repr, STRETCHES))}")
    loaded = [_load(f) for f in frames]
    if not loaded:
        raise OptionError("show needs at least one frame")
    if titles is not None and len(titles) != len(loaded):
        raise OptionError(f"{len(titles)} titles for {len(loaded)} frames; give one per frame")
    images = [_downsample(data) for data, _, _ in loaded]
    vmin, vmax = stretch_limits(images[0], stretch, percentiles)
    figure = Figure(figsize=figsize or (6.0 * len(images), 5.5))
    FigureCanvasAgg(figure)
    for k, (image, (data, header, name)) in enumerate(zip(images, loaded)):
        ax = figure.add_subplot(1, len(images), k + 1)
        extent = (-0.5, data.shape[1] - 0.5, -0.5, data.shape[0] - 0.5)  # the frame's own pixels
        shown = ax.imshow(image, vmin=vmin, vmax=vmax, cmap=cmap, origin="lower",
                          interpolation="nearest", extent=extent)
        figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(titles[k] if titles else _title(header, name))
    figure.tight_layout()
    return atomic_write(output, lambda tmp: figure.savefig(tmp, format="png", dpi=dpi),
                        overwrite=True)
