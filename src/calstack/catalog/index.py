"""A table of the header keywords of folders of FITS frames, and selecting frames from it.

:class:`ImageIndex` is calstack's ``ccdproc.ImageFileCollection``: one row per image, one
column per keyword, case-insensitive filtering. The files are found and their headers read (or
taken from the header cache) by :mod:`calstack.catalog.scan`; a file that cannot be read is a
row with its reason in the ``error`` column, never an exception.
"""

from __future__ import annotations

import logging
import numbers
import os

import numpy as np

from ..errors import OptionError, unknown_option
from ..io.headercache import HeaderCache, cache_path
from ..progress import as_progress
from .closeness import close, fold
from .columns import resolve_column, unreadable_mask
from .conventions import DEFAULT_TOLERANCES, master_marks, normalise, read_keywords
from .frametable import FrameTable, frame_column
from .scan import FITS_SUFFIXES, find_files, read_all, read_cached

__all__ = ["DEFAULT_KEYWORDS", "FITS_SUFFIXES", "ImageIndex"]

log = logging.getLogger("calstack")

#: Keywords indexed when ``keywords`` is not given.
DEFAULT_KEYWORDS = ("IMAGETYP", "EXPTIME", "FILTER", "NAXIS1", "NAXIS2", "BITPIX", "CCD-TEMP",
                    "GAIN", "DATE-OBS", "XBINNING", "YBINNING", "OBJECT", "COMBINED")

_OWN_COLUMNS = ("file", "path", "hdu", "extname", "master", "error")
_MAX_WORKERS = 32

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


# --------------------------------------------------------------------------- the table
def _build_table(records, keywords):
    """FrameTable from ``records`` = [(file, path, hdu, extname, header or None, error)].

    Headers are read through :func:`calstack.catalog.conventions.normalise` (aliases, numbers
    written as text); the keywords the conventions read are columns too where any frame has
    them, and ``master`` says why a frame is itself a master ('' if it is not).
    """
    headers, warned = [], set()
    for record in records:
        header, problems = normalise(record[4]) if record[4] else ({}, [])
        if problems and record[1] not in warned:
            warned.add(record[1])
            for problem in problems:
                log.warning("%s: %s", record[1], problem)
        headers.append(header)
    if keywords == "*":
        union = {}
        for header in headers:
            union.update(dict.fromkeys(header))
        names = [k for k in union if k.lower() not in _OWN_COLUMNS]
    else:
        names = list(keywords)
        names += [k for k in read_keywords()
                  if k not in names and any(k in h for h in headers)]
    columns = {
        "file": frame_column([r[0] for r in records]),
        "path": frame_column([r[1] for r in records]),
        "hdu": frame_column([r[2] for r in records]) if records else np.array([], np.int64),
        "extname": frame_column([r[3] for r in records]),
    }
    columns.update((name.lower(), frame_column([h.get(name) for h in headers])) for name in names)
    columns["master"] = frame_column([(master_marks(h) or "") if r[4] else ""
                                      for h, r in zip(headers, records, strict=True)])
    columns["error"] = frame_column([r[5] for r in records])
    return FrameTable(columns)


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


