"""``calstack calibrate``: the arithmetic against ccdproc's, the masters chosen for each frame,
the residual of a simulated night against its truth, and bad input (issue 16, item 4)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from hypothesis import given, settings
from hypothesis import strategies as st

from calstack.catalog.index import ImageIndex
from calstack.cli import main
from calstack.errors import CalstackError, FileChangedError, FrameError, OptionError
from calstack.pipeline.calibrate import INDEX_KEYWORDS, calibrate
from calstack.pipeline.characterize import characterize
from calstack.pipeline.night import build_night
from calstack.processing.apply import MASK_BITS, Band, Master, calibrate_band, calibrate_into
from calstack.processing.camera import read_camera
from calstack.sim.simulation import PRESETS, simulate

ccdproc = pytest.importorskip("ccdproc")

GAIN, READ_NOISE = 1.2, 4.0


def _noise(data, bias):
    return np.sqrt((READ_NOISE / GAIN) ** 2 + np.maximum(data - bias, 0) / GAIN)


@pytest.mark.parametrize("electrons", [True, False])
def test_band_arithmetic_is_ccdprocs(electrons):
    """Bias, dark scaled by exposure, flat normalised by its mean, gain: ccdproc's functions
    one after another (CCDData arithmetic propagating every uncertainty) give the same values
    and uncertainties."""
    rng = np.random.default_rng(1)
    shape = (20, 30)
    bias = rng.normal(1000, 2, shape).astype(np.float32)
    dark = rng.gamma(2.0, 3.0, shape).astype(np.float32)  # 300 s master dark, bias-free
    flat = rng.normal(15000, 300, shape).astype(np.float32)
    raw = (bias + dark * 0.4 + 3000 * flat / flat.mean() + rng.normal(0, 5, shape)).astype(
        np.float32)
    sig = {k: np.full(shape, v, np.float32) for k, v in (("bias", 0.8), ("dark", 0.5),
                                                           ("flat", 40.0))}
    band = calibrate_band(raw, bias=Master(bias, sig["bias"]),
                          dark=Master(dark, sig["dark"], 0.4),
                          flat=Master(flat, sig["flat"], 1 / flat.mean()),
                          gain=GAIN, read_noise=READ_NOISE, electrons=electrons)

    def ccd(data, sigma, unit="adu", **meta):
        return CCDData(data.astype(np.float64), unit=unit, meta=meta,
                       uncertainty=StdDevUncertainty(sigma.astype(np.float64)))

    science = ccd(raw, _noise(raw, bias), exposure=120.0)
    out = ccdproc.subtract_bias(science, ccd(bias, sig["bias"]))
    out = ccdproc.subtract_dark(out, ccd(dark, sig["dark"], exposure=300.0),
                                exposure_time="exposure", exposure_unit=u.s, scale=True)
    out = ccdproc.flat_correct(out, ccd(flat, sig["flat"]))
    if electrons:
        out = ccdproc.gain_correct(out, GAIN * u.electron / u.adu)
    np.testing.assert_allclose(band.data, out.data, rtol=2e-6, atol=1e-3)
    np.testing.assert_allclose(band.uncertainty, out.uncertainty.array, rtol=2e-5)
    assert not band.mask.any()


def test_band_mask_bits_and_no_infinities():
    raw = np.array([[100.0, 65535.0, np.nan, 100.0]], np.float32)
    flat = Master(np.array([[1.0, 1.0, 1.0, 0.0]], np.float32))
    band = calibrate_band(raw, bias=Master(np.zeros_like(raw)), flat=flat, gain=1.0,
                          read_noise=3.0, saturation=65535.0)
    assert band.mask.tolist() == [[0, MASK_BITS["saturated"], MASK_BITS["missing"],
                                   MASK_BITS["flat"]]]
    assert band.data[0, 0] == 100.0
    assert np.isnan(band.data[0, 3])
    assert not np.isinf(band.data).any()
    assert not np.isinf(band.uncertainty).any()


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """A raw night (64x48, uint16) with 2 science frames per filter, and its masters."""
    folder = tmp_path_factory.mktemp("night")
    sim = simulate(folder / "raw", preset="night", shape=(64, 48), n_lights=2, seed=3)
    build_night(ImageIndex(folder / "raw", cache=False), folder / "masters",
                subtract_bias=True, subtract_dark=True)
    return folder, sim


def test_calibrated_night_is_within_its_uncertainty_of_the_truth(night, tmp_path):
    """Per frame, the residual against the simulator's sky and stars in units of the written
    uncertainty has mean ~0 and rms ~1 (a chi-square test; cosmic rays left out). The masters'
    own errors are common to every frame, and clipping biases them slightly (a 0.01 sigma
    residual on 256x256 frames), hence the 0.02 beside the standard error."""
    folder, sim = night
    done = calibrate(folder / "raw", folder / "masters", tmp_path, cache=False)
    assert len(done) == 4
    for frame in done:
        filt = fits.getval(frame.source, "FILTER")
        truth = fits.getdata(sim.truth[f"light_{filt}"])
        result = CCDData.read(frame.path)
        assert result.unit == u.electron
        z = ((result.data - truth) / result.uncertainty.array)[result.mask == 0]
        z = z[np.abs(z) < 8]  # cosmic rays
        assert z.size > 0.99 * result.data.size
        assert abs(z.mean()) < 4 / np.sqrt(z.size) + 0.02  # 4 standard errors, the masters'
        assert 0.95 < z.std() < 1.05
        assert frame.choice.flat.name == f"combined_flat_{filt}.fit"


def test_the_choice_is_recorded_and_printed(night, tmp_path, capsys):
    folder, _ = night
    assert main(["calibrate", str(folder / "raw"), "--masters", str(folder / "masters"),
                 "-o", str(tmp_path), "--no-cache", "--json", "-v"]) == 0
    captured = capsys.readouterr()
    frames = json.loads(captured.out)
    assert [f["flat"].rsplit("/", 1)[1] for f in frames] == [
        "combined_flat_R.fit", "combined_flat_R.fit", "combined_flat_V.fit",
        "combined_flat_V.fit"]
    # 60 s science frames, darks of 30 and 120 s (bias-subtracted): as near by ratio, the
    # longer is scaled down
    assert {(f["dark"].rsplit("/", 1)[1], f["dark_factor"], f["dark_rule"]) for f in frames} == {
        ("combined_dark_120.000.fit", 0.5, "scaled by EXPTIME")}
    assert "light-R-001.fits -> " in captured.err
    assert "x0.5 (scaled by EXPTIME)" in captured.err
    header = fits.getheader(tmp_path / "light-V-002.fits")
    assert header["ZEROCOR"] == "Zero level correction image is combined_bias.fit"
    assert header["DARKCOR"].startswith("Dark count correction image is combined_dark_120.000")
    assert header["CALFLAT"] == "combined_flat_V.fit"
    assert header["DARKSCAL"] == 0.5
    assert header["BUNIT"] == "electron"
    assert "BZERO" not in header


def test_a_folder_without_science_frames_is_an_error(night, tmp_path):
    folder, _ = night
    darks = ImageIndex(folder / "raw", cache=False).filter(imagetyp="dark")
    with pytest.raises(OptionError, match="no science frames"):
        calibrate(darks, folder / "masters", tmp_path, cache=False)


def _light(path, **cards):
    header = fits.Header({"IMAGETYP": "LIGHT", "EXPTIME": 120.0, "FILTER": "R", "GAIN": 1.2,
                          "RDNOISE": 4.0, "INSTRUME": "calstack-night", "XBINNING": 1,
                          "YBINNING": 1, "CCD-TEMP": -20.0, **cards})
    fits.PrimaryHDU(np.full((64, 48), 1500, np.uint16), header).writeto(path)
    return path


def test_frame_of_the_masters_exposure_uses_the_dark_unscaled(night, tmp_path):
    folder, _ = night
    (tmp_path / "in").mkdir()
    _light(tmp_path / "in" / "l.fits")
    (frame,) = calibrate(tmp_path / "in", folder / "masters", tmp_path / "out", cache=False)
    assert (frame.choice.dark.name, frame.choice.dark_factor, frame.choice.dark_rule) == (
        "combined_dark_120.000.fit", 1.0, "exposure")


@pytest.mark.parametrize(("cards", "message"), [
    ({"FILTER": "B"}, "no master flat for this frame (the nearest, combined_flat_"),
    ({"XBINNING": 2}, "differs in XBINNING 2 vs 1"),
    ({"FLATCOR": "Flat field image is x"}, "is already calibrated (FLATCOR"),
])
def test_a_frame_without_its_master_is_an_error_naming_it(night, tmp_path, cards, message):
    folder, _ = night
    (tmp_path / "in").mkdir()
    _light(tmp_path / "in" / "l.fits", **cards)
    with pytest.raises(CalstackError) as error:
        calibrate(tmp_path / "in", folder / "masters", tmp_path / "out", cache=False)
    assert message in str(error.value)
    assert "l.fits" in str(error.value)
    assert not (tmp_path / "out" / "l.fits").exists()


def test_allow_missing_goes_on_without_the_flat(night, tmp_path):
    folder, _ = night
    (tmp_path / "in").mkdir()
    _light(tmp_path / "in" / "l.fits", FILTER="B")
    (frame,) = calibrate(tmp_path / "in", folder / "masters", tmp_path / "out", cache=False,
                         allow_missing=["flat"])
    assert frame.choice.flat is None
    assert "FLATCOR" not in fits.getheader(frame.path)


def test_a_master_of_another_shape_is_an_error(night, tmp_path):
    folder, _ = night
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "l.fits"
    header = fits.Header({"IMAGETYP": "LIGHT", "EXPTIME": 120.0, "FILTER": "R", "EGAIN": 1.2,
                          "RDNOISE": 4.0})
    fits.PrimaryHDU(np.zeros((32, 48), np.float32), header).writeto(path)
    with pytest.raises(OptionError, match=r"is 48x64 but the frame \(trimmed\) is 48x32"):
        calibrate(tmp_path / "in", folder / "masters", tmp_path / "out", cache=False)


def test_a_cmos_gain_setting_is_not_taken_for_electrons_per_adu(night, tmp_path):
    folder, _ = night
    (tmp_path / "in").mkdir()
    _light(tmp_path / "in" / "l.fits", GAIN=120)
    with fits.open(tmp_path / "in" / "l.fits", mode="update") as hdul:
        del hdul[0].header["RDNOISE"]
    with pytest.raises(FrameError, match="no gain in electrons per ADU"):
        calibrate(tmp_path / "in", folder / "masters", tmp_path / "out", cache=False,
                  tolerances={"gain": 1000})


def test_an_output_never_replaces_an_input(night, tmp_path):
    folder, _ = night
    (tmp_path / "in").mkdir()
    _light(tmp_path / "in" / "l.fits")
    before = (tmp_path / "in" / "l.fits").read_bytes()
    with pytest.raises(OptionError, match="is an input of this run"):
        calibrate(tmp_path / "in", folder / "masters", tmp_path / "in", cache=False,
                  overwrite=True)
    assert (tmp_path / "in" / "l.fits").read_bytes() == before


def test_header_values_in_a_calibrated_name_are_made_safe_and_widths_bounded(night, tmp_path):
    folder, _ = night
    (tmp_path / "in").mkdir()
    _light(tmp_path / "in" / "l.fits", OBJECT="../../M 31")
    (frame,) = calibrate(tmp_path / "in", folder / "masters", tmp_path / "out", cache=False,
                         template="{object}_{stem}.fits")
    assert frame.path == tmp_path / "out" / "_M_31_l.fits"  # in OUT, no separator, no blank
    for template, message in [("{stem:>99999999}.fits", "asks for a field 99999999 characters"),
                              ("{stem:>{exptime}}.fits", "write its width as a number")]:
        with pytest.raises(OptionError, match=message):
            calibrate(tmp_path / "in", folder / "masters", tmp_path / "o2", cache=False,
                      template=template)
    assert not (tmp_path / "o2").exists() or list((tmp_path / "o2").iterdir()) == []


def test_a_frame_replaced_after_it_was_indexed_is_an_error_naming_it(night, tmp_path):
    """The science frame is opened with the identity it was indexed with: replaced since
    (same size, other pixels), it is an error and nothing is written for it."""
    folder, _ = night
    (tmp_path / "in").mkdir()
    light = _light(tmp_path / "in" / "l.fits")
    index = ImageIndex(tmp_path / "in", cache=False, keywords=INDEX_KEYWORDS)
    with fits.open(light) as hdul:
        hdul[0].data = hdul[0].data * 0
        hdul.writeto(tmp_path / "new.fits")
    os.replace(tmp_path / "new.fits", light)
    with pytest.raises(FileChangedError, match=r"l\.fits: changed since it was indexed"):
        calibrate(index, folder / "masters", tmp_path / "out", cache=False)
    assert not (tmp_path / "out" / "l.fits").exists()


def test_bands_give_the_same_frame_as_one_band(night, tmp_path):
    """A memory limit that forces bands of a few rows writes the same file's values."""
    folder, _ = night
    whole = calibrate(folder / "raw", folder / "masters", tmp_path / "a", cache=False)
    banded = calibrate(folder / "raw", folder / "masters", tmp_path / "b", cache=False,
                       mem_limit=48 * 64 * 5, workers=1)
    for a, b in zip(whole, banded, strict=True):
        with fits.open(a.path) as x, fits.open(b.path) as y:
            for hx, hy in zip(x, y, strict=True):
                np.testing.assert_array_equal(hx.data, hy.data)


