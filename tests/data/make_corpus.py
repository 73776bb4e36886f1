"""Write ``tests/data/corpus/``: small frame sets whose headers imitate what acquisition and
reduction programs write (tests/test_setup.py says which masters each must give).

Run ``python tests/data/make_corpus.py`` to write it again; the files are committed (8x8
pixels, 5760 bytes each). Pixel levels encode the setup (e.g. a bias at gain 120 / offset 30
sits at 480 ADU, at gain 0 / offset 10 at 160 ADU), so a master that mixed setups shows it.

Sets:
- ``nina/``: N.I.N.A.'s layout (BIAS/, DARK/, FLAT/, DARKFLAT/, LIGHT/ subfolders); CMOS gain
  and offset, cooler set-point; EXPOSURE and EXPTIME; jittered exposure times;
- ``maxim/``: MaxIm DL ('Bias Frame', 'Dark Frame', 'Flat Field'; EGAIN, READOUTM, SET-TEMP),
  darks at set-points -10 and -20 degC, and a MaxIm master (SNAPSHOT);
- ``sharpcap/``: numbers written as text (EXPTIME = '60.000', GAIN = '120');
- ``sgp/``: Sequence Generator Pro's EXPOSURE without EXPTIME;
- ``gemini/``: multi-extension bias frames, OBSTYPE, EXTNAME = 'SCI' with EXTVER 1..4, CCDSUM;
- ``iraf/``: IRAF's 'zero' and SUBSET for the filter;
- ``masters/``: darks beside masters written by calstack, IRAF, Siril, PixInsight and APP;
- ``colour/``: flats of a colour camera (no filter keyword).
"""

from pathlib import Path

import numpy as np
from astropy.io import fits

HERE = Path(__file__).parent / "corpus"
SHAPE = (8, 8)


def _frame(path, level, header, *, seed, noise=2.0):
    rng = np.random.default_rng(seed)
    data = np.clip(np.rint(level + rng.normal(0, noise, SHAPE)), 0, 65535).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.writeto(path, data, fits.Header(header), overwrite=True)


def _series(folder, stem, n, level, header, seed):
    for i in range(n):
        _frame(folder / f"{stem}_{i + 1:03d}.fits", level, header, seed=seed + i)


def nina():
    root = HERE / "nina"
    camera = {"INSTRUME": "ZWO ASI2600MM Pro", "XBINNING": 1, "YBINNING": 1, "READOUTM": "Normal",
              "USBLIMIT": 40, "BUNIT": "ADU"}
    # bias at two gain/offset settings: 480 ADU and 160 ADU
    for gain, offset, level, seed in ((120, 30, 480, 0), (0, 10, 160, 10)):
        head = {**camera, "IMAGETYP": "BIAS", "EXPOSURE": 0.0, "EXPTIME": 0.0, "GAIN": gain,
                "OFFSET": offset, "SET-TEMP": -10.0, "CCD-TEMP": -10.1}
        _series(root / "BIAS", f"BIAS_gain{gain}", 3, level, head, seed)
    # darks of 60 s at set-points -10 and -20 degC (500 and 490 ADU); exposures as recorded
    for settemp, level, seed in ((-10.0, 500, 20), (-20.0, 490, 30)):
        for i, exposure in enumerate((60.0012, 59.9991, 60.0004)):
            head = {**camera, "IMAGETYP": "DARK", "EXPOSURE": exposure, "EXPTIME": exposure,
                    "GAIN": 120, "OFFSET": 30, "SET-TEMP": settemp, "CCD-TEMP": settemp + 0.1}
            _frame(root / "DARK" / f"DARK_{settemp:+.0f}C_{i + 1:03d}.fits", level, head,
                   seed=seed + i)
    # flats in R and V; flat-darks of their exposure
    for filt, level, seed in (("R", 20000, 40), ("V", 12000, 50)):
        head = {**camera, "IMAGETYP": "FLAT", "EXPOSURE": 2.5, "EXPTIME": 2.5, "FILTER": filt,
                "GAIN": 120, "OFFSET": 30, "SET-TEMP": -10.0, "CCD-TEMP": -9.9}
        _series(root / "FLAT", f"FLAT_{filt}", 3, level, head, seed)
    head = {**camera, "IMAGETYP": "DARKFLAT", "EXPOSURE": 2.5, "EXPTIME": 2.5, "GAIN": 120,
            "OFFSET": 30, "SET-TEMP": -10.0, "CCD-TEMP": -10.0}
    _series(root / "DARKFLAT", "DARKFLAT", 3, 482, head, 60)
    head = {**camera, "IMAGETYP": "LIGHT", "EXPOSURE": 300.0, "EXPTIME": 300.0, "FILTER": "R",
            "GAIN": 120, "OFFSET": 30, "SET-TEMP": -10.0, "CCD-TEMP": -10.0, "OBJECT": "M 31"}
    _series(root / "LIGHT", "LIGHT_M31", 2, 900, head, 70)


