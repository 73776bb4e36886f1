"""The comparison picture: size, content, shared stretch, titles; and the demo end to end."""

import re

import matplotlib
import matplotlib.image as mpimg
import numpy as np
import pytest
from astropy.io import fits

import calstack
from calstack.cli import main
from calstack.errors import OptionError
from calstack.viz.pictures import frame_title, stretch_limits, symmetric_limits


def test_picture_has_content_size_and_titles(tmp_path):
    rng = np.random.default_rng(0)
    single = tmp_path / "single.fits"
    fits.writeto(single, rng.normal(20, 5, (64, 80)).astype(np.float32),
                 fits.Header({"IMAGETYP": "DARK"}))
    master = tmp_path / "master.fits"
    fits.writeto(master, rng.normal(20, 1, (64, 80)).astype(np.float32),
                 fits.Header({"IMAGETYP": "DARK", "COMBINED": True, "NCOMBINE": 10}))
    out = calstack.show([single, master], tmp_path / "pic.png", dpi=50)
    image = mpimg.imread(out)
    assert image.shape[:2] == (275, 600)  # 12 x 5.5 inches at 50 dpi
    assert image[..., :3].std() > 0.05  # not blank
    from calstack.viz.pictures import _load

    assert [frame_title(*_load(p)[1:]) for p in (single, master)] == [
        "Single calibrated dark\nsingle.fits", "10 dark images combined\nmaster.fits"]


def test_stretch_is_shared_and_applied():
    data = np.random.default_rng(1).normal(100, 10, (50, 50))
    data[0, 0] = 1e6  # an outlier zscale and percentiles ignore
    for stretch in ("zscale", "percentile"):
        vmin, vmax = stretch_limits(data, stretch)
        assert 50 < vmin < 100 < vmax < 200
    assert stretch_limits(data, "minmax")[1] == 1e6
    with pytest.raises(OptionError, match="stretch='log' is not valid"):
        stretch_limits(data, "log")


def test_brighter_frame_shows_brighter(tmp_path):
    data = np.random.default_rng(2).normal(100, 10, (40, 40))
    out = calstack.show([data, data * 1.5], tmp_path / "two.png", titles=["a", "b"], dpi=40)
    image = mpimg.imread(out)[..., :3].mean(axis=2)
    left, right = image[:, : image.shape[1] // 2], image[:, image.shape[1] // 2 :]
    assert right.mean() > left.mean()


def test_big_frames_are_downsampled(tmp_path):
    out = calstack.show([np.ones((3100, 40))], tmp_path / "tall.png", dpi=20)
    assert mpimg.imread(out).shape[0] == 110


def test_demo_builds_masters_and_pictures(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path), "--shape", "96", "96"]) == 0
    printed = capsys.readouterr().out
    for camera, times in (("cryo", ("7.000", "70.000", "300.000")), ("te", ("90.000",))):
        for t in times:
            assert (tmp_path / camera / f"combined_dark_{t}.fit").exists()
            assert (tmp_path / camera / f"compare_dark_{t}.png").exists()
    assert "10 frames" in printed
    assert "sqrt(N) = 3.16" in printed
    masters = sorted(p.name for p in (tmp_path / "night" / "masters").glob("*.fit"))
    assert masters == ["combined_bias.fit", "combined_dark_120.000.fit", "combined_dark_30.000.fit",
                       "combined_flat_R.fit", "combined_flat_V.fit"]
    assert printed.count("[night] flat") == 2
    assert "master - truth" in printed
    assert printed.count("[night] science") == 4
    assert sorted(p.name for p in (tmp_path / "night" / "calibrated").glob("*.fits")) == [
        "light-R-001.fits", "light-R-002.fits", "light-V-001.fits", "light-V-002.fits"]


