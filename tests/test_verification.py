"""Verification of every master (issue 17, item 4): the simulator's good masters pass; a
mislabelled frame, a light leak and a wrong gain fail, naming the check; --strict leaves a
failed master as NAME.rejected and exits 3."""

import json
import shutil

import numpy as np
import pytest
from astropy.io import fits

from calstack.cli import main
from calstack.sim.simulation import simulate


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vnight") / "raw"
    simulate(folder, preset="night", shape=(128, 128), n_lights=0, seed=4)
    return folder


def _masters(folder, out, *extra):
    return main(["masters", str(folder), "-o", str(out), "--subtract-bias", "--subtract-dark",
                 "--no-cache", "-q", *extra])


def _verification(path):
    header = fits.getheader(path)
    checks = [str(line) for line in header["HISTORY"] if str(line).startswith("calstack verify")]
    return header["VERIFIED"], header["VERFAIL"], checks


def _copy(night, tmp_path):
    folder = tmp_path / "raw"
    shutil.copytree(night, folder, ignore=shutil.ignore_patterns("truth"))
    return folder


def test_the_simulators_masters_pass_every_check(night, tmp_path, capsys):
    assert _masters(night, tmp_path / "out", "--json") == 0
    built = json.loads(capsys.readouterr().out)
    assert len(built) == 5
    for master in built:
        assert master["verified"], master["checks"]
        names = {c["name"] for c in master["checks"]}
        assert "residual" in names
        assert names >= {"bias": {"noise"}, "dark": {"dark"}, "flat": {"level", "flat noise"}}[
            master["kind"]]
    verified, failed, checks = _verification(tmp_path / "out" / "combined_bias.fit")
    assert (verified, failed) == (True, "")
    assert any(c.startswith("calstack verify noise passed") for c in checks)


def test_a_mislabelled_frame_fails_the_residual_check(night, tmp_path, capsys):
    folder = _copy(night, tmp_path)
    with fits.open(folder / "flat-R-001.fits") as hdul:
        hdul[0].header["IMAGETYP"] = "BIAS"
        hdul.writeto(folder / "bias-flat.fits")
    assert _masters(folder, tmp_path / "out") == 0
    verified, failed, _ = _verification(tmp_path / "out" / "combined_bias.fit")
    assert not verified
    assert "residual" in failed.split(",")
    assert "combined_bias.fit: bias NOT VERIFIED (VERIFIED = F): residual FAILED: frame" in (
        capsys.readouterr().err)


def test_a_light_leak_fails_the_residual_check(night, tmp_path):
    folder = _copy(night, tmp_path)
    with fits.open(folder / "dark-120.000s-002.fits", mode="update") as hdul:
        data = hdul[0].data.astype(np.float64)
        data[:, 64:] += 40.0  # light on half the sensor: ~10 times the noise
        hdul[0].data = data.astype(hdul[0].data.dtype)
    assert _masters(folder, tmp_path / "out") == 0
    verified, failed, checks = _verification(tmp_path / "out" / "combined_dark_120.000.fit")
    assert (verified, failed) == (False, "residual")
    assert any("frame 2 residual" in c for c in checks)


def test_a_wrong_gain_fails_the_noise_checks(night, tmp_path):
    """GAIN 2.4 where the camera has 1.2: the bias is twice as noisy as 4 e- / 2.4 says, and
    the flats' noise is not their photon noise."""
    folder = _copy(night, tmp_path)
    for path in folder.glob("*.fits"):
        with fits.open(path, mode="update") as hdul:
            hdul[0].header["GAIN"] = 2.4
    assert _masters(folder, tmp_path / "out") == 0
    verified, failed, _ = _verification(tmp_path / "out" / "combined_bias.fit")
    assert (verified, failed) == (False, "noise")
    verified, failed, _ = _verification(tmp_path / "out" / "combined_flat_R.fit")
    assert (verified, failed) == (False, "flat noise")


_BIASES = ("--imagetyp", "BIAS", "--imagetyp", "Bias Frame", "--imagetyp", "ZERO")


