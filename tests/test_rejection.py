"""Rejection as IRAF's imcombine defines it where calstack names IRAF's algorithm (pclip's rank,
ccdclip's center and noise model, nkeep), and rejection that stays sane on few or quantised
frames (issue 15). Each test pins a number that calstack got wrong before."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

import calstack
from calstack.errors import OptionError
from calstack.kernels.params import pclip_rank_offset
from calstack.options import RECIPE, CombineOptions
from calstack.stacking.kernel_call import KernelCall


def kept(stack, **options):
    """The combined value and count of each pixel of ``stack`` (N, P)."""
    stack = np.ascontiguousarray(stack, np.float64)
    data, unc = np.empty(stack.shape[1]), np.empty(stack.shape[1])
    count = np.empty(stack.shape[1], np.int16)
    KernelCall(CombineOptions(**options), len(stack)).combine_tile(stack, data, unc, count)
    return data, count


@pytest.mark.parametrize(("pclip", "n", "offset"), [
    (-0.5, 3, 1), (-0.5, 4, 1), (-0.5, 5, 1), (-0.5, 10, 2), (-0.5, 25, 6), (0.3, 10, 1),
    (-2, 10, 2), (-7, 10, 5), (0.9, 2, 1)])
def test_pclip_rank_offset_is_irafs(pclip, n, offset):
    """IRAF: the offset is trunc(|pclip| * (N // 2)), within 1 .. N // 2 (2 at N = 10, not 3)."""
    assert pclip_rank_offset(pclip, n) == offset


def test_pclip_at_ten_frames_uses_rank_offset_two():
    """Median 10, the value 2 ranks below it 9.6: spread 0.4, so 8.7 goes too (with offset 3,
    the spread was 1.3 and 8 values stayed)."""
    column = [0.0, 8.7, 9.6, 9.9, 10.0, 10.0, 10.1, 10.4, 11.0, 20.0]
    _, count = kept(np.array(column)[:, None], rejection="percentile_clip")
    assert count.tolist() == [7]


def test_pclip_rank_is_fixed_from_the_number_of_frames():
    """12 frames, 4 masked: the offset stays 3 (of 12 frames), so the spread is 10 - 5 = 5 and
    only 30 goes (from the 8 valid values the offset was 2, and 5 went too)."""
    column = [np.nan] * 4 + [5.0, 9.5, 9.8, 10.0, 10.0, 10.2, 10.5, 30.0]
    data, count = kept(np.array(column)[:, None], rejection="percentile_clip")
    assert count.tolist() == [7]
    assert data[0] == pytest.approx(np.mean(column[4:11]))


def test_pclip_with_zero_spread_rejects_nothing():
    """IRAF: a zero spread (ties at the median) rejects nothing."""
    _, count = kept(np.array([[4.0], [5.0], [5.0], [5.0], [6.0]]), rejection="percentile_clip")
    assert count.tolist() == [5]


@pytest.mark.parametrize("n", [3, 5, 10, 25])
def test_mean_ccdclip_keeps_the_good_values_of_a_cosmic_ray_pixel(n):
    """The mean without the extremes is the center (IRAF, mclip=no): the cosmic ray goes, the
    others stay (the plain mean, pulled up by it, rejected every value: NaN)."""
    rng = np.random.default_rng(n)
    column = 100.0 + rng.normal(0, 3, n)
    column[0] = 5000.0
    data, count = kept(column[:, None], rejection="ccdclip", cenfunc="mean", gain=1.0,
                       read_noise=3.0)
    assert count.tolist() == [n - 1]
    assert data[0] == pytest.approx(column[1:].mean())


@pytest.mark.parametrize("rejection", ["sigma_clip", "percentile_clip", "ccdclip",
                                       "winsorized_sigma_clip"])
def test_clipping_keeps_nkeep_values(rejection):
    """nkeep (default 1, IRAF's): a pixel that had good values never loses all of them; with
    nkeep=3 the three nearest the center come back; nkeep=-1 rejects at most one."""
    stack = np.array([[0.0], [10.0], [20.0], [30.0], [1000.0]])
    extreme = dict(sigma=0.0, gain=1.0, read_noise=0.0, pclip=-2)
    assert kept(stack, rejection=rejection, **extreme)[1][0] >= 1
    assert kept(stack, rejection=rejection, nkeep=3, **extreme)[1][0] >= 3
    assert kept(stack, rejection=rejection, nkeep=-1, **extreme)[1][0] >= 4


def test_nkeep_gives_back_the_values_nearest_the_center():
    stack = np.array([[0.0], [9.0], [10.0], [10.0], [12.0], [40.0]])
    data, count = kept(stack, rejection="sigma_clip", sigma=0.0, stdfunc="std", nkeep=3)
    assert count.tolist() == [3]
    assert data[0] == pytest.approx(29 / 3)  # around the median 10: 10, 10, then 9 (1 away, not 12)


def _flats(n=8, shape=(20, 20), seed=0):
    """Flats of levels 9000..11000 ADU (gain 1, read noise 9), a cosmic ray in frame 0."""
    rng = np.random.default_rng(seed)
    levels = np.linspace(9000, 11000, n)
    frames = rng.poisson(levels[:, None, None] * np.ones((n, *shape))).astype(np.float64)
    frames += rng.normal(0, 9, frames.shape)
    frames[0, 5, 5] += 1500.0
    return frames


def test_ccdclip_on_normalised_flats_evaluates_the_noise_model_unscaled():
    """Flats normalised to 1: in those units the model (read noise 9) saw no cosmic ray; on the
    unscaled values (IRAF) the ray goes and little else."""
    master = calstack.combine(list(_flats()), rejection="ccdclip", gain=1.0, read_noise=9.0,
                              scale="median", scale_to=1.0, maxiters=None)
    assert master.ncombine[5, 5] == 7
    assert master.rejected_fraction < 0.005


def test_ccdclip_on_scaled_flats_rejects_as_much_as_unscaled():
    """Scaled to their mean level, the model per frame at the unscaled level: the ray goes."""
    master = calstack.combine(list(_flats()), rejection="ccdclip", gain=1.0, read_noise=9.0,
                              scale="median", zero="median")
    assert master.ncombine[5, 5] == 7


def _electron_frames(n=5, gain=1.5):
    rng = np.random.default_rng(3)
    return [CCDData(rng.normal(100.0, 10.0, (16, 16)), unit="electron",
                    meta={"GAIN": gain, "RDNOISE": 5.0}) for _ in range(n)]


def test_gain_of_frames_in_electrons_is_one():
    """BUNIT electron: the camera's GAIN (1.5) describes the raw frames, the model uses 1."""
    master = calstack.combine(_electron_frames(), rejection="ccdclip")
    assert master.meta["CMBGAIN"] == 1.0


def test_a_gain_other_than_one_for_frames_in_electrons_is_refused():
    with pytest.raises(OptionError, match="electrons"):
        calstack.combine(_electron_frames(), rejection="ccdclip", gain=1.5, read_noise=5.0)


def _quantised_darks(n, shape=(64, 64), seed=1):
    """12-bit darks written as 16-bit (x16): level 1000 ADU, noise 0.4 of a 12-bit step."""
    rng = np.random.default_rng(seed)
    values = np.round(1000 / 16 + rng.normal(0, 0.4, (n, *shape))) * 16
    return [v.astype(np.uint16) for v in values]


@pytest.mark.parametrize("n", [3, 5, 16])
def test_recipe_on_quantised_frames_rejects_under_one_percent(n):
    """MAD is 0 at most pixels of such data: the spread's floor is the step (16), and no value
    within one step of the center goes (20 % of the values went before)."""
    frames = _quantised_darks(n)
    master = calstack.combine(frames, **RECIPE)
    assert master.rejected_fraction < 0.01
    stack = np.array(frames, float)
    assert np.std(master.data - 1000) <= 1.02 * np.std(stack.mean(axis=0) - 1000)


def test_quantisation_step_of_12_bit_data_is_16():
    from calstack.io.reader import open_frame
    from calstack.stacking.preparation import quantisation_step

    frame = _quantised_darks(1)[0]
    frame[0, :3] = 65535  # saturated values off the grid
    assert quantisation_step(open_frame(frame), np.float32) == 16.0
    assert quantisation_step(open_frame(frame.astype(np.float32) + 0.25), np.float32) == 0.0
    assert quantisation_step(open_frame(np.arange(4096.0).reshape(64, 64)), np.float32) == 1.0


def test_recipe_on_three_frames_with_a_known_noise_model_loses_few_good_values():
    """3 frames: the MAD of 3 values is often tiny; the noise model (GAIN, RDNOISE) floors it."""
    rng = np.random.default_rng(5)
    frames = [CCDData(rng.poisson(50.0, (64, 64)) + rng.normal(0, 5.0, (64, 64)), unit="adu",
                      meta={"GAIN": 1.0, "RDNOISE": 5.0}) for _ in range(3)]
    assert calstack.combine(frames, **RECIPE).rejected_fraction < 0.001
    for frame in frames:
        del frame.meta["GAIN"]
    assert calstack.combine(frames, **RECIPE).rejected_fraction > 0.02  # no model: as before


@pytest.mark.parametrize("gain", [0, 120])
def test_a_cmos_gain_setting_without_read_noise_floors_nothing(gain):
    """N.I.N.A. writes the gain *setting* as GAIN (0, 120) and no RDNOISE: no noise model."""
    rng = np.random.default_rng(5)
    frames = [CCDData(rng.poisson(50.0, (64, 64)) + rng.normal(0, 5.0, (64, 64)), unit="adu",
                      meta={"GAIN": gain}) for _ in range(3)]
    plain = calstack.combine([f.data for f in frames], **RECIPE)
    master = calstack.combine(frames, **RECIPE)
    assert master.rejected_fraction == plain.rejected_fraction > 0.02
    np.testing.assert_array_equal(master.data, plain.data)


@pytest.mark.parametrize(("scale", "zero"), [("median", None), (None, "median"),
                                             ("median", "median")])
def test_scale_to_first_keeps_the_first_frames_level(scale, zero):
    """IRAF's reference frame: scaled (and offset) to the first frame, not to the mean."""
    rng = np.random.default_rng(9)
    frames = [level + rng.normal(0, 1, (12, 12)) for level in (100.0, 200.0, 400.0)]
    master = calstack.combine(frames, scale=scale, zero=zero, scale_to="first")
    assert np.median(master.data) == pytest.approx(100.0, abs=0.5)
    assert np.median(calstack.combine(frames, scale=scale, zero=zero).data) > 150


def test_scale_to_must_be_a_level_or_first():
    with pytest.raises(OptionError, match="first"):
        calstack.combine([np.ones((4, 4))] * 3, scale="median", scale_to="last")


def _model_frames(n, unit="adu", **meta):
    rng = np.random.default_rng(n)
    return [CCDData(rng.normal(100, 3, (16, 16)), unit=unit, meta=dict(meta)) for _ in range(n)]


@pytest.mark.parametrize(("n", "meta", "chosen"), [
    (3, {"GAIN": 1.0, "RDNOISE": 3.0}, "ccdclip"),
    (3, {"GAIN": 120}, "percentile_clip"),  # a CMOS gain setting is no noise model
    (4, {}, "percentile_clip"),
    (5, {}, "sigma_clip"),
    (12, {"RDNOISE": 3.0, "unit": "electron"}, "ccdclip"),  # in electrons: gain 1
])
def test_auto_chooses_by_noise_model_and_frame_count(n, meta, chosen):
    master = calstack.combine(_model_frames(n, **meta), rejection="auto")
    assert master.meta["CMBREJ"] == chosen
    assert master.meta["CMBAUTO"].startswith(
        "gain 1 e-/ADU, read noise 3 e- known" if chosen == "ccdclip"
        else f"{n} frames, no noise model")


def test_auto_with_a_noise_model_reaches_the_ideal_noise_without_cosmic_ray_residue(tmp_path):
    """The simulator's darks (hot pixels, cosmic rays; GAIN, RDNOISE): within 1 % of each
    pixel's ideal noise, nothing left 6 sigma high (bench/bench_quality.py measures more)."""
    night = calstack.simulate(tmp_path, preset="te", shape=(192, 192), n_darks=5, seed=5)
    truth = fits.getdata(night.truth["dark_90.000"]).astype(np.float64)
    ideal = fits.getdata(night.truth["dark_90.000"], "SIGMA") / np.sqrt(5)
    master = calstack.combine([str(p) for p in night.frames], rejection="auto", sigma=5)
    z = (master.data - truth) / ideal
    assert master.meta["CMBREJ"] == "ccdclip"
    assert np.sqrt(np.mean(z**2)) < 1.01
    assert not (z > 6).any()


def test_grow_in_bands_is_grow_in_one_band(tmp_path, caplog):
    """A cosmic ray's neighbours go with it (IRAF's grow): combined in many bands of rows, each
    read with grow's halo, the master is the one of a single band; the header records the
    radius, and the command line takes --grow."""
    import logging

    from calstack.cli import main

    rng = np.random.default_rng(3)
    stack = rng.normal(100.0, 5.0, (5, 120, 32))
    stack[2, 50, 10] += 5000.0
    stack[2, 49:52, 9:12] += 40.0  # the ray's faint halo, which clipping alone keeps
    options = dict(rejection="ccdclip", gain=1.0, read_noise=5.0, maxiters=None, dtype="float64")
    whole = calstack.combine(list(stack), grow=1.5, **options)
    with caplog.at_level(logging.INFO, logger="calstack"):
        banded = calstack.combine(list(stack), grow=1.5, mem_limit="8.5MB", **options)
    (plan,) = [r.getMessage() for r in caplog.records if "tile(s)" in r.getMessage()]
    assert int(plan.split(" tile(s)")[0].split()[-1]) >= 5
    np.testing.assert_array_equal(banded.data, whole.data)
    assert whole.meta["CMBGROW"] == 1.5
    clipped = calstack.combine(list(stack), **options)
    assert "CMBGROW" not in clipped.meta
    halo = (slice(49, 52), slice(9, 12))
    assert np.abs(clipped.data[halo] - 100.0).max() > 6.0  # the faint halo stays
    assert np.abs(whole.data[halo] - np.delete(stack, 2, axis=0).mean(axis=0)[halo]).max() < 1e-9
    paths = []
    for i, frame in enumerate(stack):
        paths.append(tmp_path / f"d{i}.fits")
        fits.writeto(paths[-1], frame.astype(np.float32),
                     fits.Header({"IMAGETYP": "DARK", "EXPTIME": 60.0}))
    out = tmp_path / "out"
    assert main(["combine", str(tmp_path), "--rejection", "ccdclip", "--gain", "1",
                 "--read-noise", "5", "--maxiters", "none", "--grow", "1.5",
                 "--output-dir", str(out)]) == 0
    (master,) = out.glob("*.fit*")
    assert fits.getheader(master)["CMBGROW"] == 1.5


def test_grow_without_a_rejection_is_an_error():
    with pytest.raises(OptionError, match="grow=1 grows rejected values"):
        CombineOptions(grow=1.0)
    assert CombineOptions(grow=1.0, nlow=1).grow == 1.0