def _master(name, kind, **row):
    from calstack.pipeline.selection import MasterFile

    return MasterFile(f"/m/{name}", 0, kind, {"naxis1": 8, "naxis2": 4, **row})


def test_choice_by_darktime_nearest_in_time_and_a_dark_with_its_bias():
    from calstack.pipeline.selection import choose

    frame = {"exptime": 100.0, "darktime": 101.0, "date-obs": "2026-03-15T02:00:00",
             "filter": "R", "gain": 120}
    masters = [
        _master("b1.fit", "bias", **{"date-obs": "2026-03-14T18:00:00"}),
        _master("b2.fit", "bias", **{"date-obs": "2026-03-15T06:00:00"}),  # 4 h away, not 8
        _master("d.fit", "dark", exptime=200.0, darktime=202.0, biassub="bias.fit"),
        _master("f.fit", "flat", filter="r "),
        _master("f0.fit", "flat", filter="R", gain=0),  # another gain setting
    ]
    choice = choose(frame, "l.fits", (4, 8), masters)
    assert (choice.bias.name, choice.dark.name, choice.flat.name) == ("b2.fit", "d.fit", "f.fit")
    assert (choice.dark_factor, choice.dark_rule) == (0.5, "scaled by DARKTIME")
    with_bias = [_master("d100.fit", "dark", exptime=100.0), *masters]  # not bias-subtracted
    choice = choose(frame, "l.fits", (4, 8), with_bias)
    assert (choice.dark.name, choice.bias, choice.dark_rule) == ("d100.fit", None, "exposure")
    unscalable = [_master("d.fit", "dark", exptime=200.0), *masters[:2], masters[3]]
    with pytest.raises(OptionError, match=r"include the bias, so they cannot be scaled.*or pass "
                                          r"--allow-missing dark"):
        choose(frame, "l.fits", (4, 8), unscalable)
    # --allow-missing dark: a dark that cannot be used is no dark (the bias then is needed)
    choice = choose(frame, "l.fits", (4, 8), unscalable, allow_missing=["dark"])
    assert (choice.dark, choice.bias.name) == (None, "b2.fit")


