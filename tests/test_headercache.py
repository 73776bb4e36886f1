"""The header cache: the same index with and without it, re-reading only what changed, and a
damaged, foreign, locked or unwritable cache never breaking the index."""

import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import numpy as np
import pytest
from astropy.io import fits
from conftest import column, frame, make_darks, write_frames

import calstack.catalog.scan as scan_module
from calstack.catalog.index import DEFAULT_KEYWORDS, ImageIndex
from calstack.cli import _build_parser, main
from calstack.errors import FrameError, OptionError
from calstack.io import headercache
from calstack.io.headercache import default_cache_path


@pytest.fixture
def reads(monkeypatch):
    """Names of the files whose headers are read (a file is not read when the cache serves it)."""
    names = []
    real = scan_module.read_hdus

    def spy(path, **kw):
        names.append(os.path.basename(path))
        return real(path, **kw)

    monkeypatch.setattr(scan_module, "read_hdus", spy)
    return names


@pytest.fixture
def logged(caplog, monkeypatch):
    """Records of the ``calstack`` logger (which the CLI detaches from the root logger)."""
    logger = logging.getLogger("calstack")
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logger, "handlers", [])
    caplog.set_level(logging.INFO, logger="calstack")
    return caplog


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def assert_same(table, expected):
    assert table.colnames == expected.colnames
    for name in expected.colnames:
        assert table[name].dtype == expected[name].dtype, name
        assert table[name].tolist() == expected[name].tolist(), name
        assert np.ma.getmaskarray(table[name]).tolist() == \
            np.ma.getmaskarray(expected[name]).tolist(), name


def cached_paths(db):
    with closing(sqlite3.connect(db)) as con:
        return {path for (path,) in con.execute("SELECT path FROM files")}


# --------------------------------------------------------------------------- same index
def test_warm_index_reads_no_file_and_equals_an_uncached_one(messy, tmp_path, reads, logged):
    db = tmp_path / "cache.sqlite"
    cold = ImageIndex(messy, recursive=True, cache=db)
    assert_same(cold.table, ImageIndex(messy, recursive=True, cache=False).table)
    assert len(set(reads)) == 10
    # every keyword is cached, so other keywords (even '*') are served without reading
    for keywords in (DEFAULT_KEYWORDS, "*", ["ccdname", "IMAGETYP", "missing"]):
        reads.clear()
        warm = ImageIndex(messy, recursive=True, keywords=keywords, cache=db)
        assert reads == []
        assert_same(warm.table, ImageIndex(messy, recursive=True, keywords=keywords,
                                           cache=False).table)
    # unreadable files are cached with their reason
    assert warm.unreadable["error"][0].startswith("is not a FITS file")
    assert cached_paths(db) == set(map(str, cold.table["path"]))
    assert warnings_of(logged) == []


def test_changed_new_and_deleted_files(tmp_path, reads):
    folder = tmp_path / "night"
    folder.mkdir()
    a = frame(folder / "a.fits", IMAGETYP="DARK", EXPTIME=7.0)
    b = frame(folder / "b.fits", IMAGETYP="DARK", EXPTIME=70.0)
    frame(folder / "c.fits", IMAGETYP="BIAS", EXPTIME=0.0)
    frame(folder / "e.fits", IMAGETYP="FLAT", EXPTIME=3.0)
    db = tmp_path / "cache.sqlite"
    ImageIndex(folder, cache=db)
    reads.clear()

    size, mtime = a.stat().st_size, a.stat().st_mtime_ns  # same size, new mtime
    with fits.open(a, mode="update") as hdul:
        hdul[0].header["EXPTIME"] = 8.0
    os.utime(a, ns=(mtime + 10**9, mtime + 10**9))
    assert a.stat().st_size == size
    mtime = b.stat().st_mtime_ns  # new size, same mtime
    b.unlink()
    frame(b, IMAGETYP="DARK", EXPTIME=90.0, data=np.zeros((40, 40), np.float32))
    os.utime(b, ns=(mtime, mtime))
    (folder / "c.fits").unlink()
    frame(folder / "d.fits", IMAGETYP="FLAT", EXPTIME=1.0)

    index = ImageIndex(folder, cache=db)
    assert sorted(reads) == ["a.fits", "b.fits", "d.fits"]
    assert index.files() == ["a.fits", "b.fits", "d.fits", "e.fits"]
    assert column(index, "exptime") == [8.0, 90.0, 1.0, 3.0]
    assert column(index, "naxis1") == [5, 40, 5, 5]
    assert cached_paths(db) == {str(folder / n) for n in ("a.fits", "b.fits", "d.fits", "e.fits")}


