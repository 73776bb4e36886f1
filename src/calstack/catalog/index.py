"""Scan folders of FITS frames into a table of header keywords, and select frames from it.

:class:`ImageIndex` is calstack's ``ccdproc.ImageFileCollection``: one row per image, one
column per keyword, case-insensitive filtering. Headers are read by the light parser in
:mod:`calstack.io.fitsheader` (no astropy per file, no pixel data; serially while the files come
from the page cache, in a thread pool when reading them waits on storage). A file that cannot
be read is a row with its reason in the ``error`` column, never an exception. Headers already
read are taken from the header cache (:mod:`calstack.io.headercache`) while their file is unchanged.
"""

from __future__ import annotations

import fnmatch
import gzip
import numbers
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import FrameError, OptionError, unknown_option
from ..io.fitsheader import AUXILIARY_EXTNAMES, HDUInfo, read_hdus
from ..io.headercache import HeaderCache, cache_path
from ..progress import as_progress
from .closeness import close, fold
from .columns import resolve_column, unreadable_mask

__all__ = ["DEFAULT_KEYWORDS", "FITS_SUFFIXES", "ImageIndex"]

#: Keywords indexed when ``keywords`` is not given.
DEFAULT_KEYWORDS = ("IMAGETYP", "EXPTIME", "FILTER", "NAXIS1", "NAXIS2", "BITPIX", "CCD-TEMP",
                    "GAIN", "DATE-OBS", "XBINNING", "YBINNING", "OBJECT", "COMBINED")

#: File name endings that are indexed when a folder is scanned (compared case-insensitively).
FITS_SUFFIXES = (".fit", ".fits", ".fts", ".fz", ".fit.gz", ".fits.gz", ".fts.gz")

_OWN_COLUMNS = ("file", "path", "hdu", "extname", "error")
_MAX_WORKERS = 32

# Keywords of a tile-compressed image's BINTABLE that describe the table, not the image
# (astropy's CompImageHDU.header hides them the same way).
_TABLE_KEYS = re.compile(
    r"(Z(IMAGE|CMPTYPE|BITPIX|NAXIS\d*|TILE\d+|NAME\d+|VAL\d+|MASKCMP|QUANTIZ|DITHER0|SIMPLE|"
    r"TENSION|EXTEND|BLOCKED|PCOUNT|GCOUNT|HECKSUM|DATASUM)|T(FIELDS|TYPE\d+|FORM\d+|UNIT\d+|"
    r"DIM\d+|NULL\d+|SCAL\d+|ZERO\d+|DISP\d+)|THEAP|CHECKSUM|DATASUM)")


# --------------------------------------------------------------------------- validation
def _as_list(name, value, *, allow_none=True):
    if value is None and allow_none:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [value]
    try:
        items = list(value)
    except TypeError:
        raise OptionError(f"{name} must be a str or a list of str, not "
                          f"{type(value).__name__}") from None
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise OptionError(f"{name} must be a str or a list of str; it holds {item!r}")
    return items


def _check_keywords(keywords):
    if isinstance(keywords, str) and keywords.strip() == "*":
        return "*"
    names = []
    for item in _as_list("keywords", keywords, allow_none=False):
        if not isinstance(item, str) or not item.strip():
            raise OptionError(f"keywords must be '*' or FITS keyword names; got {item!r}")
        name = item.strip().upper()
        if name.startswith("HIERARCH "):
            name = " ".join(name.split()[1:])
        if name == "EXTNAME" or name in names:
            continue  # EXTNAME is the index's own ``extname`` column
        if name.lower() in _OWN_COLUMNS:
            raise OptionError(f"keyword {item!r} clashes with the index's own column "
                              f"{name.lower()!r}; the index cannot hold it")
        names.append(name)
    return tuple(names)


def _check_workers(workers):
    if workers is None:
        return min(_MAX_WORKERS, (os.cpu_count() or 1) * 4)
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise OptionError(f"workers must be a positive int or None (default: "
                          f"min({_MAX_WORKERS}, 4 x CPU count)), not {workers!r}")
    return int(workers)


# --------------------------------------------------------------------------- finding files
def _is_fits_name(name: str) -> bool:
    return name.lower().endswith(FITS_SUFFIXES)


