"""The ccdproc drop-in against ccdproc itself, option by option, on random data."""

import warnings

import ccdproc
import numpy as np
import pytest
from astropy.nddata import CCDData
from astropy.stats import mad_std

from calstack import ccdproc_compat
from calstack.errors import UnknownOptionError


def _images(n=7, shape=(20, 16), seed=0, masked=False):
    rng = np.random.default_rng(seed)
    data = rng.normal(100, 5, size=(n, *shape))
    hits = rng.random(data.shape) < 0.03
    data[hits] += rng.choice([-300.0, 900.0], size=hits.sum())
    data[:, 0, 0] = 42.0  # ties
    images = []
    for i, frame in enumerate(data):
        mask = rng.random(shape) < 0.05 if masked else None
        images.append(CCDData(frame * (1 + 0.2 * i), unit="adu", mask=mask,
                              meta={"IMAGETYP": "DARK", "FRAME": i}))
    return images


def _ccdproc(images, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ccdproc.combine(images, **kwargs)


def _assert_same(ours, theirs, rtol=1e-10):
    np.testing.assert_allclose(ours.data, theirs.data, rtol=rtol, equal_nan=True)
    np.testing.assert_allclose(ours.uncertainty.array, theirs.uncertainty.array, rtol=rtol * 10,
                               atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(ours.mask, theirs.mask)
    assert ours.unit == theirs.unit
    assert ours.data.dtype == theirs.data.dtype


def _inv_median(a):
    return 1 / np.median(a)


CASES = {
    "average": {},
    "median": dict(method="median"),
    "sum": dict(method="sum"),
    "recipe": dict(sigma_clip=True, sigma_clip_low_thresh=5, sigma_clip_high_thresh=5,
                   sigma_clip_func=np.ma.median, sigma_clip_dev_func=mad_std, mem_limit=350e6),
    "sigma default funcs": dict(sigma_clip=True, sigma_clip_low_thresh=1.5,
                                sigma_clip_high_thresh=2),
    "extrema": dict(clip_extrema=True, nlow=1, nhigh=2),
    "minmax": dict(minmax_clip=True, minmax_clip_min=90, minmax_clip_max=130),
    "every step": dict(method="median", clip_extrema=True, minmax_clip=True, minmax_clip_min=0,
                       sigma_clip=True, sigma_clip_low_thresh=2, sigma_clip_high_thresh=2,
                       sigma_clip_func=np.ma.median, sigma_clip_dev_func=mad_std),
    "weights": dict(weights=np.array([1.0, 2.0, 0.5, 3.0, 1.0, 1.5, 2.5])),
    "scale callable": dict(scale=_inv_median, sigma_clip=True, sigma_clip_low_thresh=2,
                           sigma_clip_high_thresh=2, sigma_clip_func=np.ma.median),
    "scale median": dict(method="median", scale=np.linspace(0.5, 2, 7)),
    "float32": dict(dtype=np.float32, sigma_clip=True),
    "mem_limit below the minimum": dict(mem_limit=2e4, sigma_clip=True, sigma_clip_func=np.ma.median,
                            sigma_clip_dev_func=mad_std),
    "uncertainty function (numpy path)": dict(combine_uncertainty_function=np.ma.std),
    "custom center (numpy path)": dict(sigma_clip=True, sigma_clip_low_thresh=1,
                                       sigma_clip_func=lambda a, axis: np.percentile(a, 40, axis)),
}


@pytest.mark.parametrize("name", CASES)
def test_matches_ccdproc(name):
    kwargs = CASES[name]
    images = _images()
    rtol = 1e-5 if kwargs.get("dtype") == np.float32 else 1e-10
    _assert_same(ccdproc_compat.combine(images, **kwargs), _ccdproc(images, **kwargs), rtol)


@pytest.mark.parametrize("kwargs", [{}, dict(clip_extrema=True, nlow=2, nhigh=1),
                                    dict(sigma_clip=True, sigma_clip_low_thresh=1.5),
                                    dict(method="median", minmax_clip=True, minmax_clip_max=110)])
def test_masked_inputs_match_ccdproc(kwargs):
    """ccdproc counts masked values in extrema and clips them statistically: the NumPy path."""
    images = _images(masked=True, seed=3)
    _assert_same(ccdproc_compat.combine(images, **kwargs), _ccdproc(images, **kwargs))


def test_files_comma_string_and_image_collection(tmp_path):
    images = _images(n=5)
    paths = []
    for i, image in enumerate(images):
        path = tmp_path / f"dark{i}.fits"
        image.write(path)
        paths.append(str(path))
    expected = _ccdproc(paths, sigma_clip=True)
    _assert_same(ccdproc_compat.combine(paths, sigma_clip=True), expected)
    _assert_same(ccdproc_compat.combine(",".join(paths), sigma_clip=True), expected)
    collection = ccdproc.ImageFileCollection(tmp_path)
    _assert_same(ccdproc_compat.combine(collection, sigma_clip=True), expected)
    out = tmp_path / "master.fits"
    result = ccdproc_compat.combine(paths, output_file=str(out))
    assert CCDData.read(out).data.tolist() == result.data.tolist()
    with pytest.raises(OSError, match="already exists") as ours:
        ccdproc_compat.combine(paths, output_file=str(out))
    with pytest.raises(OSError, match="already exists") as theirs:
        ccdproc.combine(paths, output_file=str(out))
    assert str(ours.value) == str(theirs.value)  # code written for ccdproc matches on it
    assert isinstance(ours.value, FileExistsError)
    ccdproc_compat.combine(paths, output_file=str(out), overwrite_output=True)


def test_result_carries_ncombine_and_the_first_header():
    images = _images(n=4)
    result = ccdproc_compat.combine(images)
    assert result.meta["NCOMBINE"] == 4
    assert result.meta["FRAME"] == 0
    assert "NCOMBINE" not in _ccdproc(images).meta  # the documented difference


def test_masked_weights_do_not_count_unlike_ccdproc():
    images = _images(n=3, shape=(1, 1))
    for image, value in zip(images, (10.0, 20.0, 1000.0), strict=True):
        image.data[...] = value
    result = ccdproc_compat.combine(images, weights=np.array([1.0, 1.0, 2.0]),
                                    minmax_clip=True, minmax_clip_max=500)
    assert result.data[0, 0] == pytest.approx(15.0)  # ccdproc: (10 + 20) / 4 = 7.5
    assert _ccdproc(images, weights=np.array([1.0, 1.0, 2.0]), minmax_clip=True,
                    minmax_clip_max=500).data[0, 0] == pytest.approx(7.5)


def test_the_guides_two_calls(dark_files):
    """The reference guide's call works; its misspelt twin is an error with the fix."""
    paths, _, _ = dark_files
    calibrated_darks = [CCDData.read(p) for p in paths]
    combined_dark = ccdproc_compat.combine(calibrated_darks,
                                           method='average',
                                           sigma_clip=True, sigma_clip_low_thresh=5,
                                           sigma_clip_high_thresh=5,
                                           sigma_clip_func=np.ma.median,
                                           sigma_clip_dev_func=mad_std,
                                           mem_limit=350e6)
    _assert_same(combined_dark, _ccdproc(calibrated_darks, method='average', sigma_clip=True,
                                         sigma_clip_low_thresh=5, sigma_clip_high_thresh=5,
                                         sigma_clip_func=np.ma.median,
                                         sigma_clip_dev_func=mad_std, mem_limit=350e6), 1e-6)
    with pytest.raises(TypeError) as error:
        ccdproc_compat.combine(calibrated_darks,
                               method='average',
                               sigma_clip=True, sigma_clip_low_thresh=5, sigma_clip_high_thresh=5,
                               sigma_clip_func=np.ma.median, signma_clip_dev_func=mad_std,
                               mem_limit=350e6)
    assert isinstance(error.value, UnknownOptionError)
    assert "'signma_clip_dev_func'" in str(error.value)
    assert "did you mean 'sigma_clip_dev_func'" in str(error.value)
