"""Cosmic rays in a calibrated science frame: found and cleaned by astroscrappy (the field's
LACosmic, van Dokkum 2001), an optional dependency (``pip install 'calstack[cosmic]'``)."""

from __future__ import annotations

import numpy as np

from ..errors import OptionError
from .apply import MASK_BITS, Band

__all__ = ["clean_cosmic_rays"]

_PAD = 8  # pixels mirrored beyond each edge: more than LACosmic's largest filter (7x7)


def clean_cosmic_rays(band: Band, *, sigclip=4.5, objlim=5.0) -> int:
    """Find the cosmic rays of a whole calibrated frame, replace their values, flag them.

    The noise model is the frame's own uncertainty (astroscrappy's ``invar``); values already
    masked are neither detected nor used for cleaning. The frame is mirrored 8 pixels beyond
    its edges first, so that stars cut by an edge are not taken for cosmic rays. Cleaned values are astroscrappy's
    ``meanmask`` (the mean of the good neighbours in a 5x5 box); their uncertainty is kept.

    Parameters
    ----------
    band : Band
        The whole frame, changed in place: ``data`` cleaned, ``mask`` gets the ``cosmic`` bit.
    sigclip, objlim : float
        astroscrappy's detection limit (Laplacian to noise) and the contrast that protects stars.

    Returns
    -------
    int
        The number of pixels flagged.
    """
    try:
        import astroscrappy
    except ImportError:
        raise OptionError("--cosmic-rays needs astroscrappy: pip install 'calstack[cosmic]' "
                          "(or astroscrappy)") from None
    masked = band.mask != 0
    data = np.where(masked, 0, band.data).astype(np.float32)
    variance = np.where(masked, 1, band.uncertainty**2).astype(np.float32)
    # mirrored borders: a star cut by the frame's edge looks sharp to LACosmic's median filters
    pad = min(_PAD, *(n - 1 for n in data.shape))
    hits, cleaned = astroscrappy.detect_cosmics(
        np.pad(data, pad, mode="reflect"), inmask=np.pad(masked, pad, mode="reflect"),
        invar=np.pad(variance, pad, mode="reflect"), sigclip=sigclip, objlim=objlim, gain=1.0,
        satlevel=np.inf, verbose=False)
    inside = (slice(pad, pad + data.shape[0]), slice(pad, pad + data.shape[1]))
    hits, cleaned = hits[inside] & ~masked, cleaned[inside]
    band.data[hits] = cleaned[hits]
    band.mask[hits] |= MASK_BITS["cosmic"]
    return int(np.count_nonzero(hits))
