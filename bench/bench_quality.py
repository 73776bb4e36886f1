"""Benchmark of quality, not speed: how close each rejection's master comes to the truth.

    python bench/bench_quality.py                 # N = 3, 5, 10, 25 darks of 512x512
    python bench/bench_quality.py --size 1024 --frames 3 10

For each N the simulator writes N calibrated darks of the thermoelectrically cooled camera
(gain 1 e-/ADU, read noise 3 e-, hot pixels, cosmic rays; GAIN and RDNOISE in the headers),
and the same N darks without cosmic rays (the hits are drawn after the noise, so the frames
are otherwise identical). For each algorithm:

- noise: the rms of (master - truth) / ideal, the ideal being each pixel's per-frame noise (the
  truth's SIGMA: read noise, dark current, hot pixels) over sqrt(N), what a plain mean of
  frames without cosmic rays gives;
- residue: pixels where master - truth exceeds 6 ideal sigmas (cosmic rays let through), per
  million pixels;
- lost: the fraction of values rejected on the frames without cosmic rays (good values lost).

Results are printed as a table and saved to bench/results/bench_quality.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

import calstack

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: The algorithms compared, each as calstack.combine options.
ALGORITHMS = {
    "none (mean)": dict(rejection=None),
    "recipe (sigma_clip 5/5, median, mad_std)": dict(
        rejection="sigma_clip", sigma_lower=5, sigma_upper=5, cenfunc="median",
        stdfunc="mad_std"),
    "recipe, no noise model": dict(
        rejection="sigma_clip", sigma_lower=5, sigma_upper=5, cenfunc="median",
        stdfunc="mad_std", gain="EGAIN", read_noise="READNOIS"),  # keywords the frames lack
    "sigma_clip 3/3 until converged": dict(rejection="sigma_clip", sigma=3, maxiters=None),
    "percentile_clip (pclip -0.5, 3/3)": dict(rejection="percentile_clip", sigma=3),
    "winsorized_sigma_clip 3/3": dict(rejection="winsorized_sigma_clip", sigma=3),
    "ccdclip 3/3 (GAIN, RDNOISE)": dict(rejection="ccdclip", sigma=3),
    "ccdclip 4/4": dict(rejection="ccdclip", sigma=4),
    "ccdclip 5/5": dict(rejection="ccdclip", sigma=5),
    "avsigclip 3/3 (median)": dict(rejection="avsigclip", sigma=3, maxiters=None),
    "avsigclip 5/5 (median)": dict(rejection="avsigclip", sigma=5, maxiters=None),
    "sigclip 3/3 (IRAF, median)": dict(rejection="sigclip", sigma=3, maxiters=None),
    "grow 1 (ccdclip 5/5)": dict(rejection="ccdclip", sigma=5, grow=1.0),
    "esd": dict(rejection="esd"),
    "minmax (nlow = nhigh = 1)": dict(rejection=None, nlow=1, nhigh=1),
    "auto 5/5": dict(rejection="auto", sigma=5),
    "auto 5/5, no noise model": dict(rejection="auto", sigma=5, gain="EGAIN",
                                      read_noise="READNOIS"),  # keywords the frames lack
}


def _darks(folder, n, size, cosmic_rays):
    night = calstack.simulate(folder, preset="te", shape=(size, size), n_darks=n,
                              cosmic_rays=cosmic_rays, seed=n)
    truth = fits.getdata(night.truth["dark_90.000"]).astype(np.float64)
    ideal = fits.getdata(night.truth["dark_90.000"], "SIGMA").astype(np.float64) / np.sqrt(n)
    return [str(p) for p in night.frames], truth, ideal


def measure(n, size, tmp):
    """Every algorithm's numbers for N = ``n`` darks."""
    frames, truth, ideal = _darks(Path(tmp) / f"cr-{n}", n, size, True)
    clean, _, _ = _darks(Path(tmp) / f"clean-{n}", n, size, False)
    rows = {}
    for name, options in ALGORITHMS.items():
        if options.get("nlow", 0) + options.get("nhigh", 0) >= n:
            continue
        master = calstack.combine(frames, **options)
        z = (master.data.astype(np.float64) - truth) / ideal
        rows[name] = {
            "noise": float(np.sqrt(np.mean(z**2))),
            "residue_ppm": float(np.mean(z > 6) * 1e6),
            "lost": float(calstack.combine(clean, **options).rejected_fraction),
            "chosen": master.meta.get("CMBREJ") if options.get("rejection") == "auto" else None,
        }
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[3, 5, 10, 25])
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames:
            results[n] = measure(n, args.size, tmp)
    print(f"master rms / ideal noise (residue: > 6 sigma, per million pixels; lost: good values "
          f"rejected), {args.size}x{args.size} darks\n")
    print(f"{'algorithm':42s}" + "".join(f"  N={n:<2d} noise residue  lost " for n in args.frames))
    for name in ALGORITHMS:
        cells = []
        for n in args.frames:
            r = results[n].get(name)
            cells.append("  " + (" " * 26 if r is None else
                                 f"{r['noise']:10.4f} {r['residue_ppm']:7.0f} "
                                 f"{100 * r['lost']:5.2f}%"))
        print(f"{name:42s}" + "".join(cells))
    for name in ("auto 5/5", "auto 5/5, no noise model"):
        print(f"\n{name} chose: " + ", ".join(f"N={n}: {results[n][name]['chosen']}"
                                             for n in args.frames))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_quality.json").write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "machine": platform.platform(), "size": args.size,
        "results": {str(n): rows for n, rows in results.items()}}, indent=1))


if __name__ == "__main__":
    main()
