"""Scaling, zero offsets, weights and bias/dark subtraction: applied before rejection, checked
against the reference twin and against hand-computed values."""

import numpy as np
import pytest
from astropy.io import fits
from conftest import write_frames

import calstack
from calstack.errors import FrameError, OptionError
from calstack.kernels.twin import combine_reference
from calstack.options import CombineOptions
from calstack.stacking.preparation import parse_section


def _flats(n=5, shape=(32, 24), seed=0):
    rng = np.random.default_rng(seed)
    pattern = 1 + 0.1 * np.sin(np.arange(shape[1]) / 4.0)[None, :] * np.ones(shape)
    levels = np.array([1000.0, 1100.0, 950.0, 1050.0, 3000.0][:n])
    frames = levels[:, None, None] * pattern + rng.normal(0, 2, size=(n, *shape))
    return frames, pattern, levels


def test_scaling_before_rejection_keeps_a_bright_flat():
    """ccdproc scales after clipping, so the 3x brighter flat would be clipped everywhere."""
    frames, pattern, _levels = _flats()
    master = calstack.combine(list(frames), rejection="sigma_clip", sigma=3, scale="median",
                              scale_to=1.0, dtype="float64")
    assert master.frame_rejected[4] < 0.05
    np.testing.assert_allclose(master.data / np.median(master.data), pattern / np.median(pattern),
                               rtol=5e-3)
    assert np.median(master.data) == pytest.approx(1.0, rel=1e-3)  # each flat normalised
    unscaled = calstack.combine(list(frames), rejection="sigma_clip", sigma=3)
    assert unscaled.frame_rejected[4] > 0.9  # what happens without scaling first


