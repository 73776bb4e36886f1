"""Shared fixtures: small synthetic dark stacks written as FITS files."""

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
def dark_files(tmp_path):
    frames, truth = make_darks()
    return write_frames(tmp_path, frames), frames, truth
