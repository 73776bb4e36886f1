"""calstack.combine end to end: ccdproc's numbers, invariants, input variants, options."""

import gzip
import shutil
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.stats import mad_std
from conftest import make_darks, write_frames

import calstack
from calstack.errors import FrameError, OptionError, UnknownOptionError
from calstack.kernels.twin import combine_reference
from calstack.options import RECIPE, CombineOptions


def ccdproc_combine(files, **kwargs):
    import ccdproc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ccdproc.combine(files, **kwargs)


def test_reference_recipe_matches_ccdproc(dark_files):
    files, _, _ = dark_files
    ours = calstack.combine(files, mem_limit="350MB", **RECIPE)
    theirs = ccdproc_combine(files, method="average", sigma_clip=True, sigma_clip_low_thresh=5,
                             sigma_clip_high_thresh=5, sigma_clip_func=np.ma.median,
                             sigma_clip_dev_func=mad_std, mem_limit=350e6)
    np.testing.assert_allclose(ours.data, theirs.data, rtol=1e-5)
    np.testing.assert_allclose(ours.uncertainty.array, theirs.uncertainty.array, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ours.mask, np.asarray(theirs.mask, bool))
    assert ours.rejected_fraction > 0  # the cosmic rays went
    assert ours.unit == theirs.unit


@pytest.mark.parametrize("method", ["average", "median", "sum"])
def test_methods_match_ccdproc_with_extrema_and_minmax(tmp_path, method):
    frames, _ = make_darks(n=6, seed=4)
    frames[2, 3:6, 4:9] = np.nan
    files = write_frames(tmp_path, frames)
    ours = calstack.combine(files, method=method, min_clip=-1e9, max_clip=2500.0)
    theirs = ccdproc_combine(files, method=method, minmax_clip=True, minmax_clip_min=-1e9,
                             minmax_clip_max=2500.0)
    np.testing.assert_allclose(ours.data, theirs.data, rtol=1e-5)
    np.testing.assert_allclose(ours.uncertainty.array, theirs.uncertainty.array, rtol=1e-5,
                               atol=1e-5)


def test_result_matches_reference_twin(dark_files):
    _, frames, _ = dark_files
    options = dict(rejection="sigma_clip", sigma=3, maxiters=None, nlow=1, method="median")
    ours = calstack.combine(list(frames), **options)
    data, unc, count, _ = combine_reference(frames, CombineOptions(**options))
    np.testing.assert_allclose(ours.data, data, rtol=1e-6)
    np.testing.assert_allclose(ours.uncertainty.array, unc, rtol=1e-5)
    np.testing.assert_array_equal(ours.ncombine, count)


def test_tiled_equals_untiled(dark_files):
    files, _, _ = dark_files
    whole = calstack.combine(files, mem_limit="1GB", **RECIPE)
    tiled = calstack.combine(files, mem_limit=8 * 1024**2 + 48 * 40 * 11 + 7 * 40 * 4 * 5, **RECIPE)
    assert len(tiled.plan.tiles) > 1
    assert len(whole.plan.tiles) == 1
    np.testing.assert_array_equal(tiled.data, whole.data)
    np.testing.assert_array_equal(tiled.uncertainty.array, whole.uncertainty.array)
    np.testing.assert_array_equal(tiled.ncombine, whole.ncombine)


def test_float32_and_float64_inputs_agree(tmp_path):
    frames, _ = make_darks(n=5, seed=2)
    f32 = write_frames(tmp_path, frames, prefix="a")
    f64 = write_frames(tmp_path, frames.astype(np.float64), prefix="b")
    a = calstack.combine(f32, **RECIPE)
    b = calstack.combine(f64, **RECIPE)
    np.testing.assert_allclose(a.data, b.data, rtol=1e-6)
    c = calstack.combine(f64, dtype="float64", **RECIPE)
    assert c.data.dtype == np.float64
    np.testing.assert_allclose(c.data, a.data, rtol=1e-6)


def test_big_and_little_endian_arrays_agree():
    frames, _ = make_darks(n=5, seed=3)
    little = calstack.combine([f.astype("<f4") for f in frames], **RECIPE)
    big = calstack.combine([f.astype(">f4") for f in frames], **RECIPE)
    np.testing.assert_array_equal(little.data, big.data)