def test_demo_masters_match_their_truth(tmp_path):
    from calstack.sim.demo import run_demo

    results = run_demo(tmp_path, shape=(64, 64), say=lambda _text: None)
    night = [r for r in results if r["camera"] == "night"]
    assert [r["kind"] for r in night] == ["bias", "dark", "dark", "flat", "flat", *["light"] * 4,
                                          "defects", "characterize", "report"]
    report = night.pop()["path"].read_text()
    measured = night.pop()  # 4 flat pairs of 64x64: a few % of statistical error
    assert measured["gain"] == pytest.approx(measured["true_gain"], rel=0.05)
    assert measured["read_noise"] == pytest.approx(measured["true_read_noise"], rel=0.05)
    defects = night.pop()
    assert defects["hot_found"] >= 0.99
    assert defects["bad"] >= defects["hot"] > 0
    # one report: the masters, the calibrated frames, the camera's photon transfer curve and
    # the defect mask's classes counted
    assert report.count('<section class="master"') == 5
    assert "<h2>Calibrated frames: 4</h2>" in report
    assert (f"<h2>Camera: gain {measured['gain']:.4f} e-/ADU, read noise "
            f"{measured['read_noise']:.3f} e-</h2>") in report
    assert re.search(r'<img alt="photon transfer curve" width="\d+" height="\d+" '
                     r'src="data:image/png;base64,', report)
    for name in ("hot", "warm", "dead", "low_qe", "column", "saturated"):
        assert f'<tr><td class="name">{name}</td><td>{defects[name]}</td>' in report
    assert f"defects.fits: {defects['bad']} bad pixels" in report
    for r in night[:5]:  # unbiased, and as noisy as averaging N frames predicts (rejection costs a bit)
        assert abs(r["median"]) < 0.5 * r["expected"] + 1e-3
        assert r["noise"] < 1.5 * r["expected"]
    for r in night[5:]:  # calibrated science frames: within their uncertainty of the truth
        assert abs(r["mean"]) < 0.1
        assert 0.95 < r["rms"] < 1.05


def test_titles_show_group_count_and_exposure_from_the_header():
    header = fits.Header({"IMAGETYP": "FLAT", "COMBINED": True, "NCOMBINE": 7, "EXPTIME": 2.5,
                          "FILTER": "R "})
    assert frame_title(header, "flat.fit") == "7 flat images combined\nflat.fit, 2.5 s, filter R"
    assert frame_title(None, "array") == "array"
    assert frame_title(fits.Header({"EXPTIME": 3.0}), "x.fits") == "x.fits"


def test_diff_is_first_minus_second_on_a_symmetric_stretch(tmp_path):
    rng = np.random.default_rng(3)
    frame = rng.normal(100, 5, (60, 60))
    master = frame.copy()
    master[:, 30:] += 40  # the right half of the difference is positive, the left half zero
    out = calstack.show([master, frame], tmp_path / "diff.png", diff=True, stretch="minmax",
                        dpi=40, figsize=(6, 5))
    image = mpimg.imread(out)
    assert image.shape[:2] == (200, 240)
    # RdBu_r: zero is the middle of the symmetric range (near white), +40 its top (dark red)
    cmap = matplotlib.colormaps["RdBu_r"]
    rgb = image[..., :3]
    for value, colour in ((0.5, cmap(0.5)[:3]), (1.0, cmap(1.0)[:3])):
        assert (np.abs(rgb - colour).max(axis=2) < 0.02).sum() > 2000, value
    assert symmetric_limits(master - frame, "minmax") == pytest.approx((-40.0, 40.0))
    with pytest.raises(OptionError, match="give exactly 2 frames, not 3"):
        calstack.show([frame, frame, frame], tmp_path / "x.png", diff=True)
    with pytest.raises(OptionError, match="array is 60x60 but array is 10x10"):
        calstack.show([frame, np.zeros((10, 10))], tmp_path / "x.png", diff=True)


def test_hist_adds_a_panel(tmp_path):
    data = np.random.default_rng(4).normal(100, 10, (40, 40))
    plain = mpimg.imread(calstack.show([data], tmp_path / "a.png", dpi=40))
    with_hist = mpimg.imread(calstack.show([data], tmp_path / "b.png", hist=True, dpi=40))
    assert plain.shape[1] == 240
    assert with_hist.shape[1] == 480  # 6 inches more at 40 dpi
    right = with_hist[:, 240:, :3]
    assert right.std() > 0.05  # the histogram panel is drawn, not blank


def test_show_command_diff_and_hist(tmp_path, capsys):
    a, b = tmp_path / "a.fits", tmp_path / "b.fits"
    fits.writeto(a, np.full((20, 30), 5.0, np.float32))
    fits.writeto(b, np.full((20, 30), 3.0, np.float32))
    out = tmp_path / "d.png"
    assert main(["show", str(a), str(b), "--diff", "--hist", "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert mpimg.imread(out).shape[:2] == (550, 1200)  # two panels of 6 x 5.5 inches
