"""A persistent cache of parsed FITS headers, so that re-indexing an archive reads only new files.

One SQLite file (stdlib :mod:`sqlite3`) maps a file's absolute path to its identity when it was
read -- size, modification time (ns), inode and status-change time (ns) -- and to what
:class:`~calstack.ImageIndex` made of it: every keyword of every image HDU, or the reason the
file cannot be read. An entry is used only while the file's identity is unchanged: ``touch -d``
can set a modification time back, but not the status-change time, and a file replaced under
the same name has another inode. A changed file is read again and its entry replaced, and
entries of deleted files are dropped when their folder is scanned again. Every keyword is
stored, so an index of other keywords than the first one's still uses the cache.

The cache is never trusted blindly: a cache path that is a symbolic link or not a regular
file, a file that is not SQLite, is corrupt, holds other tables, or has rows of the wrong
structure is moved aside (to ``<name>.bad``; a link itself, never its target) and a new cache
is started, with a logged warning; nothing is ever written through a link. A cache written by
another calstack version is emptied. If the cache cannot be used or written (a
read-only folder, a lock held too long by another process), the index reads the files itself
and logs a warning: the cache changes how fast an index is built, never what it holds.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from contextlib import contextmanager

from .. import __version__
from ..errors import OptionError

__all__ = ["CACHE_DIR_ENV", "CACHE_FILE", "HeaderCache", "cache_path", "default_cache_path"]

log = logging.getLogger("calstack")

#: Environment variable naming the folder of the cache file (it overrides the default folder).
CACHE_DIR_ENV = "CALSTACK_CACHE_DIR"
#: Name of the cache file in its folder.
CACHE_FILE = "headers.sqlite"

#: Bump when the tables change or the index makes other rows of the same file; a cache of
#: another schema or calstack version is emptied on open.
SCHEMA_VERSION = 2
_FORMAT = "calstack header cache"
_VERSION = f"{SCHEMA_VERSION}/{__version__}"
_COLUMNS = {"meta": ("key", "value"),
            "files": ("path", "size", "mtime_ns", "inode", "ctime_ns", "rows")}
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ("CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
     "mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, "
     "rows TEXT NOT NULL) WITHOUT ROWID"),
)
#: Seconds to wait for another process's write to the cache before giving up on it.
_BUSY_TIMEOUT_S = 10.0
#: Paths per ``IN (...)`` lookup (below SQLite's oldest limit on bound parameters, 999).
_CHUNK = 900
#: Extended SQLite error names that mean the file itself is damaged (or not a database).
_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
#: Rows as compact JSON (one encoder for all: ``json.dumps`` with options builds one per call).
_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def default_cache_path() -> str:
    """The default cache file: ``$CALSTACK_CACHE_DIR/headers.sqlite`` if that variable is set,
    else ``$XDG_CACHE_HOME/calstack/headers.sqlite``, else ``~/.cache/calstack/headers.sqlite``.
    """
    folder = os.environ.get(CACHE_DIR_ENV)
    if not folder:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "calstack")
    return os.path.join(os.path.abspath(os.path.expanduser(folder)), CACHE_FILE)


def cache_path(cache) -> str | None:
    """The cache file an ``ImageIndex(cache=...)`` value means, or None for no cache.

    Parameters
    ----------
    cache : bool, None, str or os.PathLike
        True: :func:`default_cache_path`; False or None: no cache; a path: that file (an existing
        folder: ``headers.sqlite`` in it).

    Raises
    ------
    OptionError
        Any other value.
    """
    if cache is None or cache is False:
        return None
    if cache is True:
        return default_cache_path()
    if isinstance(cache, (str, os.PathLike)) and os.fspath(cache):
        path = os.path.abspath(os.path.expanduser(os.fspath(cache)))
        return os.path.join(path, CACHE_FILE) if os.path.isdir(path) else path
    raise OptionError(f"cache must be True (the default file {default_cache_path()}), False or "
                      f"None (no cache), or the path of a cache file, not {cache!r}")


def _storable(path: str) -> bool:
    """True if SQLite can hold ``path`` (a name with bytes that are not UTF-8 cannot be)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Unusable(Exception):
    """The file is not a cache this calstack can trust (the message says why)."""


