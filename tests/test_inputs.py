"""Inputs are what was indexed: links, loops, FIFOs, files changed behind the cache's back, and a
header cache that is not what it should be (issue "Nothing clobbered, nothing escapes, nothing
stale")."""

import logging
import os
import signal
import sqlite3
import stat
import threading
from contextlib import closing

import numpy as np
import pytest
from astropy.io import fits
from conftest import frame

from calstack import ImageIndex
from calstack.cli import main


@pytest.fixture
def darks(tmp_path):
    folder = tmp_path / "night"
    folder.mkdir()
    for i in range(3):
        frame(folder / f"d{i}.fits", data=np.full((4, 4), float(i), np.float32),
              IMAGETYP="DARK", EXPTIME=300.0)
    return folder


def test_a_link_loop_is_followed_once(darks, tmp_path):
    (darks / "sub").mkdir()
    os.symlink("..", darks / "sub" / "up")  # sub/up -> the night itself
    os.symlink(".", darks / "self1")
    os.symlink(".", darks / "self2")
    index = ImageIndex(darks, recursive=True, cache=False)
    assert index.files() == ["d0.fits", "d1.fits", "d2.fits"]
    out = tmp_path / "out"
    assert main(["combine", str(darks), "-r", "--imagetyp", "dark", "-o", str(out),
                 "--no-cache", "-q"]) == 0
    assert fits.getheader(out / "combined_dark_300.000.fit")["NCOMBINE"] == 3


