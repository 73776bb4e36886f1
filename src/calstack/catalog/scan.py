"""Finding the FITS files of folders, and reading their headers into index rows.

Headers are read by the light parser in :mod:`calstack.io.fitsheader` (no astropy per file, no
pixel data): serially while the files come from the page cache, in a thread pool when reading
them waits on storage. Headers already read come from the header cache
(:mod:`calstack.io.headercache`) while their file is unchanged. A file that cannot be read gives
one row with its reason, never an exception. :class:`calstack.ImageIndex` builds its table from
these rows.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gzip
import logging
import os
import re
import stat
import time
from concurrent.futures import ThreadPoolExecutor

from ..errors import FrameError, OptionError
from ..io.fitsheader import AUXILIARY_EXTNAMES, HDUInfo, read_hdus
from ..io.reader import file_identity

__all__ = ["FITS_SUFFIXES", "find_files", "read_all", "read_cached"]

log = logging.getLogger("calstack")

#: File name endings that are indexed when a folder is scanned (compared case-insensitively).
FITS_SUFFIXES = (".fit", ".fits", ".fts", ".fz", ".fit.gz", ".fits.gz", ".fts.gz")

# Keywords of a tile-compressed image's BINTABLE that describe the table, not the image
# (astropy's CompImageHDU.header hides them the same way).
_TABLE_KEYS = re.compile(
    r"(Z(IMAGE|CMPTYPE|BITPIX|NAXIS\d*|TILE\d+|NAME\d+|VAL\d+|MASKCMP|QUANTIZ|DITHER0|SIMPLE|"
    r"TENSION|EXTEND|BLOCKED|PCOUNT|GCOUNT|HECKSUM|DATASUM)|T(FIELDS|TYPE\d+|FORM\d+|UNIT\d+|"
    r"DIM\d+|NULL\d+|SCAL\d+|ZERO\d+|DISP\d+)|THEAP|CHECKSUM|DATASUM)")


def _is_fits_name(name: str) -> bool:
    return name.lower().endswith(FITS_SUFFIXES)


def _wanted(relname: str, include, exclude) -> bool:
    def hit(pattern):
        target = relname if "/" in pattern else relname.rsplit("/", 1)[-1]
        return fnmatch.fnmatch(target, pattern)

    if include and not any(hit(p) for p in include):
        return False
    return not (exclude and any(hit(p) for p in exclude))


def _scan_folder(folder: str, recursive: bool, prefix: str = "", visited=None):
    """Yield ``(path, relative name, os.stat result)`` of the FITS files of a folder, sorted by
    name.

    Subfolders (with ``recursive``) are visited once each, by ``(st_dev, st_ino)``: a link back
    up the tree or two links to one folder are not followed again. Entries that are not
    regular files (FIFOs, devices, sockets) are skipped with a warning: reading one could hang.
    """
    visited = set() if visited is None else visited
    try:
        st = os.stat(folder)
        visited.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise OptionError(f"locations: cannot list folder {folder!r}: "
                          f"{exc.strerror or exc}") from exc
    for entry in entries:
        if entry.name.startswith("."):
            continue  # hidden files, including macOS '._x.fits' resource forks
        rel = prefix + entry.name
        try:
            st = entry.stat()
        except OSError:
            continue  # a dangling link, or gone meanwhile
        if stat.S_ISDIR(st.st_mode):
            if recursive and (st.st_dev, st.st_ino) not in visited:
                yield from _scan_folder(entry.path, True, rel + "/", visited)
        elif _is_fits_name(entry.name):
            if stat.S_ISREG(st.st_mode):
                yield entry.path, rel, st
            else:
                log.warning("skipping %s: not a regular file (a FIFO, device or socket)",
                            entry.path)


def _hint_recursive(folder):
    """Warn when a folder has no FITS file but its subfolders do (N.I.N.A. and ASIAIR put
    BIAS/, DARK/, FLAT/ in subfolders)."""
    with_fits = []
    with os.scandir(folder) as it:
        for entry in sorted(it, key=lambda e: e.name):
            if entry.is_dir() and not entry.name.startswith("."):
                with contextlib.suppress(OSError), os.scandir(entry.path) as sub:
                    if any(_is_fits_name(e.name) for e in sub):
                        with_fits.append(entry.name)
    if with_fits:
        log.warning("%s has no FITS files, but its subfolders %s do: pass --recursive (-r; "
                    "recursive=True) to index them", folder, ", ".join(with_fits[:5]) +
                    (", ..." if len(with_fits) > 5 else ""))


def find_files(locations, recursive, include, exclude):
    """``(path, relative name, identity)`` of the FITS files of ``locations`` (folders or
    files), in order; one file reached by two paths (links) is listed once, by its first path.
    The identity (:func:`calstack.io.reader.file_identity`) is taken before the header is read,
    so a file changed after it is not the file indexed."""
    found, seen = [], set()
    for location in locations:
        location = os.path.abspath(os.fspath(location))
        if os.path.isdir(location):
            candidates = list(_scan_folder(location, recursive))
            if not candidates and not recursive:
                _hint_recursive(location)
        elif os.path.exists(location):
            st = os.stat(location)
            if not stat.S_ISREG(st.st_mode):
                raise OptionError(f"locations: {location!r} is not a regular file (a FIFO, "
                                  "device or socket); give folders or FITS files")
            candidates = [(location, os.path.basename(location), st)]
        else:
            raise OptionError(f"locations: {location!r} does not exist; give folders or FITS "
                              "files")
        for path, rel, st in candidates:
            if not _wanted(rel, include, exclude):
                continue
            identity = (st.st_dev, st.st_ino)
            if identity in seen:
                log.info("skipping %s: the same file as one indexed already", path)
                continue
            seen.add(identity)
            found.append((path, rel, file_identity(st)))
    return found


# --------------------------------------------------------------------------- reading headers
def _image_header(info: HDUInfo) -> dict:
    """The header of an image HDU as the image sees it (compressed: the ZIMAGE translation)."""
    header = info.header
    if not info.compressed:
        return header
    out = {k: v for k, v in header.items() if not _TABLE_KEYS.fullmatch(k)}
    out["BITPIX"] = header["ZBITPIX"]
    out["NAXIS"] = header["ZNAXIS"]
    for i in range(1, header["ZNAXIS"] + 1):
        out[f"NAXIS{i}"] = header[f"ZNAXIS{i}"]
    if "ZSIMPLE" in header:
        out.pop("XTENSION", None)
        out = {"SIMPLE": header["ZSIMPLE"], **out}
    else:
        out["XTENSION"] = header.get("ZTENSION", "IMAGE")
        out["PCOUNT"] = header.get("ZPCOUNT", 0)
        out["GCOUNT"] = header.get("ZGCOUNT", 1)
    for z, plain in (("ZHECKSUM", "CHECKSUM"), ("ZDATASUM", "DATASUM")):
        if z in header:
            out[plain] = header[z]
    return out


def _read_file(path: str, wanted) -> tuple[list, bool]:
    """Rows ``(hdu, extname, header, error)`` of one file, and whether they last.

    An error becomes one ``hdu=-1`` row. The rows last (may be cached) unless the file could not
    be read for a reason outside it (permissions, I/O error) or the parser failed unexpectedly.
    """
    try:
        if path.lower().endswith(".gz"):  # do not decompress past the primary if not needed
            hdus = read_hdus(path, max_hdus=1, keywords=wanted)
            if not hdus[0].is_image:
                hdus = read_hdus(path, keywords=wanted)
        else:
            hdus = read_hdus(path, keywords=wanted)
    except FrameError as exc:
        cause = exc.__cause__
        lasting = not isinstance(cause, OSError) or isinstance(cause, gzip.BadGzipFile)
        return [(-1, None, None, exc.reason)], lasting
    except Exception as exc:  # noqa: BLE001 - the index reports, it does not raise
        return [(-1, None, None, (f"unexpected error reading the header: "
                                  f"{type(exc).__name__}: {exc}"))], False
    return _rows(hdus), True


def _rows(hdus) -> list:
    """Rows ``(hdu, extname, header, error)`` of the image HDUs of a file read without error."""
    primary = hdus[0]
    if primary.is_image:
        return [(0, primary.extname, _image_header(primary), "")]
    rows = []
    for info in hdus[1:]:
        if info.is_image and (info.extname or "").upper() not in AUXILIARY_EXTNAMES:
            header = dict(primary.header)
            header.pop("EXTNAME", None)
            header.update(_image_header(info))
            rows.append((info.index, info.extname, header, ""))
    if not rows:
        kinds = ", ".join(str(h.header.get("XTENSION", "empty primary")).strip() for h in hdus)
        return [(-1, None, None, f"has no image HDU ({len(hdus)} HDU(s): {kinds})")]
    return rows


#: Files read serially before deciding whether threads are worth it (``workers=None``).
_PROBE_FILES = 48
#: Mean seconds per probed file above which reading waits on storage (cold cache, network
#: file system) and a thread pool pays; below it the parse is CPU-bound and threads only add
#: GIL contention (3000 cached files of bench/bench_index.py on 2 cores: 1 thread 0.097 s,
#: 2 threads 0.100 s, 8 threads 0.119 s).
_SLOW_FILE_S = 250e-6


def _read_serial(paths, wanted, tick=None):
    results = []
    for path in paths:
        results.append(_read_file(path, wanted))
        if tick is not None:
            tick(1)
    return results


def read_all(paths, wanted, workers, adaptive, tick=None):
    """``(rows, lasting)`` of every file, in order (see :func:`_read_file`); serial or in a
    thread pool (see :class:`ImageIndex`). ``tick(n)`` is called as files are read (progress)."""
    head = []
    if workers == 1 or len(paths) <= _PROBE_FILES:
        return _read_serial(paths, wanted, tick)
    if adaptive:
        start = time.perf_counter()
        head = _read_serial(paths[:_PROBE_FILES], wanted, tick)
        if (time.perf_counter() - start) / _PROBE_FILES < _SLOW_FILE_S:
            return head + _read_serial(paths[_PROBE_FILES:], wanted, tick)
        paths = paths[_PROBE_FILES:]
    size = max(1, -(-len(paths) // (workers * 4)))
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    with ThreadPoolExecutor(max_workers=min(workers, len(chunks)),
                            thread_name_prefix="calstack-index") as pool:
        for chunk in pool.map(_read_serial, chunks, [wanted] * len(chunks)):
            head.extend(chunk)
            if tick is not None:
                tick(len(chunk))
        return head


def read_cached(stats, cache, folders, workers, adaptive, tick):
    """Rows of every file of ``stats`` (path -> identity when found, :func:`find_files`): from
    the cache where a file is unchanged, else read (every keyword) and stored, in one
    transaction that also drops the entries of files deleted from ``folders``."""
    paths = list(stats)
    cached = cache.lookup(stats)
    missing = [path for path in paths if path not in cached]
    tick(len(paths) - len(missing))
    read = dict(zip(missing, read_all(missing, None, workers, adaptive, tick), strict=True))
    cache.update([(path, *stats[path], rows) for path, (rows, lasting) in read.items()
                  if lasting], folders=folders, seen=set(paths))
    return [cached[path] if path in cached else read[path][0] for path in paths]