def maxim():
    root = HERE / "maxim"
    camera = {"INSTRUME": "SBIG STF-8300M", "XBINNING": 1, "YBINNING": 1, "EGAIN": 0.37,
              "READOUTM": "Raw", "SWCREATE": "MaxIm DL Version 6.40"}
    head = {**camera, "IMAGETYP": "Bias Frame", "EXPTIME": 0.0, "EXPOSURE": 0.0,
            "SET-TEMP": -10.0, "CCD-TEMP": -10.0}
    _series(root, "bias", 3, 1000, head, 100)
    for settemp, level, seed in ((-10.0, 1030, 110), (-20.0, 1012, 120)):
        head = {**camera, "IMAGETYP": "Dark Frame", "EXPTIME": 300.0, "EXPOSURE": 300.0,
                "SET-TEMP": settemp, "CCD-TEMP": settemp}
        _series(root, f"dark300_{-settemp:.0f}C", 3, level, head, seed)
    head = {**camera, "IMAGETYP": "Dark Frame", "EXPTIME": 300.0, "EXPOSURE": 300.0,
            "SET-TEMP": -10.0, "CCD-TEMP": -10.0, "SNAPSHOT": 10, "CALSTAT": ""}
    _frame(root / "master_dark300.fits", 1030, head, seed=130, noise=0.5)
    head = {**camera, "IMAGETYP": "Flat Field", "EXPTIME": 1.5, "EXPOSURE": 1.5, "FILTER": "Red",
            "SET-TEMP": -10.0, "CCD-TEMP": -10.0}
    _series(root, "flat_red", 3, 25000, head, 140)


def sharpcap():
    root = HERE / "sharpcap"
    camera = {"INSTRUME": "ZWO ASI294MM Pro", "XBINNING": 1, "YBINNING": 1, "OFFSET": "30",
              "SWCREATE": "SharpCap v4.1"}
    for i, text in enumerate(("60", "60.000", "60.0")):
        head = {**camera, "IMAGETYP": "Dark", "EXPTIME": text, "GAIN": "120"}
        _frame(root / f"dark_{i + 1:03d}.fits", 510, head, seed=200 + i)
    for i in range(3):
        head = {**camera, "IMAGETYP": "Bias", "EXPTIME": "0.000032", "GAIN": "120"}
        _frame(root / f"bias_{i + 1:03d}.fits", 480, head, seed=210 + i)


def sgp():
    root = HERE / "sgp"
    for exposure, level, seed in ((30.0, 300, 300), (120.0, 330, 310)):
        head = {"IMAGETYP": "DARK", "EXPOSURE": exposure, "XBINNING": 2, "YBINNING": 2,
                "CCD-TEMP": -15.0, "SET-TEMP": -15.0, "INSTRUME": "QHY268M"}
        _series(root, f"dark_{exposure:.0f}s", 3, level, head, seed)


def gemini():
    root = HERE / "gemini"
    root.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        rng = np.random.default_rng(400 + i)
        primary = fits.PrimaryHDU(header=fits.Header({"OBSTYPE": "BIAS", "INSTRUME": "GMOS-N",
                                                      "EXPTIME": 0.0, "DETECTOR": "GMOS + Hamamatsu"}))
        hdus = [primary]
        for ver in range(1, 5):  # four amplifiers, each at its own level
            data = np.rint(1000 * ver + rng.normal(0, 2, SHAPE)).astype(np.uint16)
            hdus.append(fits.ImageHDU(data, fits.Header({"CCDSUM": "2 2", "EXTVER": ver,
                                                         "CCDNAME": f"BI13-20-4k-{1 + (ver - 1) // 2}"}),
                                      name="SCI"))
            hdus[-1].ver = ver
        fits.HDUList(hdus).writeto(root / f"N20240101S{i + 1:04d}.fits", overwrite=True)


def iraf():
    root = HERE / "iraf"
    _series(root, "zero", 3, 300, {"IMAGETYP": "zero", "EXPTIME": 0.0}, 500)
    for filt, level, seed in (("R", 15000, 510), ("V", 9000, 520)):
        _series(root, f"flat{filt}", 3, level, {"IMAGETYP": "flat", "EXPTIME": 5.0,
                                                "SUBSET": filt}, seed)


def masters():
    root = HERE / "masters"
    dark = {"IMAGETYP": "DARK", "EXPTIME": 120.0}
    _series(root, "dark120", 3, 600, dark, 600)
    marks = {
        "calstack_master.fits": {**dark, "COMBINED": True, "NCOMBINE": 3},
        "iraf_master.fits": {**dark, "NCOMBINE": 3, "IMCMB001": "dark120_001.fits",
                             "IMCMB002": "dark120_002.fits", "IMCMB003": "dark120_003.fits"},
        "siril_master.fits": {**dark, "STACKCNT": 3, "LIVETIME": 360.0},
        "pixinsight_master.fits": {**dark, "IMAGETYP": "Master Dark"},
        "app_master.fits": {**dark, "IMAGETYP": "MASTERDARK"},
    }
    for i, (name, head) in enumerate(marks.items()):
        _frame(root / name, 9999, head, seed=610 + i, noise=0.5)


def colour():
    root = HERE / "colour"
    head = {"IMAGETYP": "Flat Frame", "EXPTIME": 0.8, "BAYERPAT": "RGGB",
            "INSTRUME": "ZWO ASI533MC Pro", "GAIN": 100, "OFFSET": 50}
    _series(root, "flat", 3, 30000, head, 700)
    head = {"IMAGETYP": "Bias Frame", "EXPTIME": 0.0, "BAYERPAT": "RGGB",
            "INSTRUME": "ZWO ASI533MC Pro", "GAIN": 100, "OFFSET": 50}
    _series(root, "bias", 3, 800, head, 710)


def main():
    for make in (nina, maxim, sharpcap, sgp, gemini, iraf, masters, colour):
        make()


if __name__ == "__main__":
    main()