def test_a_new_master_is_compared_with_the_previous_one(night, tmp_path):
    """Two bias masters of one camera (frames 1-3 and 4-7) agree; against a master of a
    changed camera (its level raised by 30 ADU, far beyond the uncertainties) it fails."""
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, numbers in ((first, (1, 2, 3)), (second, (4, 5, 6, 7))):
        folder.mkdir()
        for n in numbers:
            shutil.copy(night / f"bias-{n:03d}.fits", folder)
    assert main(["combine", str(first), *_BIASES, "-o", str(tmp_path / "old"),
                 "--no-cache", "-q"]) == 0
    assert main(["combine", str(second), *_BIASES, "-o", str(tmp_path / "new"),
                 "--no-cache", "-q", "--previous", str(tmp_path / "old")]) == 0
    verified, _, checks = _verification(tmp_path / "new" / "combined_bias_0.000.fit")
    assert verified
    assert any(c.startswith("calstack verify previous passed") for c in checks)
    with fits.open(tmp_path / "old" / "combined_bias_0.000.fit", mode="update") as hdul:
        hdul[0].data = hdul[0].data + 30
    assert main(["combine", str(second), *_BIASES, "-o", str(tmp_path / "new"),
                 "--no-cache", "-q", "--previous", str(tmp_path / "old"), "--overwrite"]) == 0
    verified, failed, _ = _verification(tmp_path / "new" / "combined_bias_0.000.fit")
    assert (verified, failed) == (False, "previous")
    assert main(["combine", str(second), *_BIASES, "-o", str(tmp_path / "x"),
                 "--previous", str(tmp_path / "nowhere")]) == 1


def test_strict_leaves_a_failed_master_rejected_and_exits_3(night, tmp_path, capsys):
    """Under --strict a failed master is an error (exit 3) naming the check, is left as
    NAME.rejected, and a master it would have replaced stays; nothing after it is built."""
    folder = _copy(night, tmp_path)
    out = tmp_path / "out"
    assert _masters(folder, out, "--strict") == 0  # good: every master under its name
    before = (out / "combined_bias.fit").read_bytes()
    with fits.open(folder / "flat-R-001.fits") as hdul:
        hdul[0].header["IMAGETYP"] = "BIAS"
        hdul.writeto(folder / "bias-flat.fits")
    capsys.readouterr()
    assert _masters(folder, out, "--strict", "--overwrite") == 3
    err = capsys.readouterr().err
    assert "combined_bias.fit: verification failed (residual FAILED: frame" in err
    assert (out / "combined_bias.fit").read_bytes() == before
    assert fits.getval(out / "combined_bias.fit.rejected", "VERIFIED") is False
    assert not list(out.glob("*.fit.rejected"))[1:]  # the darks were not built after it


def test_cosmic_rays_left_in_a_master_blame_no_frame(tmp_path):
    """An average without rejection keeps each frame's cosmic rays (0.2 % of pixels) in the
    master, which moves every frame's residual there: the master's, not a frame's; the frame
    with a light leak on a quarter of the sensor is still named."""
    from conftest import make_darks, write_frames

    frames, _ = make_darks(n=9, shape=(60, 40), seed=3)
    write_frames(tmp_path, frames)
    assert main(["combine", str(tmp_path), "--imagetyp", "dark", "-o", str(tmp_path / "a"),
                 "--no-cache", "-q"]) == 0
    assert _verification(tmp_path / "a" / "combined_dark_90.000.fit")[:2] == (True, "")
    frames[5, :30, :20] += 40.0
    write_frames(tmp_path, frames[5:6], prefix="leak")
    (tmp_path / "dark-090.000-005.fits").unlink()
    assert main(["combine", str(tmp_path), "--imagetyp", "dark", "-o", str(tmp_path / "b"),
                 "--no-cache", "-q"]) == 0
    verified, failed, checks = _verification(tmp_path / "b" / "combined_dark_90.000.fit")
    assert (verified, failed) == (False, "residual")
    residual = [c for c in checks if "residual" in c]
    assert len(residual) == 1
    assert residual[0].count("frame ") == 1
    assert "frame 9 residual" in residual[0]  # leak-*.fits, after the 8 dark-*.fits
