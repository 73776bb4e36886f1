"""Benchmark: whole processes, side by side on the same files, in one run: calstack's command line
against the tools users compare it with.

    python bench/bench_processes.py                    # the issue's stacks (minutes)
    python bench/bench_processes.py --stacks 3x64 10x512 --repeat 3

For each stack (N frames of S x S float32, simulated darks with cosmic rays, GAIN and RDNOISE in
the headers), every tool combines the frames as a whole process (start-up, reading, combining,
writing), best of ``--repeat``, with its peak resident memory (GNU time's, else
``ru_maxrss``); the frames are read once before each run, so that every run reads them from
the page cache:

- calstack: ``calstack combine`` with ccdclip, with pclip, and with the reference recipe;
- ccdproc: the reference recipe as a script (``ccdproc.combine``, sigma clipping 5/5, median,
  mad_std, 350 MB);
- astropy bands: the competent-NumPy anchor, ``astropy.stats.sigma_clip`` (5/5, median,
  mad_std) over bands of rows read with ``hdu.section``;
- IRAF ``imcombine`` (``irafcl -f``) with ccdclip and with pclip, where ``irafcl`` is installed;
- Gnuastro ``astarithmetic ... sigclip-mean``, where installed;
- Siril ``stack ... rej s 3 3 -nonorm`` (sigma clipping, average; ``siril-cli -s``, the frames
  linked into a sequence by the script itself), where ``siril-cli`` is installed;
- the floor: a process that reads every frame once and writes one frame.

Tools that are not installed are skipped with a note. Results are printed and saved to
bench/results/bench_processes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from page_cache import into_page_cache

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
RESULTS = HERE / "results"
DEFAULT_STACKS = ["3x64", "10x2048", "25x1024", "10x4096", "40x4096"]

_CCDPROC = """
import sys, warnings, numpy as np
warnings.simplefilter("ignore")
import ccdproc
from astropy.stats import mad_std
m = ccdproc.combine(sys.argv[2:], method="average", sigma_clip=True, sigma_clip_low_thresh=5,
                    sigma_clip_high_thresh=5, sigma_clip_func=np.ma.median,
                    sigma_clip_dev_func=mad_std, mem_limit=350e6)
