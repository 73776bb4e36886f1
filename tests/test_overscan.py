"""Overscan and trim (issue 16, item 1): sections as FITS and IRAF write them, every collapse
and fit against ccdproc's ``subtract_overscan`` and ``trim_image``, IRAF's fit rejection, and
ccdproc's real SAAO frame (``a8280271.fits``: BIASSEC, TRIMSEC)."""

import os
import shutil
import warnings
from dataclasses import replace

import numpy as np
import pytest
from astropy.io import fits
from astropy.modeling import models
from astropy.nddata import CCDData

from calstack.errors import OptionError
from calstack.processing.overscan import Overscan, fit_with_rejection, processing_cards
from calstack.processing.sections import parse_section

ccdproc = pytest.importorskip("ccdproc")


@pytest.fixture(scope="module")
def saao(tmp_path_factory):
    """ccdproc's real SAAO frame, copied from the installed package."""
    source = os.path.join(os.path.dirname(ccdproc.__file__), "tests", "data", "a8280271.fits")
    if not os.path.exists(source):
        pytest.skip("ccdproc's test data (a8280271.fits) is not installed")
    path = tmp_path_factory.mktemp("saao") / "a8280271.fits"
    shutil.copy(source, path)
    return CCDData.read(path, unit="adu")


@pytest.mark.parametrize(("text", "expected"), [
    ("[103:130,*]", (0, 100, 102, 130)),
    ("[1:100,1:100]", (0, 100, 0, 100)),
    ("[   4:  13,   1: 100]", (0, 100, 3, 13)),  # the SAAO frame's blanks
    ("[130:103,100:1]", (0, 100, 102, 130)),  # IRAF's reversed ranges: the same region
    ("[5,*]", (0, 100, 4, 5)),
])
def test_sections_are_fits_one_based_and_inclusive(text, expected):
    section = parse_section(text, (100, 130))
    assert (section.y0, section.y1, section.x0, section.x1) == expected
    again = parse_section(section.fits(), (100, 130))  # written back, read again: the same
    assert (again.y0, again.y1, again.x0, again.x1) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("[103:131,*]", "column range 103:131 lies outside 1:130"),
    ("[0:10,*]", "column range 0:10 lies outside"),
    ("103:130,*", "write it as '[x1:x2,y1:y2]'"),
    ("[a:b,*]", "is not 'first:last'"),
])
def test_a_bad_section_names_the_file_keyword_and_size(text, message):
    with pytest.raises(OptionError) as error:
        parse_section(text, (100, 130), source="raw.fits", keyword="BIASSEC")
    assert str(error.value).startswith(f"raw.fits: BIASSEC = {text!r} for a 130x100 image: ")
    assert message in str(error.value)


def _frame(rng, shape=(60, 50), overscan=(40, 50)):
    """A raw frame with a bias that drifts along the readout direction (rows), read noise, a
    few hot overscan pixels."""
    rows = np.arange(shape[0])[:, None]
    data = 1000 + 0.5 * rows + 0.002 * rows**2 + rng.normal(0, 4, shape)
    data[:, : overscan[0]] += 300  # the exposed pixels
    data[7, overscan[0] + 2] += 500  # a cosmic ray in the overscan
    return CCDData(data, unit="adu")


@pytest.mark.parametrize("median", [False, True])
def test_mean_and_median_are_ccdprocs(median):
    ccd = _frame(np.random.default_rng(1))
    ref = ccdproc.subtract_overscan(ccd, fits_section="[41:50,*]", median=median)
    ours, _ = Overscan(parse_section("[41:50,*]", ccd.shape),
                       method="median" if median else "mean").subtract(ccd.data)
    np.testing.assert_allclose(ours, ref.data, rtol=0, atol=1e-9)


@pytest.mark.parametrize("model", [models.Polynomial1D(1), models.Polynomial1D(2),
                                   models.Legendre1D(2), models.Chebyshev1D(3)])
def test_fits_without_rejection_are_ccdprocs(model):
    ccd = _frame(np.random.default_rng(2))
    ref = ccdproc.subtract_overscan(ccd, fits_section="[41:50,*]", model=model)
    function = {"Polynomial1D": "polynomial", "Legendre1D": "legendre",
                "Chebyshev1D": "chebyshev"}[type(model).__name__]
    ours, _ = Overscan(parse_section("[41:50,*]", ccd.shape), function=function,
                       order=model.degree + 1, niterate=0).subtract(ccd.data)
    np.testing.assert_allclose(ours, ref.data, rtol=0, atol=1e-7)


def test_overscan_rows_below_the_data_are_collapsed_per_column():
    """A region wider than tall (overscan rows): one value per column, ccdproc's rule."""
    rng = np.random.default_rng(3)
    data = 500 + np.arange(40)[None, :] * 0.3 + rng.normal(0, 2, (50, 40))
    ccd = CCDData(data, unit="adu")
    ref = ccdproc.subtract_overscan(ccd, fits_section="[*,45:50]", overscan_axis=None)
    ours, model = Overscan(parse_section("[*,45:50]", ccd.shape)).subtract(data)
    assert model.shape == (40,)
    np.testing.assert_allclose(ours, ref.data, atol=1e-9)


