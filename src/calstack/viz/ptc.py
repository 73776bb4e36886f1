"""The photon transfer picture of ``calstack characterize --picture``: each flat pair's variance
against its level (log-log) with the fitted noise model, and the residuals below."""

from __future__ import annotations

import numpy as np

from ..io.writer import atomic_write
from .pictures import new_figure

__all__ = ["draw_photon_transfer", "photon_transfer_figure"]


def photon_transfer_figure(transfer):
    """The photon transfer picture of ``transfer``
    (:class:`~calstack.processing.ptc.PhotonTransfer`).

    Returns
    -------
    figure : matplotlib.figure.Figure
        Variance against level (log-log) with the fitted model, and the residuals below.
    residual : numpy.ndarray
        Each pair's residual drawn: measured variance over the model's, less 1.
    """
    level = np.array([p.level for p in transfer.pairs])
    variance = np.array([p.variance for p in transfer.pairs])
    saturated = np.array([p.saturated for p in transfer.pairs])
    read_variance = transfer.read_noise_adu**2
    model = level / transfer.gain + read_variance
    residual = variance / model - 1.0
    figure = new_figure((6.5, 6.0))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    grid = np.geomspace(max(level[level > 0].min() / 2, 1.0), level.max() * 2, 200)
    top.loglog(grid, grid / transfer.gain + read_variance, "k-", lw=1,
               label=f"gain {transfer.gain:.4f} e-/ADU, read noise {transfer.read_noise:.3f} e-")
    top.axhline(read_variance, color="0.6", ls=":", lw=1, label="read variance")
    for mask, style, name in ((~saturated, "o", "pairs fitted"), (saturated, "x", "saturated")):
        if mask.any():
            top.loglog(level[mask], variance[mask], style, label=name)
            bottom.semilogx(level[mask], 100 * residual[mask], style)
    top.set_ylabel("variance of one frame [ADU²]")
    top.set_title("Photon transfer curve")
    top.legend(fontsize=8)
    bottom.axhline(0, color="k", lw=1)
    bottom.set_xlabel("level above the bias [ADU]")
    bottom.set_ylabel("residual [%]")
    figure.tight_layout()
    return figure, residual


def draw_photon_transfer(transfer, output) -> np.ndarray:
    """Draw ``transfer`` (:class:`~calstack.processing.ptc.PhotonTransfer`) into a PNG.

    Parameters
    ----------
    transfer : PhotonTransfer
    output : str or os.PathLike
        The picture (written atomically; its folder must exist).

    Returns
    -------
    numpy.ndarray
        Each pair's residual drawn: measured variance over the model's, less 1.
    """
    figure, residual = photon_transfer_figure(transfer)
    atomic_write(output, lambda tmp: figure.savefig(tmp, format="png", dpi=80), overwrite=True)
    return residual
