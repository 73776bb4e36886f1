"""A light FITS header parser: HDU layout and keyword values without reading pixel data.

Reads 2880-byte blocks up to END, parses each 80-character card with string slicing, then seeks
past the data to the next HDU. Used by the index (thousands of files) and by the tile reader
(data offsets). ``.gz`` files are parsed through :mod:`gzip`; offsets then refer to the
decompressed stream.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass

from .errors import FrameError

__all__ = ["HDUInfo", "read_hdus", "parse_value"]

BLOCK = 2880
CARD = 80


@dataclass(frozen=True)
class HDUInfo:
    """Layout and keywords of one HDU."""

    index: int
    header: dict
    header_offset: int
    data_offset: int
    data_size: int
    bitpix: int
    shape: tuple
    extname: str | None
    compressed: bool

    @property
    def is_image(self) -> bool:
        """True if the HDU holds image pixels (primary, IMAGE extension or compressed image)."""
        if not self.shape:
            return False
        xtension = self.header.get("XTENSION")
        return self.compressed or xtension is None or str(xtension).strip().upper() == "IMAGE"


def parse_value(text: str):
    """Parse the value field of a card (after ``= ``): str, bool, int, float or raw str."""
    text = text.strip()
    if text.startswith("'"):
        out, i = [], 1
        while i < len(text):
            c = text[i]
            if c == "'":
                if text[i + 1 : i + 2] == "'":
                    out.append("'")
                    i += 2
                    continue
                break
            out.append(c)
            i += 1
        return "".join(out).rstrip()
    value = text.split("/", 1)[0].strip()
    if value == "T":
        return True
    if value == "F":
        return False
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value.replace("D", "E").replace("d", "e"))
    except ValueError:
        return value


def _parse_block_cards(raw: bytes, header: dict, path) -> bool:
    """Parse the cards of ``raw`` into ``header``; True once END is seen."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise FrameError(path, "header holds non-ASCII bytes; the file is corrupt") from None
    for start in range(0, len(text), CARD):
        card = text[start : start + CARD]
        key = card[:8].rstrip()
        if key == "END":
            return True
        if key in ("", "COMMENT", "HISTORY"):
            continue
        if key == "HIERARCH":
            name, sep, rest = card[9:].partition("=")
            if sep:
                header[" ".join(name.split())] = parse_value(rest)
            continue
        if card[8:10] == "= ":
            header[key] = parse_value(card[10:])
    return False


def _open(path):
    if str(path).lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_hdus(path, *, max_hdus=None) -> list[HDUInfo]:
    """Return the :class:`HDUInfo` of every HDU of a FITS file (``.gz`` too).

    Raises
    ------
    FrameError
        If the file cannot be read, is not FITS, or is truncated; the message says why.
    """
    hdus = []
    try:
        with _open(path) as f:
            size = None if isinstance(f, gzip.GzipFile) else os.fstat(f.fileno()).st_size
            offset = 0
            while max_hdus is None or len(hdus) < max_hdus:
                header: dict = {}
                header_offset = offset
                first = True
                while True:
                    raw = f.read(BLOCK)
                    if not raw:
                        if first and hdus:
                            return hdus
                        if first:
                            raise FrameError(path, "is empty, not a FITS file")
                        raise FrameError(path, "header ends without END card: truncated file")
                    if len(raw) < BLOCK:
                        if first and hdus and not raw.strip(b"\0 "):
                            return hdus
                        raise FrameError(path, f"truncated: header block at byte {offset} is "
                                         f"{len(raw)} of {BLOCK} bytes")
                    if first and not hdus and not raw.startswith(b"SIMPLE  ="):
                        raise FrameError(path, "is not a FITS file (does not start with SIMPLE)")
                    if first and hdus and not raw.startswith(b"XTENSION="):
                        return hdus  # trailing bytes after the last HDU
                    first = False
                    offset += BLOCK
                    if _parse_block_cards(raw, header, path):
                        break
                hdus.append(_layout(path, len(hdus), header, header_offset, offset))
                info = hdus[-1]
                padded = -(-info.data_size // BLOCK) * BLOCK
                if size is not None:
                    if offset + info.data_size > size:
                        raise FrameError(path, f"truncated: data ends at byte {size} of "
                                         f"{offset + info.data_size} expected")
                    f.seek(padded, os.SEEK_CUR)
                else:
                    _skip(f, padded, path)
                offset += padded
    except FrameError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise FrameError(path, f"cannot be read: {reason}") from exc
    return hdus


def _skip(f, n, path):
    while n > 0:
        chunk = f.read(min(n, 1 << 20))
        if not chunk:
            raise FrameError(path, "truncated: data ends early")
        n -= len(chunk)


def _int(header, key, path, default=None):
    value = header.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise FrameError(path, f"keyword {key} is {value!r}, not an integer; the header is corrupt")
    return value


def _layout(path, index, header, header_offset, data_offset) -> HDUInfo:
    bitpix = _int(header, "BITPIX", path)
    naxis = _int(header, "NAXIS", path)
    if bitpix not in (8, 16, 32, 64, -32, -64) or not 0 <= naxis <= 999:
        raise FrameError(path, f"HDU {index}: BITPIX={bitpix}, NAXIS={naxis} are not valid FITS")
    dims = [_int(header, f"NAXIS{i}", path) for i in range(1, naxis + 1)]
    pixels = 1
    for d in dims:
        pixels *= d
    if naxis == 0:
        pixels = 0
    data_size = abs(bitpix) // 8 * _int(header, "GCOUNT", path, 1) * (
        _int(header, "PCOUNT", path, 0) + pixels)
    compressed = header.get("ZIMAGE") is True
    shape = tuple(reversed(dims)) if naxis else ()
    if compressed:
        znaxis = _int(header, "ZNAXIS", path)
        shape = tuple(_int(header, f"ZNAXIS{i}", path) for i in range(znaxis, 0, -1))
        bitpix = _int(header, "ZBITPIX", path)
    extname = header.get("EXTNAME")
    return HDUInfo(index=index, header=header, header_offset=header_offset,
                   data_offset=data_offset, data_size=data_size, bitpix=bitpix, shape=shape,
                   extname=str(extname).strip() if extname is not None else None,
                   compressed=compressed)