def test_reduce_builds_the_masters_then_calibrates_with_one_report(tmp_path, capsys):
    simulate(tmp_path / "raw", preset="night", shape=(48, 40), n_lights=1, seed=5,
             n_bias=3, n_darks=3, n_flats=3)
    out, report = tmp_path / "out", tmp_path / "out" / "night.html"
    assert main(["reduce", str(tmp_path / "raw"), "-o", str(out), "--no-cache", "--json",
                 "--report", str(report)]) == 0
    captured = capsys.readouterr()
    done = json.loads(captured.out)
    assert [m["path"].rsplit("/", 1)[1] for m in done["masters"]] == [
        "combined_bias.fit", "combined_dark_30.000.fit", "combined_dark_120.000.fit",
        "combined_flat_R.fit", "combined_flat_V.fit"]
    assert [(f["output"].rsplit("/", 1)[1], f["flat"].rsplit("/", 1)[1]) for f in
            done["calibrated"]] == [("light-R-001.fits", "combined_flat_R.fit"),
                                    ("light-V-001.fits", "combined_flat_V.fit")]
    assert "ignored IMAGETYP values" not in captured.err  # the science frames are not ignored
    text = report.read_text()
    assert "Calibrated frames: 2" in text
    assert "light-V-001.fits" in text
    assert fits.getheader(out / "masters" / "combined_dark_30.000.fit")["BIASSUB"]


