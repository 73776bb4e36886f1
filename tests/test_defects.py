"""Defect masks: the flat classes against ccdproc's ccdmask, injected defects found, merging,
and the ``calstack defects`` command."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from calstack.cli import main
from calstack.errors import CalstackError, OptionError
from calstack.pipeline.defects import find_defects, merge_defects
from calstack.processing.defects import DEFECT_BITS, dark_defects, flat_defects, merge_masks

GAIN, EXPOSURE, READ_NOISE, N = 1.2, 120.0, 4.0, 5


def _camera(shape=(512, 512), seed=1):
    """A master dark (ADU, bias-subtracted, N frames averaged) and master flat with injected
    hot, warm, dead pixels and bad columns, and the truth of each class."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    truth = {name: np.zeros(shape, bool) for name in ("hot", "warm", "dead", "column")}
    current = np.full(shape, 0.05)  # e-/s
    picks = rng.permutation(ny * nx)
    k = max(3, ny * nx * 300 // 512**2)  # 300 of each in 512x512
    hot, warm, dead = picks[:k], picks[k:2 * k], picks[2 * k:3 * k]
    current.flat[hot] = np.exp(rng.uniform(np.log(10), np.log(100), hot.size))
    current.flat[warm] = rng.uniform(0.5, 3.0, warm.size)
    truth["hot"].flat[hot] = truth["warm"].flat[warm] = truth["dead"].flat[dead] = True
    response = rng.normal(1.0, 0.01, shape)
    response.flat[dead] = rng.uniform(0.0, 0.3, dead.size)
    for column, first in ((0.07, 0.2), (0.4, 0.0), (0.8, 0.6)):  # traps: a row to the top
        truth["column"][int(first * ny):, int(column * nx)] = True
    electrons = current * EXPOSURE
    noise = np.sqrt(electrons + READ_NOISE**2) / np.sqrt(N)  # of the master, e-
    sky = np.sqrt(electrons.mean() + READ_NOISE**2) / np.sqrt(N)
    electrons[truth["column"]] += 1.5 * sky  # each pixel within the noise, the column not
    response[truth["column"]] *= 0.98  # 2 sigma of the response's spread
    dark = (electrons + rng.normal(0, 1, shape) * noise) / GAIN
    flat = response * (1 + rng.normal(0, 0.003, shape))
    return dark, flat, truth


def test_flat_classes_are_ccdmask_low_side():
    """Where the definitions coincide (ccdmask's low side, its filters and lsigma), dead and
    low_qe together are exactly ccdmask's mask."""
    from ccdproc import ccdmask

    _, flat, _ = _camera((128, 160), seed=3)
    flat[5:9, 50] = 0.8  # a short low stretch, and a few low pixels at the edges
    flat[0, 0] = flat[127, 159] = 0.5
    for lsigma in (9.0, 6.0):
        ours = flat_defects(flat, lsigma=lsigma) & (DEFECT_BITS["dead"] | DEFECT_BITS["low_qe"])
        theirs = ccdmask(CCDData(flat, unit="adu"), lsigma=lsigma, hsigma=1e30)
        assert theirs.sum() > 0
        np.testing.assert_array_equal(ours != 0, theirs)


def test_injected_defects_are_found():
    dark, flat, truth = _camera()
    mask = dark_defects(dark, exposure=EXPOSURE, gain=GAIN) | flat_defects(flat)
    bad = mask != 0
    found = {name: bad[where].mean() for name, where in truth.items()}
    injected = np.logical_or.reduce(list(truth.values()))
    false = bad[~injected].mean()
    print(f"found {found}; false positives {false:.2e}")
    assert min(found.values()) >= 0.99, found
    assert false < 1e-3
    # the classes: hot and warm by their current, dead by their response
    assert (mask[truth["hot"]] & DEFECT_BITS["hot"]).astype(bool).mean() >= 0.99
    assert (mask[truth["warm"]] & DEFECT_BITS["warm"]).astype(bool).mean() >= 0.99
    assert (mask[truth["dead"]] & DEFECT_BITS["dead"]).astype(bool).mean() >= 0.99
    assert (mask[truth["column"]] & DEFECT_BITS["column"]).astype(bool).mean() >= 0.99


def test_saturated_and_missing():
    dark, flat, _ = _camera((64, 64))
    dark[3, 4] = 6e4
    dark[10, 10] = np.nan
    flat[20, 20] = np.nan
    d = dark_defects(dark, exposure=EXPOSURE, gain=GAIN, saturation=5e4)
    f = flat_defects(flat)
    assert d[3, 4] & DEFECT_BITS["saturated"]
    assert d[10, 10] & DEFECT_BITS["saturated"]
    assert f[20, 20] & DEFECT_BITS["saturated"]


def test_merge_fraction():
    a = np.zeros((4, 4), np.uint8)
    masks = [a.copy() for _ in range(3)]
    for m in masks:
        m[0, 0] = DEFECT_BITS["hot"]
    masks[0][1, 1] = masks[1][1, 1] = DEFECT_BITS["warm"]
    masks[2][1, 1] = DEFECT_BITS["hot"]  # warm in two nights, hot in the third: bits kept
    masks[0][2, 2] = masks[1][2, 2] = DEFECT_BITS["dead"]  # bad in 2 of 3
    masks[0][3, 3] = DEFECT_BITS["dead"]  # bad in 1 of 3
    merged = merge_masks(masks, 0.7)
    assert merged[0, 0] == DEFECT_BITS["hot"]
    assert merged[1, 1] == DEFECT_BITS["hot"] | DEFECT_BITS["warm"]
    assert merged[2, 2] == 0
    assert merged[3, 3] == 0
    half = merge_masks(masks, 0.5)
    assert half[2, 2] == DEFECT_BITS["dead"]
    assert half[3, 3] == 0
    with pytest.raises(OptionError, match="fraction"):
        merge_masks(masks, 0)


@pytest.mark.parametrize("bad", [dict(exposure=0), dict(gain=-1), dict(warm_sigma="x")])
def test_bad_options(bad):
    dark, _, _ = _camera((32, 32))
    with pytest.raises(OptionError, match=next(iter(bad))):
        dark_defects(dark, **{"exposure": EXPOSURE, "gain": GAIN, **bad})


def _masters(tmp_path, shape=(256, 256)):
    dark, flat, truth = _camera(shape)
    header = fits.Header({"EXPTIME": EXPOSURE, "GAIN": GAIN, "RDNOISE": READ_NOISE,
                          "BIASSUB": "bias.fits"})
    fits.PrimaryHDU(dark.astype(np.float32), header).writeto(tmp_path / "dark.fits")
    fits.PrimaryHDU(flat.astype(np.float32)).writeto(tmp_path / "flat.fits")
    return truth


def test_command_writes_a_documented_mask(tmp_path, capsys):
    truth = _masters(tmp_path)
    out = tmp_path / "mask.fits"
    assert main(["defects", "--dark", str(tmp_path / "dark.fits"), "--flat",
                 str(tmp_path / "flat.fits"), "-o", str(out)]) == 0
    assert "bad pixels" in capsys.readouterr().out
    with fits.open(out) as hdul:
        header, mask = hdul[0].header, hdul[0].data
    assert mask.dtype == np.uint8
    assert header["MASKB1"] == "hot"
    assert header["MASKB3"] == "dead"
    assert header["MASKB5"] == "column"
    assert header["NHOT"] == np.count_nonzero(mask & 1)
    assert header["DEFGAIN"] == GAIN
    assert (mask[truth["hot"]] & DEFECT_BITS["hot"]).all()
    # several nights merge; an existing output is kept unless --overwrite
    assert main(["defects", "--merge", str(out), str(out), "-o", str(tmp_path / "m.fits")]) == 0
    np.testing.assert_array_equal(fits.getdata(tmp_path / "m.fits"), mask)
    assert fits.getheader(tmp_path / "m.fits")["MRGN"] == 2
    assert main(["defects", "--merge", str(out), str(out), "-o", str(out)]) == 1
    assert "exists" in capsys.readouterr().err


def test_command_errors(tmp_path, capsys):
    _masters(tmp_path)
    fits.PrimaryHDU(np.ones((20, 30), np.float32)).writeto(tmp_path / "small.fits")
    assert main(["defects", "-o", str(tmp_path / "m.fits")]) == 1
    assert "--dark" in capsys.readouterr().err
    assert main(["defects", "--dark", str(tmp_path / "dark.fits"), "--flat",
                 str(tmp_path / "small.fits"), "-o", str(tmp_path / "m.fits")]) == 1
    err = capsys.readouterr().err
    assert "small.fits" in err
    assert "dark.fits" in err
    assert len(err.strip().splitlines()) == 1
    fits.PrimaryHDU(np.ones((256, 256), np.float32)).writeto(tmp_path / "noexp.fits")
    with pytest.raises(CalstackError, match="gain"):
        find_defects(tmp_path / "m.fits", dark=tmp_path / "noexp.fits")
    with pytest.raises(CalstackError, match="EXPTIME"):
        find_defects(tmp_path / "m.fits", dark=tmp_path / "noexp.fits", gain=1.0)
    with pytest.raises(OptionError, match="two masks"):
        merge_defects([tmp_path / "flat.fits"], tmp_path / "m.fits")
    with pytest.raises(CalstackError, match="not a defect mask"):
        merge_defects([tmp_path / "flat.fits"] * 2, tmp_path / "m.fits")


def _bad_mask(path, shape, where):
    mask = np.zeros(shape, np.uint8)
    mask[where] = DEFECT_BITS["hot"]
    fits.PrimaryHDU(mask).writeto(path)
    return mask != 0


def test_combine_takes_bad_pixels_as_missing(tmp_path):
    import calstack

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"f{i}.fits")
        fits.PrimaryHDU(rng.normal(100, 1, (20, 30)).astype(np.float32)).writeto(paths[-1])
    bad = _bad_mask(tmp_path / "bad.fits", (20, 30), (slice(2, 4), 7))
    master = calstack.combine(paths, bad_pixels=tmp_path / "bad.fits")
    np.testing.assert_array_equal(master.mask, bad)
    assert np.isnan(master.data[bad]).all()
    assert np.array_equal(master.ncombine[~bad], np.full((~bad).sum(), 3))
    assert master.meta["BADPIX"] == "bad.fits"
    plain = calstack.combine(paths)
    np.testing.assert_array_equal(master.data[~bad], plain.data[~bad])
    _bad_mask(tmp_path / "small.fits", (10, 30), 0)
    with pytest.raises(CalstackError, match=r"small.fits: the bad-pixel mask has shape 10x30 "
                       r"but the frames \(.*f0.fits\) are 20x30"):
        calstack.combine(paths, bad_pixels=tmp_path / "small.fits")


