"""Single-HDU frames read out by several amplifiers (a camera file's layout, issue 16): each
amplifier's data less its own overscan, put together into one image (packed, or by DETSEC,
flipped), and calibrated with each amplifier's own gain and read noise."""

import json

import numpy as np
import pytest
from astropy.io import fits

from calstack.catalog.index import ImageIndex
from calstack.cli import main
from calstack.errors import FrameError, OptionError
from calstack.io.reader import ArrayFrame, read_image
from calstack.pipeline.reduce import process_frames
from calstack.processing.camera import Amplifier, camera_defaults, read_camera
from calstack.processing.frames import AmplifierFrame, place_amplifiers

# --------------------------------------------------------------------------- a two-amplifier CCD
# 60 rows; columns: 2 prescan, 20 data (left), 6 overscan (left), 6 overscan (right), 20 data
# (right): 54 columns, read out from both ends
NY, NX = 60, 54
LEFT, RIGHT = np.s_[:, 2:22], np.s_[:, 34:54]
LEFT_SCAN, RIGHT_SCAN = np.s_[:, 22:28], np.s_[:, 28:34]
GAINS, NOISES, LEVELS = (1.5, 3.0), (4.0, 6.0), (1000.0, 1400.0)  # e-/ADU, e-, ADU
CAMERA = """
name = "two-amplifier test CCD"
saturation = 60000

[[amplifier]]
name = "left"
data = "[3:22,*]"
overscan = "[23:28,*]"
gain = 1.5
read_noise = 4.0

[[amplifier]]
name = "right"
data = "DATASECB"
overscan = "BIASSECB"
gain = "GAINB"
read_noise = 6.0
"""


def _raw(electrons, rng, *, drift=0.0):
    """A raw frame of ``electrons`` (NY x 40, the two halves of the image) as the two
    amplifiers read it: each its own gain, read noise and bias level (with a drift along the
    rows that only each overscan measures); None for ``rng``: no noise."""
    raw = np.zeros((NY, NX))
    rows = np.arange(NY)[:, None]
    for half, data, scan, gain, noise, level in zip(
            (electrons[:, :20], electrons[:, 20:]), (LEFT, RIGHT), (LEFT_SCAN, RIGHT_SCAN),
            GAINS, NOISES, LEVELS, strict=True):
        signal = half if rng is None else rng.poisson(half) + rng.normal(0, noise, half.shape)
        raw[data] = level + drift * rows + signal / gain
        raw[scan] = level + drift * rows + (0 if rng is None else rng.normal(
            0, noise / gain, raw[scan].shape))
    raw[:, :2] = 7.0  # the prescan: in no amplifier's data
    return raw


def _write(path, data, imagetyp, **cards):
    header = fits.Header({"IMAGETYP": imagetyp, "EXPTIME": 10.0, "FILTER": "V",
                          "INSTRUME": "twoamp", "DATASECB": "[35:54,*]",
                          "BIASSECB": "[29:34,*]", "GAINB": GAINS[1], **cards})
    fits.PrimaryHDU(data.astype(np.float32), header).writeto(path)


@pytest.fixture
def camera(tmp_path):
    path = tmp_path / "camera.toml"
    path.write_text(CAMERA)
    return path


def _amplifiers(camera_path):
    return camera_defaults(read_camera(camera_path))["amplifiers"]


def test_the_layout_packs_the_data_sections_as_they_lie(camera):
    placed = place_amplifiers(_amplifiers(camera), {"DATASECB": "[35:54,*]",
                                                    "BIASSECB": "[29:34,*]"}, (NY, NX), "f")
    assert [(p.amplifier.name, p.data.fits(), p.overscan.fits(), p.place.fits(), p.flip_x)
            for p in placed] == [("left", "[3:22,1:60]", "[23:28,1:60]", "[1:20,1:60]", False),
                                 ("right", "[35:54,1:60]", "[29:34,1:60]", "[21:40,1:60]",
                                  False)]
    assert [p.amplifier.gain for p in placed] == [1.5, "GAINB"]  # a keyword: read per frame