def test_files_and_arrays_agree(dark_files):
    files, frames, _ = dark_files
    np.testing.assert_array_equal(calstack.combine(files, **RECIPE).data,
                                  calstack.combine(list(frames), **RECIPE).data)


def test_uint16_with_bzero_is_read_as_physical_values(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(30000, 65535, size=(3, 20, 30)).astype(np.uint16)
    paths = []
    for i, frame in enumerate(frames):
        paths.append(tmp_path / f"raw{i}.fits")
        fits.writeto(paths[-1], frame)
    assert fits.getheader(paths[0])["BZERO"] == 32768
    master = calstack.combine(paths, method="median")
    np.testing.assert_array_equal(master.data, np.median(frames.astype(np.float64), axis=0))


def test_blank_and_mask_extension_and_nan_are_missing(tmp_path):
    data = np.full((3, 10, 12), 100, dtype=np.int16)
    data[1] = 200
    paths = []
    for i, frame in enumerate(data):
        hdu = fits.PrimaryHDU(frame)
        hdu.header["BLANK"] = -999
        if i == 0:
            hdu.data[0, 0] = -999
        hdus = [hdu]
        if i == 1:
            mask = np.zeros((10, 12), np.uint8)
            mask[5, 5] = 1
            hdus.append(fits.ImageHDU(mask, name="MASK"))
        paths.append(tmp_path / f"f{i}.fits")
        fits.HDUList(hdus).writeto(paths[-1])
    master = calstack.combine(paths, method="average")
    assert master.ncombine[0, 0] == 2  # BLANK in frame 0
    assert master.data[0, 0] == 150
    assert master.ncombine[5, 5] == 2  # masked in frame 1
    assert master.data[5, 5] == 100
    assert master.data[1, 1] == pytest.approx(400 / 3)
    arrays = [np.full((4, 4), 1.0), np.full((4, 4), np.nan), np.full((4, 4), 3.0)]
    assert calstack.combine(arrays).data[0, 0] == 2.0


def test_ccddata_masks_and_user_masks(dark_files):
    _, frames, _ = dark_files
    masks = [np.zeros(frames[0].shape, bool) for _ in frames]
    masks[0][:] = True
    a = calstack.combine(list(frames), masks=masks)
    b = calstack.combine([CCDData(f, unit="adu", mask=m)
                          for f, m in zip(frames, masks, strict=True)])
    expected = frames[1:].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(a.data, expected, rtol=1e-6)
    np.testing.assert_array_equal(a.data, b.data)
    assert (a.ncombine == len(frames) - 1).all()


def test_all_rejected_pixels_are_masked_nan():
    frames = [np.ones((3, 3)), np.ones((3, 3))]
    frames[0][1, 1] = frames[1][1, 1] = np.nan
    master = calstack.combine(frames)
    assert np.isnan(master.data[1, 1])
    assert master.mask[1, 1]
    assert master.ncombine[1, 1] == 0
    assert master.mask.sum() == 1


def test_compressed_gzip_and_mef_inputs_match_plain(tmp_path):
    frames, _ = make_darks(n=3, seed=5)
    plain = write_frames(tmp_path, frames, prefix="plain")
    variants = []
    for i, frame in enumerate(frames):
        gz = tmp_path / f"g{i}.fits.gz"
        with open(plain[i], "rb") as src, gzip.open(gz, "wb") as dst:
            shutil.copyfileobj(src, dst)
        fz = tmp_path / f"c{i}.fits.fz"
        fits.HDUList([fits.PrimaryHDU(),
                      fits.CompImageHDU(frame, compression_type="GZIP_2", quantize_level=0.0)]
                     ).writeto(fz)
        mef = tmp_path / f"m{i}.fits"
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(frame * 0, name="CCD1"),
                      fits.ImageHDU(frame, name="CCD2")]).writeto(mef)
        variants.append((gz, fz, mef))
    expected = calstack.combine(plain, **RECIPE).data
    gz, fz, mef = zip(*variants, strict=True)
    np.testing.assert_array_equal(calstack.combine(list(gz), **RECIPE).data, expected)
    np.testing.assert_array_equal(calstack.combine(list(fz), **RECIPE).data, expected)
    np.testing.assert_array_equal(calstack.combine(list(mef), hdu="CCD2", **RECIPE).data, expected)
    np.testing.assert_array_equal(calstack.combine([(p, 2) for p in mef], **RECIPE).data, expected)


