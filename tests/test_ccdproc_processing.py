"""The ccdproc processing drop-ins (``calstack.ccdproc_compat``): ccdproc's numbers, option by
option, and its exceptions, types and messages (issue 16, item 7)."""

import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.modeling import models
from astropy.nddata import CCDData, StdDevUncertainty

from calstack import ccdproc_compat as ours

ccdproc = pytest.importorskip("ccdproc")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _ccd(rng, shape=(30, 40), level=1000.0, unit="adu", **meta):
    data = level + rng.normal(0, 5, shape)
    return CCDData(data, unit=unit, meta=dict(meta),
                   uncertainty=StdDevUncertainty(np.full(shape, 2.0)))


def _same(a, b):
    np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-12)
    assert a.unit == b.unit
    assert a.shape == b.shape
    if b.uncertainty is not None:
        np.testing.assert_allclose(a.uncertainty.array, b.uncertainty.array, rtol=1e-12)
    assert (a.mask is None) == (b.mask is None)
    if b.mask is not None:
        np.testing.assert_array_equal(a.mask, b.mask)


@pytest.mark.parametrize("kwargs", [
    dict(fits_section="[31:40, :]"),
    dict(fits_section="[31:40,*]", median=True),
    dict(fits_section="[:, 25:30]", overscan_axis=None),
    dict(fits_section="[31:40, :]", model=models.Polynomial1D(2)),
    dict(fits_section="[31:40, :]", model=models.Legendre1D(1), median=True),
])
def test_subtract_overscan_is_ccdprocs(kwargs):
    ccd = _ccd(np.random.default_rng(1))
    _same(ours.subtract_overscan(ccd, **kwargs), ccdproc.subtract_overscan(ccd, **kwargs))


def test_subtract_overscan_from_an_image_and_its_errors():
    ccd = _ccd(np.random.default_rng(2))
    region = ccd[:, 30:40]
    _same(ours.subtract_overscan(ccd, overscan=region),
          ccdproc.subtract_overscan(ccd, overscan=region))
    for bad in ({}, dict(overscan=region, fits_section="[31:40, :]"),
                dict(overscan=region.data), dict(fits_section=5)):
        with pytest.raises(TypeError) as theirs:
            ccdproc.subtract_overscan(ccd, **bad)
        with pytest.raises(TypeError, match="") as mine:
            ours.subtract_overscan(ccd, **bad)
        assert str(mine.value) == str(theirs.value)


@pytest.mark.parametrize("section", ["[1:30, :]", "[5:25,3:28]", None])
def test_trim_image_is_ccdprocs(section):
    ccd = _ccd(np.random.default_rng(3))
    _same(ours.trim_image(ccd, fits_section=section),
          ccdproc.trim_image(ccd, fits_section=section))


def test_bias_dark_gain_and_flat_are_ccdprocs():
    rng = np.random.default_rng(4)
    ccd = _ccd(rng, exptime=60.0)
    bias = _ccd(rng, level=990.0)
    dark = _ccd(rng, level=30.0, exptime=120.0)
    flat = _ccd(rng, level=15000.0)
    flat.mask = np.zeros(flat.shape, bool)
    flat.mask[3, 4] = True
    _same(ours.subtract_bias(ccd, bias), ccdproc.subtract_bias(ccd, bias))
    for kwargs in (dict(exposure_time="exptime", exposure_unit=u.s, scale=True),
                   dict(dark_exposure=120 * u.s, data_exposure=60 * u.s),
                   dict(exposure_time=ccdproc.Keyword("exptime", unit=u.s), scale=True)):
        _same(ours.subtract_dark(ccd, dark, **kwargs), ccdproc.subtract_dark(ccd, dark, **kwargs))
    gain = 1.5 * u.electron / u.adu
    _same(ours.gain_correct(ccd, gain), ccdproc.gain_correct(ccd, gain))
    _same(ours.gain_correct(ccd, 1.5, gain_unit="electron/adu"),
          ccdproc.gain_correct(ccd, 1.5, gain_unit="electron/adu"))
    for kwargs in ({}, dict(min_value=14990.0), dict(norm_value=15000.0)):
        _same(ours.flat_correct(ccd, flat, **kwargs), ccdproc.flat_correct(ccd, flat, **kwargs))


def test_ccd_process_is_ccdprocs():
    rng = np.random.default_rng(5)
    raw = _ccd(rng, shape=(30, 50), exptime=60.0)
    raw.uncertainty = None
    bias = _ccd(rng, shape=(30, 40), level=990.0)
    dark = _ccd(rng, shape=(30, 40), level=30.0, exptime=120.0)
    flat = _ccd(rng, shape=(30, 40), level=15000.0)
    options = dict(oscan="[41:50, :]", trim="[1:40, :]", error=True,
                   gain=1.5 * u.electron / u.adu, readnoise=5 * u.electron, master_bias=bias,
                   dark_frame=dark, master_flat=flat, exposure_key="exptime",
                   exposure_unit=u.s, dark_scale=True, gain_corrected=False,
                   oscan_model=models.Polynomial1D(1))
    _same(ours.ccd_process(raw, **options), ccdproc.ccd_process(raw, **options))
    expected = ccdproc.ccd_process(raw, oscan="[41:50, :]", trim="[1:40, :]")
    result = ours.ccd_process(raw, oscan="[41:50, :]", trim="[1:40, :]")
    _same(result, expected)
    assert dict(result.meta) == dict(expected.meta)  # each step recorded, as ccdproc does


@pytest.mark.parametrize(("kwargs", "error"), [
    (dict(error=True), ValueError),
    (dict(oscan=5), TypeError),
    (dict(trim=5), TypeError),
    (dict(gain=1.5), TypeError),
    (dict(master_bias=np.zeros((30, 40))), TypeError),
])
def test_ccd_process_raises_ccdprocs_errors(kwargs, error):
    raw = _ccd(np.random.default_rng(6))
    with pytest.raises(error) as theirs:
        ccdproc.ccd_process(raw, **kwargs)
    with pytest.raises(error) as mine:
        ours.ccd_process(raw, **kwargs)
    assert str(mine.value) == str(theirs.value)