def test_each_amplifier_less_its_own_overscan_read_in_any_bands(camera):
    """Each row of each amplifier less the mean of its own overscan row, whatever the bands;
    by DETSEC the right amplifier, read out from the other end, is flipped."""
    rng = np.random.default_rng(1)
    raw = _raw(rng.uniform(100, 900, (NY, 40)), rng, drift=0.5).astype(np.float32)
    header = {"DATASECB": "[35:54,*]", "BIASSECB": "[29:34,*]"}
    expected = np.hstack([raw[LEFT] - raw[LEFT_SCAN].mean(axis=1, keepdims=True, dtype=float),
                          raw[RIGHT] - raw[RIGHT_SCAN].mean(axis=1, keepdims=True,
                                                            dtype=float)])
    placed = place_amplifiers(_amplifiers(camera), header, raw.shape, "f")
    for rows in (1, 7, 60):
        image = read_image(AmplifierFrame(ArrayFrame(raw), placed),
                           rows=rows, dtype=np.float64)
        np.testing.assert_allclose(image, expected, rtol=1.2e-7)  # float32 rounding
    detector = (Amplifier("left", "[3:22,*]", "[23:28,*]", detector="[1:20,1:60]"),
                Amplifier("right", "[35:54,*]", "[29:34,*]", detector="[40:21,1:60]"))
    placed = place_amplifiers(detector, {}, raw.shape, "f")
    assert [p.flip_x for p in placed] == [False, True]
    image = read_image(AmplifierFrame(ArrayFrame(raw), placed), rows=9,
                       dtype=np.float64)
    np.testing.assert_allclose(image[:, :20], expected[:, :20], rtol=1.2e-7)  # float32 rounding
    np.testing.assert_allclose(image[:, 20:], expected[:, 20:][:, ::-1], rtol=1.2e-7)  # float32 rounding
    binned = (Amplifier("a", "[3:22,*]", detector="[1:40,1:120]"),
              Amplifier("b", "[35:54,*]", detector="[41:80,1:120]"))  # 2x2 binned
    assert [p.place.fits() for p in place_amplifiers(binned, {}, raw.shape, "f")] == [
        "[1:20,1:60]", "[21:40,1:60]"]


@pytest.mark.parametrize(("amplifiers", "message"), [
    ((Amplifier("a", "[3:22,*]"), Amplifier("b", "[10:30,*]")), "amplifiers a and b overlap"),
    ((Amplifier("a", "[3:22,1:30]"), Amplifier("b", "[35:54,*]")), "leave holes"),
    ((Amplifier("a", "[3:22,*]", detector="[1:20,1:60]"),
      Amplifier("b", "[35:54,*]", detector="[21:50,1:60]")), "not a whole multiple"),
    ((Amplifier("a", "[3:22,*]"), Amplifier("b", "DATASECB")), "has no section keyword DATASECB"),
    ((Amplifier("a", "[3:22,*]"), Amplifier("b", "[35:55,*]")), "lies outside 1:54"),
])
def test_a_layout_that_does_not_make_one_image_is_an_error_naming_the_frame(amplifiers,
                                                                           message):
    with pytest.raises((FrameError, OptionError), match=message) as raised:
        place_amplifiers(amplifiers, {}, (NY, NX), "raw.fits")
    assert "raw.fits" in str(raised.value)


def test_sections_given_beside_a_camera_of_several_amplifiers_are_an_error(camera):
    with pytest.raises(OptionError, match=r"--overscan with --camera .*camera.toml.*own "
                                          "sections"):
        camera_defaults(camera, overscan="[23:28,*]")
    given = camera_defaults(camera, gain=2.0)
    assert [a.gain for a in given["amplifiers"]] == [2.0, 2.0]  # an option wins over the file
    assert (given["gain"], given["read_noise"]) == (2.0, None)  # shared / differ


def _night(folder, rng):
    """Raw frames of the two-amplifier CCD: 3 biases and 3 flats without noise (exact
    masters), and one light of a flat sky through a pixel response of a few %."""
    folder.mkdir()
    response = 1 + 0.05 * np.sin(np.arange(40) / 3)[None, :] * np.ones((NY, 1))
    for i in range(3):
        _write(folder / f"bias{i}.fits", _raw(np.zeros((NY, 40)), None), "BIAS")
        _write(folder / f"flat{i}.fits", _raw(20000 * response, None), "FLAT")
    sky = 2000.0
    _write(folder / "light.fits", _raw(sky * response, rng), "LIGHT")
    return sky * response.mean()