def _no_lights(raw):
    for path in raw.glob("light-*"):
        path.unlink()


def _no_gain(raw):
    for path in raw.glob("light-*"):
        with fits.open(path, mode="update") as hdul:
            del hdul[0].header["GAIN"]


def _calibrated_exists(raw):
    (raw.parent / "out" / "calibrated").mkdir(parents=True)
    (raw.parent / "out" / "calibrated" / "light-V-001.fits").write_bytes(b"an earlier frame")


def _processed_exists(raw):
    (raw.parent / "out" / "processed").mkdir(parents=True)
    (raw.parent / "out" / "processed" / "flat-V-002.fits").write_bytes(b"an earlier copy")


@pytest.mark.parametrize(("spoil", "message"), [
    (_no_lights, "no science frames (IMAGETYP LIGHT/OBJECT) in"),
    (_no_gain, "light-R-001.fits: has no gain (EGAIN or GAIN); give --gain N"),
    (_calibrated_exists, "calibrated/light-V-001.fits: exists; pass --overwrite"),
    (_processed_exists, "processed/flat-V-002.fits: exists; pass overwrite=True"),
])
def test_reduce_checks_the_whole_night_before_it_writes_a_file(tmp_path, capsys, spoil,
                                                                message):
    raw = tmp_path / "raw"
    simulate(raw, preset="night", shape=(24, 20), n_lights=1, overscan=4, n_bias=3,
             n_darks=3, n_flats=3)
    spoil(raw)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert main(["reduce", str(raw), "-o", str(tmp_path / "out"), "--no-cache", "-q"]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert after == before  # no master, no processed copy, no calibrated frame


def test_cosmic_rays_are_flagged_and_cleaned_and_stars_kept(night, tmp_path):
    folder, sim = night
    (tmp_path / "in").mkdir()
    with fits.open(folder / "raw" / "light-R-001.fits") as hdul:
        data = hdul[0].data.astype(np.int32)
        header = hdul[0].header
    truth = fits.getdata(sim.truth["light_R"])
    sky = np.median(truth)
    rng = np.random.default_rng(4)
    # single-pixel hits, sharper than any star (sigma 1.5 px), on the sky 4 px off any star
    # and off the frame's edge
    far = np.ones_like(truth, bool)
    for y, x in zip(*np.nonzero(truth > 1.1 * sky), strict=True):
        far[max(0, y - 4):y + 5, max(0, x - 4):x + 5] = False
    far[:4], far[-4:], far[:, :4], far[:, -4:] = False, False, False, False  # LACosmic's edge
    chosen = rng.choice(np.flatnonzero(far), 12, replace=False)
    hits = np.unravel_index(chosen, truth.shape)
    data[hits] += 6000
    fits.PrimaryHDU(data.astype(np.uint16), header).writeto(tmp_path / "in" / "l.fits")
    (frame,) = calibrate(tmp_path / "in", folder / "masters", tmp_path / "out", cache=False,
                         cosmic_rays=True)
    result = CCDData.read(frame.path)
    flagged = fits.getdata(frame.path, "MASK") & MASK_BITS["cosmic"] != 0
    assert flagged[hits].all()
    near = np.zeros_like(flagged)  # the hits and pixels near them (sigfrac), never elsewhere
    for dy in range(-4, 5):
        for dx in range(-4, 5):
            near[np.clip(hits[0] + dy, 0, 63), np.clip(hits[1] + dx, 0, 47)] = True
    assert not (flagged & ~near).any()
    stars = truth > 2 * sky
    assert stars.sum() > 10
    assert not flagged[stars].any()
    z = (result.data - truth) / result.uncertainty.array
    assert np.abs(z[hits]).max() < 5  # cleaned to the neighbours' level
    assert fits.getheader(frame.path)["CRCLEAN"] == flagged.sum()



@st.composite
def _bands(draw):
    """Rows of a frame and masters with NaNs, zeros and negatives in the flat, some masters or
    uncertainties absent, and factors of either sign (the NumPy twin works in float32, the
    kernel in float64: values whose squares underflow float32 are left out)."""
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 5)))

    def plane(low=-1e4, high=7e4, nan=True):
        values = st.floats(low, high, width=32) | (st.just(np.nan) if nan else st.nothing())
        if high <= 2:  # a flat: zero, or a response not so small that its square underflows
            values = (st.just(0.0) | st.just(np.nan) | st.floats(2.0**-10, high, width=32)
                      | st.floats(low, -(2.0**-10), width=32))
        return np.array(draw(st.lists(values, min_size=shape[0] * shape[1],
                                      max_size=shape[0] * shape[1])),
                        np.float32).reshape(shape)

    def master(low, high):
        if not draw(st.booleans()):
            return None
        sigma = plane(0, 100) if draw(st.booleans()) else None
        return Master(plane(low, high), sigma, draw(st.sampled_from([1.0, 0.5, 2.5, -1.0])))

    return dict(raw=plane(), bias=master(-100, 2000), dark=master(-10, 1000),
                flat=master(-0.5, 2.0), gain=draw(st.sampled_from([0.5, 1.0, 1.7])),
                read_noise=draw(st.sampled_from([0.0, 3.0])),
                saturation=draw(st.sampled_from([None, 60000.0])),
                electrons=draw(st.booleans()))


