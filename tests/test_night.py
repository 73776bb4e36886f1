"""`calstack masters`: bias, darks and flats of a simulated raw night, checked against truth."""

import json
import logging

import numpy as np
import pytest
from astropy.io import fits
from conftest import write_frames

import calstack
from calstack.cli import main
from calstack.errors import OptionError
from calstack.pipeline.night import build_night, summary_table


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    folder = tmp_path_factory.mktemp("night")
    return calstack.simulate(folder, preset="night", shape=(96, 80), seed=3)


def _truth(night, name):
    with fits.open(night.truth[name]) as hdus:
        return hdus[0].data.astype(float), hdus["SIGMA"].data.astype(float)


def _robust(values):
    values = values[np.isfinite(values)]
    return 1.4826 * np.median(np.abs(values - np.median(values)))


def test_masters_of_a_raw_night_match_the_truth(night, tmp_path):
    built = build_night(calstack.ImageIndex(night.outdir, keywords=["IMAGETYP", "EXPTIME",
                                                                    "FILTER", "COMBINED"]),
                        tmp_path, subtract_bias=True, subtract_dark=True)
    names = [b.path.name for b in built]
    assert names == ["combined_bias.fit", "combined_dark_30.000.fit", "combined_dark_120.000.fit",
                     "combined_flat_R.fit", "combined_flat_V.fit"]
    assert [b.n_frames for b in built] == [7, 5, 5, 5, 5]
    bias_truth, bias_sigma = _truth(night, "bias")
    bias = fits.getdata(built[0].path).astype(float)
    residual = bias - bias_truth
    assert abs(np.median(residual)) < 0.3
    assert _robust(residual) < 1.3 * np.median(bias_sigma) / np.sqrt(7)
    for b, exptime in zip(built[1:3], (30, 120), strict=True):
        truth, sigma = _truth(night, f"dark_{exptime:.3f}")
        dark = fits.getdata(b.path).astype(float)
        residual = dark - (truth - bias_truth)  # bias subtracted
        assert abs(np.median(residual)) < 0.3
        assert _robust(residual) < 1.3 * np.median(sigma) * np.sqrt(1 / 5 + 1 / 7)
        header = fits.getheader(b.path)
        assert header["BIASSUB"] == "combined_bias.fit"
        assert header["NCOMBINE"] == 5
    for b, band in zip(built[3:], "RV", strict=True):
        truth, _ = _truth(night, f"flat_{band}")
        flat, header = fits.getdata(b.path, header=True)
        assert np.median(flat) == pytest.approx(1.0, abs=2e-3)
        assert _robust(flat / truth) < 0.01
        assert header["DARKSUB"] == "combined_dark_30.000.fit"  # the nearest to the flats' 5 s
        assert header["CMBSCALE"] == "median"
        assert header["FILTER"] == band
    table = summary_table(built)
    assert "combined_flat_V.fit" in table
    assert table.splitlines()[0].split()[:3] == ["kind", "group", "frames"]


def test_masters_command_json_and_rerun_ignores_masters(night, capsys):
    out = night.outdir  # masters written into the night folder itself
    argv = ["masters", str(night.outdir), "-o", str(out), "--subtract-bias", "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert [m["kind"] for m in first] == ["bias", "dark", "dark", "flat", "flat"]
    assert first[1]["group"] == {"exptime": 30.0}
    assert len(first[1]["inputs"]) == 5
    # ... are not inputs of the next run
    assert main(["masters", str(night.outdir), "-o", str(out), "--overwrite", "-q"]) == 0
    assert fits.getheader(out / "combined_bias.fit")["NCOMBINE"] == 7


def test_subtract_dark_needs_bias_and_small_groups_warn(tmp_path, caplog):
    frames = np.random.default_rng(0).normal(100, 1, size=(2, 8, 8)).astype(np.float32)
    write_frames(tmp_path, frames, imagetyp="Dark Frame", exptime=10.0)
    with pytest.raises(OptionError, match="--subtract-dark needs --subtract-bias"):
        build_night(calstack.ImageIndex(tmp_path), tmp_path / "out", subtract_dark=True)
    with caplog.at_level(logging.WARNING, logger="calstack"):
        built = build_night(calstack.ImageIndex(tmp_path), tmp_path / "out")
    assert [b.kind for b in built] == ["dark"]
    assert "only 2 frame(s)" in caplog.text
    assert "no bias frames" in caplog.text


def test_extra_grouping_keys_with_a_tolerance(tmp_path):
    rng = np.random.default_rng(1)
    for i, temp in enumerate([-20.0, -20.4, -19.6, -10.2, -9.9, -10.0]):
        write_frames(tmp_path, [rng.normal(100, 1, (8, 8)).astype(np.float32)], imagetyp="ZERO",
                     exptime=0.0, prefix=f"b{i}", **{"CCD-TEMP": temp})
    index = calstack.ImageIndex(tmp_path, keywords=["IMAGETYP", "EXPTIME", "CCD-TEMP"])
    built = build_night(index, tmp_path / "out", group_by=["ccd-temp"],
                        tolerances={"ccd-temp": 1.0})
    assert sorted(b.n_frames for b in built) == [3, 3]
    with pytest.raises(OptionError, match="no bias, dark or flat frames"):
        build_night(calstack.ImageIndex(tmp_path / "out"), tmp_path / "out2")