def test_scale_and_zero_match_the_reference_on_prepared_values():
    frames, _, _ = _flats()
    frames[2, 5, 5] = 1e6
    master = calstack.combine(list(frames), rejection="sigma_clip", sigma=2.5, scale="mean",
                              zero="median", dtype="float64")
    means = frames.reshape(5, -1).mean(axis=1)
    factors = means.mean() / means
    medians = np.median(frames.reshape(5, -1), axis=1) * factors
    offsets = medians - medians.mean()
    prepared = frames * factors[:, None, None] - offsets[:, None, None]
    data, _unc, count, frames_rejected = combine_reference(
        prepared, CombineOptions(rejection="sigma_clip", sigma=2.5))
    np.testing.assert_allclose(master.scale_factors, factors, rtol=1e-12)
    np.testing.assert_allclose(master.zero_offsets, offsets, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(master.data, data, rtol=1e-10)
    np.testing.assert_array_equal(master.ncombine, count)
    np.testing.assert_allclose(master.frame_rejected, frames_rejected / frames[0].size)
    assert master.meta["CMBSCALE"] == "mean"
    assert master.meta["CMBZERO"] == "median"
    assert sum("calstack scale" in h for h in master.meta["HISTORY"]) == 5


def test_scale_by_exposure_keyword(tmp_path):
    rate = np.full((16, 16), 2.0)
    paths = [write_frames(tmp_path, [rate * t], exptime=t, prefix=f"d{t}")[0]
             for t in (10.0, 20.0, 30.0)]
    master = calstack.combine(paths, scale="EXPTIME", scale_to=1.0, dtype="float64")
    np.testing.assert_allclose(master.data, rate)
    np.testing.assert_allclose(master.scale_factors, [0.1, 0.05, 1 / 30])


def test_stat_section_measures_only_that_region():
    frames = np.ones((3, 20, 30)) * np.array([1.0, 2.0, 4.0])[:, None, None]
    frames[:, :, 20:] = 100.0  # a region that must not influence the scaling
    master = calstack.combine(list(frames), scale="median", scale_to=1.0,
                              stat_section="[1:20,*]", dtype="float64")
    np.testing.assert_allclose(master.scale_factors, [1.0, 0.5, 0.25])
    assert parse_section("[3:5,2:4]", (10, 10)) == (slice(1, 4), slice(2, 5))
    with pytest.raises(OptionError, match="stat_section"):
        parse_section("[0:5,1:2]", (10, 10))
    with pytest.raises(OptionError, match="stat_section"):
        parse_section("1:5,1:2", (10, 10))


@pytest.mark.parametrize("kind", ["frame", "pixel", "keyword", "noise"])
def test_weighted_average_matches_the_reference(tmp_path, kind):
    rng = np.random.default_rng(4)
    frames = rng.normal(500, 10, size=(6, 12, 10))
    frames[1, 3, 3] = np.nan
    frames[4, 2, 2] = 5000.0
    exptimes = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    paths = [write_frames(tmp_path, [f], exptime=t, prefix=f"f{i}", GAIN=2.0, RDNOISE=5.0)[0]
             for i, (f, t) in enumerate(zip(frames, exptimes, strict=True))]
    weights = {"frame": rng.uniform(0.5, 2, 6), "pixel": list(rng.uniform(0.5, 2, frames.shape)),
               "keyword": "EXPTIME", "noise": "noise"}[kind]
    master = calstack.combine(paths, rejection="sigma_clip", sigma=4, weights=weights,
                              dtype="float64")
    expected_weights = {"keyword": np.array(exptimes),
                        "noise": 1 / np.array([(5.0 / 2) ** 2 + np.nanmedian(f) / 2 for f in frames])}
    reference_weights = expected_weights.get(kind, np.asarray(weights))
    # GAIN and RDNOISE in the headers: the noise model floors the clipping spread
    options = CombineOptions(rejection="sigma_clip", sigma=4, gain=2.0, read_noise=5.0)
    data, _, count, _ = combine_reference(frames, options, weights=reference_weights)
    np.testing.assert_allclose(master.data, data, rtol=1e-6)
    np.testing.assert_array_equal(master.ncombine, count)
    assert master.meta["CMBWEIGH"] == (weights if isinstance(weights, str) else "given per frame")


def test_bias_and_dark_subtracted_and_recorded(tmp_path):
    shape = (20, 16)
    rng = np.random.default_rng(2)
    bias = 300 + rng.normal(0, 1, shape)
    dark_rate = rng.uniform(0.1, 0.5, shape)
    bias_path = tmp_path / "master_bias.fits"
    dark_path = tmp_path / "master_dark.fits"
    fits.writeto(bias_path, bias)
    fits.writeto(dark_path, dark_rate * 100, fits.Header({"EXPTIME": 100.0}))
    flat = 1000 * np.ones(shape)
    paths = [write_frames(tmp_path, [bias + dark_rate * t + flat], exptime=t, prefix=f"fl{t}")[0]
             for t in (5.0, 10.0, 20.0)]
    master = calstack.combine(paths, bias=str(bias_path), dark=str(dark_path), dtype="float64")
    np.testing.assert_allclose(master.data, flat, rtol=1e-9)
    assert master.meta["BIASSUB"] == "master_bias.fits"
    assert master.meta["DARKSUB"] == "master_dark.fits"
    with pytest.raises(FrameError, match="master bias has shape"):
        calstack.combine(paths, bias=np.zeros((3, 3)))


def test_a_satellite_trail_shows_in_its_frames_rejected_fraction():
    rng = np.random.default_rng(5)
    frames = rng.normal(100, 3, size=(8, 40, 40))
    frames[3, 18:22, :] += 500  # a trail across frame 3
    master = calstack.combine(list(frames), rejection="sigma_clip", sigma=5)
    assert np.argmax(master.frame_rejected) == 3
    assert master.frame_rejected[3] == pytest.approx(4 * 40 / 1600, rel=0.1)
    assert master.sources == ["array"] * 8


def test_bad_preparation_options_name_the_problem(tmp_path):
    frames = list(np.ones((3, 8, 8)))
    with pytest.raises(OptionError, match="weights apply to method='average' or 'sum'"):
        calstack.combine(frames, method="median", weights=[1, 2, 3])
    with pytest.raises(OptionError, match="one number per frame"):
        calstack.combine(frames, weights=[1, 2])
    with pytest.raises(OptionError, match="zero='exptime' is not valid"):
        calstack.combine(frames, zero="exptime")
    paths = write_frames(tmp_path, frames)
    with pytest.raises(FrameError, match="AIRMASS is missing"):
        calstack.combine(paths, scale="AIRMASS")
    with pytest.raises(FrameError, match="<= 0"):
        calstack.combine([np.zeros((4, 4))] * 3, scale="median")
    with pytest.raises(OptionError, match="GAIN"):
        calstack.combine(frames, rejection="ccdclip")
