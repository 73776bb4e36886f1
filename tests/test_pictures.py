"""The comparison picture: size, content, shared stretch, titles; and the demo end to end."""

import matplotlib.image as mpimg
import numpy as np
import pytest
from astropy.io import fits

import calstack
from calstack.cli import main
from calstack.errors import OptionError
from calstack.pictures import stretch_limits


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
    from calstack.pictures import _load, _title

    assert [_title(*_load(p)[1:]) for p in (single, master)] == [
        "Single calibrated dark", "10 dark images combined"]


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
    assert "10 frames" in printed and "sqrt(N) = 3.16" in printed
    masters = sorted(p.name for p in (tmp_path / "night" / "masters").glob("*.fit"))
    assert masters == ["combined_bias.fit", "combined_dark_120.000.fit", "combined_dark_30.000.fit",
                       "combined_flat_R.fit", "combined_flat_V.fit"]
    assert printed.count("[night] flat") == 2 and "master - truth" in printed


def test_demo_masters_match_their_truth(tmp_path):
    from calstack.demo import run_demo

    results = run_demo(tmp_path, shape=(64, 64), say=lambda text: None)
    night = [r for r in results if r["camera"] == "night"]
    assert [r["kind"] for r in night] == ["bias", "dark", "dark", "flat", "flat"]
    for r in night:  # unbiased, and as noisy as averaging N frames predicts (rejection costs a bit)
        assert abs(r["median"]) < 0.5 * r["expected"] + 1e-3
        assert r["noise"] < 1.5 * r["expected"]
