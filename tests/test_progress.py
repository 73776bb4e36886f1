"""Progress: bars with rate and ETA on a terminal, one plain line per master in logs, nothing
when quiet or not asked; and the --json summary."""

import io
import json

import pytest
from conftest import make_darks, write_frames

import calstack
from calstack.cli import main
from calstack.errors import OptionError, UnknownOptionError
from calstack.progress import Progress, as_progress


@pytest.fixture
def two_groups(tmp_path):
    folder = tmp_path / "darks"
    folder.mkdir()
    for exptime, seed in ((10.0, 1), (20.0, 2)):
        frames, _ = make_darks(n=3, seed=seed, shape=(40, 24))
        write_frames(folder, frames, exptime=exptime)
    return folder


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_modes_follow_the_terminal():
    assert Progress(stream=_Terminal()).mode == "bar"
    assert Progress(stream=io.StringIO()).mode == "lines"
    assert as_progress(False).mode == as_progress(None).mode == "off"
    assert as_progress("lines").mode == "lines"
    shared = Progress("off")
    assert as_progress(shared) is shared
    with pytest.raises(OptionError, match="progress mode 'loud' is not valid"):
        as_progress("loud")
    with pytest.raises(OptionError, match="must be True, False, one of"):
        as_progress(3)


def test_bar_shows_count_rate_and_eta_and_lines_go_above():
    stream = _Terminal()
    progress = Progress(stream=stream)
    with progress.task("combine", total=40, unit="row") as task:
        task.update(10)
        progress.line("a finished master")
        task.update(5)
        progress.line("another master")
    text = stream.getvalue()
    # The bar is drawn when it starts: 0 of 40, elapsed<ETA, no rate yet.
    start, rest = text.split("a finished master\n")
    assert "combine:   0%" in start
    assert "| 0/40 [00:00<?, ?row/s]" in start
    # A line clears the bars, is written, and the bars are redrawn with their count now (tqdm's
    # external_write_mode refreshes them whatever mininterval says), so what follows each line
    # shows the updates made before it: 10 of 40, then 15 of 40, with a rate in rows/s.
    after_first, after_second = rest.split("another master\n")
    assert "combine:  25%" in after_first
    assert "| 10/40 [" in after_first
    assert "| 15/40 [" in after_second
    assert "row/s]" in after_second
    assert "| 0/40 [" not in rest


def test_lines_mode_has_no_carriage_returns():
    out = io.StringIO()
    progress = Progress("lines", stream=out)
    with progress.task("combine", total=3, unit="row") as task:
        task.update(3)
    progress.line("exptime=10.000: 3 frames -> x.fit")
    assert out.getvalue() == "exptime=10.000: 3 frames -> x.fit\n"


def test_api_is_silent_unless_asked(two_groups, capsys):
    files = sorted(str(p) for p in two_groups.glob("*010.000*"))
    calstack.combine(files)
    calstack.ImageIndex(two_groups)
    assert capsys.readouterr() == ("", "")
    calstack.combine(files, progress="bar")
    calstack.ImageIndex(two_groups, progress="bar")
    err = capsys.readouterr().err
    assert "combine:   0%" in err
    assert "/40 [" in err  # 40 rows
    assert "row/s" in err
    assert "index:   0%" in err
    assert "/6 [" in err  # 6 files
    assert "file/s" in err
    with pytest.raises(UnknownOptionError, match="did you mean 'progress'"):
        calstack.ImageIndex(two_groups, progres=True)
    with pytest.raises(UnknownOptionError, match="did you mean 'progress'"):
        calstack.combine(files, progres=True)


def test_command_line_not_on_a_terminal_prints_one_line_per_master(two_groups, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["combine", str(two_groups), "--imagetyp", "dark", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["dark exptime=10.000", "dark exptime=20.000"]
    assert all(" 3 frames -> " in line and line.endswith(" s)") for line in lines)
    assert "\r" not in captured.out + captured.err
    assert captured.err == ""
    assert main(["combine", str(two_groups), "--imagetyp", "dark", "-o", str(out),
                 "--overwrite", "-q"]) == 0
    assert capsys.readouterr() == ("", "")


def test_verbose_logs_the_tile_plan(two_groups, tmp_path, capsys):
    assert main(["-v", "combine", str(two_groups), "--imagetyp", "dark", "-o", str(tmp_path),
                 "--mem-limit", "20MB"]) == 0
    err = capsys.readouterr().err
    assert err.count("calstack: combine: 3 frames of 40x24: 1 tile(s) of 40 rows; "
                     "estimated peak") == 2
    assert "of mem_limit 20.0 MB" in err


def test_json_has_paths_groups_counts_rejection_and_timings(two_groups, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["combine", str(two_groups), "--imagetyp", "dark", "--sigma-clip", "3", "3",
                 "-o", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    built = json.loads(captured.out)  # stdout is JSON only; the per-master lines went to stderr
    assert len(captured.err.splitlines()) == 2
    assert [b["group"] for b in built] == [{"exptime": 10.0}, {"exptime": 20.0}]
    for entry in built:
        assert set(entry) == {"kind", "group", "setup", "path", "n_frames", "inputs",
                              "frame_rejected", "anomalies", "rejected_fraction", "seconds",
                              "verified", "checks"}
        assert entry["verified"] is True
        assert entry["kind"] == "dark"
        assert entry["n_frames"] == 3
        assert len(entry["inputs"]) == len(entry["frame_rejected"]) == 3
        assert entry["anomalies"] == [[], [], []]
        assert entry["path"].startswith(str(out))
        assert entry["seconds"] >= 0
        assert all(f.startswith(str(two_groups)) for f in entry["inputs"])
        # per frame: a fraction of the frame's pixels; overall: of all values
        assert sum(entry["frame_rejected"]) / 3 == pytest.approx(entry["rejected_fraction"],
                                                                 abs=1e-6)
        assert entry["rejected_fraction"] > 0