@settings(max_examples=150, deadline=None)
@given(_bands())
def test_kernel_is_its_numpy_twin(case):
    raw = case.pop("raw")
    twin = calibrate_band(raw, **case)
    shape = raw.shape
    out = Band(np.empty(shape, np.float32), np.empty(shape, np.float32), np.empty(shape, np.uint8))
    calibrate_into(raw, out, **case)
    np.testing.assert_array_equal(out.mask, twin.mask)
    np.testing.assert_allclose(out.data, twin.data, rtol=1e-5, atol=1e-3, equal_nan=True)
    np.testing.assert_allclose(out.uncertainty, twin.uncertainty, rtol=1e-5, atol=1e-3,
                               equal_nan=True)


def _mef(path, imagetyp, levels, rng, exptime=10.0, filt=None):
    """A frame of two amplifiers, one per extension (SCI 1, 2), each with its own level."""
    hdus = [fits.PrimaryHDU(header=fits.Header({"IMAGETYP": imagetyp, "EXPTIME": exptime,
                                                "INSTRUME": "two-amp", "RDNOISE": 3.0,
                                                "EGAIN": 2.0, **({"FILTER": filt} if filt
                                                                 else {})}))]
    for ver, level in enumerate(levels, start=1):
        data = rng.normal(level, 3.0, (12, 10)).astype(np.float32)
        hdus.append(fits.ImageHDU(data, name="SCI", ver=ver))
    fits.HDUList(hdus).writeto(path)


