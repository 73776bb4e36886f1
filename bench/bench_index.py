"""Benchmark: calstack ``ImageIndex`` vs ``ccdproc.ImageFileCollection`` on the same folder.

    python bench/bench_index.py                  # 3000 files, cached under bench/cache/index-3000
    python bench/bench_index.py --n 500 --repeat 5 --dir /tmp/idx

Builds N small FITS files (16x16 float32, 33 header cards of which 8 differ from frame to
frame -- DATE-OBS, JD, CCD-TEMP, AIRMASS, ... -- as in a real night; IMAGETYP mixed among BIAS,
DARK, FLAT with varied spelling) once and reuses them. Both tools run in this process on a warm page
cache, each timed best of ``--repeat`` (calstack's parsed-card cache is emptied before each
run, so every run parses like a fresh process): once with their default keywords and once with every
keyword (``'*'``, ccdproc's default), so one row compares the same work. The files selected by
``ccdproc``'s ``files_filtered(imagetyp='dark')`` and calstack's ``files(imagetyp='dark')`` are
checked equal. Prints a table and writes bench/results/bench_index.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

GENERATOR_VERSION = 2
TYPES = ["BIAS", "Bias Frame", "DARK", "dark ", "Dark Frame", "FLAT", "Flat Field"]
FILTERS = ["R", "G", "B", "L", "Ha"]


def build(folder: Path, n: int) -> Path:
    """Write ``n`` frames into ``folder`` unless they are already there."""
    import numpy as np
    from astropy.io import fits

    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".complete"
    stamp = f"{n} files, generator v{GENERATOR_VERSION}"
    if marker.exists() and marker.read_text().strip() == stamp:
        return folder
    rng = np.random.default_rng(0)
    data = rng.normal(100, 5, (16, 16)).astype(np.float32)
    for i in range(n):
        imagetyp = TYPES[i % len(TYPES)]
        exptime = 0.0 if "bias" in imagetyp.lower() else float([7, 70, 300, 90][i % 4])
        if i % 11 == 0 and exptime:
            exptime += 1e-7  # float noise some camera software writes
        hdr = fits.Header()
        hdr["IMAGETYP"] = (imagetyp, "Type of image")
        hdr["EXPTIME"] = (exptime, "[s] Exposure time")
        hdr["EXPOSURE"] = (exptime, "[s] Exposure time")
        hdr["FILTER"] = (FILTERS[i % len(FILTERS)], "Filter name")
        start = 60.0 * i + rng.uniform(0, 30)  # one frame a minute: every time is unique
        day, rest = divmod(start, 86400.0)
        hour, rest = divmod(rest, 3600.0)
        minute, second = divmod(rest, 60.0)
        hdr["DATE-OBS"] = (f"2024-03-{1 + int(day):02d}T{int(hour):02d}:{int(minute):02d}:"
                           f"{second:06.3f}", "UTC start of exposure")
        hdr["JD"] = (2460370.5 + start / 86400.0, "Julian date of exposure start")
        hdr["OBJECT"] = (f"field {i % 17}", "Target")
        hdr["TELESCOP"] = ("CDK20", "Telescope")
        hdr["INSTRUME"] = ("ML16803", "Camera")
        hdr["OBSERVER"] = ("O'Brien / night crew", "Observer")
        hdr["XBINNING"] = (1 + i % 2, "Binning in x")
        hdr["YBINNING"] = (1 + i % 2, "Binning in y")
        hdr["CCD-TEMP"] = (round(-20.0 + rng.normal(0, 0.05), 4), "[C] CCD temperature")
        hdr["SET-TEMP"] = (-20.0, "[C] CCD set point")
        hdr["GAIN"] = (1.3, "[e-/ADU]")
        hdr["RDNOISE"] = (9.1, "[e-] read noise")
        hdr["XPIXSZ"] = (9.0, "[um]")
        hdr["FOCALLEN"] = (3454.0, "[mm]")
        hdr["RA"] = ("12 34 56.7", "Right ascension")
        hdr["DEC"] = ("+12 34 56", "Declination")
        hdr["AIRMASS"] = (round(1.0 + rng.uniform(0, 1), 6), "Airmass")
        hdr["OBJCTALT"] = (round(rng.uniform(20, 90), 4), "[deg] Altitude")
        hdr["OBJCTAZ"] = (round(rng.uniform(0, 360), 4), "[deg] Azimuth")
        hdr["SITELAT"] = ("+40 00 00", "Site latitude")
        hdr["SITELONG"] = ("-105 00 00", "Site longitude")
        hdr["SWCREATE"] = ("MaxIm DL Version 6.24", "Software")
        hdr["BUNIT"] = ("adu", "Unit")
        hdr["FRAMENO"] = (i, "Frame number")
        hdr["COMMENT"] = "Calibrated by the bench generator"
        fits.writeto(folder / f"frame_{i:05d}.fits", data, hdr, overwrite=True)
    marker.write_text(stamp)
    return folder


def best_of(repeat, fn):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="number of files (default 3000)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="folder for the files (default bench/cache/index-N)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--workers", type=int, default=None, help="calstack reader threads")
    args = parser.parse_args(argv)

    folder = build(args.dir or HERE / "cache" / f"index-{args.n}", args.n)
    print(f"{args.n} files in {folder}", flush=True)

    import ccdproc

    from calstack import ImageIndex, fitsheader
    from calstack.index import DEFAULT_KEYWORDS

    def cal(**kw):
        fitsheader._CARD_CACHE.clear()  # start cold, like a fresh process
        return ImageIndex(folder, workers=args.workers, **kw)

    keywords = [k.lower() for k in DEFAULT_KEYWORDS]

    def ccd(**kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ccdproc.ImageFileCollection(str(folder), **kw)

    rows = []
    for label, cal_kw, ccd_kw in (
        ("default keywords", {}, {}),
        ("every keyword ('*')", {"keywords": "*"}, {"keywords": "*"}),
        ("same 12 keywords", {}, {"keywords": keywords}),
    ):
        t_cal, index = best_of(args.repeat, lambda: cal(**cal_kw))
        t_ccd, coll = best_of(args.repeat, lambda: ccd(**ccd_kw))
        assert len(index) == len(coll.summary) == args.n, (len(index), len(coll.summary))
        rows.append({"case": label, "calstack_s": t_cal, "ccdproc_s": t_ccd,
                     "speedup": t_ccd / t_cal, "calstack_columns": len(index.table.colnames),
                     "ccdproc_columns": len(coll.summary.colnames)})
        print(f"  {label}: calstack {t_cal:.3f} s, ccdproc {t_ccd:.3f} s", flush=True)

    index = ImageIndex(folder, workers=args.workers)
    coll = ccd()
    t_cal_f, ours = best_of(args.repeat, lambda: index.files(imagetyp="dark"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_ccd_f, theirs = best_of(args.repeat, lambda: list(coll.files_filtered(imagetyp="dark")))
    same = sorted(ours) == sorted(theirs)
    rows.append({"case": "files(imagetyp='dark')", "calstack_s": t_cal_f, "ccdproc_s": t_ccd_f,
                 "speedup": t_ccd_f / t_cal_f, "calstack_files": len(ours),
                 "ccdproc_files": len(theirs), "same_files": same})

    print()
    print(f"{'case':<26} {'calstack s':>11} {'ccdproc s':>10} {'speedup':>8}")
    for row in rows:
        print(f"{row['case']:<26} {row['calstack_s']:>11.4f} {row['ccdproc_s']:>10.4f} "
              f"{row['speedup']:>7.1f}x")
    print(f"\nfiles(imagetyp='dark') == files_filtered(imagetyp='dark'): {same} "
          f"({len(ours)} files)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "bench_index.json"
    out.write_text(json.dumps({
        "n_files": args.n, "folder": str(folder), "repeat": args.repeat,
        "workers": args.workers, "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
        "platform": platform.platform(), "ccdproc": ccdproc.__version__, "results": rows,
    }, indent=1))
    print(f"wrote {out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