m.write(sys.argv[1], overwrite=True)
"""

_BANDS = """
import sys, numpy as np
from astropy.io import fits
from astropy.stats import sigma_clip
paths = sys.argv[2:]
hdus = [fits.open(p, memmap=True) for p in paths]
ny, nx = hdus[0][0].shape
rows = max(1, int(350e6 // (len(paths) * nx * 8 * 4)))
out = np.empty((ny, nx), np.float32)
for y in range(0, ny, rows):
    stack = np.array([h[0].section[y:y + rows, :] for h in hdus], np.float32)
    clipped = sigma_clip(stack, sigma=5, axis=0, cenfunc="median", stdfunc="mad_std",
                         maxiters=1, masked=True)
    out[y:y + rows] = clipped.mean(axis=0).filled(np.nan)
fits.writeto(sys.argv[1], out, overwrite=True)
"""

_FLOOR = """
import sys, numpy as np
from astropy.io import fits
acc = None
for p in sys.argv[2:]:
    with fits.open(p, memmap=True) as h:
        acc = h[0].data.astype(np.float32) if acc is None else np.add(acc, h[0].data, out=acc)
fits.writeto(sys.argv[1], acc, overwrite=True)
"""


def _frames(n, size):
    folder = CACHE / f"processes-{n}x{size}"
    if not (folder / ".complete").exists():
        import calstack

        shutil.rmtree(folder, ignore_errors=True)
        print(f"simulating {folder} ...", flush=True)
        calstack.simulate(folder, preset="te", shape=(size, size), n_darks=n, overwrite=True)
        (folder / ".complete").write_text("ok")
    return folder, sorted(str(p) for p in folder.glob("*.fits"))


_TIME = shutil.which("time") and "/usr/bin/time"


#: Every tool runs from its modules' bytecode, as an installed package does (pip compiles it).
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _timed(args, cwd=None):
    """Wall time and peak RSS of a process. The peak comes from GNU time where installed: a
    child forked from this (large) benchmark process would count its parent's pages in its
    own ``ru_maxrss`` until it execs."""
    if _TIME and os.path.exists(_TIME):
        args = [_TIME, "-f", "maxrss %M", *args]
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, env=_ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    if status:
        raise RuntimeError(f"{args[0]} failed ({status}): {err[-1500:]}")
    peaks = [line.split()[1] for line in err.splitlines() if line.startswith("maxrss ")]
    return seconds, int(peaks[-1]) * 1024 if peaks else usage.ru_maxrss * 1024


def _calstack(rejection):
    cli = str(Path(sys.executable).parent / "calstack")
    options = {"ccdclip": ["--rejection", "ccdclip", "--sigma", "3", "3"],
               "pclip": ["--rejection", "percentile_clip", "--sigma", "3", "3"],
               "recipe": ["--sigma-clip", "5", "5", "--mem-limit", "350MB"]}[rejection]

    def run(folder, _paths, out):
        return [cli, "-q", "combine", str(folder), "--imagetyp", "dark", "--no-cache", "-o",
                str(out), "--overwrite", *options]
    return run


def _script(code):
    def run(_folder, paths, out):
        return [sys.executable, "-c", code, str(out / "out.fits"), *paths]
    return run


def _iraf(reject):
    def run(_folder, paths, out):
        (out / "frames.lis").write_text("\n".join(paths) + "\n")
        (out / "out.fits").unlink(missing_ok=True)
        extra = 'gain="GAIN", rdnoise="RDNOISE", lsigma=3., hsigma=3.' if reject == "ccdclip" \
            else "pclip=-0.5, lsigma=3., hsigma=3."
        (out / "s.cl").write_text(
            "images\nimmatch\nimcombine (\"@frames.lis\", \"out.fits\", combine=\"average\", "
            f"reject=\"{reject}\", {extra}, outtype=\"real\", logfile=\"\")\nlogout\n")
        return ["irafcl", "-f", str(out / "s.cl")]
    return run


def _gnuastro(_folder, paths, out):
    return ["astarithmetic", *paths, str(len(paths)), "5", "0.2", "sigclip-mean", "-g0",
            "-o", str(out / "out.fits"), "--quiet"]


def _siril(folder, _paths, out):
    """``link`` makes a sequence of every FITS file of the folder (the stack's frames)."""
    (out / "s.ssf").write_text(
        "requires 1.0.0\nsetext fits\n"
        f"cd {folder}\nlink frame_ -out={out / 'seq'}\ncd {out / 'seq'}\n"
        f"stack frame_ rej s 3 3 -nonorm -out={out / 'out'}\nclose\n")
    return ["siril-cli", "-s", str(out / "s.ssf")]


TOOLS = {
    "calstack ccdclip": (_calstack("ccdclip"), None),
    "calstack pclip": (_calstack("pclip"), None),
    "calstack recipe": (_calstack("recipe"), None),
    "ccdproc recipe": (_script(_CCDPROC), None),
    "astropy bands": (_script(_BANDS), None),
    "IRAF imcombine ccdclip": (_iraf("ccdclip"), "irafcl"),
    "IRAF imcombine pclip": (_iraf("pclip"), "irafcl"),
    "Gnuastro sigclip-mean": (_gnuastro, "astarithmetic"),
    "Siril stack rej sigma": (_siril, "siril-cli"),
    "floor (read all, write one)": (_script(_FLOOR), None),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", nargs="+", default=DEFAULT_STACKS, metavar="NxS")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each tool (best kept)")
    parser.add_argument("--skip", action="append", default=[], help="a tool to leave out")
    args = parser.parse_args()
    CACHE.mkdir(exist_ok=True)
    results = {}
    for stack in args.stacks:
        n, size = (int(v) for v in stack.split("x"))
        folder, paths = _frames(n, size)
        results[stack] = {}
        for name, (command, needs) in TOOLS.items():
            if name in args.skip:
                continue
            if needs and shutil.which(needs) is None:
                print(f"{stack:>8} {name:28s} skipped: {needs} is not installed", flush=True)
                continue
            runs = []
            for _ in range(args.repeat):
                into_page_cache(paths)
                with tempfile.TemporaryDirectory(dir=CACHE) as out:
                    try:
                        runs.append(_timed(command(folder, paths, Path(out)), cwd=out))
                    except RuntimeError as exc:
                        print(f"{stack:>8} {name:28s} failed: {exc}", flush=True)
                        break
            if runs:
                seconds, peak = min(runs)
                results[stack][name] = {"seconds": seconds, "peak_rss": peak}
                print(f"{stack:>8} {name:28s} {seconds:8.2f} s  peak RSS {peak / 1e6:6.0f} MB",
                      flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_processes.json").write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
        "cpus": os.cpu_count(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
