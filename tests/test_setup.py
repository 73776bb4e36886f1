"""Which frames go together: the camera setup, keyword aliases, masters that are not inputs,
exposure tolerance, mosaics, program folder layouts and safe names.

The frame sets in ``tests/data/corpus`` imitate what N.I.N.A., MaxIm DL, SharpCap, SGP, Gemini,
IRAF, Siril, PixInsight and APP write (``tests/data/make_corpus.py``); astropy's own WFPC2 test
file is real data. Each test says which masters are built from which frames."""

import json
import os
import shutil
from pathlib import Path

import astropy
import numpy as np
import pytest
from astropy.io import fits

from calstack import ImageIndex, group_by
from calstack.catalog.conventions import kind_of, master_marks, normalise
from calstack.cli import main

CORPUS = Path(__file__).parent / "data" / "corpus"
RECIPE = ["--imagetyp", "dark", "--group-by", "exptime", "--method", "average", "--sigma-clip",
          "5", "5", "--cenfunc", "median", "--stdfunc", "mad_std", "--mem-limit", "350MB"]


def built(capsys, *argv):
    """Run a command with --json; return {master name: [input names]} and stderr."""
    assert main([*argv, "--json"]) == 0
    out, err = capsys.readouterr()
    return {Path(m["path"]).name: [Path(p).name for p in m["inputs"]]
            for m in json.loads(out)}, err


def three(stem):
    """The names of a corpus series: ``stem_001.fits`` ... ``stem_003.fits``."""
    return [f"{stem}_00{i}.fits" for i in (1, 2, 3)]


def median_of(path):
    return float(np.median(fits.getdata(path)))


def test_nina_night_by_gain_offset_and_set_point(tmp_path, capsys):
    masters, err = built(capsys, "masters", str(CORPUS / "nina"), "-r", "-o", str(tmp_path),
                         "--no-cache")
    assert masters == {
        "combined_bias_gain0_offset10.fit": three("BIAS_gain0"),
        "combined_bias_gain120_offset30.fit": three("BIAS_gain120"),
        "combined_dark_60.000_settemp-20.fit": three("DARK_-20C"),
        "combined_dark_60.000_settemp-10.fit": three("DARK_-10C"),
        "combined_flatdark_2.500.fit": three("DARKFLAT"),
        "combined_flat_R.fit": three("FLAT_R"),
        "combined_flat_V.fit": three("FLAT_V"),
    }
    assert abs(median_of(tmp_path / "combined_bias_gain120_offset30.fit") - 480) < 3
    assert abs(median_of(tmp_path / "combined_bias_gain0_offset10.fit") - 160) < 3
    assert "ignored IMAGETYP values: LIGHT (2 frames)" in err
    header = fits.getheader(tmp_path / "combined_dark_60.000_settemp-10.fit")
    # the setup it was built for, and the group's nominal exposure (its median member)
    assert (header["GAIN"], header["OFFSET"], header["SET-TEMP"], header["EXPTIME"]) == (
        120, 30, -10.0, 60.0004)
    assert set(header["CMBKEYS"].split(",")) >= {"INSTRUME", "GAIN", "OFFSET", "SET-TEMP",
                                                  "CCD-TEMP", "XBINNING", "READOUTM", "EXPTIME"}


def test_nina_folder_without_recursive_says_so(tmp_path, capsys):
    assert main(["masters", str(CORPUS / "nina"), "-o", str(tmp_path), "--no-cache"]) == 1
    err = capsys.readouterr().err
    assert "subfolders BIAS, DARK, DARKFLAT, FLAT, LIGHT do: pass --recursive" in err


def test_subtracting_a_bias_of_another_setup_is_an_error(tmp_path, capsys):
    # the bias frames were taken at -10 degC only; the -20 degC darks have none
    assert main(["masters", str(CORPUS / "nina"), "-r", "-o", str(tmp_path), "--no-cache",
                 "--subtract-bias"]) == 1
    err = capsys.readouterr().err
    assert "no master bias of the same camera setup for exptime=60.000 set-temp=-20" in err
    assert "SET-TEMP -10.0 vs -20.0" in err


