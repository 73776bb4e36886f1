"""Benchmark: calstack vs ccdproc vs the I/O floor, side by side on the same files, in one run.

    python bench/bench_combine.py                 # W1, W2, median/extrema on W1, CLI cold/warm
    python bench/bench_combine.py --all           # + W3 (100x2048^2), W4 (40x4096^2 at 500MB),
                                                  #   curves (calstack vs floor) over frames and size,
                                                  #   and W1 with every algorithm of the registry
    python bench/bench_combine.py --only W1       # one workload

Frames come from calstack's simulator and are cached under bench/cache/, and are read into the
page cache before each measurement (``page_cache.py``). Every measurement runs in its own child
process, which reports its wall time and its peak resident memory above the baseline it had
before the job (``/proc/self/clear_refs`` resets the peak). Results are printed as a table and
saved to bench/results/bench_combine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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

RECIPE = dict(method="average", rejection="sigma_clip", sigma_lower=5, sigma_upper=5,
              cenfunc="median", stdfunc="mad_std")


# --------------------------------------------------------------------------- child side
def _status(field):
    text = Path("/proc/self/status").read_text()
    return int(re.search(field + r":\s+(\d+) kB", text).group(1)) * 1024


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _child(spec):
    """Run one job described by ``spec``; print JSON with seconds and memory."""
    tool, folder, out = spec["tool"], spec["folder"], spec["out"]
    mem_limit = spec["mem_limit"]
    options = spec.get("options", {})
    if tool == "calstack":
        import calstack
        from calstack.pipeline.groups import combine_groups

        warm = sorted(Path(folder).glob("*.fits"))[:3]
        # load the kernels and what the options import (scipy for ESD) before the baseline
        calstack.combine([str(w) for w in warm], mem_limit="4GB", **{**RECIPE, **options})
        _reset_peak()
        baseline = _status("VmRSS")
        start = time.perf_counter()
        combine_groups(calstack.ImageIndex(folder, cache=False), select={"imagetyp": "dark"},
                       keys=["exptime"], output_dir=out, mem_limit=mem_limit,
                       **{**RECIPE, **options})
    elif tool == "calstack-combine":  # the combine calls alone: no index, no writing
        import calstack

        index = calstack.ImageIndex(folder, cache=False).filter(imagetyp="dark")
        groups = calstack.group_by(index, ["exptime"])
        calstack.combine(list(groups[0].paths)[:3], mem_limit="4GB",
                         **{**RECIPE, **options})  # load the kernels, and scipy for ESD
        _reset_peak()
        baseline = _status("VmRSS")
        start = time.perf_counter()
        for group in groups:
            master = calstack.combine(group, mem_limit=mem_limit, **{**RECIPE, **options})
            del master
    elif tool == "ccdproc":
        import warnings

        import ccdproc as ccdp
        import numpy as np
        from astropy.stats import mad_std

        warnings.simplefilter("ignore")
        _reset_peak()
        baseline = _status("VmRSS")
        start = time.perf_counter()
        images = ccdp.ImageFileCollection(folder)
        darks = images.summary["imagetyp"] == "DARK"
        for exp_time in sorted(set(images.summary["exptime"][darks])):
            files = images.files_filtered(imagetyp="dark", exptime=exp_time, include_path=True)
            kwargs = dict(method="average", sigma_clip=True, sigma_clip_low_thresh=5,
                          sigma_clip_high_thresh=5, sigma_clip_func=np.ma.median,
                          sigma_clip_dev_func=mad_std, mem_limit=mem_limit)
            if options.get("method") == "median":
                kwargs["method"] = "median"
            if options.get("nlow"):
                kwargs.update(clip_extrema=True, nlow=options["nlow"], nhigh=options["nhigh"])
            combined = ccdp.combine(files, **kwargs)
            combined.meta["combined"] = True
            combined.write(Path(out) / f"combined_dark_{exp_time:6.3f}.fit", overwrite=True)
    elif tool == "floor":
        import numpy as np
        from astropy.io import fits

        _reset_peak()
        baseline = _status("VmRSS")
        start = time.perf_counter()
        acc = None
        for path in sorted(Path(folder).glob("*.fits")):
            with fits.open(path, memmap=True) as hdul:
                data = hdul[0].data
                acc = data.astype(np.float32) if acc is None else np.add(acc, data, out=acc)
                del data
    else:
        raise SystemExit(f"unknown tool {tool}")
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "baseline": baseline, "peak": _status("VmHWM")}))


# --------------------------------------------------------------------------- parent side
def _frames(name, preset=None, **sim):
    """Simulate (or reuse) a workload's frames; returns the folder."""
    folder = CACHE / name
    if not (folder / ".complete").exists():
        from calstack import simulate

        shutil.rmtree(folder, ignore_errors=True)
        print(f"simulating {name} into {folder} ...", flush=True)
        simulate(folder, preset=preset, overwrite=True, **sim)
        (folder / ".complete").write_text("ok")
    return folder