def test_calibrate_flags_bad_pixels(tmp_path, capsys):
    from calstack.catalog.index import ImageIndex
    from calstack.pipeline.night import build_night
    from calstack.processing.apply import MASK_BITS
    from calstack.sim.simulation import simulate

    simulate(tmp_path / "raw", preset="night", shape=(40, 32), n_lights=1, seed=2)
    build_night(ImageIndex(tmp_path / "raw", cache=False), tmp_path / "masters",
                subtract_bias=True, subtract_dark=True)
    bad = _bad_mask(tmp_path / "bad.fits", (40, 32), (5, slice(3, 9)))
    assert main(["calibrate", str(tmp_path / "raw"), "--masters", str(tmp_path / "masters"),
                 "-o", str(tmp_path / "out"), "--bad-pixels", str(tmp_path / "bad.fits"),
                 "--no-cache"]) == 0
    out = sorted((tmp_path / "out").glob("*.fits"))
    assert len(out) == 2
    for path in out:
        with fits.open(path) as hdul:
            flagged = (hdul["MASK"].data & MASK_BITS["bad"]) != 0
            assert hdul[0].header["BADPIX"] == "bad.fits"
        np.testing.assert_array_equal(flagged, bad)
    _bad_mask(tmp_path / "small.fits", (40, 30), 0)
    capsys.readouterr()
    assert main(["calibrate", str(tmp_path / "raw"), "--masters", str(tmp_path / "masters"),
                 "-o", str(tmp_path / "out2"), "--bad-pixels", str(tmp_path / "small.fits"),
                 "--no-cache"]) == 1
    err = capsys.readouterr().err
    assert "small.fits" in err
    assert "light" in err
    assert "40x30" in err


