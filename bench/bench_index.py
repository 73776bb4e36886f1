"""Benchmark: calstack ``ImageIndex`` vs ``ccdproc.ImageFileCollection``, and the header cache.

    python bench/bench_index.py                  # 3000 files, cached under bench/cache/index-3000
    python bench/bench_index.py --n 500 --repeat 5 --dir /tmp/idx
    python bench/bench_index.py --archive        # 100,000 files: the header cache at scale

Builds N small FITS files (16x16 float32, 33 header cards of which 8 differ from frame to
frame -- DATE-OBS, JD, CCD-TEMP, AIRMASS, ... -- as in a real night; IMAGETYP mixed among BIAS,
DARK, FLAT with varied spelling) once and reuses them. Both tools run in this process on a warm page
cache, each timed best of ``--repeat`` (calstack's parsed-card cache is emptied before each
run, so every run parses like a fresh process): once with their default keywords and once with every
keyword (``'*'``, ccdproc's default), so one row compares the same work. calstack runs without its
header cache here (``cache=False``), so every run parses every file. The files selected by
``ccdproc``'s ``files_filtered(imagetyp='dark')`` and calstack's ``files(imagetyp='dark')`` are
checked equal. Prints a table and writes bench/results/bench_index.json.

``--archive [N]`` (default 100,000 files) writes the same kind of headers, byte by byte, into
100 night folders under bench/cache/archive-N and indexes them recursively (best of ``--repeat``,
default 1): without the header cache, into an empty cache (cold), from a full cache (warm, with
the default keywords and with ``'*'``), with 1% of the files touched (a new mtime: read again),
and -- on Linux -- without and with a warm cache after the files (and the cache) are dropped
from the page cache (``posix_fadvise``), as they are on a re-scan of an archive bigger than
memory (their folders' metadata stays cached). ccdproc indexes the first ``--ccdproc-files``
(10,000) files and its time is scaled to N. The tables of every calstack run are checked equal,
and ccdproc's dark frames against calstack's. Writes bench/results/bench_index_archive.json.
"""

from __future__ import annotations

import argparse
import functools
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
        hdr["DATE-OBS"] = ((f"2024-03-{1 + int(day):02d}T{int(hour):02d}:{int(minute):02d}:"
                            f"{second:06.3f}"), "UTC start of exposure")
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


def run_small(args) -> int:
    """calstack (no header cache) vs ccdproc on ``args.n`` files: the parse itself."""
    folder = build(args.dir or HERE / "cache" / f"index-{args.n}", args.n)
    print(f"{args.n} files in {folder}", flush=True)

    import ccdproc

    from calstack import ImageIndex
    from calstack.catalog.index import DEFAULT_KEYWORDS
    from calstack.io import fitsheader

    def cal(**kw):
        fitsheader._CARD_CACHE.clear()  # start cold, like a fresh process
        return ImageIndex(folder, workers=args.workers, cache=False, **kw)

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
        t_cal, index = best_of(args.repeat, functools.partial(cal, **cal_kw))
        t_ccd, coll = best_of(args.repeat, functools.partial(ccd, **ccd_kw))
        assert len(index) == len(coll.summary) == args.n, (len(index), len(coll.summary))
        rows.append({"case": label, "calstack_s": t_cal, "ccdproc_s": t_ccd,
                     "speedup": t_ccd / t_cal, "calstack_columns": len(index.table.colnames),
                     "ccdproc_columns": len(coll.summary.colnames)})
        print(f"  {label}: calstack {t_cal:.3f} s, ccdproc {t_ccd:.3f} s", flush=True)

    index = ImageIndex(folder, workers=args.workers, cache=False)
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



# --------------------------------------------------------------------------- --archive
NIGHTS = 100
BLOCK = 2880


def _card(key, value, comment) -> str:
    """One 80-character card, laid out as astropy writes it."""
    if isinstance(value, str):
        text = "'" + value.replace("'", "''").ljust(8) + "'"
        return f"{key:<8}= {text:<20} / {comment}".ljust(80)[:80]
    text = ("T" if value else "F") if isinstance(value, bool) else repr(value).upper()
    return f"{key:<8}= {text:>20} / {comment}".ljust(80)[:80]


