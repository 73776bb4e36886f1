"""The HTML report: anomalous frames flagged, pictures with content, self-contained, and what
headless Chromium makes of it."""

import base64
import dataclasses
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

import calstack
from calstack.cli import main
from calstack.errors import FileChangedError, OptionError
from calstack.io.sampling import grid_step, read_block_min, read_grid
from calstack.kernels.statistics import median_and_robust_std
from calstack.options import RECIPE
from calstack.pipeline.groups import combine_groups
from calstack.stacking.anomalies import flag_frames
from calstack.viz.report import Report, write_report

TRAIL, LEAK = 2, 5  # the frames spoilt by a satellite trail and by a light leak


@pytest.fixture(scope="module")
def spoilt(tmp_path_factory):
    """Eight simulated 90 s darks, 128x128; frame 3 has a satellite trail, frame 6 a light leak."""
    night = calstack.simulate(tmp_path_factory.mktemp("spoilt"), preset="te", shape=(128, 128),
                              n_darks=8)
    frames = [str(p) for p in night.frames]
    with fits.open(frames[TRAIL], mode="update") as hdul:
        x = np.arange(128)
        for dy in (0, 1):
            hdul[0].data[(10 + 0.7 * x).astype(int) + dy, x] += 300.0
    with fits.open(frames[LEAK], mode="update") as hdul:
        hdul[0].data += np.linspace(0, 40, 128, dtype=np.float32)[None, :]  # a gradient
    return frames


@pytest.fixture(scope="module")
def spoilt_report(spoilt, tmp_path_factory):
    report = Report(title="spoilt darks")
    section = report.add(calstack.combine(spoilt, **RECIPE))
    path = report.write(tmp_path_factory.mktemp("report") / "spoilt.html")
    return section, path