def test_irafs_rejection_drops_the_outlying_lines_and_refits():
    """IRAF's icfit: sigma = rms of the residuals of the points kept, points beyond
    low/high_reject sigmas dropped, refit, niterate times."""
    x = np.arange(100.0)
    values = 10 + 0.1 * x
    values[[20, 60]] += [50, -40]
    line = fit_with_rejection(values, "legendre", 2, 3.0, 3.0, 2)
    np.testing.assert_allclose(line, 10 + 0.1 * x, atol=1e-9)
    unrejected = fit_with_rejection(values, "legendre", 2, 3.0, 3.0, 0)
    assert np.abs(unrejected - (10 + 0.1 * x)).max() > 0.05
    one_sided = fit_with_rejection(values, "legendre", 2, 0.0, 3.0, 2)  # high only
    assert np.abs(one_sided - (10 + 0.1 * x)).max() > 0.05


def test_a_cubic_spline_follows_a_curved_bias():
    x = np.arange(200.0)
    curve = 1000 + 20 * np.sin(x / 40)
    fitted = fit_with_rejection(curve + np.random.default_rng(4).normal(0, 0.5, 200),
                                "spline3", 4, 3.0, 3.0, 1)
    assert np.abs(fitted - curve).max() < 0.6


def test_saao_frame_is_overscan_subtracted_and_trimmed_as_ccdproc_does(saao):
    """The real frame's own BIASSEC and TRIMSEC (written with blanks: '[   4:  13,   1: 520]')."""
    biassec, trimsec = saao.header["BIASSEC"], saao.header["TRIMSEC"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for median in (False, True):
            ref = ccdproc.trim_image(ccdproc.subtract_overscan(
                saao, fits_section=biassec, median=median), fits_section=trimsec)
            ours, _ = Overscan(parse_section(biassec, saao.shape),
                               method="median" if median else "mean").subtract(saao.data)
            trimmed = ours[parse_section(trimsec, saao.shape).slices]
            assert trimmed.shape == ref.shape == (520, 512)
            np.testing.assert_array_equal(trimmed, ref.data)
        ref = ccdproc.subtract_overscan(saao, fits_section=biassec,
                                        model=models.Polynomial1D(2))
        ours, _ = Overscan(parse_section(biassec, saao.shape), function="polynomial", order=3,
                           niterate=0).subtract(saao.data)
        np.testing.assert_allclose(ours, ref.data, rtol=0, atol=1e-9)


def test_the_header_records_it_in_irafs_and_ccdprocs_keywords():
    section = parse_section("[103:130,*]", (100, 130))
    trim = parse_section("[1:100,1:100]", (100, 130))
    header = fits.Header()
    for key, value, comment in processing_cards(overscan=Overscan(section),
                                                model=np.full(100, 1000.5), trim=trim):
        header[key] = (value, comment)
    assert header["OVERSCAN"][13:] == "Overscan section is [103:130,1:100] with mean=1000.5"
    assert header["TRIM"][13:] == "Trim data section is [1:100,1:100]"
    assert header["CCDSEC"] == "[1:100,1:100]"
    assert header["SUBTRACT_OVERSCAN"].startswith("fits_section=[103:130,1:100]")
    assert header["CCDPROC"][13:] == "CCD processing done"


@pytest.mark.parametrize(("options", "message"), [
    (dict(method="mode"), "overscan method 'mode'"),
    (dict(function="cubic"), "overscan function 'cubic'"),
    (dict(function="legendre", order=0), "order 0 must be >= 1"),
])
def test_bad_overscan_options_are_errors(options, message):
    with pytest.raises(OptionError, match=message):
        Overscan(parse_section("[103:130,*]", (100, 130)), **options)


def test_a_processed_frame_read_in_bands_is_the_whole_frame_processed(tmp_path):
    from calstack.io.reader import open_frame, raw_buffer
    from calstack.processing.frames import ProcessedFrame, processing_for

    ccd = _frame(np.random.default_rng(5))
    path = tmp_path / "raw.fits"
    fits.PrimaryHDU(ccd.data.astype(np.float32), fits.Header(
        {"BIASSEC": "[41:50,*]", "TRIMSEC": "[1:40,3:58]"})).writeto(path)
    frame = open_frame(path)
    steps = processing_for(frame.header(), frame.shape, str(path), function="legendre",
                           order=3)
    processed = ProcessedFrame(frame, steps)
    assert processed.shape == (56, 40)
    out = np.empty(processed.shape, np.float32)
    for start in range(0, 56, 9):  # bands of 9 rows
        stop = min(start + 9, 56)
        processed.read_rows(start, stop, out[start:stop], raw_buffer([processed], 9, 40))
    # the overscan of the lines kept (3:58) fitted, as IRAF's ccdproc does
    kept = replace(steps.overscan, section=replace(steps.overscan.section, y0=2, y1=58))
    data = ccd.data.astype(np.float32).astype(np.float64)
    expected = data[2:58, :40] - kept.model(data)[:, None]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-3)
    processed.close()


