"""Atomic FITS output: write to a temporary file in the target folder, then rename into place."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import CalstackError

__all__ = ["BandFile", "OutputExistsError", "atomic_write", "check_writable",
           "write_extensions", "write_master"]


_UMASK = os.umask(0)
os.umask(_UMASK)


class OutputExistsError(CalstackError, FileExistsError):
    """The output file exists and overwriting was not asked for."""


def check_writable(folder) -> Path:
    """Create ``folder`` if needed and make sure files can be created in it (before any work)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CalstackError(f"{folder}: output folder is not writable ({exc.strerror}); "
                            "choose another with --output-dir") from exc
    return folder


def atomic_write(path, write, *, overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` only once it is complete.

    Without ``overwrite`` the final step is a hard link, which fails if ``path`` appeared in the
    meantime, so an existing file is never replaced; with it, ``os.replace`` swaps atomically.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists; pass overwrite=True (--overwrite) to replace it")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                   dir=path.parent or ".")
    except OSError as exc:  # e.g. the output folder removed during the run
        raise CalstackError(f"{path}: cannot be written: its folder {path.parent} "
                            f"{'is gone' if not path.parent.exists() else 'refuses new files'} "
                            f"({exc.strerror or exc}); nothing was written under this "
                            "name") from exc
    os.close(fd)
    try:
        try:
            write(tmp)
        except OSError as exc:  # e.g. a full disk: the old file, if any, is untouched
            raise CalstackError(f"{path}: cannot be written ({exc.strerror or exc}); nothing "
                                "was written under this name") from exc
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual mode
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExistsError(
                    f"{path}: exists; pass overwrite=True (--overwrite) to replace it") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _master_hdus(master, *, primary=True, extname=None, extver=None, aux_ver=None) -> list:
    """The HDUs of a master: its data (a primary HDU, or an image extension named ``extname``
    with ``extver``), then UNCERT, MASK and NCOMB extensions (EXTVER ``aux_ver`` when given)."""
    header = fits.Header(master.meta)
    if master.unit is not None and (master.unit.to_string() or "BUNIT" not in header):
        header["BUNIT"] = master.unit.to_string()  # dimensionless: the frames' BUNIT text stays
    if primary:
        hdus = [fits.PrimaryHDU(master.data, header=header)]
    else:
        hdus = [fits.ImageHDU(master.data, header=header, name=extname)]
        if extver is not None:
            hdus[0].ver = int(extver)
    if master.uncertainty is not None:
        uheader = fits.Header()
        uheader["UTYPE"] = ("StdDevUncertainty", "standard error of the combined value")
        if "BUNIT" in header:
            uheader["BUNIT"] = header["BUNIT"]
        uncertainty = getattr(master.uncertainty, "array", master.uncertainty)  # Master or Result
        hdus.append(fits.ImageHDU(uncertainty, header=uheader, name="UNCERT"))
    if master.mask is not None:
        mask = np.asarray(master.mask)
        hdus.append(fits.ImageHDU(mask.view(np.uint8) if mask.dtype == bool else mask, name="MASK"))
    if master.ncombine is not None:
        hdus.append(fits.ImageHDU(master.ncombine, name="NCOMB"))
    if aux_ver is not None:
        for hdu in hdus[1:]:
            hdu.ver = aux_ver
    return hdus


def write_master(master, path, *, overwrite: bool = False) -> Path:
    """Write a :class:`~calstack.stacking.master.Master` (see :meth:`Master.write`)."""
    hdus = _master_hdus(master)
    return atomic_write(path, lambda tmp: fits.HDUList(hdus).writeto(tmp, overwrite=True),
                        overwrite=overwrite)


def write_extensions(path, extensions, *, overwrite: bool = False) -> Path:
    """Write masters as the extensions of one file, atomically (:func:`atomic_write`): an empty
    primary HDU with the first master's header, then the masters.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    extensions : iterable of (Master, str or None, int or None)
        Each master with the EXTNAME and EXTVER of its image extension, in file order; the
        iterable is consumed while the file is written, one master at a time. After each image
        come its UNCERT, MASK and NCOMB extensions, whose EXTVER is the image's position (1 for
        the first image).
    overwrite : bool
        Replace an existing file.
    """
    def write(tmp):
        for position, (master, extname, extver) in enumerate(extensions, start=1):
            if position == 1:
                fits.PrimaryHDU(header=fits.Header(master.meta)).writeto(tmp, overwrite=True)
            hdus = _master_hdus(master, primary=False, extname=extname, extver=extver,
                                aux_ver=position)
            with fits.open(tmp, mode="append") as hdul:
                for hdu in hdus:
                    hdul.append(hdu)
            del master, hdus  # written: free them before the next master is combined

    return atomic_write(path, write, overwrite=overwrite)


#: Keywords that describe a file's data layout: an output image gets its own.
_LAYOUT = ("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "PCOUNT",
           "GCOUNT", "BZERO", "BSCALE", "BLANK", "CHECKSUM", "DATASUM")
_BLOCK = 2880


class BandFile:
    """A FITS file of 2-D images written band by band: every header is written first, each
    image's data area reserved, and :meth:`write_rows` puts rows where they belong, so an image
    is never whole in memory.

    Parameters
    ----------
    path : str or os.PathLike
        The file (created or truncated; write it under :func:`atomic_write`).
    images : list of (astropy.io.fits.Header or None, numpy.dtype, (rows, columns) or None,
                      str or None, int or None)
        Each image's cards (layout keywords are replaced), dtype, shape (None: a header without
        data, e.g. the empty primary HDU of a multi-extension file), EXTNAME and EXTVER; the
        first is the primary HDU.
    """

    def __init__(self, path, images):
        self._offsets, self._dtypes, self._headers = [], [], []
        blocks, position = [], 0
        for number, (cards, dtype, shape, name, ver) in enumerate(images):
            dtype = np.dtype(dtype)
            text = self._header_text(cards, dtype, shape, name, ver, primary=number == 0)
            self._headers.append((position, text, shape, dtype, name, ver))
            size = 0 if shape is None else int(shape[0]) * int(shape[1]) * dtype.itemsize
            blocks.append((position, text))
            position += len(text)
            self._offsets.append((position, 0 if shape is None else int(shape[1])))
            self._dtypes.append(dtype.newbyteorder(">"))
            position += -(-size // _BLOCK) * _BLOCK
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self._fd, position)  # the data areas' padding reads as zeros
        for offset, text in blocks:
            os.pwrite(self._fd, text, offset)

    def rewrite_header(self, image: int, cards) -> None:
        """Write image ``image``'s header again with ``cards`` (a value known only once its data
        are, e.g. a count); the header must keep its size: reserve its cards beforehand."""
        offset, text, shape, dtype, name, ver = self._headers[image]
        new = self._header_text(cards, dtype, shape, name, ver, primary=image == 0)
        if len(new) != len(text):
            raise ValueError("a rewritten header must keep its size; reserve its cards first")
        os.pwrite(self._fd, new, offset)

    @staticmethod
    def _header_text(cards, dtype, shape, name, ver, *, primary) -> bytes:
        header = fits.Header([c for c in (cards or fits.Header()).cards
                              if c.keyword not in (*_LAYOUT, "EXTNAME", "EXTVER")])
        kind = fits.PrimaryHDU if primary else fits.ImageHDU
        hdu = kind(None if shape is None else np.zeros((1, 1), dtype), header=header,
                   **({"name": name} if name else {}))
        if ver is not None:
            hdu.ver = int(ver)
        if shape is not None:
            hdu.header["NAXIS1"], hdu.header["NAXIS2"] = int(shape[1]), int(shape[0])
        return hdu.header.tostring().encode("ascii")

    def write_rows(self, image: int, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` of image number ``image`` (0 = primary) from row ``start`` on."""
        offset, width = self._offsets[image]
        data = np.ascontiguousarray(rows, dtype=self._dtypes[image])
        os.pwrite(self._fd, memoryview(data).cast("B"),
                  offset + start * width * data.itemsize)

    def close(self) -> None:
        """Close the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
