"""Shared fixtures and helpers: small synthetic dark stacks written as FITS files, and a messy
folder of frames for ImageIndex (test_index, test_headercache).

Test modules import the helpers (``make_darks``, ``write_frames``, ``frame``, ``column``) from
here, never from another test module; fixtures need no import."""

import gzip
import signal

import numpy as np
import pytest
from astropy.io import fits


def make_darks(n=7, shape=(48, 40), seed=0, level=20.0, noise=3.0):
    """Dark-like frames: a level with hot pixels, Gaussian noise and a few cosmic rays."""
    rng = np.random.default_rng(seed)
    truth = np.full(shape, level)
    hot = rng.random(shape) < 0.01
    truth[hot] += rng.uniform(200, 2000, hot.sum())
    frames = truth + rng.normal(0, noise, size=(n, *shape))
    rays = rng.random(frames.shape) < 0.002
    frames[rays] += rng.uniform(500, 5000, rays.sum())
    return frames.astype(np.float32), truth


def write_frames(folder, frames, *, imagetyp="DARK", exptime=90.0, prefix="dark", **header):
    paths = []
    for i, data in enumerate(frames):
        hdr = fits.Header({"IMAGETYP": imagetyp, "EXPTIME": exptime, "BUNIT": "adu", **header})
        path = folder / f"{prefix}-{exptime:07.3f}-{i:03d}.fits"
        fits.writeto(path, data, hdr)
        paths.append(str(path))
    return paths


@pytest.fixture(autouse=True)
def header_cache_dir(tmp_path_factory, monkeypatch):
    """Every test indexes with a header cache of its own, never the user's real one."""
    folder = tmp_path_factory.mktemp("header-cache")
    monkeypatch.setenv("CALSTACK_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def ctrl_c():
    """Python's Ctrl-C handler (``KeyboardInterrupt``) for the test, as a process started from
    a terminal has it: one started in the background of a script inherits SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def dark_files(tmp_path):
    frames, truth = make_darks()
    return write_frames(tmp_path, frames), frames, truth


SMALL_DATA = np.arange(6 * 5, dtype=np.float32).reshape(6, 5)


def frame(path, *, data=SMALL_DATA, **keywords):
    """Write a FITS file with ``keywords`` in its header; return its path."""
    fits.writeto(path, data, fits.Header(keywords))
    return path


@pytest.fixture
def messy(tmp_path):
    """ImageIndex's messy folder: spellings, float noise, gzip, fpack, MEF, junk, a subfolder."""
    folder = tmp_path / "night"
    folder.mkdir()
    frame(folder / "a_dark7.fits", IMAGETYP="DARK", EXPTIME=7.0, FILTER="R")
    frame(folder / "b_dark7_noise.FIT", IMAGETYP="dark ", EXPTIME=7.0000001, GAIN=1.5)
    frame(folder / "c_dark70.fts", IMAGETYP="Dark", EXPTIME=70.0, **{"CCD-TEMP": -20.0})
    frame(folder / "d_bias.fits", IMAGETYP="Bias Frame", EXPTIME=0.0,
          data=np.zeros((6, 5), np.uint16))
    plain = frame(tmp_path / "e.fits", IMAGETYP="DARK", EXPTIME=300.0)
    (folder / "e_dark300.fits.gz").write_bytes(gzip.compress(plain.read_bytes()))
    fits.HDUList([fits.PrimaryHDU(),
                  fits.CompImageHDU(np.ones((8, 12), np.float32),
                                    fits.Header({"IMAGETYP": "FLAT", "FILTER": "R"}))]
                 ).writeto(folder / "f_flat.fits.fz")
    fits.HDUList([fits.PrimaryHDU(header=fits.Header({"IMAGETYP": "DARK", "EXPTIME": 70.0,
                                                      "OBJECT": "primary"})),
                  fits.ImageHDU(SMALL_DATA, fits.Header({"CCDNAME": "left"}), name="CCD1"),
                  fits.ImageHDU(SMALL_DATA, fits.Header({"CCDNAME": "right", "EXPTIME": 71.0}),
                                name="CCD2"),
                  fits.ImageHDU(np.zeros((6, 5), np.uint8), name="MASK")]
                 ).writeto(folder / "g_mef.fits")
    (folder / "h_notfits.fits").write_text("SIMPLE? no, just some notes\n" * 200)
    full = frame(tmp_path / "i.fits", IMAGETYP="DARK", EXPTIME=7.0, data=np.zeros((100, 100)))
    (folder / "i_truncated.fits").write_bytes(full.read_bytes()[:5000])
    (folder / "notes.txt").write_text("not indexed")
    (folder / ".hidden.fits").write_text("skipped")
    sub = folder / "sub"
    sub.mkdir()
    frame(sub / "j_dark7.fits", IMAGETYP="DARK", EXPTIME=7.0)
    return folder


def column(index, name):
    """An ImageIndex table column as a list, masked values as None."""
    col = index.table[name]
    mask = np.ma.getmaskarray(col)
    return [None if m else v for v, m in zip(np.asarray(col).tolist(), mask, strict=True)]