def test_reduce_takes_a_bad_pixel_mask_for_its_masters_and_its_science_frames(tmp_path):
    from calstack.processing.apply import MASK_BITS
    from calstack.sim.simulation import simulate

    simulate(tmp_path / "raw", preset="night", shape=(40, 32), n_lights=1, seed=2, n_bias=3,
             n_darks=3, n_flats=3)
    bad = _bad_mask(tmp_path / "bad.fits", (40, 32), (slice(10, 14), 6))
    out = tmp_path / "out"
    assert main(["reduce", str(tmp_path / "raw"), "-o", str(out), "--no-cache", "-q",
                 "--bad-pixels", str(tmp_path / "bad.fits")]) == 0
    masters = sorted((out / "masters").glob("*.fit"))
    assert len(masters) == 5
    for path in masters:  # missing in every frame of every master
        with fits.open(path) as hdul:
            assert hdul[0].header["BADPIX"] == "bad.fits"
            assert np.isnan(hdul[0].data[bad]).all()
            assert not np.isnan(hdul[0].data[~bad]).any()
    for path in sorted((out / "calibrated").glob("*.fits")):
        with fits.open(path) as hdul:
            assert hdul[0].header["BADPIX"] == "bad.fits"
            flagged = (hdul["MASK"].data & MASK_BITS["bad"]) != 0
        np.testing.assert_array_equal(flagged, bad)