def _wanted(relname: str, include, exclude) -> bool:
    def hit(pattern):
        target = relname if "/" in pattern else relname.rsplit("/", 1)[-1]
        return fnmatch.fnmatch(target, pattern)

    if include and not any(hit(p) for p in include):
        return False
    return not (exclude and any(hit(p) for p in exclude))


def _scan_folder(folder: str, recursive: bool, prefix: str = ""):
    """Yield ``(path, relative name)`` of the FITS files of a folder, sorted by name."""
    try:
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
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            if recursive:
                yield from _scan_folder(entry.path, True, rel + "/")
        elif _is_fits_name(entry.name):
            yield entry.path, rel


def _find_files(locations, recursive, include, exclude):
    found, seen = [], set()
    for location in locations:
        location = os.path.abspath(os.fspath(location))
        if os.path.isdir(location):
            candidates = _scan_folder(location, recursive)
        elif os.path.exists(location):
            candidates = [(location, os.path.basename(location))]
        else:
            raise OptionError(f"locations: {location!r} does not exist; give folders or FITS "
                              "files")
        for path, rel in candidates:
            if not _wanted(rel, include, exclude):
                continue
            if path not in seen:
                seen.add(path)
                found.append((path, rel))
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


def _read_all(paths, wanted, workers, adaptive, tick=None):
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