def test_a_multi_extension_frame_is_calibrated_extension_by_extension(tmp_path):
    """Each amplifier's extension gets the same extension of each master, and the output
    mirrors the input: SCI 1 and 2, each with its UNCERT and MASK."""
    rng = np.random.default_rng(2)
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(3):
        _mef(raw / f"bias{i}.fits", "BIAS", (1000, 2000), rng, exptime=0.0)
        _mef(raw / f"dark{i}.fits", "DARK", (1010, 2040), rng)  # dark current 10 and 40
        _mef(raw / f"flat{i}.fits", "FLAT", (11000, 6000), rng, filt="R")  # responses 2:1
    _mef(raw / "light.fits", "LIGHT", (1510, 2290), rng, filt="R")  # sky 500 and 250 ADU
    calstack_masters = tmp_path / "masters"
    build_night(ImageIndex(raw, cache=False), calstack_masters, subtract_bias=True,
                subtract_dark=True)
    # each amplifier's master dark less that amplifier's master bias: dark current 10 and 40
    darks = fits.open(calstack_masters / "combined_dark_10.000.fit")
    with darks:
        assert [round(float(np.median(darks["SCI", v].data))) for v in (1, 2)] == [10, 40]
    (frame,) = calibrate(raw, calstack_masters, tmp_path / "out", cache=False, electrons=False)
    with fits.open(frame.path) as hdul:
        assert [(h.name, h.ver) for h in hdul[1:]] == [
            ("SCI", 1), ("UNCERT", 1), ("MASK", 1), ("SCI", 2), ("UNCERT", 2), ("MASK", 2)]
        # each amplifier by its own bias, dark and flat (each flat normalised on its own, as
        # `masters` normalises each extension's flats): its own sky, 500 and 250 ADU
        assert np.median(hdul[1].data) == pytest.approx(500, abs=3)
        assert np.median(hdul[4].data) == pytest.approx(250, abs=3)
        # read noise, the Poisson noise of sky and dark current (250 + 40 ADU at 2 e-/ADU), the
        # master bias's and dark's own uncertainty (about 1 ADU each)
        assert np.median(hdul[5].data) == pytest.approx(np.sqrt(1.5**2 + 290 / 2 + 2), rel=0.02)
        assert hdul[0].header["INSTRUME"] == "two-amp"
    assert [(c.bias.hdu, c.dark.hdu, c.flat.hdu) for c in frame.choices] == [
        (1, 1, 1), (5, 5, 5)]


def test_a_calibrated_frame_is_ccdprocs_ccd_process(night, tmp_path):
    """The whole chain on a file, against ccdproc's ``ccd_process`` with the same masters (bias,
    dark scaled by exposure, flat normalised by its mean, gain): the same values. (Its
    uncertainty is not compared: ccd_process's create_deviation counts the bias level as photon
    noise.)"""
    folder, _ = night
    (frame,) = calibrate([folder / "raw" / "light-V-002.fits"], folder / "masters", tmp_path,
                         cache=False)
    masters = {c: CCDData.read(getattr(frame.choice, c).path) for c in ("bias", "dark", "flat")}
    with fits.open(folder / "raw" / "light-V-002.fits") as hdul:
        raw = CCDData(hdul[0].data.astype(np.float64), unit="adu", meta=hdul[0].header)
    for master in masters.values():
        master.mask = None  # ccdproc would OR the masks; calstack's are empty here
    expected = ccdproc.ccd_process(
        raw, master_bias=masters["bias"], dark_frame=masters["dark"],
        master_flat=masters["flat"], exposure_key="EXPTIME", exposure_unit=u.s,
        dark_scale=True, gain=GAIN * u.electron / u.adu, gain_corrected=False)
    ours = CCDData.read(frame.path)
    np.testing.assert_allclose(ours.data, expected.data, rtol=3e-6, atol=1e-3)
    assert ours.unit == expected.unit == u.electron


