"""The photon transfer picture of ``calstack characterize --picture``: each flat pair's variance
against its level (log-log) with the fitted noise model, and the residuals below."""

from __future__ import annotations

import numpy as np

from ..io.writer import atomic_write
from .pictures import new_figure

__all__ = ["draw_photon_transfer", "photon_transfer_figure"]


def photon_transfer_figure(transfers):
    """The photon transfer picture.

    Parameters
    ----------
    transfers : PhotonTransfer or sequence of (str, PhotonTransfer)
        One camera's (:class:`~calstack.processing.ptc.PhotonTransfer`), or each named
        amplifier's (``Characterized.amplifiers``), drawn in its own colour.

    Returns
    -------
    figure : matplotlib.figure.Figure
        Variance against level (log-log) with the fitted model, and the residuals below.
    residual : list of numpy.ndarray
        Per transfer, each pair's residual drawn: measured variance over the model's, less 1.
    """
    if not isinstance(transfers, (list, tuple)):
        transfers = [(None, transfers)]
    figure = new_figure((6.5, 6.0))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    residuals = []
    for number, (name, transfer) in enumerate(transfers):
        colour = f"C{number}"
        level = np.array([p.level for p in transfer.pairs])
        variance = np.array([p.variance for p in transfer.pairs])
        saturated = np.array([p.saturated for p in transfer.pairs])
        nonlinear = np.array([p.nonlinear and not p.saturated for p in transfer.pairs])
        read_variance = transfer.read_noise_adu**2
        residual = variance / (level / transfer.gain + read_variance) - 1.0
        residuals.append(residual)
        grid = np.geomspace(max(level[level > 0].min() / 2, 1.0), level.max() * 2, 200)
        prefix = "" if name is None else f"{name}: "
        top.loglog(grid, grid / transfer.gain + read_variance, "-", color=colour, lw=1,
                   label=f"{prefix}gain {transfer.gain:.4f} e-/ADU, read noise "
                   f"{transfer.read_noise:.3f} e-")
        top.axhline(read_variance, color=colour, ls=":", lw=1,
                    label=f"{prefix}read variance")
        for mask, style, what in ((~saturated & ~nonlinear, "o", "pairs fitted"),
                                  (nonlinear, "+", "non-linear"), (saturated, "x", "saturated")):
            if mask.any():
                top.loglog(level[mask], variance[mask], style, color=colour,
                           label=f"{prefix}{what}")
                bottom.semilogx(level[mask], 100 * residual[mask], style, color=colour)
    top.set_ylabel("variance of one frame [ADU²]")
    top.set_title("Photon transfer curve")
    top.legend(fontsize=8)
    bottom.axhline(0, color="k", lw=1)
    bottom.set_xlabel("level above the bias [ADU]")
    bottom.set_ylabel("residual [%]")
    figure.tight_layout()
    return figure, residuals


def draw_photon_transfer(transfers, output) -> np.ndarray:
    """Draw the photon transfer picture (:func:`photon_transfer_figure`) into a PNG.

    Parameters
    ----------
    transfers : PhotonTransfer or sequence of (str, PhotonTransfer)
    output : str or os.PathLike
        The picture (written atomically; its folder must exist).

    Returns
    -------
    numpy.ndarray or list of numpy.ndarray
        Each pair's residual drawn (per amplifier for several): measured variance over the
        model's, less 1.
    """
    figure, residuals = photon_transfer_figure(transfers)
    atomic_write(output, lambda tmp: figure.savefig(tmp, format="png", dpi=80), overwrite=True)
    return residuals if isinstance(transfers, (list, tuple)) else residuals[0]