def test_flats_of_a_night_use_their_flat_dark(tmp_path):
    night = tmp_path / "night"
    shutil.copytree(CORPUS / "nina", night, ignore=shutil.ignore_patterns("DARK_-20C*"))
    out = tmp_path / "out"
    assert main(["masters", str(night), "-r", "-o", str(out), "--no-cache", "--subtract-bias",
                 "--subtract-dark", "-q"]) == 0
    header = fits.getheader(out / "combined_flat_R.fit")
    assert "combined_flatdark_2.500.fit" in header["DARKSUB"]
    assert "combined_bias_gain120_offset30.fit" in header["BIASSUB"]


def test_maxim_set_points_and_its_master(tmp_path, capsys):
    masters, err = built(capsys, "masters", str(CORPUS / "maxim"), "-o", str(tmp_path),
                         "--no-cache")
    assert masters["combined_dark_300.000_settemp-10.fit"] == [
        f"dark300_10C_00{i}.fits" for i in (1, 2, 3)]
    assert masters["combined_dark_300.000_settemp-20.fit"] == [
        f"dark300_20C_00{i}.fits" for i in (1, 2, 3)]
    assert masters["combined_flat_Red.fit"] == three("flat_red")
    assert "master_dark300.fits (SNAPSHOT = 10 (MaxIm DL))" in err


def test_sharpcap_numbers_written_as_text_are_numbers(tmp_path, capsys):
    masters, _ = built(capsys, "combine", str(CORPUS / "sharpcap"), "--imagetyp", "dark",
                       "-o", str(tmp_path), "--no-cache")
    assert masters == {"combined_dark_60.000.fit": ["dark_001.fits", "dark_002.fits",
                                                    "dark_003.fits"]}
    index = ImageIndex(CORPUS / "sharpcap", cache=False)
    assert set(index.table["exptime"].tolist()) == {60, 3.2e-05}
    assert set(index.table["gain"].tolist()) == {120}


def test_sgp_exposure_only(tmp_path, capsys):
    masters, _ = built(capsys, "combine", str(CORPUS / "sgp"), "--imagetyp", "dark", "-o",
                       str(tmp_path), "--no-cache")
    assert masters == {"combined_dark_30.000.fit": three("dark_30s"),
                       "combined_dark_120.000.fit": three("dark_120s")}


def test_gemini_amplifiers_sharing_extname_sci(tmp_path, capsys):
    assert main(["masters", str(CORPUS / "gemini"), "-o", str(tmp_path), "--no-cache",
                 "--json"]) == 0
    built_ = json.loads(capsys.readouterr().out)
    assert [(m["group"]["extver"], Path(m["path"]).name) for m in built_] == [
        (ver, "combined_bias.fit") for ver in (1, 2, 3, 4)]
    with fits.open(tmp_path / "combined_bias.fit") as hdul:  # the inputs' layout
        assert [(h.name, h.ver) for h in hdul if h.name == "SCI"] == [("SCI", v) for v in (1, 2, 3, 4)]
        for ver in (1, 2, 3, 4):  # each amplifier at its own level: 1000 x EXTVER
            assert abs(np.median(hdul["SCI", ver].data) - 1000 * ver) < 3
            assert hdul["SCI", ver].header["CCDNAME"] == f"BI13-20-4k-{1 + (ver - 1) // 2}"
    # and as files of their own
    split = tmp_path / "split"
    masters, _ = built(capsys, "masters", str(CORPUS / "gemini"), "-o", str(split),
                       "--no-cache", "--split-extensions")
    assert len(masters) == 4
    for ver in (1, 2, 3, 4):
        name = next(n for n in masters if n.endswith(f"_extver{ver}.fit"))
        assert abs(median_of(split / name) - 1000 * ver) < 3