def test_nina_lights_get_the_masters_of_their_gain_offset_and_filter(tmp_path, capsys):
    """N.I.N.A.'s folders and headers (GAIN/OFFSET as CMOS settings, EXPOSURE, FILTER): the
    bias of the lights' gain 120 / offset 30 and the R flat; its darks include the bias and are
    of another exposure, so only --allow-missing dark goes on without them."""
    corpus = Path(__file__).parent / "data" / "corpus" / "nina"
    assert main(["masters", str(corpus), "-r", "-o", str(tmp_path / "m"), "--no-cache",
                 "-q"]) == 0
    argv = ["calibrate", str(corpus / "LIGHT"), "--masters", str(tmp_path / "m"), "-o",
            str(tmp_path / "cal"), "--no-cache", "--gain", "1", "--read-noise", "3", "--json"]
    assert main(argv) == 1
    assert "include the bias, so they cannot be scaled" in capsys.readouterr().err
    assert main([*argv, "--allow-missing", "dark"]) == 0
    frames = json.loads(capsys.readouterr().out)
    assert {(f["bias"].rsplit("/", 1)[1], f["dark"], f["flat"].rsplit("/", 1)[1])
            for f in frames} == {("combined_bias_gain120_offset30.fit", None,
                                  "combined_flat_R.fit")}


def test_the_optimal_dark_scale_is_the_one_in_the_frame():
    from calstack.processing.darkscale import optimal_dark_scale

    rng = np.random.default_rng(6)
    shape = (128, 256)
    dark = np.full(shape, 2.0)
    hot = rng.random(shape) < 2e-3
    dark[hot] = rng.uniform(50, 5000, hot.sum())  # hot pixels: the dark's structure
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    sky = 1000 + 0.5 * x + 0.2 * y  # a gradient, which differences cancel
    frame = sky + 0.7 * dark + rng.normal(0, 5, shape)
    for cy, cx in rng.uniform(5, 120, (20, 2)):  # stars, whose edges the fit leaves out
        frame += 3000 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 4.5)
    frame[rng.random(shape) < 1e-3] += 8000  # cosmic rays
    bias = np.full(shape, 300.0)
    frame[5, 7] = np.nan
    assert optimal_dark_scale(frame + bias, dark, bias) == pytest.approx(0.7, rel=0.01)
    assert optimal_dark_scale(frame, np.full(shape, 2.0)) is None  # nothing to fit


def test_an_optimised_dark_scale_removes_a_dark_the_exposure_times_mispredict(tmp_path, capsys):
    """A raw 120 s dark relabelled as a 60 s science frame: the exposure rule scales the 120 s
    master by 0.5 and leaves half the dark current and the hot pixels in; the optimised scale
    finds the 1 that is in the frame."""
    import shutil

    simulate(tmp_path / "raw", preset="night", shape=(256, 256), n_bias=5, n_darks=5,
             filters=["R"], n_flats=5, seed=2)
    (tmp_path / "in").mkdir()
    light = tmp_path / "in" / "l.fits"
    shutil.move(tmp_path / "raw" / "dark-120.000s-005.fits", light)
    build_night(ImageIndex(tmp_path / "raw", cache=False), tmp_path / "masters",
                subtract_bias=True, subtract_dark=True)
    with fits.open(light, mode="update") as hdul:
        hdul[0].header.update(IMAGETYP="LIGHT", EXPTIME=60.0, FILTER="R")
    done = {}
    for scale in ("exposure", "optimize"):
        (frame,) = calibrate(tmp_path / "in", tmp_path / "masters", tmp_path / scale,
                             cache=False, dark_scale=scale)
        done[scale] = (frame, fits.getdata(frame.path), fits.getheader(frame.path))
    frame, data, header = done["exposure"]
    assert frame.choice.dark_factor == 0.5
    assert header["DARKSCAL"] == 0.5
    frame, optimised, header = done["optimize"]
    assert frame.choice.dark_factor == pytest.approx(1.0, rel=0.03)
    assert header["DARKSCAL"] == frame.choice.dark_factor
    assert header["DARKRULE"] == "optimised; scaled by EXPTIME: 0.5"
    assert "(optimised; scaled by EXPTIME: 0.5)" in frame.choice.describe()
    assert abs(np.median(optimised)) < 0.5 < np.median(data)  # 3 e- of dark current left
    assert np.abs(optimised).max() < 0.1 * np.abs(data).max()  # and the hot pixels
    with pytest.raises(OptionError, match="--dark-scale best: give exposure or optimize"):
        calibrate(tmp_path / "in", tmp_path / "masters", tmp_path / "x", dark_scale="best")
    assert main(["calibrate", str(tmp_path / "in"), "--masters", str(tmp_path / "masters"),
                 "-o", str(tmp_path / "cli"), "--no-cache", "--dark-scale", "optimize",
                 "--json"]) == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert summary["dark_factor"] == pytest.approx(frame.choice.dark_factor, rel=1e-6)


