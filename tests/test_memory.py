"""The memory limit holds: peak resident memory above the baseline stays under mem_limit."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from astropy.io import fits

CHILD = textwrap.dedent(
    """
    import json, re, sys
    import calstack
    from calstack.options import RECIPE

    def status(field):
        text = open("/proc/self/status").read()
        return int(re.search(field + r":\\s+(\\d+) kB", text).group(1)) * 1024

    small, big, limit, out = json.loads(sys.argv[1])
    calstack.combine(small, mem_limit="100MB", **RECIPE)  # warm: imports, numba cache, threads
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    baseline = status("VmRSS")
    master = calstack.combine(big, mem_limit=limit, **RECIPE)
    master.write(out)
    print(json.dumps({"baseline": baseline, "peak": status("VmHWM"),
                      "tiles": len(master.plan.tiles)}))
    """
)


@pytest.mark.slow
def test_peak_memory_stays_under_limit(tmp_path):
    import json

    rng = np.random.default_rng(0)
    shape, n_frames = (1024, 1024), 40  # a 160 MB stack
    big = []
    for i in range(n_frames):
        big.append(str(tmp_path / f"big{i:02d}.fits"))
        fits.writeto(big[-1], rng.normal(100, 5, shape).astype(np.float32))
    small = []
    for i in range(3):
        small.append(str(tmp_path / f"small{i}.fits"))
        fits.writeto(small[-1], rng.normal(100, 5, (16, 16)).astype(np.float32))
    limit = 40_000_000
    args = json.dumps([small, big, limit, str(tmp_path / "master.fit")])
    done = subprocess.run([sys.executable, "-c", CHILD, args], capture_output=True, text=True,
                          check=True)
    result = json.loads(done.stdout)
    growth = result["peak"] - result["baseline"]
    assert result["tiles"] > 4  # the stack really was cut
    assert growth < limit, f"peak grew {growth / 1e6:.1f} MB over a {limit / 1e6:.0f} MB limit"
    assert growth > 0.3 * limit  # and the measurement saw the combine at all
