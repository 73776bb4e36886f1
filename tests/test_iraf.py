"""IRAF's ``imcombine`` as the oracle: calstack's numbers, pixel for pixel (to float32 rounding),
wherever calstack claims IRAF's algorithm (percentile clip, ccdclip centred on the median or on
the mean, crreject, minmax, nkeep; masks). Each test group runs ``irafcl`` once on small stacks
in ``tmp_path``; without IRAF (Debian: ``apt-get install iraf iraf-noao``; ``.ci/run`` installs
it) the tests are skipped."""

import shutil
import subprocess

import numpy as np
import pytest
from astropy.io import fits

import calstack
from calstack.compat.iraf import iraf_masters

IRAFCL = shutil.which("irafcl")
pytestmark = pytest.mark.skipif(IRAFCL is None, reason="IRAF's irafcl is not installed "
                                "(apt-get install iraf iraf-noao)")

#: imcombine's parameters that every run sets (the rest are per run).
_DEFAULTS = dict(combine="average", reject="none", scale="none", zero="none", weight="none",
                 outtype="real", logfile="", nkeep=1, mclip=True, lsigma=3.0, hsigma=3.0,
                 pclip=-0.5, grow=0.0, gain="1.", rdnoise="0.", snoise="0.", blank=0.0)


def _value(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f'"{value}"' if isinstance(value, str) else repr(value)


def imcombine(folder, stack, runs, masks=None):
    """Run IRAF's imcombine on ``stack`` (N, H, W) once per dict of parameters in ``runs``, all in
    one ``irafcl`` call; ``masks`` (True = bad) go in as bad-pixel masks (BPM). Returns the
    outputs, one (H, W) array per run."""
    names = []
    for i, frame in enumerate(stack):
        header = fits.Header()
        if masks is not None:
            fits.writeto(folder / f"m{i:03d}.fits", masks[i].astype(np.int16), overwrite=True)
            header["BPM"] = f"m{i:03d}.fits"
        fits.writeto(folder / f"f{i:03d}.fits", frame.astype(np.float32), header, overwrite=True)
        names.append(f"f{i:03d}.fits")
    (folder / "frames.lis").write_text("\n".join(names) + "\n")
    calls = [("imcombine", f'"@frames.lis", "out{j}.fits"',
              {**_DEFAULTS, "masktype": "goodvalue" if masks is not None else "none",
               "maskvalue": 0, **run}) for j, run in enumerate(runs)]
    return [fits.getdata(path).astype(np.float64)
            for path in _irafcl(folder, ["images", "immatch"], calls)]


def _irafcl(folder, packages, calls):
    """One ``irafcl`` run in ``folder``: load ``packages``, then each ``(task, arguments,
    parameters)`` of ``calls`` writing ``out<j>.fits``; the outputs' paths (each asserted)."""
    lines = list(packages)
    for j, (task, arguments, params) in enumerate(calls):
        (folder / f"out{j}.fits").unlink(missing_ok=True)
        options = ", ".join(f"{k}={_value(v)}" for k, v in params.items())
        lines.append(f"{task} ({arguments}, {options})")
    (folder / "script.cl").write_text("\n".join([*lines, "logout", ""]))
    done = subprocess.run([IRAFCL, "-f", "script.cl"], cwd=folder, capture_output=True,
                          text=True, timeout=120, check=False)
    paths = [folder / f"out{j}.fits" for j in range(len(calls))]
    for path, (task, _, _) in zip(paths, calls, strict=True):
        assert path.exists(), f"{task} wrote no {path.name}:\n{done.stdout}\n{done.stderr}"
    return paths


def darks(n, shape=(16, 16), seed=0, level=100.0, gain=1.0, read_noise=3.0, rays=0.03):
    """Dark-like frames with the noise of the model and cosmic rays (a fraction ``rays``)."""
    rng = np.random.default_rng(seed + n)
    sigma = np.sqrt((read_noise / gain) ** 2 + level / gain)
    stack = rng.normal(level, sigma, (n, *shape))
    hits = rng.random(stack.shape) < rays
    stack[hits] += rng.uniform(300, 3000, hits.sum())
    return stack.astype(np.float32)


def ours(stack, masks=None, **options):
    return calstack.combine(list(stack), masks=None if masks is None else list(masks),
                            dtype="float64", **options).data


def assert_same(calstack_data, iraf_data):
    """Equal to IRAF's float32 arithmetic: one value rejected differently moves a pixel by
    ~1e-3 of its level, float32 rounding by ~1e-7 (up to 1.3e-5 where IRAF's mean ccdclip
    subtracts rejected cosmic rays from its float32 running sum)."""
    np.testing.assert_allclose(calstack_data, iraf_data, rtol=3e-5, atol=0)


@pytest.mark.parametrize("n", [3, 4, 5, 10, 25])
def test_percentile_clip_is_irafs_pclip(tmp_path, n):
    """pclip=-0.5, average and median, without and with bad-pixel masks (the rank offset fixed
    from the number of frames)."""
    stack = darks(n)
    masks = np.random.default_rng(n).random(stack.shape) < 0.15
    runs = [dict(reject="pclip", combine=c) for c in ("average", "median")]
    plain = imcombine(tmp_path, stack, runs)
    masked = imcombine(tmp_path, stack, runs, masks=masks)
    for method, expected, expected_masked in zip(("average", "median"), plain, masked,
                                                 strict=True):
        options = dict(rejection="percentile_clip", pclip=-0.5, sigma=3.0, method=method)
        assert_same(ours(stack, **options), expected)
        assert_same(ours(stack, masks, **options), expected_masked)


@pytest.mark.parametrize("n", [3, 5, 10, 25])
def test_ccdclip_crreject_and_minmax_are_irafs(tmp_path, n):
    """ccdclip centred on the median (mclip=yes) and on the mean without the extremes
    (mclip=no), crreject (high values only), minmax (nlow=nhigh=1): gain 1, read noise 3."""
    stack = darks(n)
    noise = dict(gain="1.", rdnoise="3.")
    runs = [dict(reject="ccdclip", mclip=True, **noise),
            dict(reject="ccdclip", mclip=False, **noise),
            dict(reject="crreject", **noise),
            dict(reject="minmax", nlow=1, nhigh=1)]
    median_c, mean_c, crreject, minmax = imcombine(tmp_path, stack, runs)
    model = dict(rejection="ccdclip", gain=1.0, read_noise=3.0, maxiters=None)
    assert_same(ours(stack, cenfunc="median", **model), median_c)
    assert_same(ours(stack, cenfunc="mean", **model), mean_c)
    assert_same(ours(stack, sigma_lower=1e30, sigma_upper=3.0, **model), crreject)
    assert_same(ours(stack, nlow=1, nhigh=1), minmax)


@pytest.mark.parametrize("n", [3, 5, 10, 25])
def test_avsigclip_is_irafs(tmp_path, n):
    """avsigclip about the median (mclip=yes) and about the mean without the extremes
    (mclip=no): one sigma per image line; with bad-pixel masks too; nkeep=-1 rejects at most
    one value."""
    stack = darks(n, shape=(12, 20))
    masks = np.random.default_rng(n).random(stack.shape) < 0.15
    runs = [dict(reject="avsigclip", mclip=True), dict(reject="avsigclip", mclip=False),
            dict(reject="avsigclip", mclip=True, nkeep=-1)]
    median_c, mean_c, reject1 = imcombine(tmp_path, stack, runs)
    masked_median, masked_mean, _ = imcombine(tmp_path, stack, runs, masks=masks)
    model = dict(rejection="avsigclip", sigma=3.0, maxiters=None)
    assert_same(ours(stack, cenfunc="median", **model), median_c)
    assert_same(ours(stack, cenfunc="mean", **model), mean_c)
    assert_same(ours(stack, cenfunc="median", nkeep=-1, **model), reject1)
    assert_same(ours(stack, masks, cenfunc="median", **model), masked_median)
    assert_same(ours(stack, masks, cenfunc="mean", **model), masked_mean)


def test_grow_is_irafs(tmp_path):
    """grow: the neighbours within the radius of every rejected value go too (radius 1, 1.5 and
    2 with ccdclip; 1 with avsigclip and pclip; 1 and 2 with minmax, whose every pixel loses its
    extremes, so that a third (radius 1) or 95 % (radius 2) of the pixels lose every value and
    nkeep=1 keeps the combine before growing there; nkeep=0 leaves them empty). calstack
    combines in bands of a few rows, reading grow's halo."""
    stack = darks(6, shape=(40, 24), rays=0.01)
    noise = dict(reject="ccdclip", rdnoise="3.")
    runs = [dict(grow=1.0, **noise), dict(grow=1.5, **noise), dict(grow=2.0, **noise),
            dict(reject="avsigclip", grow=1.0), dict(reject="pclip", grow=1.0),
            dict(reject="minmax", nlow=1, nhigh=1, grow=1.0),
            dict(reject="minmax", nlow=1, nhigh=1, grow=2.0)]
    outputs = imcombine(tmp_path, stack, runs)
    model = dict(rejection="ccdclip", gain=1.0, read_noise=3.0, maxiters=None)
    bands = dict(mem_limit="8.5MB")  # 8 MiB headroom, then a few rows a band
    for grow, expected in zip((1.0, 1.5, 2.0), outputs[:3], strict=False):
        assert_same(ours(stack, grow=grow, **model, **bands), expected)
    assert_same(ours(stack, rejection="avsigclip", maxiters=None, grow=1.0, **bands), outputs[3])
    assert_same(ours(stack, rejection="percentile_clip", grow=1.0, **bands), outputs[4])
    for grow, expected, emptied in zip((1.0, 2.0), outputs[5:], (0.3385, 0.95), strict=True):
        assert_same(ours(stack, nlow=1, nhigh=1, grow=grow, **bands), expected)
        without = ours(stack, nlow=1, nhigh=1, grow=grow, nkeep=0)
        assert np.isnan(without).mean() == pytest.approx(emptied, abs=1e-3)
        assert_same(without[np.isfinite(without)], expected[np.isfinite(without)])


@pytest.mark.parametrize("n", [5, 10, 25])
def test_sigclip_is_irafs(tmp_path, n):
    """IRAF's sigclip, about the median (mclip=yes) and the mean without the extremes
    (mclip=no): each pixel's std (ddof=1) about its center, re-estimated each pass, rejected
    values staying rejected; with masks."""
    stack = darks(n, shape=(12, 20))
    masks = np.random.default_rng(n).random(stack.shape) < 0.15
    runs = [dict(reject="sigclip", mclip=True), dict(reject="sigclip", mclip=False)]
    median_c, mean_c = imcombine(tmp_path, stack, runs)
    masked_median, masked_mean = imcombine(tmp_path, stack, runs, masks=masks)
    model = dict(rejection="sigclip", sigma=3.0, maxiters=None)
    assert_same(ours(stack, cenfunc="median", **model), median_c)
    assert_same(ours(stack, cenfunc="mean", **model), mean_c)
    assert_same(ours(stack, masks, cenfunc="median", **model), masked_median)
    assert_same(ours(stack, masks, cenfunc="mean", **model), masked_mean)
    # a pixel's std includes its outlier: (N - 1) / sqrt(N) < 3 below 11 frames, no rejection
    plain = np.abs(ours(stack) - median_c).max()
    assert plain > 100 if n > 10 else plain < 1e-3


def test_nkeep_is_irafs(tmp_path):
    """nkeep=3 with a tight ccdclip (lsigma=hsigma=0.5): IRAF gives back the values nearest the
    center; nkeep=-2 rejects at most two."""
    stack = darks(8)
    runs = [dict(reject="ccdclip", lsigma=0.5, hsigma=0.5, nkeep=k, rdnoise="3.")
            for k in (3, -2)]
    keep3, reject2 = imcombine(tmp_path, stack, runs)
    model = dict(rejection="ccdclip", gain=1.0, read_noise=3.0, sigma=0.5, maxiters=None)
    assert_same(ours(stack, nkeep=3, **model), keep3)
    assert_same(ours(stack, nkeep=-2, **model), reject2)


def flats(n, shape=(16, 16), seed=0, gain=1.0, read_noise=5.0):
    """Flat-like frames of levels 8000..12000 ADU with the model's noise and cosmic rays."""
    rng = np.random.default_rng(seed + n)
    levels = rng.uniform(8000, 12000, n)
    stack = rng.normal(levels[:, None, None], np.sqrt((read_noise / gain) ** 2 + levels / gain)[
        :, None, None], (n, *shape))
    hits = rng.random(stack.shape) < 0.03
    stack[hits] += rng.uniform(2000, 20000, hits.sum())
    return stack.astype(np.float32)


@pytest.mark.parametrize("n", [5, 10])
def test_ccdclip_on_scaled_frames_is_irafs(tmp_path, n):
    """Frames scaled to a common level (and offset): the noise model of each frame at its
    unscaled level (IRAF with sigscale=0.1, its default: scale factors this far from 1 are
    corrected for; sigscale=0 turns the correction off). The factors are given as numbers
    (IRAF's median statistic is the lower middle value, calstack's the middle)."""
    stack = flats(n)
    levels = np.median(stack, axis=(1, 2))
    factors = levels[0] / levels
    offsets = np.linspace(-50, 50, n)
    (tmp_path / "scales.txt").write_text("".join(f"{float(v)!r}\n" for v in factors))
    (tmp_path / "zeros.txt").write_text("".join(f"{float(v)!r}\n" for v in offsets))
    noise = dict(reject="ccdclip", gain="1.", rdnoise="5.", sigscale=0.1, scale="@scales.txt")
    scaled, offset = imcombine(tmp_path, stack, [noise, dict(zero="@zeros.txt", **noise)])
    model = dict(rejection="ccdclip", gain=1.0, read_noise=5.0, maxiters=None, scale=factors)
    assert_same(ours(stack, **model), scaled)
    # IRAF adds a file's zero offsets before scaling: value = (raw + offset) * factor
    assert_same(ours(stack, zero=-offsets * factors, **model), offset)
    # avsigclip: each value's Poisson level in its frame's units
    avsig = dict(reject="avsigclip", sigscale=0.1, scale="@scales.txt")
    (scaled_av,) = imcombine(tmp_path, stack, [avsig])
    assert_same(ours(stack, rejection="avsigclip", maxiters=None, scale=factors), scaled_av)
    (scaled_sig,) = imcombine(tmp_path, stack, [dict(avsig, reject="sigclip")])
    assert_same(ours(stack, rejection="sigclip", maxiters=None, scale=factors), scaled_sig)


def test_scale_to_first_is_irafs(tmp_path):
    """IRAF's reference frame: scale factors and zero offsets normalised to the first image
    (scale=mean, and scale=mean with zero=mean, with ccdclip; zero=mean alone without
    rejection), as calstack's scale_to="first". (IRAF's median statistic is the lower middle
    value, so mean it is. With zero offsets alone IRAF's ccdclip evaluates the noise model at
    the offset level, since only scale factors beyond sigscale make it per frame; calstack
    takes each frame's own level.)"""
    stack = flats(5)
    noise = dict(reject="ccdclip", gain="1.", rdnoise="5.")
    runs = [dict(scale="mean", **noise), dict(scale="mean", zero="mean", **noise),
            dict(zero="mean")]
    outputs = imcombine(tmp_path, stack, runs)
    model = dict(rejection="ccdclip", gain=1.0, read_noise=5.0, maxiters=None, scale_to="first")
    for given, expected in zip([dict(scale="mean"), dict(scale="mean", zero="mean")],
                               outputs, strict=False):
        assert_same(ours(stack, **given, **model), expected)
    assert_same(ours(stack, zero="mean", scale_to="first"), outputs[2])
    assert abs(np.median(outputs[0]) / np.median(stack[0]) - 1) < 0.01


def iraf_ccdproc(folder, raw, header, runs):
    """Run IRAF's ``ccdproc`` (overscan and trim only, sections from the header) on ``raw``
    once per dict of fit parameters in ``runs``, in one ``irafcl`` call; the outputs."""
    fits.writeto(folder / "raw.fits", raw.astype(np.float32), header, overwrite=True)
    fixed = dict(ccdtype="", max_cache=0, noproc=False, fixpix=False, overscan=True, trim=True,
                 zerocor=False, darkcor=False, flatcor=False, illumcor=False, fringecor=False,
                 readcor=False, scancor=False, readaxis="line", biassec="image",
                 trimsec="image", interactive=False, sample="*", naverage=1, low_reject=3.0,
                 high_reject=3.0, grow=0.0)
    calls = [("ccdproc", f'"raw.fits", output="out{j}.fits"', {**fixed, **run})
             for j, run in enumerate(runs)]
    return [(fits.getdata(path).astype(np.float64), fits.getheader(path))
            for path in _irafcl(folder, ["noao", "imred", "ccdred"], calls)]


def test_overscan_and_trim_are_irafs_ccdproc(tmp_path):
    """IRAF's ccdproc on a raw frame with BIASSEC=[103:130,*] (as IRAF's artobs frames have)
    and TRIMSEC: the overscan fitted by Legendre, Chebyshev and cubic-spline functions with
    rejection (a cosmic ray and a hot line in the overscan), trimmed. calstack reads the same
    file through its raw-frame reader, band by band."""
    from calstack.io.reader import open_frame, raw_buffer
    from calstack.processing.frames import ProcessedFrame, processing_for

    rng = np.random.default_rng(1)
    rows = np.arange(100)[:, None]
    raw = 1000 + 0.5 * rows + 0.002 * rows**2 + rng.normal(0, 4, (100, 130))
    raw[:, :100] += 300
    raw[7, 105] += 500
    raw[60, 102:130] += 40  # a line whose overscan value the fit rejects
    header = fits.Header({"BIASSEC": "[103:130,*]", "TRIMSEC": "[1:100,3:98]",
                          "IMAGETYP": "object"})
    runs = [dict(function="legendre", order=1, niterate=1),
            dict(function="legendre", order=3, niterate=2),
            dict(function="chebyshev", order=2, niterate=2),
            dict(function="spline3", order=3, niterate=2),
            dict(function="spline1", order=2, niterate=1)]
    outputs = iraf_ccdproc(tmp_path, raw, header, runs)
    for run, (iraf, iraf_header) in zip(runs, outputs, strict=True):
        frame = open_frame(tmp_path / "raw.fits")
        steps = processing_for(frame.header(), frame.shape, "raw.fits", **run)
        processed = ProcessedFrame(frame, steps)
        ours = np.empty(processed.shape, np.float32)
        for start in range(0, processed.shape[0], 32):
            stop = min(start + 32, processed.shape[0])
            processed.read_rows(start, stop, ours[start:stop], raw_buffer([processed], 32, 100))
        cards = {key: value for key, value, _ in processed.cards()}
        processed.close()
        assert ours.shape == iraf.shape == (96, 100)
        # float32 rounding of values of ~1300; IRAF solves its spline in single precision:
        # within 4e-6 of the overscan level (1030) there
        atol = 4e-3 if run["function"].startswith("spline") else 0
        np.testing.assert_allclose(ours, iraf, rtol=2e-6, atol=atol, err_msg=str(run))
        # IRAF's words, IRAF's numbers, after IRAF's time stamp ('Dec  3 16:21 ')
        ours_text, ours_mean = cards["OVERSCAN"][13:].split("mean=")
        iraf_text, iraf_mean = iraf_header["OVERSCAN"][13:].split("mean=")
        assert ours_text == iraf_text
        assert float(ours_mean) == pytest.approx(float(iraf_mean), abs=1.5e-3)  # its 7 digits
        assert cards["TRIM"][13:] == iraf_header["TRIM"][13:]
        assert cards["CCDSEC"] == iraf_header["CCDSEC"]
        assert (cards["LTV1"], cards["LTV2"]) == (iraf_header.get("LTV1", 0.0),
                                                  iraf_header.get("LTV2", 0.0))


#: ``ccdproc``'s parameters for the artobs night: overscan by a Legendre line, trim, and each
#: correction switched on as its master exists (zerocombine's and darkcombine's inputs are
#: processed without the masters not yet made).
_CCDRED = """set imtype = "fits"
noao
imred
ccdred
ccdtest
ccdred.instrument = ""
ccdred.ssfile = "subsets"
ccdred.logfile = ""
ccdred.verbose = no
ccdred.backup = ""
ccdred.pixeltype = "real real"
ccdproc.ccdtype = ""
ccdproc.fixpix = no
ccdproc.overscan = yes
ccdproc.trim = yes
ccdproc.zerocor = no
ccdproc.darkcor = no
ccdproc.flatcor = no
ccdproc.illumcor = no
ccdproc.fringecor = no
ccdproc.readcor = no
ccdproc.scancor = no
ccdproc.biassec = "image"
ccdproc.trimsec = "image"
ccdproc.zero = "masters/Zero"
ccdproc.dark = "masters/Dark"
ccdproc.flat = "masters/FlatV"
ccdproc.interactive = no
ccdproc.function = "legendre"
ccdproc.order = 1
ccdproc.sample = "*"
ccdproc.naverage = 1
ccdproc.niterate = 1
ccdproc.low_reject = 3.
ccdproc.high_reject = 3.
ccdproc.grow = 0.
artobs.overwrite = yes
artobs ("zero1", 0., "zero", seed=11)
artobs ("zero2", 0., "zero", seed=12)
artobs ("zero3", 0., "zero", seed=13)
artobs ("dark1", 100., "dark", seed=21)
artobs ("dark2", 100., "dark", seed=22)
artobs ("dark3", 100., "dark", seed=23)
artobs.filter = "V"
artobs.skyrate = 2000.
artobs ("flat1", 1., "flat", seed=31)
artobs ("flat2", 1., "flat", seed=32)
artobs ("flat3", 1., "flat", seed=33)
artobs.skyrate = 100.
artobs ("science/obj1", 10., "object", imdata="dev$pix", seed=41)
imcopy ("science/obj1", "out0")
zerocombine ("zero1,zero2,zero3", output="masters/Zero", combine="average", reject="none", ccdtype="", process=yes, delete=no)
ccdproc.zerocor = yes
darkcombine ("dark1,dark2,dark3", output="masters/Dark", combine="average", reject="none", ccdtype="", process=yes, delete=no, scale="none")
ccdproc.darkcor = yes
flatcombine ("flat1,flat2,flat3", output="masters/FlatV", combine="average", reject="none", ccdtype="", process=yes, delete=no, subsets=no, scale="none")
ccdproc.flatcor = yes
ccdproc ("out0")
logout
"""


def test_ccdproc_task_on_artobs_frames_is_irafs(tmp_path):
    """A night made by IRAF's own ``artobs`` (ccdred's test observations: int16 frames of
    132x100 with BIASSEC=[103:130,*], TRIMSEC=[3:98,3:98], a zero level and dark current with
    slopes, a flat response slope, the dev$pix image as the object): IRAF combines its zero,
    dark and V flat masters and runs ``ccdproc`` on the object (overscan, trim, zero, dark
    scaled by exposure, flat); ``calstack calibrate`` with IRAF's masters gives the same
    pixels, to float32 rounding, and the same records."""
    (tmp_path / "science").mkdir()
    (tmp_path / "masters").mkdir()
    (tmp_path / "script.cl").write_text(_CCDRED)
    done = subprocess.run([IRAFCL, "-f", "script.cl"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert (tmp_path / "out0.fits").exists(), f"{done.stdout}\n{done.stderr}"
    iraf = fits.getdata(tmp_path / "out0.fits").astype(np.float64)
    iraf_header = fits.getheader(tmp_path / "out0.fits")
    assert iraf_header["FLATCOR"].endswith("Flat field image is masters/FlatV with scale=1999.273")
    (frame,) = calstack.calibrate(
        tmp_path / "science", tmp_path / "masters", tmp_path / "calibrated", cache=False,
        electrons=False, gain=1.0, read_noise=5.0,
        overscan_fit=dict(function="legendre", order=1, niterate=1, low_reject=3.0,
                          high_reject=3.0))
    assert frame.describe() == ("bias Zero.fits, dark Dark.fits x0.1 (scaled by EXPTIME), "
                                "flat FlatV.fits")
    ours = fits.getdata(frame.path).astype(np.float64)
    assert ours.shape == iraf.shape == (96, 96)
    assert 990 < iraf.min() < iraf.max() < 1110  # sky and dev$pix's galaxy, calibrated
    np.testing.assert_allclose(ours, iraf, rtol=1e-6, atol=0)
    header = fits.getheader(frame.path)
    for key in ("OVERSCAN", "TRIM"):  # IRAF's words after IRAF's time stamp ('Dec  4 18:16 ')
        assert header[key][13:].split("mean=")[0] == iraf_header[key][13:].split("mean=")[0]
    assert float(header["OVERSCAN"].split("mean=")[1]) == pytest.approx(
        float(iraf_header["OVERSCAN"].split("mean=")[1]), abs=1e-3)
    assert (header["CCDSEC"], header["LTV1"], header["LTV2"]) == (
        iraf_header["CCDSEC"], iraf_header["LTV1"], iraf_header["LTV2"])
    assert header["DARKCOR"].endswith("Dark.fits, scale 0.1")
    assert float(header["FLATCOR"].rsplit("scale ", 1)[1]) == pytest.approx(
        float(iraf_header["FLATCOR"].rsplit("scale=", 1)[1]), rel=1e-5)  # the flat's mean


def test_irafs_ccdproc_task_applies_calstack_masters_as_calstack_does(tmp_path):
    """The simulator's raw night (uint16, BZERO) and calstack's masters of it: IRAF's
    ``ccdproc`` (zero, dark scaled by exposure, flat by its mean) on the science frames equals
    ``calstack.calibrate`` in ADU, to float32 rounding. IRAF is given copies of the masters
    with its keywords that say they are processed, so it applies them as they are."""
    night = tmp_path / "night"
    calstack.simulate(night, preset="night", shape=(64, 48), filters=["R"], n_lights=2,
                      seed=6)
    calstack.build_night(calstack.ImageIndex(night, cache=False), tmp_path / "masters",
                         subtract_bias=True, subtract_dark=True)
    names = iraf_masters(tmp_path / "masters", tmp_path, {
        "zero": "combined_bias.fit", "dark": "combined_dark_120.000.fit",
        "flat": "combined_flat_R.fit"})
    lights = sorted(night.glob("light-*.fits"))
    for j, light in enumerate(lights):
        (tmp_path / f"in{j}.fits").write_bytes(light.read_bytes())
    params = dict(ccdtype="", max_cache=0, noproc=False, fixpix=False, overscan=False,
                  trim=False, zerocor=True, darkcor=True, flatcor=True, illumcor=False,
                  fringecor=False, readcor=False, scancor=False, **names)
    ccdred = ['set imtype = "fits"', "noao", "imred", "ccdred", 'ccdred.instrument = ""',
              'ccdred.pixeltype = "real real"', 'ccdred.logfile = ""', 'ccdred.backup = ""',
              'ccdred.ssfile = "subsets"']
    outputs = _irafcl(tmp_path, ccdred, [("ccdproc", f'"in{j}.fits", output="out{j}.fits"',
                                          params) for j in range(len(lights))])
    frames = calstack.calibrate(lights, tmp_path / "masters", tmp_path / "ours", cache=False,
                                electrons=False)
    for frame, theirs in zip(frames, outputs, strict=True):
        ours = fits.getdata(frame.path).astype(np.float64)
        iraf = fits.getdata(theirs).astype(np.float64)
        assert 1000 < np.median(iraf) < 3000  # the sky, in ADU
        np.testing.assert_allclose(ours, iraf, rtol=1e-6, atol=0)