def test_write_read_back_and_no_overwrite(tmp_path, dark_files):
    files, _, _ = dark_files
    master = calstack.combine(files, **RECIPE)
    out = tmp_path / "out" / "master.fit"
    out.parent.mkdir()
    assert master.write(out) == out
    back = CCDData.read(out)
    np.testing.assert_array_equal(back.data, master.data)
    np.testing.assert_array_equal(back.uncertainty.array, master.uncertainty.array)
    assert type(back.uncertainty).__name__ == "StdDevUncertainty"
    np.testing.assert_array_equal(back.mask, master.mask)
    with fits.open(out) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "UNCERT", "MASK", "NCOMB"]
        np.testing.assert_array_equal(hdul["NCOMB"].data, master.ncombine)
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        master.write(out)
    assert out.read_bytes() == before
    master.meta["EXTRA"] = 1
    master.write(out, overwrite=True)
    assert fits.getheader(out)["EXTRA"] == 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["master.fit"]  # no temp files left


def test_provenance_header(dark_files):
    files, _, _ = dark_files
    master = calstack.combine(files, **RECIPE)
    header = master.meta
    assert header["COMBINED"] is True
    assert header["NCOMBINE"] == len(files)
    assert header["IMCMB001"] == files[0].rsplit("/", 1)[1]
    assert header[f"IMCMB{len(files):03d}"] == files[-1].rsplit("/", 1)[1]
    assert (header["CMBMETH"], header["CMBREJ"]) == ("average", "sigma_clip")
    assert (header["CMBSLOW"], header["CMBSHIGH"]) == (5.0, 5.0)
    assert (header["CMBCEN"], header["CMBSTD"], header["CMBITER"]) == ("median", "mad_std", 1)
    assert header["CALSTACK"] == calstack.__version__
    assert header["IMAGETYP"] == "DARK"
    assert header["EXPTIME"] == 90.0
    assert "NAXIS1" not in header
    assert "BZERO" not in header
    kept = master.ncombine.sum()
    assert header["CMBREJFR"] == pytest.approx(1 - kept / (len(files) * 48 * 40), abs=1e-8)
    assert header["CMBREJFR"] > 0


COMBINED_CARD = b"COMBINED=                    T"  # a FITS logical, not 'True' nor 1


def test_recipe_style_meta_assignment_and_write(tmp_path, dark_files):
    """The reference recipe's step "mark COMBINED = T", ``meta['combined'] = True``, on a master.

    calstack's provenance header already carries the card, so on a master as returned the step
    must change nothing (one card, calstack's comment, next to NCOMBINE); on a master whose card
    was taken out, only the step can write it, as the logical T.
    """
    files, _, _ = dark_files
    combined_dark = calstack.combine(files, **RECIPE)
    combined_dark.meta["combined"] = True
    combined_dark.write(tmp_path / f"combined_dark_{90.0:6.3f}.fit")
    path = tmp_path / "combined_dark_90.000.fit"
    header = fits.getheader(path)
    assert header["COMBINED"] is True
    assert header.comments["COMBINED"] == "combined from several frames by calstack"
    assert list(header).index("NCOMBINE") == list(header).index("COMBINED") + 1
    assert path.read_bytes().count(COMBINED_CARD) == 1

    unmarked = calstack.combine(files, **RECIPE)
    del unmarked.meta["COMBINED"]
    unmarked.meta["combined"] = True  # the recipe's step: without it the file has no card
    unmarked.write(tmp_path / "unmarked.fit")
    assert fits.getheader(tmp_path / "unmarked.fit")["COMBINED"] is True
    assert (tmp_path / "unmarked.fit").read_bytes().count(COMBINED_CARD) == 1


