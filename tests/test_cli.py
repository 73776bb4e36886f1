"""The calstack command line: the recipe as one command, output names, errors."""

import gc
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import make_darks, write_frames

from calstack.cli import _build_parser, main


@pytest.fixture
def night(tmp_path):
    folder = tmp_path / "reduced"
    folder.mkdir()
    for exptime, seed in ((7.0, 1), (70.0, 2), (300.0, 3)):
        frames, _ = make_darks(n=3, seed=seed, shape=(24, 20))
        write_frames(folder, frames, exptime=exptime)
    bias, _ = make_darks(n=2, seed=5, shape=(24, 20))
    write_frames(folder, bias, imagetyp="BIAS", exptime=0.0, prefix="bias")
    return folder


RECIPE_ARGS = ["--imagetyp", "dark", "--group-by", "exptime", "--method", "average",
               "--sigma-clip", "5", "5", "--cenfunc", "median", "--stdfunc", "mad_std",
               "--mem-limit", "350MB"]


def test_combine_recipe_writes_one_master_per_exposure_time(night, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["combine", str(night), *RECIPE_ARGS, "--output-dir", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["combined_dark_300.000.fit", "combined_dark_7.000.fit",
                     "combined_dark_70.000.fit"]
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("dark exptime=7.000: 3 frames -> ")
    assert "combined_dark_7.000.fit (rejected " in lines[0]
    header = fits.getheader(out / "combined_dark_70.000.fit")
    assert header["COMBINED"] is True
    assert header["NCOMBINE"] == 3
    assert header["EXPTIME"] == 70.0
    # the reference recipe's mark, as the FITS logical T (not the string 'True' nor 1), once
    raw = (out / "combined_dark_70.000.fit").read_bytes()
    assert raw.count(b"COMBINED=                    T / combined from several frames") == 1


def test_guide_template_and_json(night, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["combine", str(night), *RECIPE_ARGS, "--output-dir", str(out), "--json",
                 "--template", "combined_dark_{exptime:6.3f}.fit"])
    assert code == 0
    built = json.loads(capsys.readouterr().out)
    assert [b["n_frames"] for b in built] == [3, 3, 3]
    assert sorted(p.name for p in out.iterdir()) == [
        "combined_dark_ 7.000.fit", "combined_dark_300.000.fit", "combined_dark_70.000.fit"]


def test_existing_master_is_not_overwritten(night, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "combined_dark_70.000.fit").write_bytes(b"keep me")
    assert main(["combine", str(night), *RECIPE_ARGS, "--output-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "combined_dark_70.000.fit: exists; pass --overwrite" in err
    assert (out / "combined_dark_70.000.fit").read_bytes() == b"keep me"
    assert sorted(p.name for p in out.iterdir()) == ["combined_dark_70.000.fit"]  # nothing else
    assert main(["combine", str(night), *RECIPE_ARGS, "--output-dir", str(out), "--overwrite"]) == 0
    assert fits.getheader(out / "combined_dark_70.000.fit")["NCOMBINE"] == 3


def test_empty_selection_is_an_error(night, tmp_path, capsys):
    assert main(["combine", str(night), "--imagetyp", "flat", "-o", str(tmp_path)]) == 1
    assert "no frames match imagetyp='flat'" in capsys.readouterr().err


def test_unknown_option_suggests_nearest(night, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["combine", str(night), "--sigma-clp", "5", "5"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --sigma-clp" in err
    assert "did you mean '--sigma-clip'" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_value_is_one_line_error(night, tmp_path, capsys):
    assert main(["combine", str(night), "--imagetyp", "dark", "--method", "mean",
                 "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "method='mean' is not valid" in err


def test_one_group_when_group_by_is_empty(night, tmp_path):
    out = tmp_path / "o"
    assert main(["combine", str(night), "--imagetyp", "bias", "--group-by", "", "-o", str(out),
                 "-q"]) == 0
    assert [p.name for p in out.iterdir()] == ["combined_bias.fit"]
    data = fits.getdata(out / "combined_bias.fit")
    assert data.shape == (24, 20)
    assert np.isfinite(data).all()


COMMANDS = sorted(_build_parser().commands)  # every subcommand, as the parser has them


def test_the_command_list_is_the_parser_s():
    assert {"index", "simulate", "combine", "masters", "show", "demo"} <= set(COMMANDS)


def _assert_lists_every_command(text):
    assert text.startswith("usage: calstack ")
    for command in COMMANDS:
        # its own entry in the COMMAND list (indented 4, where a wrapped help line is indented
        # further, so 'masters' in demo's help does not count), with its help after it
        assert re.search(rf"^ {{4}}{command} {{2,}}\S", text, re.MULTILINE), command
    assert "==SUPPRESS==" not in text


def test_version_and_help_run_as_a_process():
    done = subprocess.run([sys.executable, "-m", "calstack.cli", "--version"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.startswith("calstack ")
    done = subprocess.run([sys.executable, "-m", "calstack.cli", "--help"],
                          capture_output=True, text=True, check=True)
    _assert_lists_every_command(done.stdout)


def test_the_program_writes_whole_outputs_and_exits_with_mains_code(night, tmp_path):
    """``calstack`` (:func:`calstack.cli.run`) exits without the interpreter's teardown: what
    it printed and wrote is whole, and its exit code is main's."""
    program = [sys.executable, "-m", "calstack.cli"]
    out = tmp_path / "out"
    done = subprocess.run([*program, "combine", str(night), *RECIPE_ARGS, "-o", str(out),
                           "--json", "-q"], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert sorted(Path(m["path"]).name for m in printed) == sorted(p.name for p in out.iterdir())
    assert len(printed) == 3
    main(["combine", str(night), *RECIPE_ARGS, "-o", str(tmp_path / "here"), "-q"])
    for name in ("combined_dark_7.000.fit", "combined_dark_300.000.fit"):
        np.testing.assert_array_equal(fits.getdata(out / name), fits.getdata(tmp_path / "here" / name))
    done = subprocess.run([*program, "combine", str(tmp_path / "missing"), "-o", str(out)],
                          check=False, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.startswith("calstack combine: error: ")
    assert done.stdout == ""


@pytest.mark.parametrize("dask_loaded", [False, True])
def test_the_program_skips_teardown_only_without_dask(monkeypatch, dask_loaded):
    from calstack import cli

    class Exited(Exception):
        pass

    def hard_exit(code):
        raise Exited(code)

    def main():
        assert not gc.isenabled()  # the start-up's pause
        cli._end_start_up()
        return 5

    monkeypatch.setattr(cli, "main", main)
    monkeypatch.setattr(cli.os, "_exit", hard_exit)
    if dask_loaded:
        monkeypatch.setitem(sys.modules, "distributed", sys)
    else:
        monkeypatch.delitem(sys.modules, "distributed", raising=False)
    expected = SystemExit if dask_loaded else Exited
    try:
        with pytest.raises(expected) as exit_:
            cli.run()
    finally:
        gc.unfreeze()  # the test session's objects, frozen by _end_start_up
    assert exit_.value.args[0] == 5
    assert gc.isenabled()


@pytest.mark.parametrize("command", ["combine", "simulate"])
def test_the_start_up_pause_of_the_collector_ends_before_the_work(night, tmp_path, command,
                                                                   monkeypatch):
    """With :func:`calstack.cli.run`'s pause on, a command that indexes frames resumes the
    garbage collector when it indexes them; any other, before it starts."""
    from calstack import cli

    seen = []
    monkeypatch.setattr(cli, "_start_up_paused", True)
    if command == "combine":
        from calstack.catalog import index as catalog

        class Recording(catalog.ImageIndex):
            def __init__(self, *args, **kwargs):
                seen.append(gc.isenabled())
                super().__init__(*args, **kwargs)

        monkeypatch.setattr(catalog, "ImageIndex", Recording)
        argv = ["combine", str(night), "-o", str(tmp_path / "out"), "-q"]
    else:
        simulate = cli._cmd_simulate
        monkeypatch.setattr(cli, "_cmd_simulate", lambda args: (seen.append(gc.isenabled()),
                                                               simulate(args))[1])
        argv = ["simulate", str(tmp_path / "sim"), "--shape", "8", "8", "--n-darks", "1"]
    gc.disable()
    try:
        assert main(argv) == 0
    finally:
        gc.unfreeze()
        gc.enable()
    assert seen == [True]
    assert cli._start_up_paused is False


def test_the_console_script_is_the_program():
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="calstack")
    assert script.value == "calstack.cli:run"


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_lists_every_command(flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([flag])
    assert exit_.value.code == 0
    _assert_lists_every_command(capsys.readouterr().out)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: calstack {command} [-h]")
    assert "options:\n  -h, --help" in out


def test_unreadable_file_stops_before_writing_unless_skip_bad(night, tmp_path, capsys):
    (night / "broken.fits").write_bytes(b"SIMPLE  =                    T" + b" " * 50 + b"garbage")
    out = tmp_path / "out"
    assert main(["combine", str(night), *RECIPE_ARGS, "--output-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "broken.fits" in err
    assert "--skip-bad" in err
    assert not out.exists() or not any(out.iterdir())
    assert main(["combine", str(night), *RECIPE_ARGS, "--output-dir", str(out), "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert "skipping unreadable" in err
    assert "broken.fits" in err
    assert len(list(out.iterdir())) == 3


def test_skip_bad_in_the_api_records_skipped_frames(night, tmp_path):
    import calstack

    files = sorted(str(p) for p in night.glob("dark-007*"))
    bad = tmp_path / "truncated.fits"
    bad.write_bytes(Path(files[0]).read_bytes()[:4000])
    with pytest.raises(calstack.FrameError, match=r"truncated\.fits"):
        calstack.combine([*files, bad])
    master = calstack.combine([*files, bad], skip_bad=True)
    assert master.meta["NCOMBINE"] == 3
    assert master.meta["CMBSKIP"] == 1
    assert [p for p, _ in master.skipped] == [str(bad)]
    assert any("truncated.fits" in h for h in master.meta["HISTORY"])


def test_mosaic_gives_a_master_per_extension_or_the_chosen_one(tmp_path):
    folder = tmp_path / "mosaic"
    folder.mkdir()
    for i in range(3):
        primary = fits.PrimaryHDU(header=fits.Header({"IMAGETYP": "DARK", "EXPTIME": 30.0}))
        ccds = [fits.ImageHDU(np.full((6, 5), 10.0 * (k + 1) + i, np.float32), name=f"CCD{k + 1}")
                for k in range(2)]
        fits.HDUList([primary, *ccds]).writeto(folder / f"m{i}.fits")
    out = tmp_path / "out"
    assert main(["combine", str(folder), "--imagetyp", "dark", "-o", str(out), "-q"]) == 0
    # one master file, its extensions as the inputs'
    assert [p.name for p in out.iterdir()] == ["combined_dark_30.000.fit"]
    with fits.open(out / "combined_dark_30.000.fit") as hdul:
        assert [(h.name, h.ver) for h in hdul] == [
            ("PRIMARY", 1), ("CCD1", 1), ("UNCERT", 1), ("MASK", 1), ("NCOMB", 1),
            ("CCD2", 1), ("UNCERT", 2), ("MASK", 2), ("NCOMB", 2)]
        assert hdul["CCD1"].data[0, 0] == 11.0  # mean of 10, 11, 12
        assert hdul["CCD2"].data[0, 0] == 21.0
        assert hdul[0].header["NCOMBINE"] == 3
    split = tmp_path / "split"
    assert main(["combine", str(folder), "--imagetyp", "dark", "-o", str(split), "-q",
                 "--split-extensions"]) == 0
    names = sorted(p.name for p in split.iterdir())
    # the extension is a setup key: its keyword is in the name
    assert names == ["combined_dark_30.000_extnameCCD1.fit", "combined_dark_30.000_extnameCCD2.fit"]
    assert fits.getdata(split / names[1])[0, 0] == 21.0  # mean of 20, 21, 22
    one = tmp_path / "one"
    assert main(["combine", str(folder), "--imagetyp", "dark", "--hdu", "CCD1", "-o", str(one),
                 "-q"]) == 0
    assert [p.name for p in one.iterdir()] == ["combined_dark_30.000.fit"]
    assert fits.getdata(one / "combined_dark_30.000.fit")[0, 0] == 11.0


def test_frames_without_the_group_key_are_reported(night, tmp_path, capsys):
    fits.writeto(night / "no-exptime.fits", np.zeros((24, 20), np.float32),
                 fits.Header({"IMAGETYP": "DARK", "BUNIT": "adu"}))
    out = tmp_path / "out"
    assert main(["combine", str(night), *RECIPE_ARGS, "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 selected frame(s) lack a value for exptime" in err
    assert "no-exptime.fits" in err
    assert len(list(out.iterdir())) == 3


def test_small_group_is_built_with_a_warning(night, tmp_path, capsys):
    assert main(["combine", str(night), "--imagetyp", "bias", "-o", str(tmp_path / "o")]) == 0
    assert "exptime=0.000: only 2 frame(s)" in capsys.readouterr().err
    assert (tmp_path / "o" / "combined_bias_0.000.fit").exists()


def test_frames_without_imagetyp_are_reported(night, tmp_path, capsys):
    fits.writeto(night / "anonymous.fits", np.zeros((24, 20), np.float32),
                 fits.Header({"EXPTIME": 7.0, "BUNIT": "adu"}))
    assert main(["combine", str(night), *RECIPE_ARGS, "-o", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "1 frame(s) have no IMAGETYP and were not considered" in err
    assert "anonymous.fits" in err


def test_other_spellings_of_imagetyp_are_named_and_can_be_selected(night, tmp_path, capsys):
    frames, _ = make_darks(n=2, seed=9, shape=(24, 20))
    write_frames(night, frames, imagetyp="Dark Frame", exptime=7.0, prefix="acq")
    args = ["combine", str(night), "--group-by", "exptime", "--sigma-clip", "5", "5", "--json"]
    assert main([*args, "--imagetyp", "dark", "-o", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert ("2 frame(s) have IMAGETYP 'Dark Frame', another spelling of dark, and were not "
            "selected") in captured.err
    assert "acq" in captured.err
    assert "--imagetyp dark --imagetyp 'Dark Frame'" in captured.err
    assert [m["n_frames"] for m in json.loads(captured.out)] == [3, 3, 3]
    assert main([*args, "--imagetyp", "DARK", "--imagetyp", "dark frame",
                 "-o", str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    assert "another spelling" not in captured.err
    built = json.loads(captured.out)
    assert [m["n_frames"] for m in built] == [5, 3, 3]
    assert Path(built[0]["path"]).name == "combined_dark_7.000.fit"  # named by the first spelling


def test_index_command_formats(night, capsys):
    assert main(["index", str(night), "--format", "json", "--select", "imagetyp=bias"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2
    assert {r["imagetyp"] for r in rows} == {"BIAS"}
    assert main(["index", str(night), "--format", "csv", "--keywords", "imagetyp,exptime"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "file,path,hdu,extname,imagetyp,exptime,error"
    assert len(lines) == 12
    assert main(["index", str(night)]) == 0
    assert "dark-300.000-002.fits" in capsys.readouterr().out


def test_simulate_command_counts_and_sizes(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", str(out), "--preset", "cryo", "--shape", "32", "48", "--n-darks",
                 "2", "--exptimes", "5", "50", "--raw"]) == 0
    assert "wrote 4 frames" in capsys.readouterr().out
    frames = sorted(out.glob("*.fits"))
    assert [f.name for f in frames] == ["dark-005.000s-001.fits", "dark-005.000s-002.fits",
                                        "dark-050.000s-001.fits", "dark-050.000s-002.fits"]
    with fits.open(frames[0]) as hdul:
        assert hdul[0].data.shape == (32, 48)
        assert hdul[0].header["BZERO"] == 32768
    again = ["simulate", str(out), "--preset", "cryo", "--shape", "32", "48", "--exptimes", "5"]
    assert main(again) == 1  # the files exist: refuses, before writing anything
    assert "exists; pass overwrite=True (--overwrite)" in capsys.readouterr().err


@pytest.mark.usefixtures("dark_files")  # the darks in tmp_path
def test_combine_with_another_rejection_scaling_and_weights(tmp_path, capsys):
    folder = str(tmp_path)
    out = tmp_path / "out"
    argv = ["combine", folder, "--imagetyp", "dark", "-o", str(out), "--rejection", "ccdclip",
            "--gain", "2", "--read-noise", "RDNOISE", "--scale", "median", "--weights", "exptime",
            "--json"]
    assert main(argv) == 1  # RDNOISE is not in the headers: a one-line error naming it
    assert "RDNOISE" in capsys.readouterr().err
    argv[argv.index("RDNOISE")] = "5"
    assert main(argv) == 0
    built = json.loads(capsys.readouterr().out)
    header = fits.getheader(built[0]["path"])
    assert header["CMBREJ"] == "ccdclip"
    assert header["CMBGAIN"] == 2.0
    assert header["CMBRDNS"] == 5.0
    assert header["CMBSCALE"] == "median"
    assert header["CMBWEIGH"] == "exptime"
    assert main(["combine", folder, "--imagetyp", "dark", "-o", str(out), "--overwrite",
                 "--rejection", "sigma_clipp"]) == 1
    assert "did you mean 'sigma_clip'" in capsys.readouterr().err


def test_help_says_when_to_pick_which_rejection(capsys):
    with pytest.raises(SystemExit):
        main(["combine", "--help"])
    text = capsys.readouterr().out
    for name in ("percentile_clip", "ccdclip", "winsorized_sigma_clip", "esd", "--nlow/--nhigh"):
        assert name in text
