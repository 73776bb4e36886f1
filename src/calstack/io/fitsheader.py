"""A light FITS header parser: HDU layout and keyword values without reading pixel data.

Reads 2880-byte blocks up to ``END``, parses each 80-character card with string slicing, then
seeks past the data to the next HDU. Used by the index (thousands of files) and by the tile
reader (data offsets), so it imports nothing heavy: no astropy, no numpy.

``.gz`` files are parsed through :mod:`gzip`; offsets then refer to the decompressed stream.
``.fz`` files are plain FITS whose images are BINTABLEs with ``ZIMAGE = T`` (tile compression);
their :class:`HDUInfo` reports the image's ``ZBITPIX`` and ``ZNAXISn``.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
import zlib
from dataclasses import dataclass

from ..errors import FrameError

__all__ = ["AUXILIARY_EXTNAMES", "STRUCTURAL_KEYWORDS", "HDUInfo", "parse_value", "printable",
           "read_hdus"]

BLOCK = 2880
#: Extensions that describe another HDU (calstack's and CCDData's), never science images.
AUXILIARY_EXTNAMES = frozenset(("MASK", "UNCERT", "NCOMB"))
CARD = 80
_GZIP_MAGIC = b"\x1f\x8b"
_VALID_BITPIX = frozenset((8, 16, 32, 64, -32, -64))
_COMMENTARY = frozenset(("", "COMMENT", "HISTORY"))


@dataclass(frozen=True)
class HDUInfo:
    """Layout and keywords of one HDU, as found by :func:`read_hdus`.

    Attributes
    ----------
    index : int
        HDU number, 0 = primary.
    header : dict
        Upper-case keyword -> value (str, bool, int, float; ``None`` for an undefined value; the
        raw text for a value that does not parse). ``COMMENT``, ``HISTORY`` and blank cards are
        left out; a ``HIERARCH A B`` card gives the key ``'A B'``; long strings continued with
        ``CONTINUE`` cards are joined; the last occurrence of a keyword wins. When
        :func:`read_hdus` is given ``keywords``, only those and the structural ones are kept.
    header_offset : int
        Byte offset of the header in the (decompressed) stream.
    data_offset : int
        Byte offset of the data.
    data_size : int
        Data bytes, without the padding to 2880.
    bitpix : int
        BITPIX of the image (``ZBITPIX`` for a tile-compressed image).
    shape : tuple of int
        Image shape in numpy order (``NAXISn, ..., NAXIS1``; from ``ZNAXISn`` for a compressed
        image); ``()`` when NAXIS = 0.
    extname : str or None
        ``EXTNAME``, trailing blanks removed.
    compressed : bool
        True for a tile-compressed image (a BINTABLE with ``ZIMAGE = T``).
    """

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
        if not self.shape or 0 in self.shape:
            return False
        if self.compressed or self.index == 0:
            return True
        xtension = self.header.get("XTENSION")
        return isinstance(xtension, str) and xtension.strip().upper() == "IMAGE"


# --------------------------------------------------------------------------- card values
def _string(text: str) -> str:
    """The value of a quoted string starting at ``text[0] == "'"`` ('' unescaped, rstripped)."""
    parts, start = [], 1
    while True:
        end = text.find("'", start)
        if end < 0:  # no closing quote: take what is there
            parts.append(text[start:])
            break
        if text[end + 1 : end + 2] == "'":
            parts.append(text[start : end + 1])
            start = end + 2
            continue
        parts.append(text[start:end])
        break
    return "".join(parts).rstrip()


_CONSTANTS = {"T": True, "F": False, "": None}


def _scalar(text: str):
    """A non-string value field (left-stripped): bool, int, float, None or the raw text."""
    slash = text.find("/")
    if slash >= 0:
        text = text[:slash]
    text = text.rstrip()
    if text in _CONSTANTS:
        return _CONSTANTS[text]
    digits = text[1:] if text[0] in "+-" else text
    if digits.isdigit():
        try:
            return int(text)
        except ValueError:  # non-ASCII digits
            return text
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return float(text.replace("D", "E").replace("d", "e"))
    except ValueError:
        return text


def printable(text: str) -> str:
    """``text`` as printable ASCII, which FITS cards hold: other characters as Python escapes
    (``'dark_\\xe9.fits'`` for ``'dark_é.fits'``; no information is lost).

    Parameters
    ----------
    text : str

    Returns
    -------
    str
    """
    return "".join(c if " " <= c <= "~" else ascii(c)[1:-1] for c in text)


def parse_value(text: str):
    """Parse the value field of a card (the text after ``"= "``).

    Returns a str (quotes removed, ``''`` unescaped, trailing blanks stripped), a bool (``T`` /
    ``F``), an int, a float (``1.5E3`` and ``1.5D3``), ``None`` for an empty value, or the raw
    value text if none of these fit (for example a complex number).
    """
    text = text.lstrip()
    if text[:1] == "'":
        return _string(text)
    return _scalar(text)


#: Keywords :func:`read_hdus` always keeps, whatever ``keywords`` asks for (the HDU layout
#: needs them); ``NAXISn`` and every keyword starting with ``Z`` (tile compression) are kept too.
STRUCTURAL_KEYWORDS = frozenset(("XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "GROUPS",
                                 "EXTNAME"))


_CARDS = re.compile(".{80}", re.DOTALL).findall

# What a card means, as _parse_card returns it: (keyword, value) for a valued card, or one of
# these markers in place of the keyword.
_END = object()
_CONTINUE = object()
_SKIP = (None, None)  # COMMENT, HISTORY, blank and unrecognised cards

#: Parsed cards by their 80 characters. Files of one night repeat most cards (TELESCOP,
#: INSTRUME, GAIN, NAXIS1, ...), so the index parses each distinct card once. Values are
#: immutable (str, int, float, bool, None), so sharing them is safe; dict get/set are atomic
#: under the GIL, so threads may share the cache. Cleared when it reaches _CACHE_MAX entries.
_CARD_CACHE: dict = {}
_CACHE_MAX = 20_000


def _parse_card(card: str):
    """(KEYWORD, value), ``(_END, None)``, ``(_CONTINUE, string)`` or ``_SKIP`` for one card."""
    if card[8:10] == "= ":
        key = card[:8].rstrip().upper()
        if key in _COMMENTARY:
            return _SKIP
        return (key, parse_value(card[10:]))
    key = card[:8].rstrip().upper()
    if key == "END":
        return (_END, None)
    if key == "CONTINUE":
        more = card[8:].lstrip()
        return (_CONTINUE, _string(more)) if more.startswith("'") else _SKIP
    if key == "HIERARCH":
        name, sep, rest = card[8:].partition("=")
        name = " ".join(name.split()).upper()
        return (name, parse_value(rest)) if sep and name else _SKIP
    if key not in _COMMENTARY and card[8:9] == "=":
        return (key, parse_value(card[9:]))  # "KEY     =value" (no blank): tolerated
    return _SKIP


def _check_cards(cards, path, offset) -> None:
    """Raise FrameError if a keyword field before END is not printable ASCII."""
    for number, card in enumerate(cards):
        key = card[:8]
        if key == "END     ":
            return
        if not (key.isascii() and key.isprintable()):
            raise FrameError(path, f"header card {offset // CARD + number + 1} (byte "
                             f"{offset + number * CARD}) is not printable ASCII: the header is "
                             "corrupt (binary bytes before the END card)")


def _parse_cards(text: str, header: dict, state: list, check: bool, wanted, path,
                 offset: int) -> bool:
    """Parse the 36 cards of one header block into ``header``; True once END is seen.

    ``state[0]`` holds the keyword of the previous valued card (for ``CONTINUE``). With
    ``check`` the keyword fields are validated first (the block has bytes that are not
    printable ASCII). ``wanted`` (a set of upper-case names, or None for all) restricts the
    keywords stored; ``NAXISn`` and ``Z*`` keywords are always stored.
    """
    cards = _CARDS(text)
    if check:
        _check_cards(cards, path, offset)
    cache = _CARD_CACHE
    get = cache.get
    last = state[0]
    for card in cards:
        parsed = get(card)
        if parsed is None:
            if wanted is not None and card[8:10] == "= ":  # unwanted: skip without parsing
                key = card[:8].rstrip().upper()
                if key not in wanted and key[:5] != "NAXIS" and key[:1] != "Z":
                    last = None
                    continue
            parsed = _parse_card(card)
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[card] = parsed
        key, value = parsed
        if key is None:
            last = None
        elif key is _END:
            state[0] = None
            return True
        elif key is _CONTINUE:
            previous = header.get(last) if last is not None else None
            if isinstance(previous, str) and previous.endswith("&"):
                header[last] = previous[:-1] + value
        elif wanted is not None and key not in wanted and key[:5] != "NAXIS" and key[:1] != "Z":
            last = None
        else:
            header[key] = value
            last = key
    state[0] = last
    return False


# --------------------------------------------------------------------------- HDU walk
_PRINTABLE = bytes(range(32, 127))


@functools.lru_cache(maxsize=64)
def _wanted_set(keywords) -> frozenset:
    """Upper-case names of ``keywords`` plus the structural ones."""
    return frozenset(" ".join(k.split()).upper() for k in STRUCTURAL_KEYWORDS.union(keywords))


def _is_gzip_name(path) -> bool:
    return os.fspath(path).lower().endswith(".gz")


def read_hdus(path, *, max_hdus=None, keywords=None) -> list[HDUInfo]:
    """Return the layout and keywords of every HDU of a FITS file, without reading pixels.

    Parameters
    ----------
    path : str or os.PathLike
        A FITS file; a name ending in ``.gz`` (any case) is read through :mod:`gzip`.
    max_hdus : int, optional
        Stop after this many HDUs (``1``: the primary header only). The data of the last HDU
        read is not skipped, so a ``.gz`` file is not decompressed past that header.
    keywords : collection of str, optional
        Parse only these (upper-case) keywords into each ``header``, plus
        :data:`STRUCTURAL_KEYWORDS`, ``NAXISn`` and ``Z*`` keywords; default: all. A speed-up for
        callers that need a few keywords of many files.

    Returns
    -------
    list of HDUInfo
        One per HDU, in file order.

    Raises
    ------
    FrameError
        If the file cannot be read, is empty, is not FITS, has a header without END, a corrupt
        (binary) card, a corrupt gzip stream, or data shorter than its header announces (checked
        for uncompressed files); the message names the file and says why.
    """
    if max_hdus is not None and (isinstance(max_hdus, bool) or not isinstance(max_hdus, int)
                                 or max_hdus < 1):
        raise ValueError(f"max_hdus must be a positive int or None, not {max_hdus!r}")
    wanted = None
    if keywords is not None:
        wanted = _wanted_set(keywords if isinstance(keywords, (tuple, frozenset))
                             else tuple(keywords))
    try:
        if _is_gzip_name(path):
            with gzip.open(path, "rb") as f:
                return _walk(path, lambda _offset: f.read(BLOCK), None, max_hdus, wanted,
                             lambda padded, size, offset: _skip(f, padded, size, path, offset))
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            return _walk(path, lambda offset: os.pread(fd, BLOCK, offset), size, max_hdus,
                         wanted, None)
        finally:
            os.close(fd)
    except FrameError:
        raise
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if _is_gzip_name(path) and not isinstance(exc, (FileNotFoundError, PermissionError,
                                                        IsADirectoryError)):
            raise FrameError(path, f"gzip does not decompress ({reason}); "
                             "re-copy the file") from exc
        raise FrameError(path, f"cannot be read: {reason}") from exc


def _walk(path, read, size, max_hdus, wanted, skip) -> list[HDUInfo]:
    """Walk the HDUs; ``read(offset)`` returns the block at ``offset`` (gzip: the next block),
    ``size`` is the file size (None for gzip), ``skip`` drops gzip data (None: nothing to do).
    """
    hdus: list[HDUInfo] = []
    offset = 0
    while True:
        header: dict = {}
        header_offset = offset
        last = [None]
        first = True
        while True:
            raw = read(offset)
            if first:
                if not hdus:
                    if not raw:
                        raise FrameError(path, "is empty (0 bytes), not a FITS file")
                    if not raw.startswith(b"SIMPLE  ="):
                        if raw.startswith(_GZIP_MAGIC):
                            raise FrameError(path, "is gzip-compressed but not named .gz; "
                                             "rename it to end in .gz")
                        raise FrameError(path, "is not a FITS file (it does not start with "
                                         "SIMPLE =)")
                elif not raw.startswith(b"XTENSION="):
                    return hdus  # end of file, or padding/junk after the last HDU
            if len(raw) < BLOCK:
                raise FrameError(path, f"truncated: the header starting at byte {header_offset} "
                                 f"ends without an END card (file ends at byte "
                                 f"{offset + len(raw)})")
            first = False
            text = raw.decode("latin-1")
            check = bool(raw.translate(None, _PRINTABLE))
            done = _parse_cards(text, header, last, check, wanted, path, offset)
            offset += BLOCK
            if done:
                break
        info = _layout(path, len(hdus), header, header_offset, offset)
        hdus.append(info)
        if size is not None and offset + info.data_size > size:
            raise FrameError(path, f"truncated: data ends at byte {size} of "
                             f"{offset + info.data_size} expected; re-copy the file")
        if max_hdus is not None and len(hdus) >= max_hdus:
            return hdus
        padded = -(-info.data_size // BLOCK) * BLOCK
        if size is not None and offset + padded >= size:
            return hdus  # the last HDU (its padding may be missing)
        if skip is not None:
            skip(padded, info.data_size, offset)
        offset += padded


def _skip(f, padded, data_size, path, offset):
    """Skip ``padded`` bytes of a gzip stream (read and drop); only padding may be missing."""
    done = 0
    while done < padded:
        chunk = f.read(min(padded - done, 1 << 20))
        if not chunk:
            if done < data_size:
                raise FrameError(path, f"truncated: data ends at byte {offset + done} of "
                                 f"{offset + data_size} expected; re-copy the file")
            return
        done += len(chunk)


_NAXIS = tuple(f"NAXIS{i}" for i in range(1000))
_ZNAXIS = tuple(f"ZNAXIS{i}" for i in range(1000))


def _int(header, key, path, index, default=None):
    value = header.get(key, default)
    if type(value) is not int:
        raise FrameError(path, f"HDU {index}: keyword {key} is {value!r}, not an integer; the "
                         "header is corrupt")
    return value


def _layout(path, index, header, header_offset, data_offset) -> HDUInfo:
    get = header.get
    bitpix = get("BITPIX")
    naxis = get("NAXIS")
    if type(bitpix) is not int or type(naxis) is not int:  # exactly int: a bool is not one here
        bitpix = _int(header, "BITPIX", path, index)
        naxis = _int(header, "NAXIS", path, index)
    if bitpix not in _VALID_BITPIX or not 0 <= naxis <= 999:
        raise FrameError(path, f"HDU {index}: BITPIX={bitpix}, NAXIS={naxis} are not valid FITS")
    dims = [get(key) for key in _NAXIS[1 : naxis + 1]]
    pixels = 0
    if naxis:
        for i, d in enumerate(dims):
            if type(d) is not int or d < 0:
                raise FrameError(path, f"HDU {index}: keyword NAXIS{i + 1} is {d!r}, not an "
                                 "integer >= 0; the header is corrupt")
        pixels = 1
        for d in dims[1:] if (dims[0] == 0 and get("GROUPS") is True) else dims:
            pixels *= d
    pcount = get("PCOUNT", 0)
    gcount = get("GCOUNT", 1)
    if type(pcount) is not int or type(gcount) is not int:
        pcount = _int(header, "PCOUNT", path, index, 0)
        gcount = _int(header, "GCOUNT", path, index, 1)
    data_size = abs(bitpix) // 8 * gcount * (pcount + pixels) if (naxis or pcount) else 0
    shape = tuple(dims[::-1])
    compressed = get("ZIMAGE") is True
    if compressed:
        znaxis = _int(header, "ZNAXIS", path, index)
        if not 0 <= znaxis <= 999:
            raise FrameError(path, f"HDU {index}: ZNAXIS={znaxis} is not valid")
        shape = tuple(_int(header, _ZNAXIS[i], path, index) for i in range(znaxis, 0, -1))
        bitpix = _int(header, "ZBITPIX", path, index)
    extname = get("EXTNAME")
    if extname is not None:
        extname = extname.strip() if isinstance(extname, str) else str(extname)
    return HDUInfo(index, header, header_offset, data_offset, data_size, bitpix, shape, extname,
                   compressed)
