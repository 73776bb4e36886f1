"""The memory limit holds: peak resident memory above the baseline stays under mem_limit."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from astropy.io import fits

CHILD = textwrap.dedent(
    """
    import json, os, re, sys
    import calstack
    from calstack.pipeline.groups import combine_groups
    from calstack.options import RECIPE

    def status(field):
        text = open("/proc/self/status").read()
        return int(re.search(field + r":\\s+(\\d+) kB", text).group(1)) * 1024

    small, big, limit, out, grouped = json.loads(sys.argv[1])
    calstack.combine(small, mem_limit="100MB", **RECIPE)  # warm: imports, numba cache, threads
    calstack.ImageIndex(os.path.dirname(small[0]))  # and the index with its header cache
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    baseline = status("VmRSS")
    if grouped:  # the whole job: index, one master per exposure time, written
        built = combine_groups(calstack.ImageIndex(big), select={"imagetyp": "dark"},
                               output_dir=out, mem_limit=limit, **RECIPE)
        tiles = len(built)
    else:
        master = calstack.combine(big, mem_limit=limit, **RECIPE)
        master.write(out)
        tiles = len(master.plan.tiles)
    print(json.dumps({"baseline": baseline, "peak": status("VmHWM"), "tiles": tiles}))
    """
)


def _run(args):
    import json

    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True,
                          text=True, check=True)
    result = json.loads(done.stdout)
    return result, result["peak"] - result["baseline"]


def _small(tmp_path, rng):
    small = []
    for i in range(3):
        small.append(str(tmp_path / f"small{i}.fits"))
        fits.writeto(small[-1], rng.normal(100, 5, (16, 16)).astype(np.float32))
    return small


@pytest.mark.slow
def test_peak_memory_stays_under_limit(tmp_path):
    rng = np.random.default_rng(0)
    shape, n_frames = (1024, 1024), 40  # a 160 MB stack
    big = []
    for i in range(n_frames):
        big.append(str(tmp_path / f"big{i:02d}.fits"))
        fits.writeto(big[-1], rng.normal(100, 5, shape).astype(np.float32))
    limit = 40_000_000
    result, growth = _run([_small(tmp_path, rng), big, limit, str(tmp_path / "master.fit"), False])
    assert result["tiles"] > 4  # the stack really was cut
    assert growth < limit, f"peak grew {growth / 1e6:.1f} MB over a {limit / 1e6:.0f} MB limit"
    assert growth > 0.3 * limit  # and the measurement saw the combine at all


@pytest.mark.slow
def test_grouped_job_stays_under_limit(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "darks"
    folder.mkdir()
    for exptime in (10.0, 20.0, 30.0):  # three masters whose outputs alone are 23 MB each
        for i in range(6):
            header = fits.Header({"IMAGETYP": "DARK", "EXPTIME": exptime})
            fits.writeto(folder / f"d{exptime:.0f}-{i}.fits",
                         rng.normal(100, 5, (1024, 2048)).astype(np.float32), header)
    limit = 40_000_000
    out = tmp_path / "out"
    result, growth = _run([_small(tmp_path, rng), str(folder), limit, str(out), True])
    assert result["tiles"] == 3
    assert len(list(out.iterdir())) == 3
    assert growth < limit, f"peak grew {growth / 1e6:.1f} MB over a {limit / 1e6:.0f} MB limit"
