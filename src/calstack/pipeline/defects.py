"""``calstack defects``: a bad-pixel mask from a master dark and/or flat, or merged from masks.

The masters are read whole (their MASK extension as missing values), their defects found by
:mod:`calstack.processing.defects`, and the mask written atomically as a ``uint8`` image whose
header documents each bit (``MASKB1 = 'hot'``...), the thresholds and the count of each class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import FrameError, OptionError
from ..io.reader import open_frame, read_image
from ..io.writer import atomic_write
from ..processing.defects import DEFECT_BITS, DEFECT_DOCS, dark_defects, flat_defects, merge_masks
from ..processing.noise import noise_model

__all__ = ["DefectMask", "find_defects", "merge_defects"]



@dataclass(frozen=True)
class DefectMask:
    """A written defect mask: its path, shape and the number of pixels of each class."""

    path: Path
    shape: tuple
    counts: dict

    def describe(self) -> str:
        """The classes counted, in one line."""
        bad = ", ".join(f"{n} {name}" for name, n in self.counts.items() if name != "bad")
        return f"{self.path}: {self.counts['bad']} bad pixels ({bad})"


def _read(path):
    """A master's image (float64, NaN where it has no value) and its header."""
    frame = open_frame(path)
    try:
        return read_image(frame, dtype=np.float64), frame.header()
    finally:
        frame.close()


def _exposure(header, source) -> float:
    for key in ("DARKTIME", "EXPTIME"):
        value = header.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    raise FrameError(source, "has no exposure (DARKTIME or EXPTIME > 0): hot pixels are "
                     "judged in e-/s; add the keyword to the master dark")


def _write(output, mask, cards, overwrite) -> DefectMask:
    header = fits.Header()
    for number, name in enumerate(DEFECT_BITS, start=1):  # bit number-1: MASKBn
        header[f"MASKB{number}"] = (name, DEFECT_DOCS[name][:47])
    header["MASKBITS"] = (" ".join(f"{v}={k}" for k, v in DEFECT_BITS.items()), "defect bits")
    counts = {name: int(np.count_nonzero(mask & bit)) for name, bit in DEFECT_BITS.items()}
    counts["bad"] = int(np.count_nonzero(mask))
    for name, n in counts.items():
        header[f"N{name.upper().replace('_', '')}"[:8]] = (n, f"pixels: {name}")
    for key, value, comment in cards:
        header[key] = (value, comment)
    path = atomic_write(output, lambda tmp: fits.PrimaryHDU(mask, header).writeto(tmp),
                        overwrite=overwrite)
    return DefectMask(path, mask.shape, counts)


def find_defects(output, *, dark=None, flat=None, gain=None, hot_current=5.0, warm_sigma=5.0,
                 lsigma=9.0, dead_fraction=0.5, column_sigma=5.0, column_length=50,
                 saturation=None, overwrite=False) -> DefectMask:
    """Find the defects of a master dark and/or flat and write the mask.

    Parameters
    ----------
    output : str or os.PathLike
        The mask to write (uint8 FITS, one bit per class).
    dark, flat : str or os.PathLike, optional
        A bias-subtracted master dark; a master flat (at least one of them).
    gain : float or str, optional
        e-/ADU of the dark, or its header keyword (default: EGAIN, or GAIN beside RDNOISE).
    hot_current, warm_sigma, lsigma, dead_fraction, column_sigma, column_length, saturation
        See :func:`calstack.processing.defects.dark_defects` and ``flat_defects``.
    overwrite : bool
        Replace an existing mask.

    Returns
    -------
    DefectMask
    """
    if dark is None and flat is None:
        raise OptionError("give --dark MASTER_DARK and/or --flat MASTER_FLAT")
    masks, cards = [], []
    if dark is not None:
        image, header = _read(dark)
        g = noise_model(header, gain, 0.0, str(dark))[0]
        exposure = _exposure(header, dark)
        masks.append((dark, dark_defects(image, exposure=exposure, gain=g,
                                         hot_current=hot_current, warm_sigma=warm_sigma,
                                         column_sigma=column_sigma, column_length=column_length,
                                         saturation=saturation)))
        cards += [("DEFDARK", Path(dark).name[:68], "master dark"),
                  ("DEFGAIN", g, "gain [e-/ADU] of the dark"),
                  ("DEFHOT", hot_current, "hot: excess dark current [e-/s] at least"),
                  ("DEFWARM", warm_sigma, "hot/warm: excess above this many sigma")]
    if flat is not None:
        image, _ = _read(flat)
        masks.append((flat, flat_defects(image, lsigma=lsigma, dead_fraction=dead_fraction,
                                         column_sigma=column_sigma,
                                         column_length=column_length)))
        cards += [("DEFFLAT", Path(flat).name[:68], "master flat"),
                  ("DEFLSIG", lsigma, "dead/low_qe: below local median by lsigma"),
                  ("DEFDEAD", dead_fraction, "dead: response below this of local median")]
    cards += [("DEFCOLS", column_sigma, "column: running median beyond sigmas"),
              ("DEFCOLN", column_length, "column: rows judged together")]
    _check_shapes(masks)
    mask = np.bitwise_or.reduce([m for _, m in masks])
    return _write(output, mask, cards, overwrite)


def _check_shapes(masks):
    first, shape = masks[0][0], masks[0][1].shape
    for path, mask in masks[1:]:
        if mask.shape != shape:
            raise FrameError(path, f"is {mask.shape[0]}x{mask.shape[1]} but {first} is "
                             f"{shape[0]}x{shape[1]}; give masters of one camera setup")


def merge_defects(masks, output, *, fraction=0.7, overwrite=False) -> DefectMask:
    """Merge defect masks of several nights: a pixel bad in at least ``fraction`` of them.

    Parameters
    ----------
    masks : sequence of str or os.PathLike
        Defect masks (``calstack defects`` output; any integer image, nonzero = bad).
    output : str or os.PathLike
        The merged mask.
    fraction : float
        See :func:`calstack.processing.defects.merge_masks` (cp_pipe's 0.7).
    overwrite : bool
        Replace an existing mask.

    Returns
    -------
    DefectMask
    """
    if len(masks) < 2:
        raise OptionError("--merge needs two masks or more")
    read = []
    for path in masks:
        image, _ = _read(path)
        if not np.all((image >= 0) & (image <= 255) & (image == np.round(image))):
            raise FrameError(path, "is not a defect mask (whole numbers 0..255); give "
                             "masks written by calstack defects")
        read.append((path, image.astype(np.uint8)))
    _check_shapes(read)
    merged = merge_masks([m for _, m in read], fraction)
    cards = [("MRGFRAC", fraction, "bad in at least this fraction of the masks"),
             ("MRGN", len(masks), "masks merged")]
    cards += [(f"MRG{i:03d}", Path(p).name[:68], "mask merged") for i, p in
              enumerate(masks[:999], start=1)]
    return _write(output, merged, cards, overwrite)