def test_the_simulators_injected_defects_are_found_in_its_masters(tmp_path):
    """A simulated raw night of 512² with hot pixels (5e-4), dead pixels (1e-3: a tenth of the
    response) and three bad columns (2 e-/s more over at least half the rows): built into a
    bias-subtracted dark of 120 s and a flat by ``build_night``, every injected pixel is in
    the mask, and under 0.1 % of the others (the ends of a column's stretch, grown by a few
    rows, among them)."""
    from calstack.catalog.index import ImageIndex
    from calstack.pipeline.night import build_night
    from calstack.sim.simulation import simulate

    night = simulate(tmp_path / "raw", preset="night", shape=(512, 512), n_bias=5, n_darks=5,
                     exptimes=[120], filters=["R"], n_flats=5, dead_fraction=1e-3,
                     bad_columns=3, seed=1)
    built = build_night(ImageIndex(tmp_path / "raw", cache=False), tmp_path / "masters",
                        subtract_bias=True, subtract_dark=True)
    dark, flat = (next(b.path for b in built if b.kind == kind) for kind in ("dark", "flat"))
    mask = find_defects(tmp_path / "defects.fits", dark=dark, flat=flat)
    found = fits.getdata(mask.path)
    injected = fits.getdata(night.truth["bias"], "DEFECTS")
    for bit, classes, at_least in ((1, ("hot", "warm"), 100), (4, ("dead",), 200),
                                   (16, ("column",), 700)):
        where = (injected & bit) != 0
        assert where.sum() >= at_least
        bits = sum(DEFECT_BITS[name] for name in classes)
        assert ((found[where] & bits) != 0).all(), classes  # each found, by its class
    assert (found[injected == 0] != 0).mean() < 1e-3


def test_a_vignetted_flat_has_no_bad_edge_columns():
    """Its steepest gradient is at the edges, where the moving median has neighbours on one
    side only and leaves the first and last columns offset, all along them: those are not
    judged as columns (35 'column' pixels of the demo's 64² night before)."""
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:64, 0:64]
    r2 = ((x - 32) ** 2 + (y - 32) ** 2) / (2 * 32**2)
    flat = (1 - 0.25 * r2) * rng.normal(1, 0.01, (64, 64))  # the simulator's vignetting
    assert not (flat_defects(flat) & DEFECT_BITS["column"]).any()
    flat[:, 20] *= 0.97  # a real bad column is still found
    found = (flat_defects(flat) & DEFECT_BITS["column"]) != 0
    assert found[:, 20].all()
    assert not found[:, :19].any()