def _temperature_night(folder):
    """A raw night at -20 C (biases, R flats, a science frame of 60 s) with darks of 120 s at
    -10, 0 and +10 C only, whose dark current grows by exp(0.1 per degree)."""
    return simulate(folder, preset="night", shape=(256, 256), n_bias=5, n_darks=3,
                    exptimes=[120], filters=["R"], n_flats=4, n_lights=1,
                    dark_temperatures=[-10, 0, 10], dark_coefficient=0.1, seed=3)


def _biases_at_dark_temperatures(folder):
    """Biases for the darks' --subtract-bias: copies at each dark temperature (the
    simulator's bias does not change with temperature)."""
    import shutil

    for temperature in (-10, 0, 10):
        for i in range(1, 4):
            copy = folder / f"bias-{temperature:+d}C-{i}.fits"
            shutil.copy(folder / f"bias-00{i}.fits", copy)
            with fits.open(copy, mode="update") as hdul:
                hdul[0].header["CCD-TEMP"] = float(temperature)


def test_the_dark_current_temperature_coefficient_is_measured_and_scales_a_dark(tmp_path,
                                                                               capsys):
    night = _temperature_night(tmp_path / "raw")
    done = characterize(tmp_path / "raw", output=tmp_path / "camera.toml", cache=False)
    assert done.dark_coefficient == pytest.approx(0.1, rel=0.02)
    assert [(t, n) for t, _, n in done.dark_rates] == [(-10.0, 3), (0.0, 3), (10.0, 3)]
    assert done.dark_rates[0][1] == pytest.approx(
        PRESETS["night"].dark_current * np.exp(0.1 * 10), rel=0.05)  # median: no hot pixel
    assert read_camera(done.camera_file).dark_coefficient == round(done.dark_coefficient, 5)
    assert "doubling every 6." in done.table()
    _biases_at_dark_temperatures(tmp_path / "raw")
    build_night(ImageIndex(tmp_path / "raw", cache=False), tmp_path / "masters",
                subtract_bias=True)
    with pytest.raises(OptionError, match=r"no master dark for this frame .*differs in "
                                          r"CCD-TEMP -20.0 vs -10.0"):
        calibrate(tmp_path / "raw", tmp_path / "masters", tmp_path / "none", cache=False)
    truth = fits.getdata(night.truth["light_R"])
    (scaled,) = calibrate(tmp_path / "raw", tmp_path / "masters", tmp_path / "scaled",
                          cache=False, camera=done.camera_file)
    assert scaled.choice.dark.name == "combined_dark_120.000_ccdtemp-10.fit"  # the nearest
    assert scaled.choice.bias.name == "combined_bias_ccdtemp-20.fit"  # the frame's own
    assert scaled.choice.dark_factor == pytest.approx(  # the camera file's coefficient
        60 / 120 * np.exp(-10 * read_camera(done.camera_file).dark_coefficient), rel=1e-9)
    header = fits.getheader(scaled.path)
    assert header["DARKRULE"] == "scaled by EXPTIME and CCD-TEMP -10 to -20 C"
    # with the header's gain (the truth's), against no dark at all: the dark current of 60 s
    # at -20 C (3 e-) is taken out; the medians of the Poisson sky sit a third of an electron
    # below its mean
    (given,) = calibrate(tmp_path / "raw", tmp_path / "masters", tmp_path / "given",
                         cache=False, dark_coefficient=0.1)
    assert given.choice.dark_factor == pytest.approx(0.5 * np.exp(-1.0), rel=1e-9)
    (bare,) = calibrate(tmp_path / "raw", tmp_path / "masters", tmp_path / "bare", cache=False,
                        allow_missing=["dark"])
    left = np.median(fits.getdata(given.path) - truth)
    assert abs(left) < 0.6
    assert np.median(fits.getdata(bare.path) - truth) > left + 2.5
    assert main(["calibrate", str(tmp_path / "raw"), "--masters", str(tmp_path / "masters"),
                 "-o", str(tmp_path / "cli"), "--no-cache", "--dark-coefficient", "0.1",
                 "--json"]) == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert summary["dark_factor"] == pytest.approx(given.choice.dark_factor, rel=1e-9)