def test_real_wfpc2_chips_are_never_averaged(tmp_path, capsys):
    source = Path(astropy.__file__).parent / "io" / "fits" / "tests" / "data" / "test0.fits"
    folder = tmp_path / "wfpc2"
    folder.mkdir()
    for i in range(3):
        shutil.copy(source, folder / f"u{i}.fits")
    out = tmp_path / "out"
    masters, _ = built(capsys, "combine", str(folder), "--imagetyp", "ext", "--group-by", "",
                       "-o", str(out), "--no-cache", "--split-extensions")
    # each chip has its own DETECTOR (1-4) and EXTVER
    names = [f"combined_ext_detector{v}_extver{v}.fit" for v in (1, 2, 3, 4)]
    assert sorted(masters) == names
    with fits.open(source) as hdul:
        for ver, name in zip((1, 2, 3, 4), names, strict=True):  # copies of a chip: the chip
            np.testing.assert_allclose(fits.getdata(out / name),
                                       hdul["SCI", ver].data, rtol=1e-6)
    # by default: one master, with the input's four SCI extensions
    mef = tmp_path / "mef"
    masters, _ = built(capsys, "combine", str(folder), "--imagetyp", "ext", "--group-by", "",
                       "-o", str(mef), "--no-cache")
    assert masters == {"combined_ext.fit": ["u0.fits", "u1.fits", "u2.fits"]}
    with fits.open(source) as hdul, fits.open(mef / "combined_ext.fit") as master:
        for ver in (1, 2, 3, 4):
            np.testing.assert_allclose(master["SCI", ver].data, hdul["SCI", ver].data, rtol=1e-6)
            assert master["SCI", ver].header["DETECTOR"] == ver


def test_iraf_subset_and_zero(tmp_path, capsys):
    masters, _ = built(capsys, "masters", str(CORPUS / "iraf"), "-o", str(tmp_path),
                       "--no-cache")
    assert masters == {"combined_bias.fit": three("zero"),
                       "combined_flat_R.fit": three("flatR"),
                       "combined_flat_V.fit": three("flatV")}


def test_combine_splits_flats_by_filter(tmp_path, capsys):
    masters, _ = built(capsys, "combine", str(CORPUS / "iraf"), "--imagetyp", "flat", "-o",
                       str(tmp_path), "--no-cache")
    assert masters == {"combined_flat_5.000_R.fit": three("flatR"),
                       "combined_flat_5.000_V.fit": three("flatV")}


def test_masters_of_other_programs_are_not_inputs(tmp_path, capsys):
    darks = three("dark120")
    for command in (["masters"], ["combine", "--imagetyp", "dark"]):
        out = tmp_path / command[0]
        masters, err = built(capsys, *command[:1], str(CORPUS / "masters"), *command[1:], "-o",
                             str(out), "--no-cache")
        assert masters == {"combined_dark_120.000.fit": darks}
        assert "5 frame(s) are masters and are not inputs" in err
        for mark in ("COMBINED = T", "NCOMBINE = 3 with IMCMB001", "STACKCNT = 3 (Siril)",
                     "IMAGETYP = 'Master Dark'", "IMAGETYP = 'MASTERDARK'"):
            assert mark in err
    # a master named explicitly is an input
    named = [str(CORPUS / "masters" / n) for n in [*darks, "siril_master.fits"]]
    masters, _ = built(capsys, "combine", *named, "--imagetyp", "dark", "-o",
                       str(tmp_path / "named"), "--no-cache")
    assert masters == {"combined_dark_120.000.fit": [*darks, "siril_master.fits"]}


def test_colour_flats_without_filter_are_one_group(tmp_path, capsys):
    masters, err = built(capsys, "masters", str(CORPUS / "colour"), "-o", str(tmp_path),
                         "--no-cache")
    assert masters["combined_flat.fit"] == three("flat")
    assert "no flat has a FILTER" in err


