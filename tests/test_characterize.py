"""``calstack characterize``: gain and read noise from pairs of flats and two biases (photon
transfer), against the simulator's truth and frames drawn here with a known noise model (issue
17, item 1)."""

import json

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from calstack.cli import main
from calstack.errors import OptionError
from calstack.pipeline.calibrate import calibrate
from calstack.pipeline.characterize import characterize
from calstack.processing.camera import read_camera
from calstack.processing.ptc import FlatPair, flat_pair, photon_transfer
from calstack.sim.simulation import PRESETS, simulate
from calstack.viz.ptc import draw_photon_transfer


@pytest.mark.parametrize("overscan", [0, 16])
def test_gain_and_read_noise_are_the_simulators_from_two_pairs_and_two_biases(tmp_path,
                                                                               overscan):
    """1024² frames, 2 flat pairs, 2 biases: gain within 1 %, read noise within 2 % (the
    issue's bar); raw frames with an overscan are overscan-subtracted and trimmed first."""
    simulate(tmp_path / "raw", preset="night", shape=(1024, 1024), n_bias=2, n_darks=0,
             n_flats=4, filters=["R"], overscan=overscan, seed=7)
    truth = PRESETS["night"]
    done = characterize(tmp_path / "raw", output=tmp_path / "camera.toml", cache=False)
    assert done.transfer.gain == pytest.approx(truth.gain, rel=0.01)
    assert done.transfer.read_noise == pytest.approx(truth.read_noise, rel=0.02)
    assert len(done.transfer.pairs) == 2
    camera = read_camera(done.camera_file)
    assert camera.gain == pytest.approx(done.transfer.gain, rel=1e-4)
    assert camera.read_noise == pytest.approx(done.transfer.read_noise, rel=1e-4)


def _pair(rng, level_e, gain, read_noise, shape=(400, 400), bias=1000.0):
    """Two flats of ``level_e`` electrons on a flat field with 5 % structure (which the
    difference cancels), in ADU."""
    field = np.broadcast_to(1 + 0.05 * np.sin(np.arange(shape[1]) / 7.0), shape)
    return [(rng.poisson(level_e * field) + rng.normal(0, read_noise, shape)) / gain + bias
            for _ in range(2)]


def test_the_photon_transfer_fit_over_levels_leaves_saturated_pairs_out(tmp_path):
    rng = np.random.default_rng(1)
    gain, read_noise = 2.0, 6.0
    biases = [rng.normal(0, read_noise / gain, (400, 400)) + 1000.0 for _ in range(2)]
    read_variance = float(np.var(biases[0] - biases[1]) / 2)
    pairs = []
    for level, exptime in ((5000, 1.0), (10000, 2.0), (20000, 4.0)):
        a, b = _pair(rng, level, gain, read_noise)
        pairs.append(flat_pair(a, b, bias_level=1000.0, read_variance=read_variance,
                               names=("a", "b"), exptime=exptime, saturation=65535))
    a, b = _pair(rng, 40000, gain, read_noise)
    a, b = np.minimum(a, 15000), np.minimum(b, 15000)  # clipped at full well
    pairs.append(flat_pair(a, b, bias_level=1000.0, read_variance=read_variance,
                           names=("c", "d"), exptime=8.0, saturation=15000))
    assert [p.saturated for p in pairs] == [False, False, False, True]
    transfer = photon_transfer(pairs, np.sqrt(read_variance))
    assert transfer.gain == pytest.approx(gain, rel=0.01)
    assert transfer.read_noise == pytest.approx(read_noise, rel=0.02)
    assert transfer.linearity < 0.01  # 5000, 10000, 20000 e- in 1, 2, 4 s
    residual = draw_photon_transfer(transfer, tmp_path / "ptc.png")
    assert np.abs(residual[:3]).max() < 0.02  # the pairs fitted lie on the model
    assert residual[3] < -0.5  # the clipped pair's variance falls far below it
    with Image.open(tmp_path / "ptc.png") as picture:
        assert picture.size == (520, 480)
    for p, level in zip(pairs[:3], (5000, 10000, 20000), strict=True):
        assert p.level == pytest.approx(level / gain * np.mean(
            1 + 0.05 * np.sin(np.arange(400) / 7.0)), rel=0.001)


def test_linearity_is_the_largest_departure_from_a_line_in_exposure_time():
    pairs = [FlatPair(("a", "b"), t, level, level / 2.0, 2.0) for t, level in
             ((1.0, 1000.0), (2.0, 2000.0), (4.0, 3600.0))]  # the last 10 % low
    transfer = photon_transfer(pairs, 0.0)
    rate = (1000 + 4000 + 14400) / (1 + 4 + 16)
    assert transfer.linearity == pytest.approx(max(abs(1000 / rate - 1), abs(2000 / (2 * rate) - 1),
                                                   abs(3600 / (4 * rate) - 1)))
    assert transfer.gain == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no flat pair below saturation"):
        photon_transfer([FlatPair(("a", "b"), 1.0, 10.0, 5.0, 2.0, saturated=True)], 0.0)