def _close(a, b, tolerance=None):
    return a is not None and close(a, b, tolerance)


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
    tolerance = DEFAULT_TOLERANCES.get(column)
    if isinstance(value, numbers.Real):
        number = float(value)
        return lambda cell: _close(_as_float(cell), number, tolerance)
    if isinstance(value, str):
        text = fold(value)
        if text == "*":
            return lambda _cell: True
        number = _as_float(text)
        flag = _as_bool(text)

        def test(cell):
            if isinstance(cell, str):  # '70' also matches '70.0' in a column of strings
                return fold(cell) == text or (
                    number is not None and _close(_as_float(cell), number, tolerance))
            if isinstance(cell, bool):
                return flag is cell
            return number is not None and _close(float(cell), number, tolerance)

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
        keyword (masked where a header lacks it), one per keyword of the header conventions
        (:func:`calstack.catalog.conventions.read_keywords`: aliases, camera setup, masters'
        marks) that some frame has, ``master`` (why a frame is itself a master, ``''`` if it is
        not) and ``error`` (the reason a file could not be read, ``''`` for good rows).
        IMAGETYP, EXPTIME and FILTER are filled from their aliases (OBSTYPE, EXPOSURE, SUBSET...)
        and numbers written as text are numbers (:func:`~calstack.catalog.conventions.normalise`). A plain file gives one row (``hdu=0``); a multi-extension
        file with an empty primary gives one row per image extension (except ``MASK``,
        ``UNCERT`` and ``NCOMB`` ones), each inheriting the primary keywords it lacks. For a
        tile-compressed image, ``BITPIX`` and ``NAXISn`` are the image's (``ZBITPIX``,
        ``ZNAXISn``). A keyword column is numeric when every present value is a number (int or
        float), bool when every value is a logical, otherwise str.
    summary : astropy.table.Table
        The same table (the name ccdproc users know).
    frame_table : FrameTable
        The same columns, light (no ``astropy.table`` import): what calstack's jobs read.
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

        found = find_files(locations, bool(recursive), include, exclude)
        paths = [path for path, _, _ in found]
        identities = {path: identity for path, _, identity in found}
        cache = HeaderCache.open(cache_file) if cache_file else None
        with as_progress(progress).task("index", total=len(paths), unit="file") as task:
            if cache is None:
                wanted = None if keywords == "*" else (*keywords, *read_keywords())
                results = [rows for rows, _ in read_all(paths, wanted, workers, adaptive,
                                                         task.update)]
            else:
                folders = [os.path.abspath(p) for p in locations if os.path.isdir(p)]
                with cache:
                    results = read_cached(identities, cache, folders, workers, adaptive,
                                          task.update)
        records = [(rel, path, hdu, extname, header, error)
                   for (path, rel, _), rows in zip(found, results, strict=True)
                   for hdu, extname, header, error in rows]
        self._table = _build_table(records, keywords)
        self._table.meta["identity"] = identities  # kept by every selection of rows
        self._astropy_table = None
        self.keywords = keywords
        self.locations = tuple(os.fspath(p) for p in locations)

    @classmethod
    def _from_table(cls, table, *, keywords, locations):
        """An index over an existing table (used by :meth:`filter`; no disk access)."""
        index = cls.__new__(cls)
        index._table = table
        index._astropy_table = None
        index.keywords = keywords
        index.locations = locations
        return index

    # ----------------------------------------------------------------------- access
    @property
    def table(self):
        """The index table, an ``astropy.table.Table`` (see the class docstring for its
        columns), built from :attr:`frame_table` when first asked for."""
        if self._astropy_table is None:
            self._astropy_table = self._table.to_table()
        return self._astropy_table

    @property
    def summary(self):
        """Alias of :attr:`table`, the name ``ccdproc.ImageFileCollection`` uses."""
        return self.table

    @property
    def frame_table(self) -> FrameTable:
        """The same columns as :attr:`table` without importing ``astropy.table``
        (:class:`~calstack.catalog.frametable.FrameTable`), what calstack's own jobs read."""
        return self._table

    @property
    def unreadable(self):
        """The rows of files that could not be read (``hdu == -1``), with their ``error``."""
        return self.table[self.unreadable_mask]

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
        blanks (``'dark'`` matches ``'DARK '``); numbers match within the keyword's default
        tolerance (:data:`calstack.catalog.conventions.DEFAULT_TOLERANCES`: exposure times within
        max(0.1 %, 10 ms), CCD-TEMP within 2 degC), else ``rel_tol=1e-6, abs_tol=1e-9``
        (:func:`math.isclose`), also against a string cell that reads as a
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

    def mask(self, criteria=None, /, **kw) -> np.ndarray:
        """A boolean per row: True where the row matches every criterion (as :meth:`filter`
        selects rows; unreadable rows are False)."""
        return self._match(criteria, kw)

    def subset(self, keep) -> ImageIndex:
        """A new index of the rows where the boolean sequence ``keep`` is true."""
        keep = np.asarray(keep, bool)
        return self._from_table(self._table[keep], keywords=self.keywords,
                                locations=self.locations)

    def rows(self) -> list[dict]:
        """Every row as a dict of column name to a plain Python value (None where masked)."""
        table = self._table
        columns = [(name, table[name], getattr(table[name], "mask", None))
                   for name in table.colnames]
        return [{name: None if mask is not None and mask[i] else column[i].item()
                 for name, column, mask in columns} for i in range(len(table))]

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