def _stat(path):
    """``(size, mtime_ns)`` of a file, or None if it cannot be had."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _read_cached(paths, cache, folders, workers, adaptive, tick):
    """Rows of every file: from the cache where a file is unchanged, else read (every keyword)
    and stored, in one transaction that also drops the entries of files deleted from
    ``folders``."""
    stats = {path: stat for path in paths if (stat := _stat(path)) is not None}
    cached = cache.lookup(stats)
    missing = [path for path in paths if path not in cached]
    tick(len(paths) - len(missing))
    read = dict(zip(missing, _read_all(missing, None, workers, adaptive, tick), strict=True))
    cache.update([(path, *stats[path], rows) for path, (rows, lasting) in read.items()
                  if lasting and path in stats], folders=folders, seen=set(paths))
    return [cached[path] if path in cached else read[path][0] for path in paths]


# --------------------------------------------------------------------------- the table
def _column(name, values):
    """A Column (MaskedColumn where a value is None) of the narrowest fitting type."""
    from astropy.table import Column, MaskedColumn

    missing = values.count(None)
    present = [v for v in values if v is not None] if missing else values
    types = set(map(type, present))
    if not present:
        data = np.zeros(len(values), dtype="U1")
    elif types == {str}:
        data = np.array(values if not missing else [v or "" for v in values], dtype=str)
    elif types == {bool}:
        data = np.array([bool(v) for v in values], dtype=bool)
    elif types == {int} and -(2**63) <= min(present) and max(present) < 2**63:
        data = np.array(values if not missing else [v or 0 for v in values], dtype=np.int64)
    elif types <= {int, float}:
        data = np.array(values if not missing else [v or 0.0 for v in values], dtype=np.float64)
    else:
        data = np.array(["" if v is None else str(v) for v in values], dtype=str)
    if missing:
        return MaskedColumn(data, name=name, mask=[v is None for v in values])
    return Column(data, name=name, copy=False)


def _build_table(records, keywords):
    """Table from ``records`` = [(file, path, hdu, extname, header or None, error)]."""
    from astropy.table import Table

    if keywords == "*":
        union = {}
        for record in records:
            if record[4]:
                union.update(dict.fromkeys(record[4]))
        names = [k for k in union if k.lower() not in _OWN_COLUMNS]
    else:
        names = list(keywords)
    headers = [r[4] or {} for r in records]
    columns = [
        _column("file", [r[0] for r in records]),
        _column("path", [r[1] for r in records]),
        _column("hdu", [r[2] for r in records]) if records else _empty_int(),
        _column("extname", [r[3] for r in records]),
    ]
    columns += [_column(name.lower(), [h.get(name) for h in headers]) for name in names]
    columns.append(_column("error", [r[5] for r in records]))
    return Table(columns, copy=False)


def _empty_int():
    from astropy.table import Column

    return Column(np.array([], dtype=np.int64), name="hdu")


# --------------------------------------------------------------------------- matching
def _as_float(cell):
    if isinstance(cell, bool):
        return None
    if isinstance(cell, (int, float)):
        return float(cell)
    if isinstance(cell, str):
        try:
            return float(cell.strip().replace("D", "E").replace("d", "e"))
        except ValueError:
            return None
    return None


_TRUE = {"t", "true", "yes", "y", "1"}
_FALSE = {"f", "false", "no", "n", "0"}


def _as_bool(cell):
    if isinstance(cell, bool):
        return cell
    if isinstance(cell, str):
        text = cell.strip().lower()
        return True if text in _TRUE else False if text in _FALSE else None
    return None


def _close(a, b):
    return a is not None and close(a, b)


def _matcher(column, value):
    """A predicate ``cell -> bool`` (cell present: str, int, float or bool) for one criterion."""
    if isinstance(value, (list, tuple, set, frozenset)):
        if not value:
            raise OptionError(f"criterion for {column!r} is an empty list; give at least one value")
        tests = [_matcher(column, v) for v in value]
        return lambda cell: any(t(cell) for t in tests)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return lambda cell: _as_bool(cell) is value
    if isinstance(value, numbers.Real):
        number = float(value)
        return lambda cell: _close(_as_float(cell), number)
    if isinstance(value, str):
        text = fold(value)
        if text == "*":
            return lambda _cell: True
        number = _as_float(text)
        flag = _as_bool(text)

        def test(cell):
            if isinstance(cell, str):  # '70' also matches '70.0' in a column of strings
                return fold(cell) == text or (
                    number is not None and _close(_as_float(cell), number))
            if isinstance(cell, bool):
                return flag is cell
            return number is not None and _close(float(cell), number)

        return test
    raise OptionError(f"criterion for {column!r} must be a str, a number, a bool, '*' (keyword "
                      f"present) or a list of these, not {value!r}")


# --------------------------------------------------------------------------- the index
class ImageIndex:
    """A table of header keywords of the FITS frames in one or more folders.

    calstack's fast ``ccdproc.ImageFileCollection`` (about 25-30x faster on 3000 files, see
    ``bench/bench_index.py``): headers are read without astropy and without pixel data, and
    filtering is case-insensitive and tolerant of float noise.

    Parameters
    ----------
    locations : str, os.PathLike or list of these
        Folders to scan and/or FITS files to index. In a folder, files ending in ``.fit``,
        ``.fits``, ``.fts``, ``.fz`` or ``.fit[s].gz`` / ``.fts.gz`` (any case) are indexed;
        hidden files (names starting with ``.``) are skipped. A file named explicitly is
        indexed whatever its name.
    recursive : bool
        Also scan subfolders (their files are named ``sub/name.fits`` in the ``file`` column).
    include, exclude : str or list of str, optional
        Glob patterns (:mod:`fnmatch`, case-sensitive like a shell) that a file name must match /
        must not match. A pattern containing ``/`` is matched against the name relative to the
        scanned folder.
    keywords : sequence of str or '*'
        Header keywords to index, one column each (lower-case names). ``'*'`` indexes every
        keyword found in any file.
    workers : int, optional
        Threads reading headers; 1 reads serially. By default (None) the first files are read
        serially and a pool of up to ``min(32, 4 * os.cpu_count())`` threads takes over only if
        they were slow to read (cold cache, network file system): for cached files the parse
        is CPU-bound and threads only add contention for the GIL.
    cache : bool, str, os.PathLike or None
        The header cache (:mod:`calstack.io.headercache`), an SQLite file that remembers every
        keyword of each file read, keyed by path, size and modification time, so that indexing
        the same folders again reads only new and changed files (whatever ``keywords`` asks
        for). True (default): ``headers.sqlite`` in ``$CALSTACK_CACHE_DIR``, else in
        ``$XDG_CACHE_HOME/calstack`` or ``~/.cache/calstack``; a path: that file (or
        ``headers.sqlite`` in that folder); False or None: no cache, every header is read. The
        table is the same with or without it; a cache that cannot be used (corrupt, read-only)
        is rebuilt or skipped with a logged warning, never an error.
    progress : bool, str or calstack.progress.Progress
        Show a progress bar over the files read (True: when stderr is a terminal; see
        :func:`calstack.progress.as_progress`). Default: nothing is shown.

    Attributes
    ----------
    table : astropy.table.Table
        One row per image: ``file`` (name relative to the scanned folder; the bare name for a
        file given explicitly), ``path`` (full path),
        ``hdu`` (HDU number; -1 for a file that could not be read), ``extname``, one column per
        keyword (masked where a header lacks it), and ``error`` (the reason a file could not be
        read, ``''`` for good rows). A plain file gives one row (``hdu=0``); a multi-extension
        file with an empty primary gives one row per image extension (except ``MASK``,
        ``UNCERT`` and ``NCOMB`` ones), each inheriting the primary keywords it lacks. For a
        tile-compressed image, ``BITPIX`` and ``NAXISn`` are the image's (``ZBITPIX``,
        ``ZNAXISn``). A keyword column is numeric when every present value is a number (int or
        float), bool when every value is a logical, otherwise str.
    summary : astropy.table.Table
        The same table (the name ccdproc users know).
    keywords : tuple of str or '*'
        The indexed keywords (upper case).
    locations : tuple of str
        The scanned locations.

    Raises
    ------
    OptionError
        A location does not exist, or an option has a bad value.
    UnknownOptionError
        An unknown option name.

    Examples
    --------
    >>> index = ImageIndex("reduced/")                       # doctest: +SKIP
    >>> darks = index.filter(imagetyp="dark", exptime=300)   # doctest: +SKIP
    >>> darks.files(include_path=True)                       # doctest: +SKIP
    """

    def __init__(self, locations, *, recursive=False, include=None, exclude=None,
                 keywords=DEFAULT_KEYWORDS, workers=None, cache=True, progress=False,
                 **unknown):
        if unknown:
            valid = ("recursive", "include", "exclude", "keywords", "workers", "cache",
                     "progress")
            raise unknown_option(next(iter(unknown)), valid, where="ImageIndex()")
        if isinstance(locations, (str, os.PathLike)):
            locations = [locations]
        locations = _as_list("locations", locations, allow_none=False)
        if not locations:
            raise OptionError("locations is empty; give at least one folder or FITS file")
        if not isinstance(recursive, (bool, np.bool_)):
            raise OptionError(f"recursive must be True or False, not {recursive!r}")
        include = [os.fspath(p) for p in _as_list("include", include)]
        exclude = [os.fspath(p) for p in _as_list("exclude", exclude)]
        keywords = _check_keywords(keywords)
        adaptive = workers is None
        workers = _check_workers(workers)
        cache_file = cache_path(cache)

        found = _find_files(locations, bool(recursive), include, exclude)
        paths = [path for path, _ in found]
        cache = HeaderCache.open(cache_file) if cache_file else None
        with as_progress(progress).task("index", total=len(paths), unit="file") as task:
            if cache is None:
                wanted = None if keywords == "*" else keywords
                results = [rows for rows, _ in _read_all(paths, wanted, workers, adaptive,
                                                         task.update)]
            else:
                folders = [os.path.abspath(p) for p in locations if os.path.isdir(p)]
                with cache:
                    results = _read_cached(paths, cache, folders, workers, adaptive, task.update)
        records = [(rel, path, hdu, extname, header, error)
                   for (path, rel), rows in zip(found, results, strict=True)
                   for hdu, extname, header, error in rows]
        self._table = _build_table(records, keywords)
        self.keywords = keywords
        self.locations = tuple(os.fspath(p) for p in locations)

    @classmethod
    def _from_table(cls, table, *, keywords, locations):
        """An index over an existing table (used by :meth:`filter`; no disk access)."""
        index = cls.__new__(cls)
        index._table = table
        index.keywords = keywords
        index.locations = locations
        return index

    # ----------------------------------------------------------------------- access
    @property
    def table(self):
        """The index table (see the class docstring for its columns)."""
        return self._table

    @property
    def summary(self):
        """Alias of :attr:`table`, the name ``ccdproc.ImageFileCollection`` uses."""
        return self._table

    @property
    def unreadable(self):
        """The rows of files that could not be read (``hdu == -1``), with their ``error``."""
        return self._table[self.unreadable_mask]

    @property
    def unreadable_mask(self) -> np.ndarray:
        """A boolean per row: True for a file that could not be read (its ``error`` is set;
        :func:`calstack.catalog.columns.unreadable_mask`)."""
        return unreadable_mask(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        bad = int(self.unreadable_mask.sum())
        files = len(set(self._table["path"]))
        return (f"<ImageIndex: {len(self._table)} rows from {files} files, {bad} unreadable; "
                f"columns: {', '.join(self._table.colnames)}>")

    # ----------------------------------------------------------------------- selection
    def column_name(self, name) -> str:
        """The table column of a keyword: case-insensitive, ``_`` also matching ``-`` or a space,
        a ``HIERARCH`` prefix dropped (:func:`calstack.catalog.columns.resolve_column`). Raises
        ``UnknownOptionError`` with a hint if there is none.
        """
        return resolve_column(name, self._table.colnames, where="ImageIndex",
                              fix=f"to filter on another keyword, index it: ImageIndex(..., "
                                  f"keywords=[..., {str(name).upper()!r}]) or keywords='*'")

    def _match(self, criteria, kw):
        if criteria is None:
            criteria = {}
        elif not isinstance(criteria, dict):
            raise OptionError(f"criteria must be a dict of keyword -> value (or use keyword "
                              f"arguments), not {type(criteria).__name__}")
        merged = {**criteria, **kw}
        keep = ~self.unreadable_mask
        for name, value in merged.items():
            column = self.column_name(name)
            if value is None:
                raise OptionError(f"criterion for {name!r} is None; give a value, or '*' for "
                                  "'keyword present'")
            test = _matcher(column, value)
            col = self._table[column]
            missing = np.ma.getmaskarray(col)
            cells = np.asarray(col).tolist()
            keep &= np.array([not m and k and test(c) for c, m, k in zip(cells, missing, keep, strict=True)],
                             dtype=bool)
        return keep

    def filter(self, criteria=None, /, **kw) -> ImageIndex:
        """A new index holding only the rows that match every criterion.

        Parameters
        ----------
        criteria : dict, optional
            Keyword -> value, for names that are not Python identifiers (``{'ccd-temp': -20}``).
        **kw
            More criteria; ``ccd_temp=-20`` matches the column ``ccd-temp``.

        Returns
        -------
        ImageIndex
            A new index (same class) over the matching rows; no file is read again.

        Notes
        -----
        Keyword names are case-insensitive. Strings match case-insensitively after trimming
        blanks (``'dark'`` matches ``'DARK '``); numbers match within ``rel_tol=1e-6,
        abs_tol=1e-9`` (:func:`math.isclose`), also against a string cell that reads as a
        number, and a string criterion that reads as a number matches numeric cells (so
        ``exptime='70'`` works). ``'*'`` matches any row that has the keyword; a list matches any
        of its values. A row without the keyword never matches, nor do unreadable files, which
        are dropped even when no criterion is given.

        Raises
        ------
        UnknownOptionError
            A criterion names a column the index does not have (the message suggests one).
        OptionError
            A criterion value is None or of an unsupported type.
        """
        keep = self._match(criteria, kw)
        return self._from_table(self._table[keep], keywords=self.keywords,
                                locations=self.locations)

    def subset(self, keep) -> ImageIndex:
        """A new index of the rows where the boolean sequence ``keep`` is true."""
        keep = np.asarray(keep, bool)
        return self._from_table(self._table[keep], keywords=self.keywords,
                                locations=self.locations)

    def files(self, criteria=None, /, *, include_path=False, **kw) -> list[str]:
        """Names of the readable files matching the criteria (ccdproc's ``files_filtered``).

        Parameters
        ----------
        criteria : dict, optional
            As for :meth:`filter`.
        include_path : bool
            Return full paths instead of names relative to the scanned folder.
        **kw
            Criteria, as for :meth:`filter`.

        Returns
        -------
        list of str
            In index order; a multi-extension file with several matching HDUs is listed once.
        """
        keep = self._match(criteria, kw)
        column = self._table["path" if include_path else "file"]
        return list(dict.fromkeys(str(v) for v, k in zip(column, keep, strict=True) if k))