def test_an_overscan_outside_the_frame_is_an_error_naming_file_and_keyword():
    from calstack.processing.frames import processing_for

    with pytest.raises(OptionError, match=r"raw.fits: BIASSEC = '\[41:60,\*\]' for a 50x60"):
        processing_for({"BIASSEC": "[41:60,*]"}, (60, 50), "raw.fits")
    assert not processing_for({"BIASSEC": "[41:50,*]", "OVERSCAN": "done"}, (60, 50), "x")
    assert processing_for({}, (60, 50), "x", overscan="[41:50,*]", trim=None).overscan


def test_reduce_subtracts_and_trims_every_raw_frame(tmp_path):
    """A raw night whose frames have 8 overscan columns (BIASSEC, TRIMSEC) and a bias offset of
    their own that only the overscan measures: every frame processed before its master is
    built, and the science frames calibrated within their uncertainty of the truth."""
    from calstack import simulate
    from calstack.catalog.index import ImageIndex
    from calstack.pipeline.calibrate import INDEX_KEYWORDS
    from calstack.pipeline.reduce import reduce_night

    night = simulate(tmp_path / "raw", preset="night", shape=(64, 48), n_lights=1, overscan=8,
                     seed=2)
    reduced = reduce_night(ImageIndex(tmp_path / "raw", keywords=INDEX_KEYWORDS, cache=False),
                           tmp_path / "out")
    processed = sorted((tmp_path / "out" / "processed").glob("*.fits"))
    assert len(processed) == 7 + 10 + 10  # biases, darks, flats; not the science frames
    header = fits.getheader(processed[0])
    assert header["OVERSCAN"][13:].startswith("Overscan section is [49:56,1:64] with mean=")
    assert header["TRIM"][13:] == "Trim data section is [1:48,1:64]"
    assert fits.getdata(reduced.masters[0].path).shape == (64, 48)
    for frame in reduced.frames:
        with fits.open(frame.path) as hdul:
            truth = fits.getdata(night.truth[f"light_{hdul[0].header['FILTER']}"])
            z = ((hdul[0].data - truth) / hdul["UNCERT"].data)[hdul["MASK"].data == 0]
            z = z[np.abs(z) < 8]
            assert abs(z.mean()) < 4 / np.sqrt(z.size) + 0.02
            assert 0.95 < z.std() < 1.05
            assert hdul[0].header["OVERSCAN"][13:].startswith("Overscan section is [49:56,1:64]")


def test_frames_of_one_size_with_other_sections_are_named_in_a_warning(tmp_path, caplog):
    from calstack.catalog.index import ImageIndex
    from calstack.pipeline.reduce import process_frames

    for i, biassec in enumerate(["[41:50,*]", "[41:50,*]", "[43:50,*]"]):
        fits.writeto(tmp_path / f"b{i}.fits", np.full((20, 50), 100.0, np.float32),
                     fits.Header({"IMAGETYP": "BIAS", "BIASSEC": biassec,
                                  "TRIMSEC": "[1:40,*]"}))
    with caplog.at_level("WARNING", logger="calstack"):
        written = process_frames(ImageIndex(tmp_path, cache=False).rows(), tmp_path / "out")
    assert len(written) == 3
    assert "b2.fits: overscan/trim sections ('[43:50,1:20]', '[1:40,1:20]') differ" in caplog.text
    assert "b0.fits's ('[41:50,1:20]', '[1:40,1:20]')" in caplog.text
    assert "b1.fits: overscan" not in caplog.text


@pytest.mark.parametrize(("method", "function", "order"), [
    ("mean", None, 1), ("median", None, 1), ("mean", "legendre", 3), ("mean", "spline3", 4)])
def test_the_overscans_variance_is_what_the_uncertainty_adds(method, function, order):
    """Measured over 300 overscans of pure read noise (16 columns, 100 lines), the variance of
    the subtracted model, per pixel, is :meth:`Overscan.variance_fraction` of the read noise's
    (the mean of 16: 1/16; the median: pi/32; a fit of p parameters to 100 lines: p/100 of it)."""
    rng = np.random.default_rng(4)
    overscan = Overscan(parse_section("[1:16,*]", (100, 16)), method=method, function=function,
                        order=order, niterate=0)
    subtracted = np.array([overscan.model(rng.normal(0, 1, (100, 16))) for _ in range(300)])
    measured = subtracted.var(axis=0).mean()
    assert measured == pytest.approx(overscan.variance_fraction(100), rel=0.12)