def test_reduce_calibrates_each_amplifier_with_its_own_gain_and_noise(camera, tmp_path):
    """In electrons the sky is one level across the two amplifiers (their gains 1.5 and 3.0
    and biases 1000 and 1400 ADU undone, the flat in electrons), and the residual against it
    in units of the written uncertainty has an rms of 1 in each amplifier (read noise 4 and
    6 e-); in ADU the flat alone makes it one level too."""
    rng = np.random.default_rng(7)
    truth = _night(tmp_path / "raw", rng)
    out = tmp_path / "out"
    assert main(["reduce", str(tmp_path / "raw"), "-o", str(out), "--no-cache", "-q",
                 "--camera", str(camera), "--allow-missing", "dark", "--json"]) == 0
    with fits.open(out / "calibrated" / "light.fits") as hdul:
        data, sigma, header = hdul[0].data, hdul["UNCERT"].data, hdul[0].header
        assert data.shape == (NY, 40)
        assert not hdul["MASK"].data.any()
    for half in (np.s_[:, :20], np.s_[:, 20:]):
        assert np.median(data[half]) == pytest.approx(truth, rel=3e-3)
        chi = (data[half] - truth) / sigma[half]
        assert np.sqrt(np.mean(chi ** 2)) == pytest.approx(1.0, abs=0.08)
    ratio = np.median(sigma[:, 20:]) / np.median(sigma[:, :20])  # sqrt(S + r^2) per amplifier
    assert ratio == pytest.approx(np.sqrt(truth + 36) / np.sqrt(truth + 16), rel=0.01)
    assert (header["AMPGAIN1"], header["AMPGAIN2"], header["AMPRDN1"], header["AMPRDN2"]) == (
        1.5, 3.0, 4.0, 6.0)
    assert (header["AMPNAM1"], header["AMPSEC2"]) == ("left", "[21:40,1:60]")
    assert header["GAINCOR"] == "per amplifier (AMPGAINn)"
    processed = fits.getheader(out / "processed" / "flat0.fits")
    assert (processed["NAXIS1"], processed["AMPSEC1"]) == (40, "[1:20,1:60]")
    with fits.open(out / "masters" / "combined_flat_V.fit") as hdul:  # ADU: the gain step
        flat = hdul[0].data
    assert np.median(flat[:, 20:]) / np.median(flat[:, :20]) == pytest.approx(0.5, rel=0.01)

    assert main(["calibrate", str(tmp_path / "raw" / "light.fits"), "--masters",
                 str(out / "masters"), "-o", str(tmp_path / "adu"), "--no-cache", "-q",
                 "--camera", str(camera), "--allow-missing", "dark", "--adu"]) == 0
    adu = fits.getdata(tmp_path / "adu" / "light.fits")
    assert np.median(adu[:, 20:]) / np.median(adu[:, :20]) == pytest.approx(1.0, rel=3e-3)


def test_a_frame_put_together_before_is_calibrated_by_its_amplifier_sections(camera,
                                                                            tmp_path, capsys):
    """A light processed by ``reduce`` (OUT/processed, with AMPSECn) and calibrated later with
    the camera file gets each amplifier's gain where it now lies; with a camera of another
    number of amplifiers it is an error naming the frame."""
    rng = np.random.default_rng(8)
    truth = _night(tmp_path / "raw", rng)
    out = tmp_path / "out"
    assert main(["reduce", str(tmp_path / "raw"), "-o", str(out), "--no-cache", "-q",
                 "--camera", str(camera), "--allow-missing", "dark"]) == 0
    rows = ImageIndex(tmp_path / "raw" / "light.fits", cache=False).rows()
    (light,) = process_frames(rows, tmp_path / "assembled", amplifiers=_amplifiers(camera))
    assert main(["calibrate", str(light), "--masters", str(out / "masters"), "-o",
                 str(tmp_path / "later"), "--no-cache", "--camera", str(camera),
                 "--allow-missing", "dark", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [(a["name"], a["gain"]) for a in summary[0]["amplifiers"]] == [("left", 1.5),
                                                                          ("right", 3.0)]
    later = fits.getdata(tmp_path / "later" / "light.fits")
    np.testing.assert_allclose(later, fits.getdata(out / "calibrated" / "light.fits"),
                               rtol=1e-6)
    assert np.median(later) == pytest.approx(truth, rel=3e-3)
    three = tmp_path / "three.toml"
    three.write_text(CAMERA + '\n[[amplifier]]\nname = "x"\ndata = "[1:2,*]"\n')
    assert main(["calibrate", str(light), "--masters", str(out / "masters"), "-o",
                 str(tmp_path / "wrong"), "--no-cache", "--camera", str(three),
                 "--allow-missing", "dark"]) == 1
    assert "has 2 amplifier sections (AMPSECn) where the camera file has 3" in (
        capsys.readouterr().err)