def _run_child(spec, env=None):
    into_page_cache(Path(spec["folder"]).glob("*.fits"))
    with tempfile.TemporaryDirectory(dir=CACHE) as out:
        spec = {**spec, "out": out}
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                              capture_output=True, text=True, env=env,
                              check=False)
    if done.returncode:
        raise RuntimeError(f"{spec['tool']} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["growth"] = result["peak"] - result["baseline"]
    return result


def _run_cli(folder, mem_limit, numba_cache=None):
    """The CLI as a whole process (start-up, index, combine, write); wall time and peak RSS."""
    env = dict(os.environ)
    if numba_cache:
        env["NUMBA_CACHE_DIR"] = numba_cache
    cli = _cli()
    into_page_cache(Path(folder).glob("*.fits"))
    with tempfile.TemporaryDirectory(dir=CACHE) as out:
        args = [cli, "-q", "combine", str(folder), "--imagetyp", "dark", "--group-by", "exptime",
                "--sigma-clip", "5", "5", "--mem-limit", mem_limit, "--output-dir", out]
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    if status:
        raise RuntimeError(f"calstack CLI failed with status {status}")
    return {"seconds": seconds, "peak": usage.ru_maxrss * 1024}


def _cli():
    """The installed ``calstack`` script of this interpreter (its venv need not be active)."""
    script = Path(sys.executable).parent / "calstack"
    return str(script) if script.exists() else shutil.which("calstack") or "calstack"


def _startup():
    return min(_timed([_cli(), "--help"]) for _ in range(5))


def _timed(args):
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - start


def _mb(n):
    return f"{n / 1e6:8.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--all", action="store_true", help="also W3, W4 and the scaling curves")
    parser.add_argument("--only", action="append", metavar="WORKLOAD",
                        help="run only this workload (repeatable; any of --all's)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of calstack and the floor (best time kept; ccdproc runs once)")
    parser.add_argument("--no-ccdproc-above", type=float, default=3e9, metavar="BYTES",
                        help="skip ccdproc on stacks bigger than this (it takes minutes)")
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)

    def te():
        return _frames("te", preset="te")

    basic = [
        # name, folder factory, mem_limit, extra options, stack bytes
        ("W1", te, "350MB", {}, 10 * 4096 * 4096 * 4),
        ("W1-median", te, "350MB", {"method": "median"}, 10 * 4096 * 4096 * 4),
        ("W1-extrema", te, "350MB", {"rejection": None, "nlow": 1, "nhigh": 1},
         10 * 4096 * 4096 * 4),
        ("W2", lambda: _frames("cryo", preset="cryo"), "350MB", {}, 9 * 4096 * 4096 * 4),
    ]
    more = [
        ("W3", lambda: _frames("many", preset="te", shape=(2048, 2048), n_darks=100),
         "350MB", {}, 100 * 2048 * 2048 * 4),
        ("W4", lambda: _frames("big", preset="te", n_darks=40), "500MB", {},
         40 * 4096 * 4096 * 4),
    ]
    for n in (10, 25, 50, 100):
        more.append((f"frames-{n}", lambda n=n: _frames(
            f"n{n}", preset="te", shape=(2048, 2048), n_darks=n), "350MB", {},
            n * 2048 * 2048 * 4))
    for size in (1024, 2048, 4096):
        more.append((f"size-{size}", lambda s=size: _frames(
            f"s{s}", preset="te", shape=(s, s)), "350MB", {}, 10 * size * size * 4))
    from calstack import ALGORITHMS

    for algorithm in ALGORITHMS:  # every registry entry, against the floor (ccdproc has none)
        more.append((f"alg-{algorithm}", te, "350MB", {"rejection": algorithm},
                     10 * 4096 * 4096 * 4))
    workloads = basic + more if args.all else basic
    if args.only:
        names = [w[0] for w in basic + more]
        unknown = [name for name in args.only if name not in names]
        if unknown:
            parser.error(f"--only {unknown[0]}: no such workload; choose from {', '.join(names)}")
        workloads = [w for w in basic + more if w[0] in args.only]

    rows = []
    for name, make, mem_limit, options, stack_bytes in workloads:
        folder = str(make())
        row = {"workload": name, "mem_limit": mem_limit, "stack_bytes": stack_bytes}
        curve = name.startswith(("frames-", "size-", "alg-"))  # calstack against the floor
        for tool in ("calstack", "calstack-combine", "ccdproc", "floor"):
            if tool == "ccdproc" and (curve or stack_bytes > args.no_ccdproc_above):
                continue
            spec = {"tool": tool, "folder": folder, "mem_limit": mem_limit, "options": options}
            if tool == "ccdproc":
                from calstack import parse_mem_limit

                spec["mem_limit"] = float(parse_mem_limit(mem_limit))
            runs = [_run_child(spec) for _ in range(1 if tool == "ccdproc" else args.repeat)]
            row[tool] = min(runs, key=lambda r: r["seconds"])
            row[tool]["peak_growth_max"] = max(r["growth"] for r in runs)
            print(f"  {name:11s} {tool:9s} {row[tool]['seconds']:8.2f} s  "
                  f"peak +{row[tool]['growth'] / 1e6:.0f} MB", flush=True)
        if name == "W1":
            with tempfile.TemporaryDirectory(dir=CACHE) as cold:
                row["cli_cold"] = _run_cli(folder, mem_limit, numba_cache=cold)
            row["cli_warm"] = _run_cli(folder, mem_limit)
        rows.append(row)

    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "date": time.strftime("%Y-%m-%d"), "cli_startup_s": _startup()}
    print(f"\n{meta}\n")
    from calstack import parse_mem_limit

    print("job = index + combine + write every master (what ccdproc's recipe does too); "
          "combine = the combine calls alone;\nfloor = a NumPy streaming mean of the same "
          "memory-mapped files; +MB = peak resident memory above the process's baseline\n")
    print(f"{'workload':11s} {'job s':>7s} {'combine s':>9s} {'ccdproc s':>9s} {'floor s':>7s} "
          f"{'ccdproc/job':>11s} {'combine/floor':>13s} {'limit MB':>8s} {'job +MB':>8s} "
          f"{'cmb +MB':>8s} {'ccdp +MB':>8s}")
    nan = float("nan")
    for row in rows:
        job, cmb, cp, fl = row["calstack"], row["calstack-combine"], row.get("ccdproc"), row["floor"]
        print(f"{row['workload']:11s} {job['seconds']:7.2f} {cmb['seconds']:9.2f} "
              f"{cp['seconds'] if cp else nan:9.2f} {fl['seconds']:7.2f} "
              f"{(cp['seconds'] / job['seconds']) if cp else nan:10.1f}x "
              f"{cmb['seconds'] / fl['seconds']:12.2f}x {_mb(parse_mem_limit(row['mem_limit']))} "
              f"{_mb(job['peak_growth_max'])} {_mb(cmb['peak_growth_max'])} "
              f"{_mb(cp['growth']) if cp else '       -'}")
        if "cli_cold" in row:
            print(f"{'':11s} CLI whole process: cold numba cache {row['cli_cold']['seconds']:.2f} s, "
                  f"warm {row['cli_warm']['seconds']:.2f} s (peak RSS "
                  f"{row['cli_warm']['peak'] / 1e6:.0f} MB)")
    (RESULTS / "bench_combine.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\nsaved {RESULTS / 'bench_combine.json'}")


if __name__ == "__main__":
    main()