def test_deleted_files_are_dropped_only_when_their_folder_is_scanned(tmp_path):
    one, two = tmp_path / "one", tmp_path / "one" / "two"
    two.mkdir(parents=True)
    frame(one / "a.fits", EXPTIME=1.0)
    frame(two / "b.fits", EXPTIME=2.0)
    frame(two / "c.fits", EXPTIME=3.0)
    db = tmp_path / "cache.sqlite"
    ImageIndex(one, recursive=True, cache=db)
    (two / "b.fits").unlink()
    (one / "a.fits").unlink()
    ImageIndex(two / "c.fits", cache=db)  # a file, not its folder: nothing is dropped
    assert cached_paths(db) == {str(one / "a.fits"), str(two / "b.fits"), str(two / "c.fits")}
    ImageIndex(one, cache=db)  # not recursive, yet the deleted file below is dropped too
    assert cached_paths(db) == {str(two / "c.fits")}


def test_a_file_unreadable_for_a_passing_reason_is_not_cached(tmp_path, monkeypatch):
    frame(tmp_path / "a.fits", IMAGETYP="DARK")
    db = tmp_path / "cache" / "headers.sqlite"
    real = scan_module.read_hdus

    def denied(path, **_options):
        raise FrameError(path, "cannot be read: Permission denied") from PermissionError(13, "")

    monkeypatch.setattr(scan_module, "read_hdus", denied)
    assert column(ImageIndex(tmp_path, cache=db), "error") == ["cannot be read: Permission denied"]
    assert cached_paths(db) == set()
    monkeypatch.setattr(scan_module, "read_hdus", real)
    assert column(ImageIndex(tmp_path, cache=db), "imagetyp") == ["DARK"]


def test_a_name_sqlite_cannot_hold_is_read_every_time(tmp_path, reads, logged):
    folder = tmp_path / "night"
    folder.mkdir()
    data = frame(folder / "a.fits", EXPTIME=1.0).read_bytes()
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.fits"), "wb") as f:
        f.write(data)
    db = tmp_path / "cache.sqlite"
    assert ImageIndex(folder, cache=db).files() == ["a.fits", "caf\udce9.fits"]
    reads.clear()
    assert column(ImageIndex(folder, cache=db), "exptime") == [1.0, 1.0]
    assert reads == ["caf\udce9.fits"]
    assert cached_paths(db) == {str(folder / "a.fits")}
    assert warnings_of(logged) == []


def test_threads_share_one_cache(tmp_path):
    folders = []
    for i in range(4):
        folders.append(tmp_path / f"n{i}")
        folders[-1].mkdir()
        for j in range(3):
            frame(folders[-1] / f"f{j}.fits", EXPTIME=float(10 * i + j))
    db = tmp_path / "cache.sqlite"
    with ThreadPoolExecutor(4) as pool:
        indexes = list(pool.map(lambda f: ImageIndex(f, cache=db), folders))
    assert [column(ix, "exptime") for ix in indexes] == [[0.0, 1.0, 2.0], [10.0, 11.0, 12.0],
                                                         [20.0, 21.0, 22.0], [30.0, 31.0, 32.0]]
    assert len(cached_paths(db)) == 12


# --------------------------------------------------------------------------- bad caches
def _random_bytes(db, _messy):
    db.write_bytes(np.random.default_rng(0).bytes(5000))
    return "is corrupt (file is not a database)"


