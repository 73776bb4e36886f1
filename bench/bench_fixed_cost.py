"""Whole-process cost of ``calstack combine`` (issue 18, items 1 and 2).

Runs the CLI in fresh processes (best of N, wall time and peak RSS from ``/usr/bin/time -v``)
on a tiny stack (3 x 64^2: the fixed cost) and on a large one (25 x 2048^2) at two memory
limits. Everything is written into a temporary folder. The first run of each case warms the
numba cache and is not counted.

    python bench/bench_fixed_cost.py [--repeat 5] [--big] [--src OLD/src --src src]

With several ``--src`` folders (e.g. an exported copy of main and this tree) each case runs
them in turn, run by run, so that the machine's load falls on all of them alike.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

MAIN = "from calstack.cli import run; run()"  # the ``calstack`` program


def _run(args, env):
    """Wall seconds and peak RSS (MB) of one CLI run."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-c", MAIN, *args]
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    h = float(wall.group(1) or 0)
    seconds = h * 3600 + float(wall.group(2)) * 60 + float(wall.group(3))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    sys_s = float(re.search(r"System time \(seconds\): ([\d.]+)", done.stderr).group(1))
    return seconds, rss / 1024, sys_s


def _case(name, args, envs, repeat):
    for env in envs.values():
        _run(args, env)  # warm the numba cache and the page cache
    runs = {label: [] for label in envs}
    for _ in range(repeat):  # interleaved: each source sees the same load
        for label, env in envs.items():
            runs[label].append(_run(args, env))
    for label, done in runs.items():
        best = min(done)
        print(f"{name:<32} {label:<24} best {best[0]:6.2f} s  "
              f"(all: {' '.join(f'{r[0]:.2f}' for r in done)})  "
              f"peak RSS {max(r[1] for r in done):5.0f} MB  sys {best[2]:.2f} s", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--big", action="store_true", help="also 25 x 2048^2 at two limits")
    parser.add_argument("--src", action="append", default=[],
                        help="a calstack source folder to time (repeatable; default: as imported)")
    ns = parser.parse_args()
    # from the modules' bytecode, as an installed package runs (pip compiles it)
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    envs = {src: {**environ, "PYTHONPATH": str(Path(src).resolve())} for src in ns.src}
    envs = envs or {"(installed)": environ}
    first = next(iter(envs.values()))
    with tempfile.TemporaryDirectory(prefix="calstack-bench-") as tmp:
        tmp = Path(tmp)
        _run(["simulate", str(tmp / "tiny"), "--shape", "64", "64", "--n-darks", "3"], first)
        _case("3 x 64^2 combine", ["-q", "combine", str(tmp / "tiny"), "--no-cache", "--overwrite",
                                   "-o", str(tmp / "out-tiny")], envs, ns.repeat)
        if ns.big:
            _run(["simulate", str(tmp / "big"), "--shape", "2048", "2048", "--n-darks", "25"],
                 first)
            for limit in ("350MB", "1GB"):
                _case(f"25 x 2048^2 --mem-limit {limit}",
                      ["-q", "combine", str(tmp / "big"), "--no-cache", "--overwrite",
                       "--mem-limit", limit, "-o", str(tmp / f"out-{limit}")], envs, ns.repeat)


if __name__ == "__main__":
    main()