def test_a_linked_folder_elsewhere_is_indexed(darks, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    frame(other / "e.fits", IMAGETYP="DARK", EXPTIME=300.0)
    os.symlink(other, darks / "more")
    assert ImageIndex(darks, recursive=True, cache=False).files() == [
        "d0.fits", "d1.fits", "d2.fits", "more/e.fits"]


def test_one_file_by_two_paths_is_one_frame(darks):
    os.symlink(darks / "d0.fits", darks / "link.fits")
    os.link(darks / "d1.fits", darks / "hard.fits")
    assert ImageIndex(darks, cache=False).files() == ["d0.fits", "d1.fits", "d2.fits"]


def test_a_fifo_is_never_opened(darks, caplog):
    os.mkfifo(darks / "pipe.fits")
    result = []
    worker = threading.Thread(target=lambda: result.append(ImageIndex(darks, cache=False)),
                              daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "indexing a FIFO hung"
    assert result[0].files() == ["d0.fits", "d1.fits", "d2.fits"]
    assert "pipe.fits: not a regular file" in caplog.text
    with pytest.raises(Exception, match="is not a regular file"):
        ImageIndex(darks / "pipe.fits", cache=False)


def test_a_file_edited_in_place_and_touched_back_is_read_again(darks, tmp_path):
    db = tmp_path / "cache.sqlite"
    assert ImageIndex(darks, cache=db).table["exptime"].tolist() == [300.0] * 3
    path = darks / "d1.fits"
    before = path.stat()
    with fits.open(path, mode="update") as hdul:  # same size: one card's value
        hdul[0].header["EXPTIME"] = 7.0
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # touch -d: the old mtime
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size,
                                                              before.st_mtime_ns)
    assert ImageIndex(darks, cache=db).table["exptime"].tolist() == [300.0, 7.0, 300.0]


def test_a_cache_path_that_is_a_dangling_link_is_not_followed(darks, tmp_path, caplog):
    target = tmp_path / "elsewhere" / "victim.sqlite"
    target.parent.mkdir()
    db = tmp_path / "headers.sqlite"
    os.symlink(target, db)
    with caplog.at_level(logging.WARNING, logger="calstack"):
        index = ImageIndex(darks, cache=db)
    assert index.files() == ["d0.fits", "d1.fits", "d2.fits"]
    assert not target.exists()  # never created through the link
    assert "is a symbolic link" in caplog.text
    assert os.path.islink(f"{db}.bad")
    assert db.is_file()
    assert not db.is_symlink()


def test_a_cache_path_linked_to_a_file_leaves_the_file_alone(darks, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"")
    db = tmp_path / "headers.sqlite"
    os.symlink(victim, db)
    ImageIndex(darks, cache=db)
    assert victim.read_bytes() == b""
    assert not db.is_symlink()


@pytest.mark.parametrize("rows", ["{}", "[1, 2]", '[[0, null, {"EXPTIME": 1}]]', "[]"])
def test_cache_rows_of_the_wrong_structure_are_a_corrupt_cache(darks, tmp_path, caplog, rows):
    db = tmp_path / "cache.sqlite"
    expected = ImageIndex(darks, cache=False).table
    ImageIndex(darks, cache=db)
    with closing(sqlite3.connect(db)) as con:
        con.execute("UPDATE files SET rows = ? WHERE path LIKE ?", (rows, "%d1.fits"))
        con.commit()
    with caplog.at_level(logging.WARNING, logger="calstack"):
        index = ImageIndex(darks, cache=db)
    assert index.files() == ["d0.fits", "d1.fits", "d2.fits"]  # never silently dropped
    assert index.table["exptime"].tolist() == expected["exptime"].tolist()
    assert "is not a list of index rows" in caplog.text
    assert os.path.exists(f"{db}.bad")


def test_a_cache_path_that_is_a_fifo_is_moved_aside(darks, tmp_path, caplog):
    db = tmp_path / "headers.sqlite"
    os.mkfifo(db)
    with caplog.at_level(logging.WARNING, logger="calstack"):
        index = ImageIndex(darks, cache=db)
    assert index.files() == ["d0.fits", "d1.fits", "d2.fits"]
    assert "not a regular file" in caplog.text
    assert stat.S_ISFIFO(os.lstat(f"{db}.bad").st_mode)  # the FIFO itself, moved aside
    assert db.is_file()


def test_the_cache_knows_a_file_by_its_inode_too(darks, tmp_path):
    """Another file at the same path with the same size and times (a restore that keeps
    times) is read again: the inode is part of the cache key."""
    db = tmp_path / "cache.sqlite"
    ImageIndex(darks, cache=db)
    with closing(sqlite3.connect(db)) as con:
        (rows,) = con.execute("SELECT rows FROM files WHERE path LIKE ?", ("%d1.fits",)).fetchone()
        assert "300.0" in rows
        con.execute("UPDATE files SET rows = ? WHERE path LIKE ?",
                    (rows.replace("300.0", "7.0"), "%d1.fits"))
        con.commit()
    assert ImageIndex(darks, cache=db).table["exptime"].tolist() == [300.0, 7.0, 300.0]
    with closing(sqlite3.connect(db)) as con:  # the same entry for another inode
        con.execute("UPDATE files SET inode = inode + 1 WHERE path LIKE ?", ("%d1.fits",))
        con.commit()
    assert ImageIndex(darks, cache=db).table["exptime"].tolist() == [300.0] * 3


def test_a_device_is_never_opened(darks):
    os.symlink("/dev/zero", darks / "zero.fits")
    assert ImageIndex(darks, cache=False).files() == ["d0.fits", "d1.fits", "d2.fits"]
    with pytest.raises(Exception, match="is not a regular file"):
        ImageIndex(darks / "zero.fits", cache=False)


# --------------------------------------------------------------------------- outputs
def _unchanged(path, before):
    return path.read_bytes() == before


def test_header_values_never_name_a_path(darks, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for i in range(3):
        with fits.open(darks / f"d{i}.fits", mode="update") as hdul:
            hdul[0].header["OBJECT"] = str(victim)
    out = tmp_path / "out"
    assert main(["combine", str(darks), "--imagetyp", "dark", "--group-by", "object",
                 "--template", "{object}", "--overwrite", "-o", str(out), "--no-cache",
                 "-q"]) == 0
    assert victim.read_text() == "keep me"
    (name,) = [p.name for p in out.iterdir()]  # the value, made a file name in OUT
    assert name == ("_" + str(victim)[1:].replace("/", "_"))[:64]


def _with_raw_value(path, keyword, raw: bytes):
    """Give ``keyword`` the value ``raw`` in the file's header bytes (astropy refuses to write
    control characters, but files from the field have them)."""
    placeholder = b"Q" * len(raw)
    with fits.open(path, mode="update") as hdul:
        hdul[0].header[keyword] = placeholder.decode()
    path.write_bytes(path.read_bytes().replace(placeholder, raw))


def test_control_characters_in_header_values_are_escaped_everywhere(darks, tmp_path, capsys):
    for i in range(3):
        _with_raw_value(darks / f"d{i}.fits", "FILTER", b"V\x01\x1b[1m")
    (darks / "d2.fits").rename(darks / "d2é.fits")  # a letter of another script stays itself
    assert main(["index", str(darks), "--no-cache"]) == 0
    assert main(["index", str(darks), "--no-cache", "--format", "csv"]) == 0
    shown = capsys.readouterr().out
    assert "\x1b" not in shown
    assert shown.count("V\\x01\\x1b[1m") == 6  # three rows, twice, as Python escapes
    assert shown.count("d2é.fits") == 4  # file and path, twice
    out = tmp_path / "out"
    assert main(["combine", str(darks), "--imagetyp", "dark", "--group-by", "exptime,filter",
                 "-o", str(out), "--no-cache"]) == 0
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out + captured.err
    assert "filter=V\\x01\\x1b[1m: 3 frames" in captured.out
    (master,) = out.iterdir()
    assert master.name == "combined_dark_300.000_V_1m.fit"  # the name holds no control character
    assert fits.getheader(master)["FILTER"] == "V\\x01\\x1b[1m"


@pytest.mark.parametrize(("argv", "message"), [
    # -o NIGHT: the outputs go beside the inputs
    (["-o", "{night}", "--template", "d0.fits", "--overwrite"], "is an input of this run"),
    (["-o", "{night}", "--report", "{night}/d1.fits", "--overwrite"],
     "d1.fits: is an input of this run"),
    (["--report", "{out}/combined_dark_300.000.fit"], "is a master of this run"),
    (["--template", "sub/m.fit"], "gives sub/m.fit, a path: give a file name"),
    (["--template", "x" * 300 + ".fit"], "a name of more than 232 bytes"),
    # written through .NAME.XXXXXXXX.tmp (and NAME.rejected): 233 bytes fail before any read
    (["--template", "x" * 229 + ".fit"], "a name of more than 232 bytes"),
    (["--template", "{exptime:>999999999}.fit"], "asks for a field 999999999 characters wide"),
    (["--template", "{imagetyp:>{exptime}}.fit"], "write its width as a number"),
    (["--template", "m.fits.gz"], "gives m.fits.gz: outputs are written as plain FITS"),
    (["--template", ".."], "gives .., a path: give a file name"),
    (["--template", "sub", "--overwrite"], "sub: is a folder; an output never replaces a folder"),
    (["--report", "{out}/sub", "--overwrite"], "sub: is a folder; give the report's file name"),
    (["--report", "{night}/../r.html"], "lies outside the output folder"),
])
def test_outputs_never_replace_inputs_or_each_other(darks, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)  # a folder where a careless name would put a file
    argv = [a.replace("{night}", str(darks)).replace("{out}", str(out)) for a in argv]
    before = {p.name: p.read_bytes() for p in darks.iterdir()}
    assert main(["combine", str(darks), "--imagetyp", "dark", "-o", str(out), "--no-cache",
                 *argv]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in darks.iterdir()} == before
    assert [p.name for p in out.iterdir()] == ["sub"]
    assert list((out / "sub").iterdir()) == []


def test_temporary_files_are_made_beside_their_target_in_the_output_folder(darks, tmp_path,
                                                                          monkeypatch):
    import tempfile

    from calstack.io import writer

    made, real_mkstemp = [], tempfile.mkstemp

    def mkstemp(**kwargs):
        made.append(os.path.realpath(kwargs["dir"]))
        return real_mkstemp(**kwargs)

    monkeypatch.setattr(writer.tempfile, "mkstemp", mkstemp)
    out = tmp_path / "out"
    assert main(["combine", str(darks), "--imagetyp", "dark", "-o", str(out), "--no-cache",
                 "-q", "--report", str(out / "r.html")]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["combined_dark_300.000.fit", "r.html"]
    assert made == [os.path.realpath(out)] * 2  # the master's and the report's


# --------------------------------------------------------------------------- signals
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_clean_up_like_ctrl_c(tmp_path, capsys, monkeypatch, signum):
    from calstack.pipeline import groups

    folder = tmp_path / "night"
    folder.mkdir()
    for exptime in (7.0, 70.0):
        for i in range(3):
            frame(folder / f"d{exptime:.0f}_{i}.fits", data=np.full((4, 4), i, np.float32),
                  IMAGETYP="DARK", EXPTIME=exptime)
    checked = []
    real = groups.anomalies

    def then_signal(frames, master):  # the second master combined, not yet written
        checked.append(master)
        if len(checked) == 2:
            signal.raise_signal(signum)  # handled before it returns
        return real(frames, master)

    monkeypatch.setattr(groups, "anomalies", then_signal)
    before = signal.getsignal(signum)
    out = tmp_path / "out"
    assert main(["combine", str(folder), "--imagetyp", "dark", "-o", str(out),
                 "--no-cache"]) == 128 + signum
    err = capsys.readouterr().err
    assert (f"interrupted ({signal.Signals(signum).name}); 1 output(s) were completed: "
            f"{out / 'combined_dark_7.000.fit'}; no partial file was left") in err
    assert sorted(p.name for p in out.iterdir()) == ["combined_dark_7.000.fit"]  # no .tmp
    assert signal.getsignal(signum) == before  # calstack's handler is gone again


def test_a_closed_pipe_is_not_a_traceback(darks, monkeypatch, capsys):
    class Closed:
        def write(self, _text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("sys.stdout", Closed())
    assert main(["index", str(darks), "--no-cache", "--format", "csv"]) == 128 + signal.SIGPIPE
    assert capsys.readouterr().err == ""


def test_show_into_a_missing_folder_creates_it(darks, tmp_path):
    out = tmp_path / "missing" / "x.png"
    assert main(["show", str(darks / "d0.fits"), "-o", str(out), "-q"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_all_nan_frames_warn_and_bscale_zero_is_an_error(tmp_path, capsys):
    nan = tmp_path / "nan"
    nan.mkdir()
    for i in range(3):
        frame(nan / f"d{i}.fits", data=np.full((4, 4), np.nan, np.float32), IMAGETYP="DARK",
              EXPTIME=5.0)
    assert main(["combine", str(nan), "--imagetyp", "dark", "-o", str(tmp_path / "o1"),
                 "--no-cache", "-q"]) == 0
    assert "no pixel of the 3 frames has a value" in capsys.readouterr().err
    zero = tmp_path / "zero"
    zero.mkdir()
    for i in range(3):
        hdu = fits.PrimaryHDU(np.full((4, 4), 100 + i, np.int16),
                              fits.Header({"IMAGETYP": "DARK", "EXPTIME": 5.0}))
        hdu.header["BSCALE"] = 0
        hdu.writeto(zero / f"d{i}.fits")
    assert main(["combine", str(zero), "--imagetyp", "dark", "-o", str(tmp_path / "o2"),
                 "--no-cache"]) == 1
    assert "BSCALE = 0 would make every pixel 0" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists() or not list((tmp_path / "o2").iterdir())


# --------------------------------------------------------------------------- a night, planned
def _night(tmp_path):
    import calstack

    night = tmp_path / "night"
    calstack.simulate(night, preset="night", shape=(16, 16))
    return night


def test_a_night_is_checked_whole_before_anything_is_written(tmp_path, capsys):
    night, out = _night(tmp_path), tmp_path / "out"
    assert main(["masters", str(night), "-o", str(out), "--template", "m_{filter}.fit"]) == 1
    assert "uses filter, which is not a grouping key" in capsys.readouterr().err  # the bias
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize(("template", "message"), [
    ("sub/{imagetyp}.fit", "a path: give a file name"),
    ("..", "gives .., a path"),
    ("{imagetyp}" + "x" * 229 + ".fit", "a name of more than 232 bytes"),
    ("{imagetyp:>999999999}.fit", "asks for a field 999999999 characters wide"),
    ("{imagetyp}.fits.fz", "outputs are written as plain FITS"),
])
def test_a_night_refuses_a_bad_template_before_anything_is_written(tmp_path, capsys, template,
                                                                   message):
    night, out = _night(tmp_path), tmp_path / "out"
    assert main(["masters", str(night), "-o", str(out), "--template", template]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() or list(out.iterdir()) == []


def test_two_kinds_never_share_a_file(darks, tmp_path, capsys):
    for i in range(3):
        frame(darks / f"b{i}.fits", data=np.zeros((4, 4), np.float32), IMAGETYP="BIAS",
              EXPTIME=0.0)
    out = tmp_path / "out"
    assert main(["masters", str(darks), "-o", str(out), "--template", "master.fit"]) == 1
    assert ("template 'master.fit' names a bias master and a dark master master.fit; put "
            "{imagetyp} in it") in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []


def test_an_existing_flat_master_stops_the_night_before_the_bias(tmp_path, capsys):
    night, out = _night(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "combined_flat_V.fit").write_bytes(b"an earlier master")
    assert main(["masters", str(night), "-o", str(out)]) == 1
    assert "combined_flat_V.fit: exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["combined_flat_V.fit"]


def test_a_missing_bias_of_the_darks_setup_stops_the_night_before_the_bias(tmp_path, capsys):
    from pathlib import Path

    corpus = Path(__file__).parent / "data" / "corpus" / "nina"
    out = tmp_path / "out"
    assert main(["masters", str(corpus), "-r", "-o", str(out), "--no-cache",
                 "--subtract-bias"]) == 1
    assert "no master bias of the same camera setup" in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []


# --------------------------------------------------------------------------- inputs that change
@pytest.mark.parametrize("how", ["replaced", "edited in place"])
@pytest.mark.parametrize("keep_open", [True, False])
def test_an_input_changed_during_the_combine_is_an_error(darks, tmp_path, capsys, monkeypatch,
                                                         how, keep_open):
    from calstack.io import reader
    from calstack.stacking import job

    if not keep_open:  # above the open-file budget: every band reopens its file
        monkeypatch.setattr(job, "MAX_OPEN_FILES", 1)
    target = darks / "d1.fits"
    real = reader.FitsFrame.read_rows
    done = []

    def then_change(self, start, stop, out, raw):
        real(self, start, stop, out, raw)
        if self.path == str(target) and not done:
            done.append(True)
            if how == "replaced":  # an atomic mv of a new file over it
                new = darks / "new.tmp"
                frame(new, data=np.full((4, 4), 99.0, np.float32), IMAGETYP="DARK",
                      EXPTIME=300.0)
                os.replace(new, target)
            else:
                with open(target, "r+b") as f:
                    f.seek(-4, os.SEEK_END)
                    f.write(b"\x42\x42\x42\x42")

    monkeypatch.setattr(reader.FitsFrame, "read_rows", then_change)
    out = tmp_path / "out"
    assert main(["combine", str(darks), "--imagetyp", "dark", "-o", str(out),
                 "--no-cache"]) == 1
    err = capsys.readouterr().err
    assert "d1.fits: changed while it was being combined" in err
    assert "nothing was written" in err
    assert not out.exists() or list(out.iterdir()) == []


def test_python_warnings_are_one_calstack_line(tmp_path, capsys, monkeypatch):
    import warnings

    from calstack.pipeline import groups

    real = groups.anomalies

    def warn(frames, master):
        warnings.warn("a card was fixed", UserWarning, stacklevel=1)
        return real(frames, master)

    monkeypatch.setattr(groups, "anomalies", warn)
    darks = tmp_path / "night"  # three equal frames: a master that passes verification
    darks.mkdir()
    for i in range(3):
        frame(darks / f"d{i}.fits", data=np.full((4, 4), 5.0, np.float32), IMAGETYP="DARK",
              EXPTIME=300.0)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["combine", str(darks), "--imagetyp", "dark", "-o", str(tmp_path / "o"),
                     "--no-cache", "-q"]) == 0
    assert capsys.readouterr().err == "calstack: UserWarning: a card was fixed\n"
    assert warnings.showwarning.__module__ == "warnings"  # put back


def test_a_memory_limit_above_what_the_machine_has_is_an_error(darks, tmp_path, capsys,
                                                               monkeypatch):
    from calstack.stacking.backends import local

    assert 0 < local.available_memory() < 2**50  # this Linux machine's MemAvailable
    monkeypatch.setattr(local, "available_memory", lambda: 4 * 1024**2)  # 4 MiB free
    out = tmp_path / "out"
    assert main(["combine", str(darks), "--imagetyp", "dark", "-o", str(out), "--no-cache",
                 "--mem-limit", "64GB"]) == 1
    err = capsys.readouterr().err
    assert "but only 4.2 MB of memory is available; give a smaller --mem-limit" in err
    assert not out.exists() or list(out.iterdir()) == []


def _gzip_darks(tmp_path, shape):
    """Three gzip-compressed darks of ``shape`` in ``tmp_path/night``."""
    import gzip

    folder = tmp_path / "night"
    folder.mkdir()
    for i in range(3):
        plain = tmp_path / f"d{i}.fits"
        frame(plain, data=np.full(shape, float(i), np.float32), IMAGETYP="DARK", EXPTIME=30.0)
        (folder / f"d{i}.fits.gz").write_bytes(gzip.compress(plain.read_bytes()))
    return folder


def test_a_full_temporary_folder_plays_no_part_in_gzip_inputs(tmp_path, monkeypatch, capsys):
    """.gz frames are decompressed as streams: a $TMPDIR where nothing can be written is no
    error, and --skip-bad skips no good frame for it (the issue's 26 of 30 frames skipped)."""
    import io
    import tempfile

    folder = _gzip_darks(tmp_path, (4, 4))
    full = tmp_path / "tmp"
    full.mkdir()
    monkeypatch.setenv("TMPDIR", str(full))
    monkeypatch.setattr(tempfile, "tempdir", str(full))

    class Full(io.BytesIO):
        def write(self, _data):
            raise OSError(28, "No space left on device")

    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, mode="r", *a, **k: Full()
                        if "w" in mode and str(path).startswith(str(full))
                        else real_open(path, mode, *a, **k))
    out = tmp_path / "out"
    assert main(["combine", str(folder), "--imagetyp", "dark", "-o", str(out), "--no-cache",
                 "--skip-bad", "-q", "--json"]) == 0
    captured = capsys.readouterr()
    assert "skipping" not in captured.err
    assert fits.getheader(out / "combined_dark_30.000.fit")["NCOMBINE"] == 3
    assert list(full.iterdir()) == []


def test_an_output_folder_removed_during_the_run_is_one_error(tmp_path, capsys, monkeypatch):
    """The folder goes after the first master is written: the next master is one error naming
    the folder (no traceback)."""
    import shutil

    import calstack
    from calstack.pipeline import groups

    calstack.simulate(tmp_path / "night", preset="cryo", shape=(16, 16))  # 3 exposure times
    out = tmp_path / "out"
    real = groups.BuiltMaster.line

    def line_then_remove(self):
        shutil.rmtree(out, ignore_errors=True)  # right after the first master is reported
        return real(self)

    monkeypatch.setattr(groups.BuiltMaster, "line", line_then_remove)
    code = main(["combine", str(tmp_path / "night"), "--imagetyp", "dark", "-o", str(out),
                 "--no-cache"])
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot be written: its folder" in err
    assert "is gone" in err


def test_a_file_of_many_extensions_is_parsed_once_for_all_its_extensions(tmp_path, monkeypatch):
    from calstack.io import reader

    hdus = [fits.PrimaryHDU()] + [fits.ImageHDU(np.zeros((2, 2), np.float32), name="SCI", ver=i)
                                  for i in range(1, 41)]
    fits.HDUList(hdus).writeto(tmp_path / "many.fits")
    parsed = []
    real = reader.read_hdus
    monkeypatch.setattr(reader, "read_hdus", lambda path, **kw: parsed.append(path) or
                        real(path, **kw))
    for hdu in range(1, 41):
        reader.open_frame((tmp_path / "many.fits", hdu)).close()
    assert len(parsed) == 1
    (tmp_path / "many.fits").write_bytes((tmp_path / "many.fits").read_bytes())  # a new version
    os.utime(tmp_path / "many.fits", ns=(1, 1))
    reader.open_frame((tmp_path / "many.fits", 3)).close()
    assert len(parsed) == 2


def _gzip_copy(plain, gz):
    import gzip

    gz.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1))
    return gz


@pytest.mark.parametrize("keep_open", [True, False])
def test_gzip_frames_combine_as_their_plain_copies_without_temporary_space(
        tmp_path, monkeypatch, keep_open):
    """Integer frames with BZERO/BLANK and a MASK extension, in several bands (a small
    mem_limit) and past the open-file budget: the .gz frames give the plain frames' master bit
    for bit, and nothing is ever written to $TMPDIR (looked at at every read)."""
    import tempfile

    import calstack
    from calstack.io import reader
    from calstack.stacking import job

    if not keep_open:
        monkeypatch.setattr(job, "MAX_OPEN_FILES", 1)
    rng = np.random.default_rng(5)
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    plain.mkdir()
    packed.mkdir()
    for i in range(4):
        data = rng.integers(0, 60000, (64, 48)).astype(np.uint16)
        image = fits.PrimaryHDU(data, fits.Header({"IMAGETYP": "DARK", "EXPTIME": 30.0}))
        image.header["BLANK"] = 7
        mask = fits.ImageHDU((rng.random((64, 48)) < 0.05).astype(np.uint8), name="MASK")
        fits.HDUList([image, mask]).writeto(plain / f"d{i}.fits")
        _gzip_copy(plain / f"d{i}.fits", packed / f"d{i}.fits.gz")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    seen = []
    real = reader.FitsFrame.read_rows

    def looking(self, start, stop, out, raw):
        seen.append(sorted(os.listdir(temporary)))
        real(self, start, stop, out, raw)

    monkeypatch.setattr(reader.FitsFrame, "read_rows", looking)
    options = dict(method="median", rejection="sigma_clip")
    expected = calstack.combine(sorted(plain.iterdir()), mem_limit=8_433_000, **options)
    assert len(expected.plan.tiles) > 1  # several bands (10 rows)
    streams = 4 * 2 * reader.GZIP_STREAM_BYTES  # each frame's image and MASK, counted
    master = calstack.combine(sorted(packed.iterdir()), mem_limit=8_433_000 + streams, **options)
    assert master.plan.tiles == expected.plan.tiles
    np.testing.assert_array_equal(master.data, expected.data)
    np.testing.assert_array_equal(master.ncombine, expected.ncombine)
    assert seen
    assert all(s == [] for s in seen)


def test_a_gzip_frame_read_in_bands_holds_a_bounded_stream(tmp_path):
    """Reading a 4 MB .gz frame in 16-row bands allocates at most the band, the conversion
    buffer and the stream's state (under 600 kB in all: never the decompressed file); a second
    pass over the frame rewinds its stream and reads the same values."""
    import tracemalloc

    from calstack.io import reader

    data = np.random.default_rng(2).normal(1000, 10, (1024, 1024)).astype(np.float32)
    fits.writeto(tmp_path / "big.fits", data)
    path = _gzip_copy(tmp_path / "big.fits", tmp_path / "big.fits.gz")
    frame_ = reader.open_frame(path)
    assert isinstance(frame_, reader.GzipFrame)
    tracemalloc.start()
    try:
        total = 0.0
        for first, band in reader.read_bands(frame_, 16):
            np.testing.assert_array_equal(band, data[first:first + len(band)])
            total += float(band.sum(dtype=np.float64))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 600_000 < data.nbytes
    # within what the memory plan counts: the frame's held bytes, the band, the conversion buffer
    assert frame_.held_bytes == reader.GZIP_STREAM_BYTES
    assert peak < frame_.held_bytes + reader.GZIP_SKIP + 16 * 1024 * (4 + frame_.raw_itemsize)
    again = sum(float(b.sum(dtype=np.float64)) for _, b in reader.read_bands(frame_, 256))
    assert again == total
    frame_.close()


@pytest.mark.parametrize(("damage", "message"), [
    (lambda raw: raw[:len(raw) // 2], "gzip stream ends at byte"),
    (lambda raw: raw[:40] + bytes(len(raw) - 40), "gzip does not decompress"),
])
def test_a_damaged_gzip_stream_is_an_error_naming_the_file(tmp_path, damage, message):
    from calstack.errors import FrameError
    from calstack.io import reader

    fits.writeto(tmp_path / "d.fits", np.random.default_rng(1).random((256, 256)))
    path = _gzip_copy(tmp_path / "d.fits", tmp_path / "d.fits.gz")
    path.write_bytes(damage(path.read_bytes()))
    stream = reader._GzipStream(str(path))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(FrameError, match=rf"d\.fits\.gz: {message}"):
            stream.read_into(fd, 2880, memoryview(bytearray(256 * 256 * 8)))
    finally:
        os.close(fd)


def test_counts_are_the_frames_combined_when_skip_bad_skips_one_during_the_combine(tmp_path,
                                                                                 capsys):
    import json

    night = tmp_path / "night"
    night.mkdir()
    rng = np.random.default_rng(2)
    for i in range(4):
        frame(night / f"d{i}.fits", data=rng.random((128, 128)).astype(np.float32),
              IMAGETYP="DARK", EXPTIME=300.0)
    damaged = _gzip_copy(night / "d3.fits", night / "d3.fits.gz")
    (night / "d3.fits").unlink()
    damaged.write_bytes(damaged.read_bytes()[:len(damaged.read_bytes()) // 2])  # header intact
    assert ImageIndex(night, cache=False).files() == ["d0.fits", "d1.fits", "d2.fits",
                                                      "d3.fits.gz"]
    out = tmp_path / "out"
    assert main(["combine", str(night), "--imagetyp", "dark", "-o", str(out), "--no-cache",
                 "--skip-bad", "--json"]) == 0
    captured = capsys.readouterr()
    (master,) = json.loads(captured.out)
    assert master["n_frames"] == 3
    assert [os.path.basename(p) for p in master["inputs"]] == ["d0.fits", "d1.fits", "d2.fits"]
    assert "dark exptime=300.000: 3 frames ->" in captured.err
    header = fits.getheader(out / "combined_dark_300.000.fit")
    assert (header["NCOMBINE"], header["CMBSKIP"]) == (3, 1)


def test_a_file_changed_after_it_was_indexed_is_an_error_and_nothing_is_written(darks, tmp_path):
    """Index, then edit a frame in place (same size) and set its mtime back: the combine from
    that index names the file, with --skip-bad too, and writes nothing."""
    import calstack
    from calstack.errors import FileChangedError

    index = ImageIndex(darks, cache=False)
    path = darks / "d1.fits"
    before = path.stat()
    with fits.open(path, mode="update") as hdul:
        hdul[0].data[...] = 99.0
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    out = tmp_path / "out"
    for skip_bad in (False, True):
        with pytest.raises(FileChangedError, match=r"d1\.fits: changed since it was indexed"):
            calstack.combine_groups(index, select={"imagetyp": "dark"}, output_dir=out,
                                    skip_bad=skip_bad)
        with pytest.raises(FileChangedError, match="nothing was written"):
            calstack.combine(index)
    assert not out.exists() or list(out.iterdir()) == []


def test_the_memory_plan_counts_each_gzip_frames_stream(tmp_path):
    """A .gz frame holds its stream's state between bands (two with a MASK extension): the plan
    counts it (skipping forward holds GZIP_SKIP more at once per reader, within the headroom), so a limit that plain copies fit in can be too small for the .gz ones, and the
    error names the limit that would do."""
    from calstack.errors import OptionError
    from calstack.io import reader
    from calstack.stacking.plan import plan_tiles

    data = np.zeros((40, 30), np.float32)
    fits.writeto(tmp_path / "plain.fits", data)
    fits.HDUList([fits.PrimaryHDU(data), fits.ImageHDU(np.zeros((40, 30), np.uint8),
                                                       name="MASK")]).writeto(tmp_path / "m.fits")
    plain = reader.open_frame(tmp_path / "plain.fits")
    gz = reader.open_frame(_gzip_copy(tmp_path / "plain.fits", tmp_path / "plain.fits.gz"))
    masked = reader.open_frame(_gzip_copy(tmp_path / "m.fits", tmp_path / "m.fits.gz"))
    stream = reader.GZIP_STREAM_BYTES
    assert [plain.held_bytes, gz.held_bytes, masked.held_bytes] == [0, stream, 2 * stream]
    geometry = dict(shape=(40, 30), n_frames=10, stack_itemsize=4, raw_itemsize=0,
                    out_itemsize=4, n_readers=2)
    fits_plain = plan_tiles(mem_limit=9_000_000, **geometry)
    held = 10 * gz.held_bytes
    with pytest.raises(OptionError, match="too small") as error:
        plan_tiles(mem_limit=9_000_000, held_bytes=held, **geometry)
    needed = float(str(error.value).split("mem_limit='")[1].split("MB")[0]) * 1e6
    counted = plan_tiles(mem_limit=int(needed), held_bytes=held, **geometry)
    assert counted.estimated_peak - counted.rows_read * counted.bytes_per_row == (
        fits_plain.estimated_peak - fits_plain.rows_read * fits_plain.bytes_per_row + held)
    for frame_ in (plain, gz, masked):
        frame_.close()


def test_a_header_claiming_a_huge_image_never_allocates_it(tmp_path, capsys):
    """A 4x4 file whose header claims 2**30 x 2**30 pixels (4 EiB) is listed as truncated and
    stops the combine by name; indexing it allocates nothing of that size."""
    import tracemalloc

    folder = tmp_path / "night"
    folder.mkdir()
    for i in range(3):
        frame(folder / f"d{i}.fits", data=np.zeros((4, 4), np.float32), IMAGETYP="DARK",
              EXPTIME=1.0)
    raw = bytearray((folder / "d1.fits").read_bytes())
    for axis in (b"NAXIS1", b"NAXIS2"):
        start = raw.index(axis.ljust(8) + b"= ")
        raw[start:start + 30] = f"{axis.decode():8s}= {2**30:20d}".encode()
    (folder / "d1.fits").write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        (row,) = [r for r in ImageIndex(folder, cache=False).rows() if r["file"] == "d1.fits"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "truncated: data ends at byte 5760" in row["error"]
    assert peak < 10e6
    assert main(["combine", str(folder), "--imagetyp", "dark", "-o", str(tmp_path / "out"),
                 "--no-cache"]) == 1
    assert "d1.fits: truncated" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