def _check_regular(path: str) -> None:
    """Raise ``_Unusable`` if ``path`` exists but is a symbolic link or not a regular file
    (``lstat``: a link is never followed, so nothing is written through it)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise _Unusable("is a symbolic link (a cache is never written through one)")
    if not stat.S_ISREG(mode):
        raise _Unusable("is not a regular file")


def _valid_rows(rows) -> bool:
    """Whether decoded rows have the structure the index writes: a non-empty list of
    ``[hdu (int), extname (str or None), header (dict or None), error (str)]``."""
    return isinstance(rows, list) and bool(rows) and all(
        isinstance(row, list) and len(row) == 4 and isinstance(row[0], int)
        and not isinstance(row[0], bool) and isinstance(row[1], (str, type(None)))
        and isinstance(row[2], (dict, type(None))) and isinstance(row[3], str)
        for row in rows)


def _corrupt(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorname", None) or "").startswith(_CORRUPT)


def _columns(db, table) -> tuple:
    return tuple(row[1] for row in db.execute(f"PRAGMA table_info({table})"))


def _tables(db) -> set:
    query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
    return {name for (name,) in db.execute(query)}


def _state(db) -> str:
    """``'ok'``, ``'empty'``, ``'old'`` (ours, another version) or ``'foreign'``."""
    tables = _tables(db)
    if not tables:
        return "empty"
    if "meta" not in tables or _columns(db, "meta") != _COLUMNS["meta"]:
        return "foreign"
    meta = dict(db.execute("SELECT key, value FROM meta"))
    if meta.get("format") != _FORMAT:
        return "foreign"
    if meta.get("version") != _VERSION:
        return "old"
    if tables != set(_COLUMNS) or _columns(db, "files") != _COLUMNS["files"]:
        return "foreign"
    return "ok"


@contextmanager
def _transaction(db):
    """One write transaction; the write lock is taken at the start (``BEGIN IMMEDIATE``)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _connect(path: str) -> sqlite3.Connection:
    """A connection to a current, valid cache at ``path`` (created or emptied as needed).

    Raises ``_Unusable`` for a file that is not a calstack cache or is corrupt, and
    ``sqlite3.Error`` / ``OSError`` when the file cannot be opened or written.
    """
    _check_regular(path)
    db = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        state = _state(db)
        if state == "foreign":
            raise _Unusable("is not a calstack header cache (it holds other tables)")
        if state != "ok":
            with _transaction(db):
                state = _state(db)  # another process may have set it up meanwhile
                if state == "old":
                    log.info("header cache %s was written by another calstack version; "
                             "starting it afresh", path)
                    for table in _tables(db):
                        db.execute(f'DROP TABLE "{table.replace(chr(34), chr(34) * 2)}"')
                if state != "ok":
                    for statement in _SCHEMA:
                        db.execute(statement)
                    db.executemany("INSERT INTO meta VALUES (?, ?)",
                                   (("format", _FORMAT), ("version", _VERSION)))
    except sqlite3.DatabaseError as exc:
        db.close()
        if _corrupt(exc):
            raise _Unusable(f"is corrupt ({exc})") from exc
        raise
    except BaseException:
        db.close()
        raise
    return db


def _move_aside(path: str) -> str:
    """Rename a bad cache (and any journal of it) to ``<path>.bad``; returns the new name. A
    link is renamed itself (its target is left alone)."""
    bad = path + ".bad"
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.lexists(path + suffix):
            os.replace(path + suffix, bad + suffix)
    return bad


_FIX = (f"give a writable cache file (--cache PATH, ImageIndex(cache=PATH) or "
        f"${CACHE_DIR_ENV}) or turn it off (--no-cache, cache=False)")