def _foreign_database(db, _messy):
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE stars (ra REAL, dec REAL)")
        con.commit()
    return "is not a calstack header cache (it holds other tables)"


def _foreign_columns(db, messy):
    ImageIndex(messy, cache=db)
    with closing(sqlite3.connect(db)) as con:
        con.execute("ALTER TABLE files RENAME COLUMN rows TO data")
        con.commit()
    return "is not a calstack header cache (it holds other tables)"


def _truncated(db, messy):
    ImageIndex(messy, keywords="*", cache=db)
    data = db.read_bytes()
    assert len(data) >= 4 * 4096
    db.write_bytes(data[: len(data) // 2])
    return "is corrupt (database disk image is malformed)"


@pytest.mark.parametrize("damage", [_random_bytes, _foreign_database, _foreign_columns,
                                    _truncated])
def test_a_bad_cache_is_moved_aside_and_rebuilt(messy, tmp_path, reads, logged, damage):
    db = tmp_path / "cache.sqlite"
    reason = damage(db, messy)
    damaged = db.read_bytes()
    expected = ImageIndex(messy, cache=False).table
    logged.clear()
    reads.clear()
    assert_same(ImageIndex(messy, cache=db).table, expected)
    assert len(set(reads)) == 9
    assert warnings_of(logged) == [
        f"header cache {db} {reason}; moved it to {db}.bad and started a new one"]
    assert (tmp_path / "cache.sqlite.bad").read_bytes() == damaged
    logged.clear()
    reads.clear()
    assert_same(ImageIndex(messy, cache=db).table, expected)  # the new cache serves it
    assert reads == []
    assert logged.records == []


def test_corruption_found_by_a_lookup_moves_the_cache_aside(messy, tmp_path, logged):
    db = tmp_path / "cache.sqlite"
    ImageIndex(messy, keywords="*", cache=db)
    data = bytearray(db.read_bytes())
    data[-4096:] = np.random.default_rng(1).bytes(4096)  # a page of entries, not the schema
    db.write_bytes(bytes(data))
    assert_same(ImageIndex(messy, cache=db).table, ImageIndex(messy, cache=False).table)
    assert warnings_of(logged) == [
        (f"header cache {db} is corrupt (database disk image is malformed); moved it to "
         f"{db}.bad, the next index starts a new one")]
    assert not db.exists()
    ImageIndex(messy, cache=db)
    assert len(cached_paths(db)) == 9


def test_a_cache_of_another_version_is_emptied(messy, tmp_path, reads, logged):
    db = tmp_path / "cache.sqlite"
    ImageIndex(messy, cache=db)
    with closing(sqlite3.connect(db)) as con:
        con.execute("UPDATE meta SET value = '0/0.0.1' WHERE key = 'version'")
        con.execute("CREATE TABLE old_stuff (x)")
        con.commit()
    reads.clear()
    assert_same(ImageIndex(messy, cache=db).table, ImageIndex(messy, cache=False).table)
    assert len(set(reads)) == 9
    assert [r.getMessage() for r in logged.records] == [
        f"header cache {db} was written by another calstack version; starting it afresh"]
    with closing(sqlite3.connect(db)) as con:
        assert {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")} \
            == {"meta", "files"}
    assert len(cached_paths(db)) == 9


def test_an_uncreatable_cache_still_gives_the_index(messy, tmp_path, logged):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    db = blocker / "cache.sqlite"
    assert_same(ImageIndex(messy, cache=db).table, ImageIndex(messy, cache=False).table)
    [warning] = warnings_of(logged)
    assert warning.startswith(f"header cache {db} cannot be used (")
    assert warning.endswith("reading every header instead. To fix it, give a writable cache "
                            "file (--cache PATH, ImageIndex(cache=PATH) or $CALSTACK_CACHE_DIR) "
                            "or turn it off (--no-cache, cache=False)")


def test_a_locked_cache_still_gives_the_index(messy, tmp_path, logged, monkeypatch):
    monkeypatch.setattr(headercache, "_BUSY_TIMEOUT_S", 0.05)
    db = tmp_path / "cache.sqlite"
    ImageIndex(messy, include="a_*", cache=db)
    other = sqlite3.connect(db, isolation_level=None)  # another process, writing
    other.execute("BEGIN IMMEDIATE")
    try:
        index = ImageIndex(messy, cache=db)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert_same(index.table, ImageIndex(messy, cache=False).table)
    assert warnings_of(logged) == [
        (f"header cache {db}: update failed (database is locked); the index is complete, "
         "but the next one reads these files again. If this lasts, give a writable cache file "
         "(--cache PATH, ImageIndex(cache=PATH) or $CALSTACK_CACHE_DIR) or turn it off "
         "(--no-cache, cache=False)")]
    assert cached_paths(db) == {str(messy / "a_dark7.fits")}
    ImageIndex(messy, cache=db)
    assert len(cached_paths(db)) == 9


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_read_only_cache_is_used_but_not_written(messy, tmp_path, reads, logged):
    folder = tmp_path / "cache"
    ImageIndex(messy, include="a_*", cache=folder / "headers.sqlite")
    folder.chmod(0o555)
    try:
        reads.clear()
        index = ImageIndex(messy, cache=folder / "headers.sqlite")
    finally:
        folder.chmod(0o755)
    assert_same(index.table, ImageIndex(messy, cache=False).table)
    assert "a_dark7.fits" not in reads
    assert len(set(reads)) == 8
    [warning] = warnings_of(logged)
    assert warning.startswith(f"header cache {folder / 'headers.sqlite'}: update failed (")


# --------------------------------------------------------------------------- where it lives
def test_cache_option_and_default_location(messy, tmp_path, header_cache_dir, monkeypatch):
    with pytest.raises(OptionError, match=r"cache must be True .* not 1"):
        ImageIndex(messy, cache=1)
    ImageIndex(messy, cache=False)
    ImageIndex(messy, cache=None)
    assert list(header_cache_dir.iterdir()) == []
    ImageIndex(messy)
    assert len(cached_paths(header_cache_dir / "headers.sqlite")) == 9
    ImageIndex(messy, cache=tmp_path)  # a folder: headers.sqlite in it
    assert len(cached_paths(tmp_path / "headers.sqlite")) == 9

    monkeypatch.delenv("CALSTACK_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg/cache")
    assert default_cache_path() == "/xdg/cache/calstack/headers.sqlite"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", "/home/someone")
    assert default_cache_path() == "/home/someone/.cache/calstack/headers.sqlite"


def test_command_line_cache_options(messy, tmp_path, header_cache_dir, capsys):
    assert main(["index", str(messy), "--no-cache"]) == 0
    assert list(header_cache_dir.iterdir()) == []
    assert main(["index", str(messy)]) == 0
    assert len(cached_paths(header_cache_dir / "headers.sqlite")) == 9
    assert main(["index", str(messy), "--cache", str(tmp_path / "own.sqlite")]) == 0
    assert len(cached_paths(tmp_path / "own.sqlite")) == 9
    with pytest.raises(SystemExit) as info:
        main(["index", str(messy), "--cache", "x", "--no-cache"])
    assert info.value.code == 2
    assert "not allowed with argument --cache" in capsys.readouterr().err

    darks = tmp_path / "darks"
    darks.mkdir()
    write_frames(darks, make_darks(n=3, shape=(8, 6))[0])
    assert _build_parser().parse_args(["combine", str(darks), "--no-cache"]).cache is False
    assert main(["combine", str(darks), "--imagetyp", "dark", "-q", "-o", str(tmp_path / "out"),
                 "--cache", str(tmp_path / "combine.sqlite")]) == 0
    assert cached_paths(tmp_path / "combine.sqlite") == {str(p) for p in darks.iterdir()}