def _frames(folder, kinds, **cards):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(2)
    for number, kind in enumerate(kinds):
        header = fits.Header({"IMAGETYP": kind, "EXPTIME": 1.0, "FILTER": "R", **cards})
        fits.PrimaryHDU(rng.normal(1000, 5, (32, 32)).astype(np.float32), header).writeto(
            folder / f"{kind}-{number}.fits")
    return folder


@pytest.mark.parametrize(("kinds", "message"), [
    (["BIAS", "FLAT", "FLAT"], r"1 bias frame\(s\) in .*: the read noise needs two"),
    (["BIAS", "BIAS", "FLAT"], "no two flats of one filter and exposure time"),
])
def test_missing_frames_are_one_line_errors(tmp_path, kinds, message):
    with pytest.raises(OptionError, match=message):
        characterize(_frames(tmp_path / "in", kinds), cache=False)


def test_frames_of_two_setups_and_an_existing_camera_file_are_errors(tmp_path):
    folder = _frames(tmp_path / "in", ["BIAS", "BIAS", "FLAT", "FLAT"])
    fits.PrimaryHDU(np.zeros((32, 32), np.float32), fits.Header(
        {"IMAGETYP": "FLAT", "EXPTIME": 1.0, "XBINNING": 2})).writeto(folder / "binned.fits")
    with pytest.raises(OptionError, match=r"binned\.fits: of another camera setup than .*"
                                          r"\(XBINNING None vs 2\)"):
        characterize(folder, cache=False)
    (folder / "binned.fits").unlink()
    (tmp_path / "camera.toml").write_text("gain = 1\n")
    with pytest.raises(OptionError, match="exists; pass --overwrite"):
        characterize(folder, output=tmp_path / "camera.toml", cache=False)
    assert (tmp_path / "camera.toml").read_text() == "gain = 1\n"


def test_the_command_prints_json_and_writes_the_camera_file(tmp_path, capsys):
    simulate(tmp_path / "raw", preset="night", shape=(256, 256), n_bias=2, n_darks=0,
             n_flats=2, filters=["V"], seed=3)
    camera = tmp_path / "camera.toml"
    assert main(["characterize", str(tmp_path / "raw"), "--no-cache", "--json", "-o",
                 str(camera), "--picture", str(tmp_path / "ptc.png")]) == 0
    assert (tmp_path / "ptc.png").read_bytes().startswith(b"\x89PNG")
    summary = json.loads(capsys.readouterr().out)
    assert summary["gain"] == pytest.approx(PRESETS["night"].gain, rel=0.03)
    assert summary["camera_file"] == str(camera)
    assert len(summary["pairs"]) == 1
    assert read_camera(camera).gain == pytest.approx(summary["gain"], rel=1e-4)


# --------------------------------------------------------------------------- several amplifiers
#: A CCD read out from both ends: 300 rows; columns: 150 data (left), 8 overscan (left), 8
#: overscan (right), 150 data (right).
_TWO_AMPLIFIERS = """
name = "two-amplifier test CCD"
saturation = 60000

[[amplifier]]
name = "left"
data = "[1:150,*]"
overscan = "[151:158,*]"

[[amplifier]]
name = "right"
data = "[167:316,*]"
overscan = "[159:166,*]"
"""
_AMPS = ((np.s_[:, 0:150], np.s_[:, 150:158], 1.5, 4.0, 1000.0),  # data, overscan, e-/ADU,
         (np.s_[:, 166:316], np.s_[:, 158:166], 3.0, 6.0, 1400.0))  # e-, bias (ADU)


def _two_amplifier_frame(path, rng, electrons, imagetyp, exptime):
    raw = np.zeros((300, 316))
    for data, scan, gain, noise, level in _AMPS:
        signal = rng.poisson(electrons, (300, 150)) + rng.normal(0, noise, (300, 150))
        raw[data] = level + signal / gain
        raw[scan] = level + rng.normal(0, noise / gain, (300, 8))
    fits.PrimaryHDU(raw.astype(np.float32), fits.Header(
        {"IMAGETYP": imagetyp, "EXPTIME": exptime, "FILTER": "V"})).writeto(path)