class HeaderCache:
    """An open header cache file; made by :meth:`open`, used by :class:`~calstack.ImageIndex`.

    Every method logs a warning and carries on, instead of raising, when the file fails: a
    failed lookup finds nothing, a failed update stores nothing.

    Attributes
    ----------
    path : str
        The cache file.
    """

    def __init__(self, path: str, db: sqlite3.Connection):
        self.path = path
        self._db = db

    @classmethod
    def open(cls, path) -> HeaderCache | None:
        """Open the cache file ``path``, creating it (and its folder) if needed.

        A file that is corrupt, not SQLite, or not a calstack cache is moved to ``<path>.bad``
        and a new cache is started (warning logged); a cache of another calstack version is
        emptied (logged at INFO).

        Returns
        -------
        HeaderCache or None
            None, with a warning logged, if the file cannot be opened or created (e.g. a
            read-only folder).
        """
        path = os.fspath(path)
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            try:
                db = _connect(path)
            except _Unusable as exc:
                bad = _move_aside(path)
                log.warning("header cache %s %s; moved it to %s and started a new one",
                            path, exc, bad)
                db = _connect(path)
        except (OSError, sqlite3.Error, _Unusable) as exc:
            log.warning("header cache %s cannot be used (%s); reading every header instead. "
                        "To fix it, %s", path, str(exc) or type(exc).__name__, _FIX)
            return None
        return cls(path, db)

    def close(self) -> None:
        """Close the connection (the file stays)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _failed(self, exc: Exception, doing: str) -> None:
        """Log why ``doing`` failed; a corrupt file is moved aside and not used again."""
        if isinstance(exc, ValueError) or (isinstance(exc, sqlite3.Error) and _corrupt(exc)):
            self.close()
            try:
                bad = _move_aside(self.path)
            except OSError as move:
                log.warning("header cache %s is corrupt (%s) and cannot be moved aside (%s); "
                            "delete it", self.path, exc, move)
                return
            log.warning("header cache %s is corrupt (%s); moved it to %s, the next index "
                        "starts a new one", self.path, exc, bad)
        else:
            log.warning("header cache %s: %s failed (%s); the index is complete, but the next "
                        "one reads these files again. If this lasts, %s", self.path, doing, exc,
                        _FIX)

    def lookup(self, stats: dict) -> dict:
        """The cached rows of the files whose size and mtime are still those in ``stats``.

        Parameters
        ----------
        stats : dict
            Absolute path -> ``(size, mtime_ns, inode, ctime_ns)``, as :func:`os.stat` gives
            them now.

        Returns
        -------
        dict
            Path -> list of rows ``[hdu, extname, header, error]`` for every path whose entry
            matches; files missing from the cache, or changed since, are left out.
        """
        if self._db is None:
            return {}
        paths = list(filter(_storable, stats))
        texts = {}
        try:
            for start in range(0, len(paths), _CHUNK):
                chunk = paths[start : start + _CHUNK]
                query = ("SELECT path, size, mtime_ns, inode, ctime_ns, rows FROM files WHERE "
                         f"path IN ({','.join('?' * len(chunk))})")
                for path, *identity, rows in self._db.execute(query, chunk):
                    if stats[path] == tuple(identity):
                        texts[path] = rows
            found = {path: json.loads(text) for path, text in texts.items()}
            bad = next((path for path, rows in found.items() if not _valid_rows(rows)), None)
            if bad is not None:
                raise ValueError(f"the entry of {bad} is not a list of index rows")
            return found
        except (sqlite3.Error, ValueError) as exc:
            self._failed(exc, "lookup")
            return {}

    def update(self, entries, *, folders=(), seen=frozenset()) -> None:
        """Store new entries and drop those of deleted files, in one transaction.

        Parameters
        ----------
        entries : iterable of (str, int, int, int, int, list)
            ``(path, size, mtime_ns, inode, ctime_ns, rows)`` of files just read; an entry of
            the same path is replaced.
        folders : iterable of str
            Folders just scanned: their cached files (at any depth) that are not in ``seen`` and
            no longer exist are dropped.
        seen : set of str
            The files found in ``folders``.
        """
        if self._db is None:
            return
        try:
            gone = []
            for folder in filter(_storable, folders):
                prefix = folder.rstrip(os.sep) + os.sep
                end = prefix[:-1] + chr(ord(os.sep) + 1)  # the first name after every prefix/...
                rows = self._db.execute("SELECT path FROM files WHERE path >= ? AND path < ?",
                                        (prefix, end))
                gone += [p for (p,) in rows if p not in seen and not os.path.exists(p)]
            rows = [(path, *identity, _encode(value))
                    for path, *identity, value in entries if _storable(path)]
            if not rows and not gone:
                return
            with _transaction(self._db):
                self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                                     rows)
                self._db.executemany("DELETE FROM files WHERE path = ?", ((p,) for p in gone))
        except sqlite3.Error as exc:
            self._failed(exc, "update")
