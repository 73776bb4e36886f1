"""Frame sources: read a band of rows of one frame as physical values into the working stack.

A plain FITS image is read with one positioned read per tile (``os.preadv``) straight from the
file: no memory map (whose touched pages would count against the memory limit), no whole-frame
read and no re-read of the file per tile. Integer data are scaled with BZERO/BSCALE; BLANK
values, masked pixels (a ``MASK`` extension or a user mask) and NaN/Inf become NaN, which the
kernels treat as missing. Gzip files are decompressed as a stream into the bands read (nothing
is written to a temporary folder; each frame keeps only its stream's state, see
:class:`GzipFrame`); tile-compressed
(``.fz``) images are read through astropy's section interface, which decompresses only the
tiles a band touches. At most :data:`MAX_OPEN_FILES` stay open; past that a file is opened
for each read.
"""

from __future__ import annotations

import functools
import gzip
import os
import resource
import sys
import zlib
from pathlib import Path

import numpy as np

from ..errors import FileChangedError, FrameError
from .fitsheader import AUXILIARY_EXTNAMES, HDUInfo, read_hdus

__all__ = ["MAX_OPEN_FILES", "ArrayFrame", "CompressedFrame", "FitsFrame", "Frame",
           "GzipFrame", "auxiliary_hdu", "file_identity", "frame_item",
           "open_auxiliary", "open_frame", "raw_buffer", "raw_itemsize", "read_bands",
           "read_image"]

_BITPIX = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_LITTLE_ENDIAN = sys.byteorder == "little"
MAX_OPEN_FILES = max(8, min(1024, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 4))


class Frame:
    """One input frame: a name, a 2-D shape, a unit, and a way to read bands of rows."""

    name: str  # short name, for IMCMBnnn
    source: str  # where the frame came from (the user's path), for error messages
    shape: tuple[int, int]
    unit: str | None = None
    #: Bytes per pixel of conversion buffer that :meth:`read_rows` needs (0 = reads in place).
    raw_itemsize: int = 0
    #: Bytes the frame holds between reads, whatever the band (a gzip stream's state).
    held_bytes: int = 0

    def read_rows(self, start: int, stop: int, out: np.ndarray, raw: np.ndarray) -> None:
        """Fill ``out`` (rows ``start:stop``, working dtype) with physical values, NaN = missing."""
        raise NotImplementedError

    def header(self):
        """The frame's header as an ``astropy.io.fits.Header`` (read on demand)."""
        raise NotImplementedError

    def verify(self) -> None:
        """Raise ``FrameError`` if the frame's file changed since it was opened (after the
        last read: what was combined is what was opened). In-memory frames cannot change."""

    def close(self) -> None:
        """Release any open file."""


def _pread_into(fd: int, buffer: memoryview, offset: int, path) -> None:
    done = 0
    while done < len(buffer):
        n = os.preadv(fd, [buffer[done:]], offset + done)
        if n == 0:
            raise FrameError(path, f"file ends early: expected {len(buffer) - done} more bytes at "
                             f"byte {offset + done}; the file is truncated, re-copy it")
        done += n


def file_identity(st) -> tuple:
    """What tells a file from a changed or replaced one, from its ``os.stat`` result: size,
    mtime (ns), inode, ctime (ns) -- also the header cache's key."""
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def file_identity_of(path, indexed=None, *, when="indexed") -> tuple:
    """The identity (:func:`file_identity`) of ``path`` now; when ``indexed`` (the identity
    recorded when the file was indexed, or ``when`` else) is given, a file that differs from it
    is a :class:`~calstack.errors.FileChangedError` naming it."""
    try:
        identity = file_identity(os.stat(path))
    except OSError as exc:
        raise FrameError(path, f"cannot open: {exc.strerror}") from exc
    if indexed is not None and tuple(indexed) != identity:
        raise FileChangedError(path, f"changed since it was {when} (size, modification time, "
                               "inode or status-change time); nothing was written: index it "
                               "again and run again")
    return identity