def test_rerunning_the_recipe_in_place_gives_the_same_master(tmp_path, capsys):
    for i, exposure in enumerate((90.0012, 89.9991, 90.0004)):
        rng = np.random.default_rng(i)
        fits.writeto(tmp_path / f"dark{i}.fits", rng.normal(50, 3, (8, 8)).astype(np.float32),
                     fits.Header({"IMAGETYP": "DARK", "EXPTIME": exposure}))
    args = ["combine", str(tmp_path), *RECIPE, "--output-dir", str(tmp_path), "--template",
            "combined_dark_{exptime:6.3f}.fit", "--no-cache", "-q"]
    assert main(args) == 0
    first = fits.getdata(tmp_path / "combined_dark_90.000.fit")
    assert main([*args, "--overwrite"]) == 0
    assert "are masters and are not inputs" in capsys.readouterr().err
    header = fits.getheader(tmp_path / "combined_dark_90.000.fit")
    assert header["NCOMBINE"] == 3
    assert [header[f"IMCMB00{i}"] for i in (1, 2, 3)] == [f"dark{i}.fits" for i in (0, 1, 2)]
    np.testing.assert_array_equal(fits.getdata(tmp_path / "combined_dark_90.000.fit"), first)


def test_exposures_closer_than_the_name_shows_point_to_the_tolerance(tmp_path, capsys):
    for i, exposure in enumerate((120.0001, 120.0004)):
        fits.writeto(tmp_path / f"d{i}.fits", np.zeros((4, 4), np.float32),
                     fits.Header({"IMAGETYP": "DARK", "EXPTIME": exposure}))
    assert main(["combine", str(tmp_path), "--imagetyp", "dark", "--tolerance", "exptime=0",
                 "-o", str(tmp_path / "out"), "--no-cache"]) == 1
    err = capsys.readouterr().err
    assert "widen the grouping tolerance (--tolerance exptime=...)" in err
    assert "EXPTIME 120.0001 and 120.0004" in err


def test_a_template_without_a_differing_setup_key_names_it(tmp_path, capsys):
    assert main(["combine", str(CORPUS / "nina"), "-r", "--imagetyp", "bias", "--template",
                 "bias.fit", "-o", str(tmp_path), "--no-cache"]) == 1
    err = capsys.readouterr().err
    assert "GAIN 0 and 120" in err
    assert "OFFSET 10 and 30" in err
    assert "add {gain}, {offset} to it, or pass --allow-mixed gain --allow-mixed offset" in err
    assert "BIAS_gain0_001.fits" in err
    assert "BIAS_gain120_001.fits" in err
    masters, _ = built(capsys, "combine", str(CORPUS / "nina"), "-r", "--imagetyp", "bias",
                       "--template", "bias.fit", "--allow-mixed", "gain", "--allow-mixed",
                       "offset", "-o", str(tmp_path), "--no-cache")
    assert len(masters["bias.fit"]) == 6


def test_allow_mixed_names_setup_keys_only(tmp_path, capsys):
    assert main(["combine", str(CORPUS / "sgp"), "--imagetyp", "dark", "--allow-mixed", "gian",
                 "-o", str(tmp_path), "--no-cache"]) == 1
    assert "did you mean 'gain'" in capsys.readouterr().err