def test_unknown_option_suggests_the_name(dark_files):
    files, _, _ = dark_files
    with pytest.raises(TypeError, match="did you mean 'sigma_lower'"):
        calstack.combine(files, sigma_lowr=3)
    with pytest.raises(UnknownOptionError):
        calstack.combine(files, signma_clip_dev_func=mad_std)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(method="mean"), "method='mean' is not valid.*'average'"),
        (dict(sigma=-1), "sigma=-1.* must be >= 0"),
        (dict(nlow=4, nhigh=3), "nlow=4 \\+ nhigh=3 rejects all 7 frames"),
        (dict(mem_limit="1kB"), "mem_limit=1.0 kB is too small.*at least"),
        (dict(mem_limit="lots"), "mem_limit='lots' is not a size"),
        (dict(cenfunc="mode"), "cenfunc='mode'"),
        (dict(min_clip=5, max_clip=1), "min_clip=5.0 is above max_clip=1.0"),
        (dict(maxiters=0), "maxiters=0 must be >= 1"),
    ],
)
def test_bad_values_are_clear_errors(dark_files, options, message):
    files, _, _ = dark_files
    with pytest.raises(OptionError, match=message):
        calstack.combine(files, **options)


def test_inconsistent_frames_name_the_file(tmp_path, dark_files):
    files, _, _ = dark_files
    odd = tmp_path / "odd.fits"
    fits.writeto(odd, np.zeros((10, 10), np.float32))
    with pytest.raises(FrameError, match=r"odd\.fits: has shape 10x10 but .* has 48x40"):
        calstack.combine([*files, odd])
    other_unit = tmp_path / "electrons.fits"
    fits.writeto(other_unit, np.zeros((48, 40), np.float32), fits.Header({"BUNIT": "electron"}))
    with pytest.raises(FrameError, match=r"electrons\.fits: has BUNIT='electron'"):
        calstack.combine([*files, other_unit])
    with pytest.raises(OptionError, match="no frames to combine"):
        calstack.combine([])
    with pytest.raises(FrameError, match="no HDU 'SCI'"):
        calstack.combine(files, hdu="SCI")


def test_truth_noise_cosmic_rays_and_hot_pixels(tmp_path):
    frames, truth = make_darks(n=10, shape=(128, 128), seed=9, noise=3.0)
    files = write_frames(tmp_path, frames)
    master = calstack.combine(files, mem_limit="350MB", **RECIPE)
    residual = master.data - truth
    clean = truth < 100
    noise = 1.482602218505602 * np.median(np.abs(residual[clean] - np.median(residual[clean])))
    assert noise == pytest.approx(3.0 / np.sqrt(10), rel=0.10)
    master_sigma = 3.0 / np.sqrt(10)
    assert np.abs(residual).max() < 5 * master_sigma  # no cosmic-ray residue above 5 sigma
    hot = ~clean
    np.testing.assert_allclose(master.data[hot], truth[hot], atol=5 * master_sigma)  # kept


def test_mixed_dtypes_and_a_single_frame(tmp_path):
    a = tmp_path / "int.fits"
    b = tmp_path / "float.fits"
    fits.writeto(a, np.full((5, 6), 100, np.int16))
    fits.writeto(b, np.full((5, 6), 101.5, np.float64))
    assert calstack.combine([a, b]).data[0, 0] == pytest.approx(100.75)
    single = calstack.combine([b], **RECIPE)
    assert single.data[0, 0] == 101.5
    assert single.uncertainty.array[0, 0] == 0
    assert single.meta["NCOMBINE"] == 1


def test_thousands_of_small_frames(tmp_path):
    files = []
    for i in range(2000):
        files.append(tmp_path / f"s{i:04d}.fits")
        fits.writeto(files[-1], np.full((4, 4), float(i % 10), np.float32))
    master = calstack.combine(files, method="median", mem_limit="20MB")
    assert master.data[0, 0] == 4.5
    assert (master.ncombine == 2000).all()


def test_non_numeric_scaling_keyword_is_a_frame_error(tmp_path):
    path = tmp_path / "odd.fits"
    hdu = fits.PrimaryHDU(np.zeros((4, 4), np.int16))
    hdu.header["BZERO"] = "lots"
    hdu.writeto(path, output_verify="ignore")
    with pytest.raises(FrameError, match=r"odd\.fits: HDU 0: BZERO = 'lots' is not a number"):
        calstack.combine([path, path])
