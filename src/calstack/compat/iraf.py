"""Masters for IRAF's ``ccdproc`` task: copies of calstack's masters with the keywords by which
IRAF takes an image as processed, so that ``ccdproc`` applies them as they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

__all__ = ["iraf_masters"]


def iraf_masters(masters, out, names) -> dict:
    """Copy masters into ``out`` for IRAF's ``ccdproc``.

    Each copy has ``ZEROCOR``, ``DARKCOR`` and ``CCDPROC`` set (IRAF processes no calibration
    image that has them); the flat's also has ``CCDMEAN``, its mean, by which ``ccdproc``
    normalises it.

    Parameters
    ----------
    masters : str or os.PathLike
        The folder of calstack's masters.
    out : str or os.PathLike
        The folder of the copies.
    names : dict
        ``ccdproc``'s parameter (``"zero"``, ``"dark"``, ``"flat"``) to its master's file name
        in ``masters``.

    Returns
    -------
    dict
        Each parameter to its copy's file name in ``out`` (``zero.fits``, ...): ``ccdproc``'s
        ``zero=``, ``dark=``, ``flat=``.
    """
    copies = {}
    for kind, name in names.items():
        with fits.open(Path(masters) / name) as hdul:
            header = hdul[0].header
            for key in ("ZEROCOR", "DARKCOR", "CCDPROC"):
                header[key] = "calstack master"
            if kind == "flat":
                header["CCDMEAN"] = float(np.nanmean(hdul[0].data))
            fits.writeto(Path(out) / f"{kind}.fits", hdul[0].data, header)
        copies[kind] = f"{kind}.fits"
    return copies