def test_each_amplifier_of_a_camera_file_is_measured_on_its_own(tmp_path, capsys):
    rng = np.random.default_rng(5)
    folder = tmp_path / "raw"
    folder.mkdir()
    for i in range(2):
        _two_amplifier_frame(folder / f"bias{i}.fits", rng, 0, "BIAS", 0.0)
    for i, (electrons, exptime) in enumerate([(10000, 1.0)] * 2 + [(30000, 3.0)] * 2):
        _two_amplifier_frame(folder / f"flat{i}.fits", rng, electrons, "FLAT", exptime)
    layout = tmp_path / "layout.toml"
    layout.write_text(_TWO_AMPLIFIERS)
    done = characterize(folder, camera=layout, output=tmp_path / "camera.toml", cache=False)
    assert [name for name, _ in done.amplifiers] == ["left", "right"]
    for (_, t), (_, _, gain, noise, _) in zip(done.amplifiers, _AMPS, strict=True):
        assert t.gain == pytest.approx(gain, rel=0.015)
        assert t.read_noise == pytest.approx(noise, rel=0.02)
        assert len(t.pairs) == 2
    written = read_camera(done.camera_file)  # the layout, with each amplifier's numbers
    assert written.saturation == 60000
    assert [(a.name, a.data, a.overscan) for a in written.amplifiers] == [
        ("left", "[1:150,*]", "[151:158,*]"), ("right", "[167:316,*]", "[159:166,*]")]
    assert [a.gain for a in written.amplifiers] == [round(t.gain, 5) for _, t in done.amplifiers]
    with pytest.raises(OptionError, match="2 amplifiers were measured"):
        _ = done.transfer
    assert main(["characterize", str(folder), "--no-cache", "--json", "--camera", str(layout),
                 "--picture", str(tmp_path / "ptc.png")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [(a["name"], round(a["gain"], 6)) for a in summary["amplifiers"]] == [
        (name, round(t.gain, 6)) for name, t in done.amplifiers]
    assert (tmp_path / "ptc.png").read_bytes().startswith(b"\x89PNG")


# --------------------------------------------------------------------------- full well, linearity
_LEVELS = [5000, 10000, 20000, 40000, 55000, 70000]  # e- per pixel; the full well holds 60000


@pytest.mark.parametrize("nonlinearity", [0.0, 0.05])
def test_the_curve_finds_the_full_well_and_leaves_non_linear_pairs_out(tmp_path, nonlinearity):
    """The simulator's flat pairs at six levels spanning a full well of 60000 e- (1.2 e-/ADU:
    50000 ADU, below the 16-bit ceiling the header gives): the top pair's variance collapses,
    so it is saturated and the level under it is where the response saturates; with a
    response 5 % short of a line at full well, the pairs more than 1 % off the line of the
    lower levels are named non-linear and left out of the gain."""
    truth = PRESETS["night"]
    simulate(tmp_path / "raw", preset="night", shape=(256, 256), n_bias=2, n_darks=0,
             filters=["R"], flat_levels=_LEVELS, full_well=60000, nonlinearity=nonlinearity,
             seed=4)
    done = characterize(tmp_path / "raw", output=tmp_path / "camera.toml", cache=False)
    t = done.transfer
    assert [p.saturated for p in t.pairs] == [False] * 5 + [True]
    assert t.pairs[5].variance < 0.01 * t.pairs[4].variance  # the pixels stopped filling
    assert t.saturation == t.pairs[4].level
    written = read_camera(done.camera_file).saturation
    bias = fits.getdata(tmp_path / "raw" / "bias-001.fits").mean()
    assert written == pytest.approx(bias + t.pairs[4].level, abs=2)  # raw ADU, bias included
    assert written < truth.bias_level + 60000 * (1 - nonlinearity) / truth.gain  # under it
    if nonlinearity == 0:
        assert not any(p.nonlinear for p in t.pairs)
        assert t.linearity < 1e-3
        assert t.gain == pytest.approx(truth.gain, rel=0.01)
        assert t.read_noise == pytest.approx(truth.read_noise, rel=0.02)
    else:
        assert [p.nonlinear for p in t.pairs[:5]] == [False, False, False, True, True]
        assert t.linearity > 0.02
        assert "non-linear: left out" in done.table()
        level = np.array([p.level for p in t.pairs[:5]])
        signal = np.array([p.variance for p in t.pairs[:5]]) - t.read_noise_adu**2
        all_pairs = np.dot(level, level) / np.dot(level, signal)  # with the non-linear pairs
        assert abs(t.gain / truth.gain - 1) < 0.5 * abs(all_pairs / truth.gain - 1)


def test_the_simulators_amplifiers_are_measured_from_its_camera_file(tmp_path):
    """``simulate(..., amplifiers=...)``: two strips of columns of their own gain and read
    noise, and the camera file of the layout; ``characterize`` with it measures each one (512²,
    two flat pairs and two biases: 131072 pixels an amplifier)."""
    truth = [(1.5, 4.0), (3.0, 6.0)]
    night = simulate(tmp_path / "raw", preset="night", shape=(512, 512), n_bias=2, n_darks=0,
                     n_flats=4, filters=["R"], amplifiers=truth, seed=8)
    layout = read_camera(tmp_path / "raw" / "camera.toml")
    assert [(a.name, a.data, a.gain, a.read_noise) for a in layout.amplifiers] == [
        ("A1", "[1:256,*]", 1.5, 4.0), ("A2", "[257:512,*]", 3.0, 6.0)]
    assert "GAIN" not in fits.getheader(night.frames[0])  # no one gain for the frame
    done = characterize(tmp_path / "raw", camera=tmp_path / "raw" / "camera.toml", cache=False)
    for (name, t), (gain, noise) in zip(done.amplifiers, truth, strict=True):
        assert t.gain == pytest.approx(gain, rel=0.01), name
        assert t.read_noise == pytest.approx(noise, rel=0.02), name
    with pytest.raises(OptionError, match="without an overscan"):
        simulate(tmp_path / "other", preset="night", amplifiers=truth, overscan=8)


def _mef(path, rng, electrons, imagetyp, exptime=1.0, amps=((1.5, 4.0), (3.0, 6.0))):
    """A frame of one amplifier per extension (CCD1, CCD2: their own gain and read noise, a
    bias of 1000 ADU), 200x150 each, no GAIN or RDNOISE in the headers."""
    hdus = [fits.PrimaryHDU(header=fits.Header({"IMAGETYP": imagetyp, "EXPTIME": exptime,
                                                "FILTER": "V"}))]
    for k, (gain, noise) in enumerate(amps, start=1):
        signal = rng.poisson(electrons, (200, 150)) + rng.normal(0, noise, (200, 150))
        hdus.append(fits.ImageHDU((1000 + signal / gain).astype(np.float32), name=f"CCD{k}"))
    fits.HDUList(hdus).writeto(path)


def test_each_extension_of_multi_extension_frames_is_measured_and_calibrated_by_its_own(
        tmp_path):
    """One amplifier per extension: each extension's photon transfer on its own, the camera
    file's [[extension]] tables, which calibrate reads by EXTNAME."""
    rng = np.random.default_rng(9)
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(2):
        _mef(raw / f"bias{i}.fits", rng, 0, "BIAS", 0.0)
    for i in range(4):
        _mef(raw / f"flat{i}.fits", rng, 20000, "FLAT")
    done = characterize(raw, output=tmp_path / "camera.toml", cache=False)
    assert [name for name, _ in done.amplifiers] == ["CCD1", "CCD2"]
    for (_, t), gain, noise in zip(done.amplifiers, (1.5, 3.0), (4.0, 6.0), strict=True):
        assert t.gain == pytest.approx(gain, rel=0.015)
        assert t.read_noise == pytest.approx(noise, rel=0.03)
    camera = read_camera(done.camera_file)
    assert [(e.name, e.gain) for e in camera.extensions] == [
        (name, round(t.gain, 5)) for name, t in done.amplifiers]
    # a science frame of 5000 e- calibrated with a bias of each extension: 5000 e- in both
    masters = tmp_path / "masters"
    masters.mkdir()
    hdus = [fits.PrimaryHDU(header=fits.Header({"IMAGETYP": "BIAS", "COMBINED": True,
                                                "EXPTIME": 0.0}))]
    hdus += [fits.ImageHDU(np.full((200, 150), 1000, np.float32), name=f"CCD{k}")
             for k in (1, 2)]
    fits.HDUList(hdus).writeto(masters / "bias.fits")
    science = tmp_path / "science"
    science.mkdir()
    _mef(science / "light.fits", rng, 5000, "LIGHT", 10.0)
    (frame,) = calibrate(science, masters, tmp_path / "out", cache=False,
                         camera=done.camera_file, allow_missing=["dark", "flat"])
    with fits.open(frame.path) as hdul:
        for name in ("CCD1", "CCD2"):
            assert np.median(hdul[name].data) == pytest.approx(5000, rel=0.02), name
    with pytest.raises(OptionError, match="both \\[\\[amplifier\\]\\] and \\[\\[extension\\]\\]"):
        read_camera(_write_text(tmp_path / "both.toml", '[[amplifier]]\ndata = "[1:2,*]"\n'
                                '[[extension]]\nname = "CCD1"\n'))
    with pytest.raises(OptionError, match="extension 1 has no 'name'"):
        read_camera(_write_text(tmp_path / "noname.toml", "[[extension]]\ngain = 2\n"))


def _write_text(path, text):
    path.write_text(text)
    return path
