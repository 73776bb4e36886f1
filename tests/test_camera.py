"""A camera file (TOML): read with one-line errors, and standing in for the options and header
keywords of ``calibrate`` and ``reduce`` (issues 16 and 17)."""

import numpy as np
import pytest
from astropy.io import fits

from calstack.catalog.index import ImageIndex
from calstack.cli import main
from calstack.errors import FrameError, OptionError, UnknownOptionError
from calstack.pipeline.calibrate import calibrate
from calstack.pipeline.night import build_night
from calstack.processing.apply import MASK_BITS
from calstack.processing.camera import Amplifier, camera_defaults, read_camera
from calstack.sim.simulation import simulate

CAMERA = """
name = "test CCD"
gain = 9.0
read_noise = "RONOISE"
saturation = 1550

[[amplifier]]
name = "only"
data = "[1:48,*]"
overscan = "BIASSECX"
gain = 1.2
"""


def _write(tmp_path, text, name="camera.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_camera_file_is_read_and_its_amplifier_wins(tmp_path):
    camera = read_camera(_write(tmp_path, CAMERA))
    assert (camera.name, camera.gain, camera.read_noise, camera.saturation) == (
        "test CCD", 9.0, "RONOISE", 1550.0)
    assert camera.amplifiers == (Amplifier("only", "[1:48,*]", "BIASSECX", 1.2),)
    assert camera_defaults(camera) == dict(gain=1.2, read_noise="RONOISE", saturation=1550.0,
                                           overscan="BIASSECX", trim="[1:48,*]",
                                           dark_coefficient=None, amplifiers=(),
                                           extensions={})
    with_coefficient = read_camera(_write(tmp_path, "dark_coefficient = 0.12\n", "d.toml"))
    assert camera_defaults(with_coefficient)["dark_coefficient"] == 0.12
    assert camera_defaults(with_coefficient, dark_coefficient=0.2)["dark_coefficient"] == 0.2
    given = camera_defaults(camera, gain=2.0, overscan="[49:64,*]", trim=None)
    assert (given["gain"], given["overscan"], given["trim"]) == (2.0, "[49:64,*]", None)
    assert camera_defaults(None, gain=3.0)["gain"] == 3.0


@pytest.mark.parametrize(("text", "error", "message"), [
    ("gain = 1\nrdnoise = 3\n", UnknownOptionError, "unknown key 'rdnoise'"),
    ("gain = 0\n", OptionError, "gain = 0 is not a number > 0"),
    ("gain = true\n", OptionError, "gain = True is not a number > 0"),
    ("read_noise = -1\n", OptionError, "read_noise = -1 is not a number >= 0"),
    ('dark_coefficient = "K"\n', OptionError, "dark_coefficient = 'K' is not a number"),
    ("gain = [\n", OptionError, "not a TOML camera file"),
    ("amplifier = 3\n", OptionError, "'amplifier' must be a list of tables"),
    ('[[amplifier]]\ndata = "[1:2,*]"\n[[amplifier]]\ngain = 2\n', OptionError,
     "amplifier 2 (2) has no 'data' section"),
    (('[[amplifier]]\nname = "a"\ndata = "[1:2,*]"\n[[amplifier]]\nname = "a"\n'
     'data = "[3:4,*]"\n'), OptionError, "two amplifiers are named alike"),
    (('[[amplifier]]\ndata = "[1:2,*]"\ndetector = "[1:2,*]"\n[[amplifier]]\n'
     'data = "[3:4,*]"\n'), OptionError, "'detector' given for some amplifiers only"),
    ('[[amplifier]]\ndata = 5\n', OptionError, "data = 5 is not a section"),
])
def test_a_bad_camera_file_is_a_one_line_error_naming_it(tmp_path, text, error, message):
    path = _write(tmp_path, text)
    with pytest.raises(error) as raised:
        read_camera(path)
    assert message in str(raised.value)
    assert str(path) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(OptionError, match=r"nothing\.toml: cannot be read"):
        read_camera(tmp_path / "nothing.toml")


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """The masters of a simulated night (64x48) with its gain 1.2 e-/ADU, read noise 4 e-."""
    folder = tmp_path_factory.mktemp("night")
    simulate(folder / "raw", preset="night", shape=(64, 48), n_lights=0, seed=3)
    build_night(ImageIndex(folder / "raw", cache=False), folder / "masters",
                subtract_bias=True, subtract_dark=True)
    return folder / "masters"


def _light(path, data, **cards):
    header = fits.Header({"IMAGETYP": "LIGHT", "EXPTIME": 120.0, "FILTER": "R",
                          "INSTRUME": "calstack-night", "XBINNING": 1, "YBINNING": 1,
                          "CCD-TEMP": -20.0, **cards})
    fits.PrimaryHDU(data, header).writeto(path)
    return path


def test_the_camera_gives_gain_noise_saturation_and_sections(night, tmp_path):
    """A raw frame with 16 overscan columns and no noise model in its header (GAIN without
    RDNOISE),
    calibrated with the camera file, equals the same frame without overscan calibrated by its
    header's noise model; the camera's saturation flags it (1600 - 100 >= 1550 - 100)."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "raw").mkdir()
    _light(tmp_path / "plain" / "l.fits", np.full((64, 48), 1500, np.uint16), GAIN=1.2,
           RDNOISE=4.0)
    raw = np.full((64, 64), 100, np.uint16)
    raw[:, :48] += 1500
    _light(tmp_path / "raw" / "l.fits", raw, GAIN=1.2, RONOISE=4.0, BIASSECX="[49:64,*]")
    camera = _write(tmp_path, CAMERA)
    with pytest.raises(FrameError, match="has no gain in electrons per ADU"):
        calibrate(tmp_path / "raw", night, tmp_path / "out0", cache=False,
                  overscan="[49:64,*]", trim="[1:48,*]")
    (plain,) = calibrate(tmp_path / "plain", night, tmp_path / "out1", cache=False)
    (framed,) = calibrate(tmp_path / "raw", night, tmp_path / "out2", cache=False,
                          camera=camera)
    assert (framed.gain, framed.read_noise) == (1.2, 4.0)
    with fits.open(plain.path) as a, fits.open(framed.path) as b:
        assert b[0].data.shape == (64, 48)
        np.testing.assert_allclose(b[0].data, a[0].data, rtol=1e-6)
        # the overscan's own noise (the mean of 16 columns: 1/16 of the read noise's variance)
        assert b[0].header["OVSCNVAR"] == pytest.approx(1 / 16)
        flat = fits.getdata(night / b[0].header["CALFLAT"]) / b[0].header["FLATSCAL"]
        np.testing.assert_allclose(b["UNCERT"].data ** 2 - a["UNCERT"].data ** 2,
                                   4.0 ** 2 / 16 / flat ** 2, rtol=1e-3)
        assert (b["MASK"].data & MASK_BITS["saturated"]).all()
        assert not (a["MASK"].data & MASK_BITS["saturated"]).any()
        assert b[0].header["GAINCOR"] == 1.2
        assert "[49:64,1:64]" in b[0].header["OVERSCAN"]
        assert b[0].header["CCDSEC"] == "[1:48,1:64]"


def test_a_section_keyword_the_frame_lacks_is_an_error_naming_both(night, tmp_path):
    (tmp_path / "raw").mkdir()
    _light(tmp_path / "raw" / "l.fits", np.full((64, 64), 100, np.uint16), GAIN=1.2,
           RONOISE=4.0)
    with pytest.raises(FrameError, match=r"l.fits: has no section keyword BIASSECX \(named "
                                         r"by --overscan or the camera file\)"):
        calibrate(tmp_path / "raw", night, tmp_path / "out", cache=False,
                  camera=_write(tmp_path, CAMERA))
    assert not (tmp_path / "out" / "l.fits").exists()


def test_calibrate_and_reduce_take_camera_on_the_command_line(night, tmp_path):
    (tmp_path / "raw").mkdir()
    raw = np.full((64, 64), 100, np.uint16)
    raw[:, :48] += 1500
    _light(tmp_path / "raw" / "l.fits", raw, GAIN=1.2, RONOISE=4.0, BIASSECX="[49:64,*]")
    camera = str(_write(tmp_path, CAMERA))
    assert main(["calibrate", str(tmp_path / "raw"), "--masters", str(night), "-o",
                 str(tmp_path / "out"), "--no-cache", "--camera", camera]) == 0
    assert fits.getval(tmp_path / "out" / "l.fits", "GAINCOR") == 1.2
    assert main(["calibrate", str(tmp_path / "raw"), "--masters", str(night), "-o",
                 str(tmp_path / "out2"), "--no-cache", "--camera",
                 str(tmp_path / "none.toml")]) != 0


def test_reduce_gives_the_cameras_noise_model_to_the_combines_and_the_calibration(tmp_path):
    simulate(tmp_path / "raw", preset="night", shape=(64, 48), n_lights=1, overscan=16, seed=5)
    camera = _write(tmp_path, "gain = 1.25\nread_noise = 4.5\n")
    out = tmp_path / "out"
    assert main(["reduce", str(tmp_path / "raw"), "-o", str(out), "--no-cache",
                 "--rejection", "ccdclip", "--camera", str(camera)]) == 0
    bias = fits.getheader(out / "masters" / "combined_bias.fit")
    assert (bias["CMBGAIN"], bias["CMBRDNS"]) == (1.25, 4.5)
    lights = sorted((out / "calibrated").iterdir())
    assert len(lights) == 2  # one per filter
    assert [fits.getval(light, "GAINCOR") for light in lights] == [1.25, 1.25]


def test_combine_and_masters_take_the_camera_files_gain_and_read_noise(tmp_path, capsys):
    from conftest import frame

    from calstack.cli import main

    night = tmp_path / "night"
    night.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):  # no GAIN or RDNOISE in the headers: ccdclip needs the camera file's
        frame(night / f"d{i}.fits", data=rng.normal(100, 3, (8, 8)).astype(np.float32),
              IMAGETYP="DARK", EXPTIME=10.0)
    camera = _write(tmp_path, "gain = 2.0\nread_noise = 5.0\n")
    argv = ["--imagetyp", "dark", "--rejection", "ccdclip", "--no-cache", "-q"]
    assert main(["combine", str(night), "-o", str(tmp_path / "none"), *argv]) == 1
    assert "gain" in capsys.readouterr().err
    assert main(["combine", str(night), "-o", str(tmp_path / "c"), "--camera", str(camera),
                 *argv]) == 0
    header = fits.getheader(tmp_path / "c" / "combined_dark_10.000.fit")
    assert (header["CMBGAIN"], header["CMBRDNS"]) == (2.0, 5.0)
    assert main(["combine", str(night), "-o", str(tmp_path / "g"), "--camera", str(camera),
                 "--gain", "3", *argv]) == 0  # an option given wins
    assert fits.getheader(tmp_path / "g" / "combined_dark_10.000.fit")["CMBGAIN"] == 3.0
    assert main(["masters", str(night), "-o", str(tmp_path / "m"), "--camera", str(camera),
                 "--rejection", "ccdclip", "--no-cache", "-q"]) == 0
    assert fits.getheader(tmp_path / "m" / "combined_dark_10.000.fit")["CMBGAIN"] == 2.0
    two = _write(tmp_path, '[[amplifier]]\ndata = "[1:4,*]"\ngain = 1.0\nread_noise = 4.0\n'
                 '[[amplifier]]\ndata = "[5:8,*]"\ngain = 2.0\nread_noise = 4.0\n', "two.toml")
    assert main(["combine", str(night), "-o", str(tmp_path / "t"), "--camera", str(two),
                 *argv]) == 1
    assert "2 amplifiers have gains or read noises of their own" in capsys.readouterr().err