def _scaling(path, info: HDUInfo, key, default):
    value = info.header.get(key, default)
    if key == "BSCALE" and value == 0:
        raise FrameError(path, f"HDU {info.index}: BSCALE = 0 would make every pixel 0; the "
                         "header is corrupt (BSCALE is 1 for unscaled data)")
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise FrameError(path, f"HDU {info.index}: {key} = {value!r} is not a number; the header is "
                     "corrupt")


def _image_shape(path, info: HDUInfo) -> tuple[int, int]:
    shape = tuple(s for s in info.shape[:-2] if s != 1) + tuple(info.shape[-2:])
    if len(shape) != 2:
        raise FrameError(path, f"HDU {info.index} holds a {len(info.shape)}-D image of shape "
                         f"{info.shape}; calstack combines 2-D images (pick another with hdu=)")
    return shape


class FitsFrame(Frame):
    """A 2-D image HDU of an uncompressed FITS file, read by positioned reads."""

    def __init__(self, path, info: HDUInfo, mask: HDUInfo | None, *, stack_dtype,
                 keep_open: bool = True, primary: HDUInfo | None = None, identity=None):
        self.path = self.source = str(path)
        self.name = os.path.basename(self.source)
        self.info = info
        self.mask_info = mask
        self.primary = primary
        self.shape = _image_shape(self.source, info)
        self.unit = info.header.get("BUNIT")
        self.keep_open = keep_open
        self._fd = None
        self.identity = file_identity_of(self.source, identity)
        self.dtype = np.dtype(_BITPIX[info.bitpix])
        self.bzero = _scaling(self.source, info, "BZERO", 0.0)
        self.bscale = _scaling(self.source, info, "BSCALE", 1.0)
        self.blank = _scaling(self.source, info, "BLANK", None) if self.dtype.kind in "iu" else None
        stack_dtype = np.dtype(stack_dtype)
        self.direct = (self.dtype.kind == "f" and self.dtype.itemsize == stack_dtype.itemsize
                       and self.bzero == 0 and self.bscale == 1)
        widest = max(0 if self.direct else self.dtype.itemsize,
                     np.dtype(_BITPIX[mask.bitpix]).itemsize if mask else 0)
        self.raw_itemsize = widest + 1 if widest else 0  # + a boolean temporary
        if mask is not None and _image_shape(self.source, mask) != self.shape:
            raise FrameError(self.source, f"MASK extension has shape {mask.shape}, image has "
                             f"{self.shape}; fix or remove the MASK extension")

    def _open(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except OSError as exc:
                raise FrameError(self.source, f"cannot open: {exc.strerror}") from exc
            self._check(os.fstat(self._fd))  # every (re)open: still the file indexed
        return self._fd

    def _check(self, st) -> None:
        if file_identity(st) != self.identity:
            self.close()
            raise FileChangedError(self.source, "changed while it was being combined (size, "
                                   "modification time or inode); nothing was written: run "
                                   "again once the files are complete")

    def verify(self) -> None:
        try:
            st = os.fstat(self._fd) if self._fd is not None else None
            if st is not None:
                self._check(st)  # an edit in place
            self._check(os.stat(self.path))  # a file put in its place
        except OSError as exc:
            raise FrameError(self.source, f"cannot be read any more ({exc.strerror}); nothing "
                             "was written") from exc

    def _read(self, info: HDUInfo, start, target: np.ndarray):
        width = self.shape[1]
        offset = info.data_offset + start * width * target.itemsize
        _pread_into(self._open(), memoryview(target).cast("B"), offset, self.source)

    def read_rows(self, start, stop, out, raw):
        n = (stop - start) * self.shape[1]
        try:
            if self.direct:
                self._read(self.info, start, out)
                if _LITTLE_ENDIAN:
                    out.byteswap(inplace=True)  # FITS big-endian bytes -> native values
            else:
                values = raw[: n * self.dtype.itemsize].view(self.dtype).reshape(out.shape)
                self._read(self.info, start, values)
                out[...] = values
                if self.blank is not None:
                    np.equal(values, self.blank, out=raw[-n:].view(bool).reshape(out.shape))
                    out[raw[-n:].view(bool).reshape(out.shape)] = np.nan
                if self.bscale != 1:
                    out *= self.bscale
                if self.bzero != 0:
                    out += self.bzero
            if self.mask_info is not None:
                mask_dtype = np.dtype(_BITPIX[self.mask_info.bitpix])
                flags = raw[: n * mask_dtype.itemsize].view(mask_dtype).reshape(out.shape)
                self._read(self.mask_info, start, flags)
                np.not_equal(flags, 0, out=raw[-n:].view(bool).reshape(out.shape))
                out[raw[-n:].view(bool).reshape(out.shape)] = np.nan
        finally:
            if not self.keep_open:
                self.close()

    def header(self):
        header = _read_header(self.path, self.info)
        if self.info.index > 0:  # a mosaic extension inherits the primary header's keywords
            for card in _read_header(self.path, self.primary).cards:
                if card.keyword not in header and card.keyword not in ("", "COMMENT", "HISTORY"):
                    header.append(card)
        return header

    def primary_header(self):
        """The file's primary header (of a multi-extension file: its shared keywords)."""
        return _read_header(self.path, self.primary)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


#: Compressed bytes a gzip stream reads from its file at a time.
GZIP_CHUNK = 64 * 1024
#: The most decompressed bytes a gzip stream holds at once while it skips forward.
GZIP_SKIP = 256 * 1024
#: What one gzip stream holds between reads: the decompressor (its 32 kB window and some
#: 10 kB of state) and a chunk of compressed input.
GZIP_STREAM_BYTES = 48 * 1024 + GZIP_CHUNK


class _GzipStream:
    """A place in the decompressed stream of a gzip file: the compressed file's offset and a
    :func:`zlib.decompressobj` (the gzip header and trailer checked), no open file."""

    def __init__(self, source):
        self.source = source
        self.rewind()

    def rewind(self):
        self._inflate = zlib.decompressobj(wbits=31)
        self._offset = 0  # compressed bytes taken from the file
        self.position = 0  # decompressed bytes delivered or skipped
        self._input = b""  # compressed bytes taken but not yet decompressed

    def _next(self, fd, limit: int) -> bytes:
        """Up to ``limit`` (> 0) next decompressed bytes, at least one."""
        while True:
            if self._inflate.eof:  # a member ends; another may follow
                rest = self._inflate.unused_data
                self._inflate = zlib.decompressobj(wbits=31)
                self._input = rest + self._input
            at_end = False
            if not self._input:
                self._input = os.pread(fd, GZIP_CHUNK, self._offset)
                self._offset += len(self._input)
                at_end = not self._input
            try:
                out = self._inflate.decompress(self._input, limit)
            except zlib.error as exc:
                raise FrameError(self.source, f"gzip does not decompress ({exc}); re-copy "
                                 "the file") from exc
            self._input = self._inflate.unconsumed_tail
            if out:
                self.position += len(out)
                return out
            if at_end:
                raise FrameError(self.source, f"gzip stream ends at byte {self.position} "
                                 "of the decompressed file, before the data its header "
                                 "announces; re-copy the file")

    def read_into(self, fd, offset: int, buffer: memoryview) -> None:
        """Fill ``buffer`` with the decompressed bytes from ``offset`` on."""
        if offset < self.position:
            self.rewind()  # another pass: from the start
        while self.position < offset:
            self._next(fd, min(GZIP_SKIP, offset - self.position))
        done = 0
        while done < len(buffer):
            out = self._next(fd, len(buffer) - done)
            buffer[done:done + len(out)] = out
            done += len(out)


class GzipFrame(FitsFrame):
    """A 2-D image HDU of a gzip-compressed FITS file (``.gz``), decompressed as a stream.

    Nothing is written to a temporary folder. The frame keeps its place in the stream of the
    image (and of its ``MASK``) between reads: bands read in increasing row order, as a
    combine reads them, decompress the file once; a read before the place (another pass over
    the frame) decompresses again from the start. What a frame holds between reads is bounded,
    whatever the file's size: per stream the decompressor's state (its 32 kB window and some
    10 kB) and at most :data:`GZIP_CHUNK` bytes of compressed input; skipping forward holds at
    most :data:`GZIP_SKIP` decompressed bytes at once. The file may be closed between reads
    (past the open-files budget): the stream's place is kept, not the file.
    """

    def __init__(self, path, info, mask, **kwargs):
        super().__init__(path, info, mask, **kwargs)
        self._streams = {}
        # a stream for the image and one for its MASK (skipping forward holds GZIP_SKIP more
        # for a moment, per reader thread: within the memory plan's headroom)
        self.held_bytes = (1 + (mask is not None)) * GZIP_STREAM_BYTES

    def _read(self, info, start, target):
        if info.index not in self._streams:
            self._streams[info.index] = _GzipStream(self.source)
        stream = self._streams[info.index]
        offset = info.data_offset + start * self.shape[1] * target.itemsize
        stream.read_into(self._open(), offset, memoryview(target).cast("B"))


class CompressedFrame(Frame):
    """A tile-compressed image HDU (``.fz``), read band by band through astropy."""

    raw_itemsize = 16  # astropy's decompressed band (float64) plus its scaling temporaries

    def __init__(self, path, info: HDUInfo, identity=None):
        self.path = self.source = str(path)
        self.name = os.path.basename(self.path)
        self.info = info
        self.shape = _image_shape(self.path, info)
        self.unit = info.header.get("BUNIT")
        self._hdul = None
        self.identity = file_identity_of(self.path, identity)

    def verify(self) -> None:
        file_identity_of(self.path, self.identity, when="opened")

    def read_rows(self, start, stop, out, raw):  # noqa: ARG002 - decompressed by astropy: no raw buffer
        from astropy.io import fits

        if self._hdul is None:
            file_identity_of(self.path, self.identity)
            self._hdul = fits.open(self.path, memmap=False, lazy_load_hdus=True)
        try:
            out[...] = self._hdul[self.info.index].section[start:stop]
        except Exception as exc:  # astropy raises many types for corrupt tiles
            raise FrameError(self.path, f"cannot decompress rows {start}-{stop}: {exc}") from exc

    def header(self):
        return _read_header(self.path, self.info)

    def close(self):
        if self._hdul is not None:
            self._hdul.close()
            self._hdul = None


class ArrayFrame(Frame):
    """An in-memory frame: a 2-D array or a ``CCDData`` (its mask and unit are used)."""

    raw_itemsize = 1

    def __init__(self, data, *, mask=None, unit=None, meta=None, name="array"):
        self.data = np.asarray(data)
        if self.data.ndim != 2:
            raise FrameError(name, f"is a {self.data.ndim}-D array; calstack combines 2-D images")
        self.mask = None if mask is None else np.asarray(mask, dtype=bool)
        if self.mask is not None and self.mask.shape != self.data.shape:
            raise FrameError(name, f"mask shape {self.mask.shape} differs from data shape "
                             f"{self.data.shape}")
        self.shape = self.data.shape
        self.unit = unit
        self.meta = meta
        self.name = self.source = name

    def read_rows(self, start, stop, out, raw):  # noqa: ARG002 - in memory: no raw buffer
        out[...] = self.data[start:stop]
        if self.mask is not None:
            out[self.mask[start:stop]] = np.nan

    def header(self):
        from astropy.io import fits

        header = fits.Header()
        if self.meta:
            for key, value in dict(self.meta).items():
                if len(str(key)) <= 8 and isinstance(value, (str, int, float, bool)):
                    header[str(key)] = value
        return header


def raw_itemsize(frames) -> int:
    """Bytes per pixel of the conversion buffer that reading any of ``frames`` needs (the
    widest :attr:`Frame.raw_itemsize`; 0 for none)."""
    return max((f.raw_itemsize for f in frames), default=0)


def raw_buffer(frames, n_rows: int, width: int) -> np.ndarray:
    """A conversion buffer (``raw`` of :meth:`Frame.read_rows`) for reading up to ``n_rows``
    rows of ``width`` pixels of any of ``frames``."""
    return np.empty(n_rows * width * raw_itemsize(frames), np.uint8)


def read_bands(frame, rows: int, *, start: int = 0, stop: int | None = None,
               dtype=np.float32):
    """Rows ``start:stop`` of ``frame`` (default: all), ``rows`` at a time: ``(first row,
    band)``, each band a view of one buffer that the next overwrites. ``dtype`` is the dtype
    the frame was opened with (its ``stack_dtype``)."""
    stop = frame.shape[0] if stop is None else stop
    band = np.empty((max(1, min(rows, stop - start)), frame.shape[1]), dtype)
    raw = raw_buffer([frame], len(band), frame.shape[1])
    for first in range(start, stop, len(band)):
        n = min(len(band), stop - first)
        frame.read_rows(first, first + n, band[:n], raw)
        yield first, band[:n]


def read_image(frame, *, rows: int = 512, dtype=np.float32) -> np.ndarray:
    """The whole image of ``frame`` as a new ``dtype`` array, read ``rows`` rows at a time
    (:func:`read_bands`)."""
    image = np.empty(frame.shape, dtype)
    for first, band in read_bands(frame, rows):
        image[first:first + len(band)] = band
    return image


def frame_item(frame) -> tuple[str, int, tuple] | None:
    """``(path, HDU number, identity)`` by which :func:`open_frame` opens a file frame again:
    the user's file, the HDU read, and the file's identity when the frame was opened (so a file
    changed since is an error, not other pixels); None for an in-memory frame."""
    if isinstance(frame, ArrayFrame):
        return None
    return frame.source, frame.info.index, frame.identity


def _read_header(path, info: HDUInfo):
    """The exact header bytes of one HDU as an astropy ``Header`` (no whole-file open)."""
    import warnings

    from astropy.io import fits

    with (gzip.open if os.fspath(path).lower().endswith(".gz") else open)(path, "rb") as f:
        f.seek(info.header_offset)  # a gzip stream: decompressed up to it
        raw = f.read(info.data_offset - info.header_offset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-standard cards are kept as they are
        return fits.Header.fromstring(raw.decode("ascii", "replace"))


def _choose_hdu(path, hdus: list[HDUInfo], hdu) -> HDUInfo:
    """HDU ``hdu`` of ``path``: a number, an EXTNAME, an ``(EXTNAME, EXTVER)`` pair (either may
    be None: any), or None for the first image."""
    if isinstance(hdu, tuple):  # of a file of one image (a master split by extension): that
        name, ver = hdu
        images = [info for info in hdus
                  if info.is_image and (info.extname or "").upper() not in AUXILIARY_EXTNAMES]
        for info in images:
            if ((name is None or (info.extname or "").upper() == str(name).upper())
                    and (ver is None or info.header.get("EXTVER", 1) == ver)):
                return info
        if len(images) == 1:
            return images[0]
        raise FrameError(path, f"has no image extension EXTNAME={name!r} EXTVER={ver!r}")
    if hdu is None:
        for info in hdus:
            if info.is_image and (info.extname or "").upper() not in AUXILIARY_EXTNAMES:
                return info
        raise FrameError(path, "has no image data (no HDU with NAXIS >= 2); is it a table?")
    for info in hdus:
        if (isinstance(hdu, str) and (info.extname or "").upper() == hdu.upper()) or info.index == hdu:
            if not info.is_image:
                raise FrameError(path, f"HDU {hdu!r} holds no image; choose an image HDU with hdu=")
            return info
    names = [info.extname or str(info.index) for info in hdus]
    raise FrameError(path, f"has no HDU {hdu!r}; it has {', '.join(names)}")


def _hdus(path: Path) -> list[HDUInfo]:
    """The HDUs of ``path`` (:func:`read_hdus`), parsed once per version of the file: a file of
    many extensions opened extension by extension is not re-parsed each time."""
    try:
        st = os.stat(path)
    except OSError:
        return read_hdus(path)  # its own error, naming the file
    return list(_parsed_hdus(os.path.abspath(path), file_identity(st)))


@functools.lru_cache(maxsize=16)
def _parsed_hdus(path: str, identity: tuple) -> tuple:  # noqa: ARG001 - identity: the cache key
    return tuple(read_hdus(Path(path)))


def auxiliary_hdu(hdus: list[HDUInfo], image: HDUInfo, name: str) -> HDUInfo | None:
    """The ``MASK`` or ``UNCERT`` extension that belongs to ``image``: the only one in the file,
    or, in a file of several images (a multi-extension master), the one whose EXTVER is the
    image's position among them (1 for the first), as calstack writes them."""
    found = [h for h in hdus if (h.extname or "").upper() == name and h.is_image]
    if len(found) <= 1:
        return found[0] if found else None
    images = [h.index for h in hdus
              if h.is_image and (h.extname or "").upper() not in AUXILIARY_EXTNAMES]
    position = images.index(image.index) + 1 if image.index in images else None
    return next((h for h in found if h.header.get("EXTVER", 1) == position), None)


def open_auxiliary(path, hdu, name: str, *, stack_dtype=np.float32):
    """The ``UNCERT`` (or another auxiliary) image of HDU ``hdu`` of ``path`` as a
    :class:`Frame`, or None when the file has none for it (:func:`auxiliary_hdu`)."""
    path = Path(path)
    hdus = _hdus(path)
    image = _choose_hdu(path, hdus, hdu)
    info = auxiliary_hdu(hdus, image, name)
    if info is None:
        return None
    kind = GzipFrame if path.suffix.lower() == ".gz" else FitsFrame
    return kind(path, info, auxiliary_hdu(hdus, image, "MASK"), stack_dtype=stack_dtype,
                keep_open=True, primary=hdus[0])


def open_frame(item, *, hdu=None, stack_dtype=np.float32, keep_open=True, mask=None):
    """Make a :class:`Frame` from a path, a ``(path, hdu)`` pair, a ``CCDData`` or an array.

    Parameters
    ----------
    item : str, os.PathLike, tuple, CCDData or numpy.ndarray
        The frame: a path, a ``(path, hdu)`` pair, or a ``(path, hdu, identity)`` triple whose
        identity (:func:`file_identity`, as recorded when the file was indexed; None: unknown)
        the file must still have (else :class:`~calstack.errors.FileChangedError`).
    hdu : int or str, optional
        HDU number or EXTNAME to read (default: the first image HDU).
    stack_dtype : dtype
        The working dtype the frame is read into.
    keep_open : bool
        Keep the file open between reads (False past the open-files budget).
    mask : array_like of bool, optional
        Extra mask for this frame (True = missing).
    """
    nddata = sys.modules.get("astropy.nddata")  # a CCDData exists only once it is imported
    if nddata is not None and isinstance(item, nddata.CCDData):
        combined = item.mask if mask is None else (np.asarray(mask, bool) | (item.mask if item.mask is not None else False))
        return ArrayFrame(item.data, mask=combined, unit=item.unit.to_string() if item.unit else None,
                          meta=item.meta, name=str(item.meta.get("FILENAME", "CCDData")))
    if isinstance(item, np.ndarray):
        return ArrayFrame(item, mask=mask)
    identity = None
    if isinstance(item, tuple):
        item, hdu, identity = item if len(item) == 3 else (*item, None)
    path = Path(item)
    if identity is not None:
        file_identity_of(path, identity)  # before its header is parsed again
    hdus = _hdus(path)
    info = _choose_hdu(path, hdus, hdu)
    if mask is not None:
        raise FrameError(path, "masks= is for in-memory frames; for files put the mask in a MASK "
                         "extension")
    if info.compressed:
        return CompressedFrame(path, info, identity=identity)
    mask_info = auxiliary_hdu(hdus, info, "MASK")
    kind = GzipFrame if path.suffix.lower() == ".gz" else FitsFrame
    return kind(path, info, mask_info, stack_dtype=stack_dtype, keep_open=keep_open,
                primary=hdus[0], identity=identity)
