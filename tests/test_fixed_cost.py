"""The command line's fixed cost (issue 18): which heavy modules a ``calstack combine`` imports,
and that the plain result it writes is the file ``Master.write`` writes. No timings."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

import calstack
from calstack.stacking.combining import prepare
from calstack.stacking.dispatch import run

#: Modules only some runs need; a plain combine on the command line imports none of them.
#: (scipy is not listed: numba itself imports it, when installed, to check its version;
#: scipy.linalg is, which numba's BLAS probe would import: calstack.kernels.jit skips it.)
HEAVY = ["astropy.nddata", "astropy.wcs", "astropy.coordinates", "astropy.table", "dask",
         "distributed", "matplotlib", "scipy.ndimage", "scipy.linalg", "calstack.viz.report"]

CHILD = """
import json, sys
from calstack.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _cli_modules(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True,
                          check=True, env=env)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    return set(result["modules"])


def test_combine_on_the_command_line_imports_no_heavy_module(dark_files, tmp_path):
    files, _, _ = dark_files
    out = tmp_path / "out"
    modules = _cli_modules("-q", "combine", os.path.dirname(files[0]), "--no-cache", "-o",
                           str(out))
    assert list(out.iterdir())  # it did write a master
    loaded = [m for m in HEAVY if m in modules]
    assert loaded == []


def test_a_whole_raw_night_on_the_command_line_imports_no_heavy_module(tmp_path):
    """``calstack reduce``: overscan and trim, every master, calibration of science frames."""
    calstack.simulate(tmp_path / "raw", preset="night", shape=(24, 20), n_lights=1,
                      overscan=4, n_bias=3, n_darks=3, n_flats=3)
    modules = _cli_modules("-q", "reduce", str(tmp_path / "raw"), "--no-cache", "-o",
                           str(tmp_path / "out"))
    assert len(list((tmp_path / "out" / "calibrated").iterdir())) == 2
    assert [m for m in HEAVY if m in modules] == []


def test_jitted_linear_algebra_still_finds_blas():
    """The skipped probe leaves numba's BLAS to whatever compiles ``np.dot`` (a fresh process:
    the kernels' modules imported first, as the command line does)."""
    code = ("import sys, numpy as np, numba, calstack.kernels.stack\n"
            "assert 'scipy.linalg' not in sys.modules\n"
            "dot = numba.njit(lambda a, b: np.dot(a, b))\n"
            "a = np.arange(6.0).reshape(2, 3)\n"
            "print(dot(a, a.T).tolist())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=env)
    assert done.stdout.strip() == "[[5.0, 14.0], [14.0, 50.0]]"


def test_plain_result_writes_the_masters_file(dark_files, tmp_path):
    files, _, _ = dark_files
    with prepare(files, **calstack.RECIPE) as job:
        result = run(job)
    result.write(tmp_path / "plain.fits")
    master = result.to_master()
    assert isinstance(master, calstack.Master)
    master.write(tmp_path / "master.fits")
    assert (tmp_path / "plain.fits").read_bytes() == (tmp_path / "master.fits").read_bytes()
    ccd = CCDData.read(tmp_path / "plain.fits")
    np.testing.assert_array_equal(ccd.data, result.data)
    np.testing.assert_array_equal(ccd.uncertainty.array, result.uncertainty)
    np.testing.assert_array_equal(ccd.mask, result.mask)
    np.testing.assert_array_equal(fits.getdata(tmp_path / "plain.fits", "NCOMB"), result.ncombine)


def test_band_height_does_not_grow_with_the_memory_limit():
    from calstack.stacking.plan import BAND_BYTES, plan_tiles

    def rows(limit):
        return plan_tiles(shape=(2048, 2048), n_frames=25, mem_limit=limit, stack_itemsize=4,
                          raw_itemsize=0, out_itemsize=4, n_readers=2).rows_per_tile

    assert rows(350 * 1000**2) == rows(10**9) == rows(10**11) == BAND_BYTES // (2048 * 25 * 4)
    assert rows(60 * 1000**2) < rows(10**9)  # a small limit still decides


def test_band_buffers_are_reused_from_group_to_group(dark_files):
    from calstack.stacking.backends import local

    files, _, _ = dark_files
    held, results = [], []
    for group in (files, files[:-1], files):  # fewer frames: the same buffers serve
        with prepare(group, **calstack.RECIPE) as job:
            results.append(local._run(job, lambda _rows: None, held))
            if len(results) == 1:
                first = held[0].buffers()
            assert all(b is c for b, c in zip(held[0].buffers(), first, strict=True))
    alone = calstack.combine(files, **calstack.RECIPE)
    np.testing.assert_array_equal(results[2].data, alone.data)
    np.testing.assert_array_equal(results[2].uncertainty, alone.uncertainty.array)
    np.testing.assert_array_equal(results[2].ncombine, alone.ncombine)


def test_preload_loads_the_specialisation_a_combine_runs(dark_files):
    """``preload`` (what the command line starts in a thread) loads the kernel's specialisation
    for the options' dtype, and a combine of those options then needs no other one."""
    from numba import from_dtype

    from calstack.kernels.stack import combine_stack
    from calstack.options import CombineOptions
    from calstack.stacking.kernel_call import preload

    files, _, _ = dark_files
    for dtype in ("float32", "float64"):
        options = CombineOptions(**{**calstack.RECIPE, "dtype": dtype})
        preload(options)  # no suppression: an error here fails the test
        loaded = set(combine_stack.signatures)
        assert any(sig[0].dtype == from_dtype(np.dtype(dtype)) for sig in loaded)
        calstack.combine(files, **{**calstack.RECIPE, "dtype": dtype})
        assert set(combine_stack.signatures) == loaded


@pytest.mark.parametrize("flags", [[], ["--rejection", "ccdclip"], ["--rejection", "percentile_clip"],
                                   ["--sigma-clip", "3", "3", "--dtype", "float64"]])
def test_the_command_lines_preload_loads_what_its_combine_runs(tmp_path, flags):
    """The options of a command line (ccdclip's gain and read noise still header keywords)
    preload the specialisation its combine then runs."""
    from calstack.cli import _build_parser, _combine_options, _kernel_options
    from calstack.kernels.stack import combine_stack
    from calstack.stacking.kernel_call import preload

    calstack.simulate(tmp_path / "raw", shape=(16, 16), n_darks=3)  # GAIN and RDNOISE
    files = sorted(str(p) for p in (tmp_path / "raw").glob("*.fits"))
    args = _build_parser().parse_args(["combine", str(tmp_path / "raw"), "-o",
                                       str(tmp_path / "out"), *flags])
    options = _kernel_options(_combine_options(args))
    preload(options)  # no suppression: an error here fails the test
    loaded = set(combine_stack.signatures)
    calstack.combine(files, **{k: v for k, v in _combine_options(args).items()
                               if k != "mem_limit"})
    assert set(combine_stack.signatures) == loaded
