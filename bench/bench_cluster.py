"""Benchmark: the local backend vs a Dask LocalCluster on this machine, same files, one run.

    python bench/bench_cluster.py                    # 20 frames of 2048x2048, recipe, 350MB
    python bench/bench_cluster.py --frames 40 --workers 4 --mem-limit 1GB

Frames come from calstack's simulator (calibrated darks) and are cached under bench/cache/.
Each backend is measured in its own child process: the kernel is loaded (on the workers too)
by a first combine, then the same combine runs ``--repeat`` times and the best time is kept.
The cluster is what ``--scheduler local:N`` starts (:func:`calstack.stacking.cluster.connect`); its
start-up is reported apart. Memory is the client process's peak resident size above its
baseline before the timed runs (``/proc/self/clear_refs`` resets the peak), and, for the
cluster, the largest growth of a worker process's peak over the same runs. Results are printed and saved
to bench/results/bench_cluster.json.
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
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
RESULTS = HERE / "results"


def _status(field):
    text = Path("/proc/self/status").read_text()
    return int(re.search(field + r":\s+(\d+) kB", text).group(1)) * 1024


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _timed_runs(combine, repeat):
    """Best seconds of ``repeat`` calls, and the peak resident growth over them."""
    _reset_peak()
    baseline = _status("VmRSS")
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        master = combine()
        best = min(best, time.perf_counter() - start)
        del master
    return best, _status("VmHWM") - baseline


def _child(spec):
    """Measure one backend (``spec['backend']``: 'local' or 'cluster'); print JSON."""
    import calstack
    from calstack.stacking.cluster import connect

    files = sorted(str(p) for p in Path(spec["folder"]).glob("*.fits"))
    options = dict(calstack.RECIPE, mem_limit=spec["mem_limit"])
    result = {}
    if spec["backend"] == "local":
        calstack.combine(files[:2], **options)  # load the kernel
        result["seconds"], result["client_growth"] = _timed_runs(
            lambda: calstack.combine(files, **options), spec["repeat"])
        print(json.dumps(result))
        return
    start = time.perf_counter()
    with connect(f"local:{spec['workers']}") as client:
        client.wait_for_workers(spec["workers"])
        result["startup"] = time.perf_counter() - start
        start = time.perf_counter()
        master = calstack.combine(files, client=client, **options)  # kernel loaded everywhere
        result["first"] = time.perf_counter() - start
        result["tasks"] = len(master.plan.tiles)
        del master
        client.run(_reset_peak)
        baselines = client.run(_status, "VmRSS")
        result["seconds"], result["client_growth"] = _timed_runs(
            lambda: calstack.combine(files, client=client, **options), spec["repeat"])
        peaks = client.run(_status, "VmHWM")
        result["worker_growth"] = max(peaks[w] - baselines[w] for w in peaks)
    print(json.dumps(result))


def _frames(n, size):
    folder = CACHE / f"cluster-{n}x{size}"
    if not (folder / ".complete").exists():
        from calstack import simulate

        shutil.rmtree(folder, ignore_errors=True)
        print(f"simulating {n} frames of {size}x{size} into {folder} ...", flush=True)
        simulate(folder, preset="te", shape=(size, size), n_darks=n, overwrite=True)
        (folder / ".complete").write_text("ok")
    for path in folder.glob("*.fits"):  # read from the page cache, not the disk
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
    return folder


def _run_child(spec):
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{spec['backend']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=int, default=2048, help="frames are SIZE x SIZE")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--mem-limit", default="350MB")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (best kept)")
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    folder = _frames(args.frames, args.size)
    spec = dict(folder=str(folder), mem_limit=args.mem_limit, repeat=args.repeat,
                workers=args.workers)
    local = _run_child({**spec, "backend": "local"})
    cluster = _run_child({**spec, "backend": "cluster"})
    stack = args.frames * args.size**2 * 4
    print(f"{args.frames} frames of {args.size}x{args.size} ({stack / 1e6:.0f} MB as float32), "
          f"recipe, mem_limit {args.mem_limit}, {os.cpu_count()} cores, best of {args.repeat}")
    print(f"  local backend:            {local['seconds']:6.2f} s   client +"
          f"{local['client_growth'] / 1e6:.0f} MB")
    print(f"  LocalCluster, {args.workers} workers:   {cluster['seconds']:6.2f} s   client +"
          f"{cluster['client_growth'] / 1e6:.0f} MB, a worker +"
          f"{cluster['worker_growth'] / 1e6:.0f} MB, {cluster['tasks']} tasks")
    print(f"  cluster / local:          {cluster['seconds'] / local['seconds']:6.2f}x   "
          f"(cluster start-up {cluster['startup']:.1f} s, first combine {cluster['first']:.1f} s)")
    RESULTS.mkdir(exist_ok=True)
    report = dict(date=time.strftime("%Y-%m-%d"), machine=platform.platform(),
                  cores=os.cpu_count(), frames=args.frames, size=args.size,
                  mem_limit=args.mem_limit, local=local, cluster=cluster)
    (RESULTS / "bench_cluster.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