def _pngs(text):
    return [Image.open(io.BytesIO(base64.b64decode(data)))
            for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_trail_and_light_leak_are_flagged(spoilt_report):
    section, path = spoilt_report
    flagged = {row.name: row.flags for row in section.flagged}
    assert sorted(flagged) == ["dark-090.000s-003.fits", "dark-090.000s-006.fits"]
    trail, leak = flagged["dark-090.000s-003.fits"], flagged["dark-090.000s-006.fits"]
    assert len(trail) == 1
    assert trail[0].startswith("rejected fraction")  # its level is normal
    assert any(reason.startswith("level (median)") for reason in leak)
    rows = section.frames
    assert rows[LEAK].median == pytest.approx(rows[0].median + 20, abs=1.5)  # mean of the ramp
    assert rows[TRAIL].rejected > 5 * rows[0].rejected  # 256 trail pixels of 16384
    text = path.read_text()
    top = text[: text.index('id="masters"')]  # the flags come before everything else
    assert "Anomalous frames: 2" in top
    assert "dark-090.000s-003.fits" in top
    assert "dark-090.000s-006.fits" in top
    assert text.count('<tr class="flagged">') == 2


def test_noise_reduction_is_measured_against_sqrt_n(spoilt):
    clean = [f for i, f in enumerate(spoilt) if i not in (TRAIL, LEAK)]
    section = Report().add(calstack.combine(clean, **RECIPE))
    assert section.expected_reduction == pytest.approx(np.sqrt(6))
    assert section.reduction == pytest.approx(np.sqrt(6), rel=0.1)
    assert section.frame_noise == pytest.approx(np.sqrt(3.0**2 + 0.2 * 90), rel=0.05)
    assert not section.flagged


def test_pictures_have_size_content_and_one_stretch(spoilt_report):
    section, path = spoilt_report
    compare, counts, histogram = _pngs(path.read_text())
    assert compare.size == (800, 336)
    assert counts.size == histogram.size == (400, 336)
    for picture in (compare, counts, histogram):
        assert np.asarray(picture.convert("L"), float).std() > 20  # not blank
    # the frame (left) and the master (right) share the frame's stretch, so the master looks
    # smoother: in the middle rows, the image columns of the master's half have far less
    # pixel-to-pixel contrast
    band = np.asarray(compare.convert("L"), float)[100:250]
    contrast = np.abs(np.diff(band, axis=1)).mean(axis=0)
    left, right = contrast[:400], contrast[400:]
    assert (left > 5).sum() > 120  # two noisy image panels
    assert (right > 5).sum() > 120
    assert np.median(left[left > 5]) > 1.7 * np.median(right[right > 5])
    assert section.short_blocks > 0.01  # the count map shows rejected values


def test_report_is_self_contained(spoilt_report):
    _, path = spoilt_report
    text = path.read_text()
    assert len(re.findall(r"<img ", text)) == 3
    assert len(_pngs(text)) == 3
    assert re.findall(r'src="([^"]{0,11})', text) == ["data:image/"] * 3
    outside = re.sub(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', "", text)
    for forbidden in ("http:", "https:", "//", "<script", "<link", "url(", "@import"):
        assert forbidden not in outside.lower(), forbidden
    assert re.findall(r'href="([^"]*)"', text) == ["#master-1"] * 3  # summary, flags: anchors


def test_command_line_report_re_reads_each_master(tmp_path, capsys):
    folder = tmp_path / "night"
    calstack.simulate(folder, preset="cryo", shape=(64, 80))  # darks of 7, 70, 300 s, 3 each
    out = tmp_path / "out"
    report = out / "report.html"
    assert main(["combine", str(folder), "--imagetyp", "dark", "--sigma-clip", "5", "5",
                 "-o", str(out), "--report", str(report)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert lines[-1] == f"report: 3 master(s) -> {report}"
    text = report.read_text()
    assert text.count('<section class="master"') == 3
    assert len(_pngs(text)) == 9
    for label in ("dark exptime=7.000", "dark exptime=70.000", "dark exptime=300.000"):
        assert f"<h2>{label}</h2>" in text
    assert "n/a" not in text  # per-frame rejection came with each BuiltMaster
    # an existing report stops the job before anything is combined
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["combine", str(folder), "--imagetyp", "dark", "-o", str(out),
                 "--report", str(report)]) == 1
    assert "report.html: exists; pass --overwrite" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_report_says_what_auto_chose_and_why(tmp_path):
    folder = tmp_path / "night"
    calstack.simulate(folder, preset="te", shape=(32, 32), n_darks=3)
    report = tmp_path / "out" / "report.html"
    assert main(["combine", str(folder), "--imagetyp", "dark", "--rejection", "auto", "-q",
                 "-o", str(tmp_path / "out"), "--report", str(report)]) == 0
    text = report.read_text()
    assert "CMBREJ = ccdclip" in text
    assert "CMBAUTO = gain 1 e-/ADU, read noise 3 e- known" in text


def test_unknown_rejection_shows_n_a(tmp_path):
    folder = tmp_path / "night"
    calstack.simulate(folder, preset="te", shape=(48, 48), n_darks=3)
    built = combine_groups(calstack.ImageIndex(folder), select={"imagetyp": "dark"},
                           output_dir=tmp_path, **RECIPE)
    only_file = dataclasses.replace(built[0], frame_rejected=())
    text = write_report(tmp_path / "r.html", [only_file]).read_text()
    assert text.count("<td>n/a</td>") == 3
    section = Report().add(built[0])
    assert [row.rejected for row in section.frames] == pytest.approx(list(built[0].frame_rejected))


def test_a_frame_replaced_after_its_master_was_combined_is_named_not_reported(tmp_path):
    """The report re-reads each master's frames with the identity they were indexed with: a
    frame replaced since (same shape, other pixels) is an error naming it, not a section
    measured on other pixels, and no page is written."""
    folder = tmp_path / "night"
    calstack.simulate(folder, preset="te", shape=(48, 48), n_darks=3)
    built = combine_groups(calstack.ImageIndex(folder, cache=False), select={"imagetyp": "dark"},
                           output_dir=tmp_path / "out", **RECIPE)
    replaced = built[0].sources[1]
    with fits.open(replaced) as hdul:
        hdul[0].data = np.zeros_like(hdul[0].data)
        hdul.writeto(tmp_path / "new.fits")
    os.replace(tmp_path / "new.fits", replaced)
    with pytest.raises(FileChangedError, match=rf"{re.escape(replaced)}: changed since it was "
                       "indexed"):
        write_report(tmp_path / "r.html", built)
    assert not (tmp_path / "r.html").exists()


def test_masters_of_arrays_need_their_frames():
    rng = np.random.default_rng(5)
    arrays = [rng.normal(10, 2, (40, 30)).astype(np.float32) for _ in range(4)]
    master = calstack.combine(arrays)
    with pytest.raises(OptionError, match="input frame 'array' is not a file; pass frames="):
        Report().add(master)
    with pytest.raises(OptionError, match="3 frames given for a master of 4"):
        Report().add(master, frames=arrays[:3])
    section = Report().add(master, frames=arrays, label="arrays")
    assert [row.name for row in section.frames] == ["ndarray"] * 4
    assert section.reduction == pytest.approx(2.0, rel=0.15)
    with pytest.raises(OptionError, match="takes a calstack Master or a BuiltMaster, not str"):
        Report().add("master.fits")


def test_grid_reads_physical_values_and_block_minima(tmp_path):
    data = np.arange(7 * 10, dtype=np.uint16).reshape(7, 10) + 100
    data[4, 3] = 7  # BLANK
    path = tmp_path / "raw.fits"
    hdu = fits.PrimaryHDU((data.astype(np.int32) - 32768).astype(np.int16))  # BZERO-shifted
    hdu.header["BZERO"], hdu.header["BLANK"] = 32768, 7 - 32768
    hdu.writeto(path)
    grid = read_grid(path, 3)
    expected = data[::3, ::3].astype(np.float32)
    expected[data[::3, ::3] == 7] = np.nan
    np.testing.assert_array_equal(grid, expected)
    counts = np.full((7, 10), 5, np.int16)
    counts[6, 9], counts[1, 4] = 2, 3
    np.testing.assert_array_equal(read_block_min(counts, 3), [[5, 3, 5, 5], [5] * 4, [5, 5, 5, 2]])
    assert grid_step((4096, 4096), 512) == 8
    assert grid_step((100, 50), 512) == 1
    assert median_and_robust_std([1.0, 2.0, np.nan, 3.0, 100.0]) == pytest.approx((2.5, 1.4826 * 1.0), rel=1e-4)


def test_anomaly_rule():
    noises = np.full(6, 5.0)
    medians = np.array([100.0, 100.1, 99.9, 100.0, 100.05, 100.0])
    assert flag_frames(medians, noises, np.full(6, 1e-3), measured=100) == [()] * 6
    # the level's floor is the standard error of a median of 100 pixels: 1.2533 x 5 / 10
    last = np.array([0, 0, 0, 0, 0, 1.0])  # the last frame's median moved (array arithmetic)
    assert flag_frames(medians + 3.0 * last, noises, measured=100) == [()] * 6
    assert flag_frames(medians + 4.0 * last, noises, measured=100)[5][0].startswith(
        "level (median) 104 against the group's 100.03 (+6.3 group spreads)")
    # measured on 10000 pixels, chance moves a median 10 times less
    assert flag_frames(medians + 0.4 * last, noises, measured=10_000)[5]
    low = flag_frames(medians, noises, [1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 0.0], measured=100,
                      n_pixels=10**6)
    assert low == [()] * 6  # less rejection than the others is not suspicious
    rejected = [1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 2e-3]
    # the binomial noise of 0.1 % of 10**6 pixels is 0.0032 %: 0.2 % is far above it ...
    high = flag_frames(medians, noises, rejected, measured=100, n_pixels=10**6)
    assert high[5]
    assert high[5][0].startswith("rejected fraction 0.2%")
    # ... but not above that of 1 % (at least one pixel) of 100 pixels
    assert flag_frames(medians, noises, rejected, measured=100) == [()] * 6
    # the simulator's clean flats: 3.15 % of 4096 pixels against the group's 2.66 %
    assert flag_frames(medians, noises, [0.0303, 0.0266, 0.0315, 0.0261, 0.0264, 0.0266],
                       measured=4096) == [()] * 6
    assert flag_frames([1.0, 50.0], [1.0, 1.0], measured=100) == [(), ()]  # no majority


def test_integer_frames_are_not_flagged_for_quantisation_steps():
    noises = np.array([4.448, 4.448, 4.448, 4.448, 4.448, 5.930])  # MAD 3, 3, ... and 4 counts
    medians = np.array([1103.0, 1103.0, 1102.0, 1103.0, 1103.0, 1103.5])
    assert flag_frames(medians, noises, integer=True, measured=10**6) == [()] * 6
    # without the quantisation floor, half a count is 90 standard errors of a median
    assert flag_frames(medians, noises, measured=10**6)[5][0].startswith(
        "level (median) 1103.5 against the group's 1103 (+89.7 group spreads)")
    last = np.array([0, 0, 0, 0, 0, 1.0])
    assert flag_frames(medians + 3 * last, noises, integer=True, measured=10**6)[5]  # 3 counts


def test_masters_report_shows_frames_as_they_were_combined(tmp_path, capsys):
    folder = tmp_path / "night"
    calstack.simulate(folder, preset="night", shape=(48, 48))  # raw: biases, darks, flats
    report = tmp_path / "m" / "night.html"
    assert main(["masters", str(folder), "-o", str(tmp_path / "m"), "--subtract-bias",
                 "--report", str(report), "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    text = report.read_text()
    labels = re.findall(r'<section class="master" id="master-\d"><h2>([^<]*)</h2>',
                        text.replace("\n", ""))
    assert labels == ["bias", "dark exptime=30.000", "dark exptime=120.000", "flat filter=R",
                      "flat filter=V"]
    assert text.count("as they were combined: bias subtracted.") == 2  # the darks
    assert text.count("as they were combined: bias subtracted, scaled.") == 2  # the flats
    flats = re.findall(r'title="[^"]*flat-R[^"]*">[^<]*</td><td>([^<]*)</td>', text)
    assert len(flats) == 5
    assert all(float(m) == pytest.approx(1.0, abs=0.02) for m in flats)
    darks = re.findall(r'title="[^"]*dark-030[^"]*">[^<]*</td><td>([^<]*)</td>', text)
    assert len(darks) == 5
    assert all(abs(float(m) - 30 * 0.05 / 1.2) < 2 for m in darks)


# --------------------------------------------------------------------------- headless Chromium
def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium binary (chromium, chromium-browser, google-chrome) on PATH; "
                ".ci/run installs Debian's chromium")


_HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND"]


def _load(chromium, url, *extra):
    """(DOM, console lines) of a page loaded by headless Chromium."""
    done = subprocess.run([chromium, *_HEADLESS, "--enable-logging=stderr", "--v=0",
                           "--dump-dom", *extra, url], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def test_chromium_renders_every_master(tmp_path, spoilt):
    chromium = _chromium()
    control = tmp_path / "control.html"  # proves that this Chromium reports console errors so
    control.write_text("<!DOCTYPE html><p>x</p><script>undefinedFunction()</script>")
    _, console = _load(chromium, control.as_uri())
    assert len(console) == 1
    assert "Uncaught ReferenceError" in console[0]
    report = Report()
    for group in (spoilt[:4], spoilt[4:]):
        report.add(calstack.combine(group, **RECIPE))
    page = report.write(tmp_path / "two.html")
    shot = tmp_path / "shot.png"
    dom, console = _load(chromium, page.resolve().as_uri(), f"--screenshot={shot}",
                         "--window-size=1100,1600")
    assert console == []  # no console messages at all: no errors, no uncaught exceptions
    assert dom.count('<section class="master"') == 2
    sources = re.findall(r'<img [^>]*src="([^"]*)"', dom)
    assert len(sources) == 6
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    pixels = np.asarray(Image.open(shot).convert("L"), float)
    assert pixels.shape == (1600, 1100)
    assert pixels.std() > 20  # text, tables and pictures, not a blank page
    assert (pixels < 60).mean() > 0.02  # dark pixels: the noisy frames are drawn