def test_any_keyword_on_the_command_line(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, observer in enumerate(("alice", "alice", "bob", "Alice ")):
        fits.writeto(folder / f"d{i}.fits", np.full((4, 4), i, np.float32),
                     fits.Header({"IMAGETYP": "DARK", "EXPTIME": 10.0, "OBSERVER": observer,
                                  "TELESCOP": "T1" if i < 3 else "T2"}))
    masters, _ = built(capsys, "combine", str(folder), "--imagetyp", "dark", "--select",
                       "observer=ALICE", "--group-by", "telescop", "-o", str(tmp_path / "out"),
                       "--no-cache")
    assert masters == {"combined_dark_T1_10.000.fit": ["d0.fits", "d1.fits"],
                       "combined_dark_T2_10.000.fit": ["d3.fits"]}


def test_header_values_become_safe_names(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, filt in enumerate(("B/V", "../../escaped", "Dome flat", "B/V")):
        fits.writeto(folder / f"f{i}.fits", np.ones((4, 4), np.float32),
                     fits.Header({"IMAGETYP": "FLAT", "EXPTIME": 1.0, "FILTER": filt}))
    out = tmp_path / "out"
    masters, _ = built(capsys, "combine", str(folder), "--imagetyp", "flat", "--group-by", "",
                       "-o", str(out), "--no-cache")
    assert sorted(masters) == ["combined_flat_B_V.fit", "combined_flat_Dome_flat.fit",
                               "combined_flat__escaped.fit"]
    assert sorted(os.listdir(out)) == sorted(masters)
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]


# --------------------------------------------------------------------------- the conventions
@pytest.mark.parametrize(("value", "kind"), [
    ("BIAS", "bias"), ("Zero", "bias"), ("Bias Frame", "bias"), ("Offset", "bias"),
    ("Dark Frame", "dark"), ("DARKFLAT", "flatdark"), ("Flat Dark", "flatdark"),
    ("FLAT-DARK", "flatdark"), ("Flat Field", "flat"), ("FLATFIELD", "flat"),
    ("Twilight Flat", "flat"), ("LAMPFLAT", "flat"), ("Flat-Field", "flat"),
    ("Light Frame", "light"), ("OBJECT", "light"), ("focus", None)])
def test_kinds_of_frame(value, kind):
    assert kind_of(value) == kind


def test_aliases_numbers_and_problems():
    header, problems = normalise({"OBSTYPE": "DARK", "EXPOSURE": "60.000", "EXP_TIME": 61.0,
                                  "FILTER1": "R", "FILTER2": "open", "GAIN": "120"})
    assert (header["IMAGETYP"], header["EXPTIME"], header["FILTER"], header["GAIN"]) == (
        "DARK", 60.0, "R+open", 120)
    assert problems == ["EXPOSURE = 60.0 but EXP_TIME = 61.0; using EXPOSURE"]
    header, problems = normalise({"EXPTIME": float("inf"), "SUBSET": "V"})
    assert "EXPTIME" not in header
    assert header["FILTER"] == "V"
    assert problems == ["EXPTIME = inf is not a finite number; treated as missing"]


def test_master_marks():
    assert master_marks({"COMBINED": True}) == "COMBINED = T"
    assert master_marks({"NCOMBINE": 1, "IMCMB001": "a"}) is None  # IRAF copies of one frame
    assert master_marks({"NCOMBINE": 4}) is None  # a count without inputs: not IRAF's mark
    # IRAF ccdred's zerocombine/darkcombine/flatcombine: NCOMBINE and CCDPROC, no IMCMBnnn
    assert master_marks({"NCOMBINE": 3, "CCDPROC": "Dec  4 18:16 CCD processing done"}) == (
        "NCOMBINE = 3 with CCDPROC (IRAF ccdred)")
    assert master_marks({"NCOMBINE": 1, "CCDPROC": "..."}) is None  # one processed frame
    assert master_marks({"STACKCNT": 12}) == "STACKCNT = 12 (Siril)"
    assert master_marks({"FRAME": "Master Flat"}) == "FRAME = 'Master Flat'"
    assert master_marks({"IMAGETYP": "DARK"}) is None


def test_exptime_inf_is_missing_with_a_warning(tmp_path, caplog):
    path = tmp_path / "inf.fits"
    fits.writeto(path, np.zeros((2, 2), np.float32), fits.Header({"IMAGETYP": "DARK"}))
    with open(path, "r+b") as f:  # astropy does not write inf: put the card in by hand
        block = f.read(2880).replace(b"IMAGETYP= 'DARK    '          ",
                                     b"EXPTIME =                  inf")
        f.seek(0)
        f.write(block)
    fits.writeto(tmp_path / "ok.fits", np.zeros((2, 2), np.float32),
                 fits.Header({"IMAGETYP": "DARK", "EXPTIME": 1e30}))
    index = ImageIndex(tmp_path, cache=False)
    groups = group_by(index, "exptime")
    assert [g.paths for g in groups] == [(str(tmp_path / "ok.fits"),)]
    assert "inf.fits: EXPTIME = " in caplog.text
    assert "treated as missing" in caplog.text


def test_group_by_setup_missing_is_a_value_of_its_own():
    from astropy.table import MaskedColumn, Table

    table = Table({"path": ["a", "b", "c", "d"], "hdu": [0, 0, 0, 0],
                   "exptime": [10.0, 10.004, 10.0, 10.0],
                   "gain": MaskedColumn([120, 120, 0, 0], mask=[False, False, False, True]),
                   "offset": [30, 30, 30, 30]})
    groups = group_by(table, "exptime", setup=["gain", "offset", "set-temp"])
    assert [(g.key, g.paths) for g in groups] == [
        ({"exptime": 10.0, "gain": 0}, ("c",)),
        ({"exptime": 10.0, "gain": 120}, ("a", "b")),
        ({"exptime": 10.0, "gain": None}, ("d",))]
    assert groups[1].setup == {"gain": 120, "offset": 30}
    assert groups[2].label() == "exptime=10.000 gain=none"


# --------------------------------------------------------------------------- unexpected headers
@pytest.mark.parametrize(("bunit", "unit"), [("COUNTS", "ct"), ("ADU/s", "adu / s"),
                                             ("electrons", "electron")])
def test_bunit_spellings_astropy_cannot_parse(tmp_path, bunit, unit):
    for i in range(3):
        fits.writeto(tmp_path / f"d{i}.fits", np.full((4, 4), i, np.float32),
                     fits.Header({"IMAGETYP": "DARK", "EXPTIME": 5.0, "BUNIT": bunit}))
    assert main(["combine", str(tmp_path), "--imagetyp", "dark", "-o", str(tmp_path / "o"),
                 "--no-cache", "-q"]) == 0
    assert fits.getheader(tmp_path / "o" / "combined_dark_5.000.fit")["BUNIT"] == unit


def test_an_unknown_bunit_is_kept_as_text(tmp_path, capsys):
    for i in range(3):
        fits.writeto(tmp_path / f"d{i}.fits", np.full((4, 4), i, np.float32),
                     fits.Header({"IMAGETYP": "DARK", "EXPTIME": 5.0, "BUNIT": "furlongs"}))
    assert main(["combine", str(tmp_path), "--imagetyp", "dark", "-o", str(tmp_path / "o"),
                 "--no-cache", "-q"]) == 0
    assert "BUNIT 'furlongs' is not a unit astropy knows; the master keeps it as text" in (
        capsys.readouterr().err)
    path = tmp_path / "o" / "combined_dark_5.000.fit"
    assert fits.getheader(path)["BUNIT"] == "furlongs"
    assert fits.getheader(path, "UNCERT")["BUNIT"] == "furlongs"
    np.testing.assert_allclose(fits.getdata(path), 1.0)


def test_non_ascii_and_long_file_names_in_the_provenance(tmp_path):
    names = ["dark_\u00e9t\u00e9.fits", "d" * 90 + ".fits", "plain.fits"]
    for i, name in enumerate(names):
        fits.writeto(tmp_path / name, np.full((4, 4), i, np.float32),
                     fits.Header({"IMAGETYP": "DARK", "EXPTIME": 5.0}))
    assert main(["combine", str(tmp_path), "--imagetyp", "dark", "-o", str(tmp_path / "o"),
                 "--no-cache", "-q"]) == 0
    header = fits.getheader(tmp_path / "o" / "combined_dark_5.000.fit")
    assert [header[f"IMCMB00{i}"] for i in (1, 2, 3)] == [
        "dark_\\xe9t\\xe9.fits", "d" * 68, "plain.fits"]
    history = "".join(str(h) for h in header["HISTORY"])  # long ones wrap over cards
    assert "calstack IMCMB001 is dark_\\xe9t\\xe9.fits" in history
    assert "calstack IMCMB002 is " + "d" * 90 + ".fits" in history


def test_json_is_strict(tmp_path, capsys):
    path = tmp_path / "nan.fits"
    fits.writeto(path, np.zeros((2, 2), np.float32), fits.Header({"IMAGETYP": "DARK"}))
    with open(path, "r+b") as f:  # astropy does not write NaN: put the card in by hand
        block = f.read(2880).replace(b"IMAGETYP= 'DARK    '          ",
                                     b"AIRMASS =                  NaN")
        f.seek(0)
        f.write(block)
    assert main(["index", str(tmp_path), "--keywords", "*", "--format", "json",
                 "--no-cache"]) == 0
    rows = json.loads(capsys.readouterr().out,
                      parse_constant=lambda token: pytest.fail(f"non-strict token {token}"))
    assert rows[0]["airmass"] is None


# --------------------------------------------------------------------------- anomalous frames
def test_a_clean_night_raises_no_flag_and_a_mislabelled_bias_does(tmp_path, capsys):
    import calstack

    night = tmp_path / "night"
    calstack.simulate(night, preset="night", shape=(64, 64))
    assert main(["masters", str(night), "-o", str(tmp_path / "m"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert all(reasons == [] for m in json.loads(out) for reasons in m["anomalies"])
    assert "anomalous" not in err
    # a bias frame labelled as a 120 s dark
    bias = min(night.glob("bias*.fits"))
    dark = min(night.glob("dark*120*.fits"))
    with fits.open(bias) as hdul:
        header = fits.getheader(dark)
        fits.writeto(night / "dark-mislabelled.fits", hdul[0].data, header)
    assert main(["masters", str(night), "-o", str(tmp_path / "m2"), "--json"]) == 0
    out, err = capsys.readouterr()
    darks = next(m for m in json.loads(out) if m["kind"] == "dark"
                 and "dark-mislabelled.fits" in "".join(m["inputs"]))
    flagged = {Path(p).name: r for p, r in zip(darks["inputs"], darks["anomalies"], strict=True)
               if r}
    assert list(flagged) == ["dark-mislabelled.fits"]
    assert flagged["dark-mislabelled.fits"][0].startswith("level (median)")
    assert "; anomalous: dark-mislabelled.fits: level (median)" in err


def test_a_template_naming_the_extension_writes_a_file_each(tmp_path, capsys):
    masters, _ = built(capsys, "masters", str(CORPUS / "gemini"), "-o", str(tmp_path),
                       "--no-cache", "--template", "bias_amp{extver}.fits")
    assert sorted(masters) == [f"bias_amp{v}.fits" for v in (1, 2, 3, 4)]


def test_real_ccdproc_mef_flats_without_extension_names(tmp_path, capsys):
    ccdproc = pytest.importorskip("ccdproc")
    source = Path(ccdproc.__file__).parent / "tests" / "data" / "flat-mef.fits"
    folder = tmp_path / "flats"
    folder.mkdir()
    for i in range(3):
        shutil.copy(source, folder / f"flat{i}.fits")
    masters, _ = built(capsys, "masters", str(folder), "-o", str(tmp_path / "out"),
                       "--no-cache")
    # three unnamed extensions (FILTER B): one master, its three extensions by HDU number
    assert masters == {"combined_flat_B.fit": ["flat0.fits", "flat1.fits", "flat2.fits"]}
    with fits.open(source) as hdul, fits.open(tmp_path / "out" / "combined_flat_B.fit") as out:
        images = [h for h in out[1:] if h.name not in ("UNCERT", "MASK", "NCOMB")]
        assert len(images) == 3
        for hdu, image in zip(hdul[1:], images, strict=True):  # each normalised to median 1
            np.testing.assert_allclose(image.data, hdu.data / np.median(hdu.data), rtol=1e-5)