def archive_frame(i, rng) -> bytes:
    """Frame ``i`` of the archive: the cards of :func:`build` and a 16x16 float32 zero image."""
    imagetyp = TYPES[i % len(TYPES)]
    exptime = 0.0 if "bias" in imagetyp.lower() else float([7, 70, 300, 90][i % 4])
    if i % 11 == 0 and exptime:
        exptime += 1e-7
    start = 60.0 * i + rng.uniform(0, 30)
    day, rest = divmod(start, 86400.0)
    hour, rest = divmod(rest, 3600.0)
    minute, second = divmod(rest, 60.0)
    date = (f"{2024 + int(day) // 336}-{1 + int(day) % 336 // 28:02d}-{1 + int(day) % 28:02d}T"
            f"{int(hour):02d}:{int(minute):02d}:{second:06.3f}")
    cards = [
        ("SIMPLE", True, "conforms to FITS standard"), ("BITPIX", -32, "array data type"),
        ("NAXIS", 2, "number of array dimensions"), ("NAXIS1", 16, ""), ("NAXIS2", 16, ""),
        ("IMAGETYP", imagetyp, "Type of image"), ("EXPTIME", exptime, "[s] Exposure time"),
        ("EXPOSURE", exptime, "[s] Exposure time"), ("FILTER", FILTERS[i % 5], "Filter name"),
        ("DATE-OBS", date, "UTC start of exposure"),
        ("JD", 2460370.5 + start / 86400.0, "Julian date of exposure start"),
        ("OBJECT", f"field {i % 17}", "Target"), ("TELESCOP", "CDK20", "Telescope"),
        ("INSTRUME", "ML16803", "Camera"), ("OBSERVER", "O'Brien / night crew", "Observer"),
        ("XBINNING", 1 + i % 2, "Binning in x"), ("YBINNING", 1 + i % 2, "Binning in y"),
        ("CCD-TEMP", round(-20.0 + rng.gauss(0, 0.05), 4), "[C] CCD temperature"),
        ("SET-TEMP", -20.0, "[C] CCD set point"), ("GAIN", 1.3, "[e-/ADU]"),
        ("RDNOISE", 9.1, "[e-] read noise"), ("XPIXSZ", 9.0, "[um]"),
        ("FOCALLEN", 3454.0, "[mm]"), ("RA", "12 34 56.7", "Right ascension"),
        ("DEC", "+12 34 56", "Declination"),
        ("AIRMASS", round(1.0 + rng.uniform(0, 1), 6), "Airmass"),
        ("OBJCTALT", round(rng.uniform(20, 90), 4), "[deg] Altitude"),
        ("OBJCTAZ", round(rng.uniform(0, 360), 4), "[deg] Azimuth"),
        ("SITELAT", "+40 00 00", "Site latitude"), ("SITELONG", "-105 00 00", "Site longitude"),
        ("SWCREATE", "MaxIm DL Version 6.24", "Software"), ("BUNIT", "adu", "Unit"),
        ("FRAMENO", i, "Frame number"),
    ]
    header = "".join(_card(*card) for card in cards)
    header += "COMMENT Calibrated by the bench generator".ljust(80) + "END".ljust(80)
    header = header.ljust(-(-len(header) // BLOCK) * BLOCK)
    return header.encode("ascii") + bytes(BLOCK)  # 16x16 float32 zeros, padded


def build_archive(folder: Path, n: int) -> list[str]:
    """Write ``n`` frames into ``NIGHTS`` subfolders of ``folder`` unless they are there;
    return their names relative to ``folder``, in index order."""
    import random

    per_night = -(-n // NIGHTS)
    names = [f"night-{i // per_night:03d}/frame-{i:06d}.fits" for i in range(n)]
    marker = folder / ".complete"
    stamp = f"{n} files in {NIGHTS} nights, generator v{GENERATOR_VERSION}"
    if marker.exists() and marker.read_text().strip() == stamp:
        return names
    rng = random.Random(0)
    start = time.perf_counter()
    for i, name in enumerate(names):
        path = folder / name
        if i % per_night == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(archive_frame(i, rng))
    marker.write_text(stamp)
    print(f"wrote {n} files in {time.perf_counter() - start:.1f} s", flush=True)
    return names


def _same_tables(a, b) -> bool:
    return a.colnames == b.colnames and all(a[c].tolist() == b[c].tolist() for c in a.colnames)


def evict(paths) -> None:
    """Drop the files' pages from the page cache (Linux), as if they lay unread on disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)  # pages not yet written back would stay
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run_archive(args) -> int:
    """The header cache on ``args.archive`` files: no cache, cold, warm, 1% changed, files
    evicted from the page cache; ccdproc on a subset."""
    import ccdproc

    from calstack import ImageIndex
    from calstack.catalog.index import DEFAULT_KEYWORDS
    from calstack.io import fitsheader

    n, repeat = args.archive, args.repeat or 1
    folder = args.dir or HERE / "cache" / f"archive-{n}"
    names = build_archive(folder, n)
    paths = [folder / name for name in names]
    db = folder.with_name(folder.name + "-headers.sqlite")
    print(f"{n} files in {folder}; header cache {db}", flush=True)

    def forget():
        for suffix in ("", "-journal", ".bad"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)

    night0 = [path for path, name in zip(paths, names, strict=True)
              if name.startswith("night-000/")]

    def touch():  # a new mtime, same size: these files are read again
        for path in night0:
            mtime = path.stat().st_mtime_ns + 10**9
            os.utime(path, ns=(mtime, mtime))

    def nothing():
        pass

    cases = [  # label, cache, keywords, prepare, the no-cache case it compares with
        ("no cache", False, DEFAULT_KEYWORDS, nothing, "no cache"),
        ("cold cache (empty)", db, DEFAULT_KEYWORDS, forget, "no cache"),
        ("warm cache", db, DEFAULT_KEYWORDS, nothing, "no cache"),
        ("no cache, keywords='*'", False, "*", nothing, "no cache, keywords='*'"),
        ("warm cache, keywords='*'", db, "*", nothing, "no cache, keywords='*'"),
        (f"warm cache, {len(night0)} files touched", db, DEFAULT_KEYWORDS, touch, "no cache"),
    ]
    if hasattr(os, "posix_fadvise"):
        cases += [
            ("no cache, files not in page cache", False, DEFAULT_KEYWORDS,
             lambda: evict(paths), "no cache, files not in page cache"),
            ("warm cache, files not in page cache", db, DEFAULT_KEYWORDS,
             lambda: evict([*paths, db]), "no cache, files not in page cache"),
        ]
    rows, tables = [], {}
    for label, cache, keywords, prepare, base in cases:
        times = []
        for _ in range(repeat):
            prepare()
            fitsheader._CARD_CACHE.clear()  # start cold, like a fresh process
            start = time.perf_counter()
            index = ImageIndex(folder, recursive=True, keywords=keywords, cache=cache,
                               workers=args.workers)
            times.append(time.perf_counter() - start)
        assert len(index) == n, (label, len(index))
        tables[label] = index.table
        rows.append({"case": f"calstack, {label}", "files": n, "seconds": min(times),
                     "base": f"calstack, {base}"})
        print(f"  calstack, {label}: {min(times):.3f} s", flush=True)
    plain, every = tables.pop("no cache"), tables.pop("no cache, keywords='*'")
    same = _same_tables(tables.pop("warm cache, keywords='*'"), every) and all(
        _same_tables(t, plain) for t in tables.values())

    subset = names[: args.ccdproc_files]
    for path in paths[: len(subset)]:  # from the page cache, as calstack's first rows read them
        path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_ccd, coll = best_of(repeat, lambda: ccdproc.ImageFileCollection(str(folder),
                                                                           filenames=subset))
        theirs = sorted(coll.files_filtered(imagetyp="dark"))
    print(f"  ccdproc, {len(subset)} files: {t_ccd:.3f} s", flush=True)
    darks = [name for name, hdu, imagetyp
             in zip(plain["file"], plain["hdu"], plain["imagetyp"], strict=True)
             if imagetyp.strip().lower() == "dark" and hdu == 0]
    ours = sorted(name.rsplit("/", 1)[-1] for name in set(subset).intersection(darks))
    same_darks = ours == theirs  # ccdproc lists bare names
    rows.append({"case": f"ccdproc, {len(subset)} files measured, time x {n / len(subset):g}",
                 "files": len(subset), "seconds": t_ccd * n / len(subset), "measured_s": t_ccd,
                 "base": "calstack, no cache"})

    seconds = {row["case"]: row["seconds"] for row in rows}
    print(f"\n{'case':<56} {'seconds':>8} {'files/s':>9} {'vs no cache':>12}")
    for row in rows:
        row["files_per_s"] = row["files"] / row.get("measured_s", row["seconds"])
        row["vs_no_cache"] = seconds[row["base"]] / row["seconds"]
        print(f"{row['case']:<56} {row['seconds']:>8.3f} {row['files_per_s']:>9.0f} "
              f"{row['vs_no_cache']:>11.2f}x")
    size = db.stat().st_size
    print(f"\nheader cache {size / 1e6:.1f} MB ({size / n:.0f} bytes per file); the same table "
          f"with and without it: {same}; ccdproc's darks among its {len(subset)} files == "
          f"calstack's: {same_darks} ({len(theirs)} files)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "bench_index_archive.json"
    out.write_text(json.dumps({
        "n_files": n, "nights": NIGHTS, "folder": str(folder), "cache_file": str(db),
        "cache_bytes": size, "repeat": repeat, "workers": args.workers,
        "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
        "platform": platform.platform(), "ccdproc": ccdproc.__version__,
        "same_tables": same, "same_darks": same_darks, "results": rows,
    }, indent=1))
    print(f"wrote {out}")
    return 0 if same and same_darks else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="number of files (default 3000)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="folder for the files (default bench/cache/index-N or archive-N)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="best of this many runs (default 3; 1 with --archive)")
    parser.add_argument("--workers", type=int, default=None, help="calstack reader threads")
    parser.add_argument("--archive", type=int, nargs="?", const=100_000, default=None,
                        metavar="N", help="instead: the header cache on N files (default 100000)")
    parser.add_argument("--ccdproc-files", type=int, default=10_000, metavar="N",
                        help="with --archive: files ccdproc indexes (its time is scaled up)")
    args = parser.parse_args(argv)
    if args.archive:
        return run_archive(args)
    args.repeat = args.repeat or 3
    return run_small(args)


if __name__ == "__main__":
    sys.exit(main())
