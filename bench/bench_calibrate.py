"""Benchmark: ``calstack calibrate`` vs a ccdproc ``ccd_process`` loop vs the I/O floor, side by
side on the same files, in one run.

    python bench/bench_calibrate.py                       # 50 science frames of 4096x4096
    python bench/bench_calibrate.py --frames 10 --size 2048
    python bench/bench_calibrate.py --out-dir /dev/shm     # outputs in memory, not on the disk

A raw night (calstack's simulator: biases, darks, flats and science frames, uint16) and its
masters (``calstack masters --subtract-bias --subtract-dark``) are made once and cached under
bench/cache/. Then each tool calibrates every science frame with the master bias, the master
dark (scaled by exposure) and the master flat, writing data, uncertainty and mask:

- calstack: :func:`calstack.calibrate` (index, choice of masters, bands, parallel frames);
- ccdproc: the CCD Data Reduction Guide's loop: ``CCDData.read``, ``ccd_process`` (gain,
  read noise, error=True, bias, dark scaled by exposure, flat), ``write``;
- IRAF's ``ccdproc`` task (``irafcl -f``; where ``irafcl`` is installed): zero, dark scaled by
  exposure and flat corrections of every frame, in ADU and without uncertainty or mask (it has
  none), the masters copied beside it with IRAF's keywords that say they are processed
  (ZEROCOR, DARKCOR, CCDPROC, the flat's CCDMEAN), so that it applies them as they are;
- floor: read each frame once and write it once as float32 with a float32 and a uint8
  extension of its size (the bytes a calibrated frame with uncertainty and mask holds);
- writes: the same bytes as bare files from a ready buffer, on two threads, each file fsync'd as
  calstack does before its rename: what the disk alone takes.

Every measurement runs in its own child process, which reports its wall time and its peak
resident memory above the baseline before the job. Results are printed and saved to
bench/results/bench_calibrate.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_combine import CACHE, RESULTS, _reset_peak, _status


def _child(spec):
    tool, night, out = spec["tool"], Path(spec["night"]), Path(spec["out"])
    masters = night / "masters"
    lights = sorted(night.glob("light-*.fits"))
    if tool == "calstack":
        import calstack

        calstack.calibrate(lights[:1], masters, out / "warm", cache=False)  # imports, first call
        _reset_peak()
        baseline = _status("VmRSS")
        start = time.perf_counter()
        calstack.calibrate(night, masters, out, cache=False, mem_limit=spec["mem_limit"])
    elif tool == "ccdproc":
        import warnings

        import ccdproc as ccdp
        from astropy import units as u
        from astropy.nddata import CCDData

        warnings.simplefilter("ignore")
        _reset_peak()
        baseline = _status("VmRSS")
        start = time.perf_counter()
        bias = CCDData.read(masters / "combined_bias.fit")
        dark = CCDData.read(masters / "combined_dark_120.000.fit")
        flat = CCDData.read(masters / "combined_flat_R.fit")
        for path in lights:
            ccd = CCDData.read(path, unit="adu")
            done = ccdp.ccd_process(
                ccd, error=True, gain=1.2 * u.electron / u.adu, readnoise=4.0 * u.electron,
                master_bias=bias, dark_frame=dark, master_flat=flat, exposure_key="EXPTIME",
                exposure_unit=u.s, dark_scale=True, gain_corrected=False)
            done.write(out / path.name, overwrite=True)
    elif tool == "iraf":  # its peak: the irafcl process's own (ru_maxrss of the children)
        import resource

        script = _iraf_script(lights, masters, out)
        start = time.perf_counter()
        done = subprocess.run(["irafcl", "-f", str(script)], cwd=out, capture_output=True,
                              text=True, check=False)
        seconds = time.perf_counter() - start
        if not all((out / path.name).exists() for path in lights):
            raise SystemExit(f"IRAF's ccdproc wrote no output:\n{done.stdout[-2000:]}")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        print(json.dumps({"seconds": seconds, "baseline": 0, "peak": peak}))
        return
    elif tool == "floor":
        import numpy as np
        from astropy.io import fits

        _reset_peak()
        baseline = _status("VmRSS")
        start = time.perf_counter()
        for path in lights:  # read once; write once what a calibrated frame holds
            with fits.open(path) as hdul:  # uint16 with BZERO: read, not memory-mapped
                data = hdul[0].data.astype(np.float32)
            fits.HDUList([fits.PrimaryHDU(data), fits.ImageHDU(data, name="UNCERT"),
                          fits.ImageHDU(data.astype(np.uint8), name="MASK")]).writeto(
                out / path.name)
            del data
    elif tool == "writes":  # the bytes alone: what calstack writes, as bare files
        import os
        from concurrent.futures import ThreadPoolExecutor

        import numpy as np
        from astropy.io import fits

        with fits.open(lights[0]) as hdul:
            pixels = hdul[0].data.size
        chunk = memoryview(np.ones(1 << 21, np.float32)).cast("B")  # 8 MiB
        size = pixels * 9  # float32 data and uncertainty, uint8 mask

        def write(path):
            fd = os.open(out / path.name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                for offset in range(0, size, len(chunk)):
                    os.write(fd, chunk[: min(len(chunk), size - offset)])
                os.fsync(fd)  # as calstack does before its rename
            finally:
                os.close(fd)

        _reset_peak()
        baseline = _status("VmRSS")
        start = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(write, lights))
    else:
        raise SystemExit(f"unknown tool {tool}")
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "baseline": baseline, "peak": _status("VmHWM")}))


def _iraf_script(lights, masters, out) -> Path:
    """The CL script of IRAF's ``ccdproc`` over ``lights`` into ``out``, with copies of the
    masters that IRAF takes as processed."""
    from calstack.compat.iraf import iraf_masters

    names = iraf_masters(masters, out, {"zero": "combined_bias.fit",
                                        "dark": "combined_dark_120.000.fit",
                                        "flat": "combined_flat_R.fit"})
    (out / "in.lis").write_text("".join(f"{path}\n" for path in lights))
    (out / "out.lis").write_text("".join(f"{out / path.name}\n" for path in lights))
    script = out / "ccdproc.cl"
    script.write_text(
        'set imtype = "fits"\nnoao\nimred\nccdred\nccdred.instrument = ""\n'
        'ccdred.pixeltype = "real real"\nccdred.logfile = ""\nccdred.verbose = no\n'
        f'ccdred.backup = ""\nccdred.ssfile = "{out / "subsets"}"\n'
        'ccdproc ("@in.lis", output="@out.lis", ccdtype="", max_cache=0, noproc=no, '
        "fixpix=no, overscan=no, trim=no, zerocor=yes, darkcor=yes, flatcor=yes, "
        "illumcor=no, fringecor=no, readcor=no, scancor=no, "
        f'zero="{names["zero"]}", dark="{names["dark"]}", flat="{names["flat"]}")\nlogout\n')
    return script


def _night(frames, size):
    """Simulate (or reuse) the night and its masters; returns its folder."""
    folder = CACHE / f"calibrate-{frames}x{size}"
    if not (folder / ".complete").exists():
        import calstack

        shutil.rmtree(folder, ignore_errors=True)
        print(f"simulating {folder} ...", flush=True)
        calstack.simulate(folder, preset="night", shape=(size, size), filters=["R"],
                          n_lights=frames, overwrite=True)
        calstack.build_night(calstack.ImageIndex(folder, cache=False), folder / "masters",
                             subtract_bias=True, subtract_dark=True)
        (folder / ".complete").write_text("ok")
    for path in [*folder.glob("*.fits"), *(folder / "masters").glob("*.fit")]:
        with open(path, "rb") as f:  # into the page cache: every tool reads from memory
            while f.read(1 << 24):
                pass
    return folder


def _run(tool, night, mem_limit, out_dir):
    with tempfile.TemporaryDirectory(dir=out_dir) as out:
        spec = {"tool": tool, "night": str(night), "out": out, "mem_limit": mem_limit}
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                              capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{tool} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["growth"] = result["peak"] - result["baseline"]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=50, help="science frames")
    parser.add_argument("--size", type=int, default=4096, help="frame side in pixels")
    parser.add_argument("--mem-limit", default="1GB", help="calstack's memory limit")
    parser.add_argument("--out-dir", type=Path, default=CACHE,
                        help="where the tools write (default bench/cache; e.g. /dev/shm: memory "
                             "instead of the disk)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of calstack and the floor (best kept; ccdproc runs once)")
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    CACHE.mkdir(exist_ok=True)
    night = _night(args.frames, args.size)
    rows = {}
    for tool in ("calstack", "floor", "writes", "iraf", "ccdproc"):
        if tool == "iraf" and shutil.which("irafcl") is None:
            print("iraf      skipped: irafcl is not installed", flush=True)
            continue
        runs = [_run(tool, night, args.mem_limit, args.out_dir)
                for _ in range(1 if tool == "ccdproc" else args.repeat)]
        best = min(runs, key=lambda r: r["seconds"])
        rows[tool] = {**best, "growth_max": max(r["growth"] for r in runs)}
        print(f"{tool:9s} {best['seconds']:7.2f} s   peak +{rows[tool]['growth_max'] / 1e6:.0f} MB",
              flush=True)
    ratio = rows["ccdproc"]["seconds"] / rows["calstack"]["seconds"]
    floor = rows["calstack"]["seconds"] / rows["floor"]["seconds"]
    iraf = (f", {rows['iraf']['seconds'] / rows['calstack']['seconds']:.1f}x faster than IRAF's "
            "ccdproc" if "iraf" in rows else "")
    writes = rows["calstack"]["seconds"] / rows["writes"]["seconds"]
    print(f"\n{args.frames} x {args.size}^2: calstack {ratio:.1f}x faster than ccdproc{iraf}, "
          f"{floor:.2f}x the floor, {writes:.2f}x the bare writes; mem_limit {args.mem_limit}; "
          f"written to {args.out_dir}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_calibrate.json").write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
        "frames": args.frames, "size": args.size, "mem_limit": args.mem_limit,
        "out_dir": str(args.out_dir),
        "results": rows, "ccdproc_over_calstack": ratio, "calstack_over_floor": floor,
        "calstack_over_writes": writes},
        indent=1))


if __name__ == "__main__":
    main()
