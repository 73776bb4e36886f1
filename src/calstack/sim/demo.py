"""``calstack demo``: the reference recipe end to end on simulated data.

Simulates the reference guide's two cameras (a cryogenically cooled CCD with darks at 7, 70 and
300 s; a thermoelectrically cooled camera with 10 darks of 90 s), combines their darks per
exposure time with the recipe's settings, writes the guide's comparison picture for each
master, and checks each master against the simulator's truth. Then a raw night (biases, darks,
flats in two filters) goes through ``calstack masters`` with bias and dark subtraction, and
each master is compared with its truth; with its science frames and an overscan on every raw
frame, the night goes through ``calstack reduce`` (overscan and trim, masters, calibration),
and each calibrated frame is compared with its truth in units of its own uncertainty. The
camera is measured from the night's flats and biases (``calstack characterize``) and a defect
mask made from its masters (``calstack defects``); one report shows the night's masters,
calibrated frames, photon transfer curve and defect classes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..catalog.index import ImageIndex
from ..kernels.statistics import median_and_robust_std
from ..options import RECIPE
from ..pipeline.calibrate import INDEX_KEYWORDS
from ..pipeline.characterize import characterize
from ..pipeline.defects import find_defects
from ..pipeline.groups import combine_groups
from ..pipeline.reduce import reduce_night
from ..viz.pictures import show
from ..viz.report import write_report
from .simulation import simulate

__all__ = ["calibrated_residual", "noise_check", "run_demo", "truth_residual"]


def noise_check(master_path, frame_path, truth_path) -> dict:
    """Compare a master and one of its frames with the truth.

    Returns the robust noise (1.4826 * MAD of the difference to the truth) of one frame and
    of the master, their ratio, and the sqrt(N) that averaging N frames should give.
    """
    with fits.open(master_path) as m, fits.open(frame_path) as f, fits.open(truth_path) as t:
        truth = t[0].data.astype(np.float64)
        master = m[0].data.astype(np.float64)
        frame = f[0].data.astype(np.float64)
        n = int(m[0].header["NCOMBINE"])
    noise = {}
    for name, image in (("frame", frame), ("master", master)):
        noise[name] = median_and_robust_std(image - truth)[1]
    return {"n": n, "frame_noise": noise["frame"], "master_noise": noise["master"],
            "reduction": noise["frame"] / noise["master"], "expected": float(np.sqrt(n))}


def _expected_noise(master_path, truth_path) -> float:
    """Per-frame noise of the truth (its SIGMA extension) over sqrt(NCOMBINE) of the master."""
    n = int(fits.getheader(master_path)["NCOMBINE"])
    return float(np.median(fits.getdata(truth_path, "SIGMA"))) / np.sqrt(n)


def truth_residual(master_path, truth_path, subtracted=None) -> dict:
    """How far a master is from its truth.

    ``subtracted`` = (master, truth) of a master that was subtracted from the frames (the bias
    for a bias-subtracted dark): its truth is subtracted from the truth, and its noise adds to
    the expected noise. Returns the median and robust std (1.4826 * MAD) of master - truth,
    and the noise that averaging the frames should give.
    """
    with fits.open(master_path) as m, fits.open(truth_path) as t:
        residual = m[0].data.astype(np.float64) - t[0].data.astype(np.float64)
    expected = _expected_noise(master_path, truth_path)
    if subtracted is not None:
        residual += fits.getdata(subtracted[1]).astype(np.float64)
        expected = float(np.hypot(expected, _expected_noise(*subtracted)))
    median, noise = median_and_robust_std(residual)
    return {"median": median, "noise": noise, "expected": expected}


def run_demo(output_dir="calstack-demo", *, shape=None, mem_limit="350MB", overwrite=False,
             say=print) -> list:
    """Simulate both reference cameras, build their dark masters and comparison pictures.

    Parameters
    ----------
    output_dir : str or os.PathLike
        Folder for everything (one subfolder per camera).
    shape : (int, int), optional
        Frame size (default: each preset's own).
    mem_limit : int or str
        Memory limit of each combine (the guide's 350 MB).
    overwrite : bool
        Replace the files of an earlier demo in ``output_dir``.
    say : callable
        Where progress lines go.

    Returns
    -------
    list of dict
        Per dark master: camera, path, picture, frames, seconds and the :func:`noise_check`
        numbers; per master of the raw night: camera 'night', kind, path, frames, seconds and
        the :func:`truth_residual` numbers; per calibrated science frame: camera 'night', kind
        'light', path and the :func:`calibrated_residual` numbers; then the night's defect
        mask (kind 'defects'), camera file (kind 'characterize') and report (kind 'report').
    """
    results = []
    for camera in ("cryo", "te"):
        folder = Path(output_dir) / camera
        start = time.perf_counter()
        night = simulate(folder, preset=camera, shape=shape, overwrite=overwrite)
        say(f"[{camera}] simulated {len(night.frames)} frames in {folder} "
            f"({time.perf_counter() - start:.1f} s)")
        index = ImageIndex(folder)
        built = combine_groups(index, select={"imagetyp": "dark"}, keys=["exptime"],
                               output_dir=folder, overwrite=overwrite, mem_limit=mem_limit, **RECIPE)
        for master in built:
            exptime = float(master.group.key["exptime"])
            first = master.group.paths[0]
            picture = show([first, master.path], folder / f"compare_dark_{exptime:.3f}.png")
            check = noise_check(master.path, first, night.truth[f"dark_{exptime:.3f}"])
            say(f"[{camera}] dark {exptime:g} s: {master.n_frames} frames -> {master.path} in "
                f"{master.seconds:.1f} s; noise {check['frame_noise']:.3f} -> "
                f"{check['master_noise']:.3f} ADU ({check['reduction']:.2f}x, sqrt(N) = "
                f"{check['expected']:.2f}); picture {picture}")
            results.append({"camera": camera, "path": master.path, "picture": picture,
                            "frames": master.n_frames, "seconds": master.seconds, **check})
    results.extend(_night(Path(output_dir) / "night", shape, mem_limit, overwrite, say))
    return results


#: Overscan columns of the demo's raw night (subtracted and trimmed by ``calstack reduce``).
_OVERSCAN = 16


def calibrated_residual(frame, truth_path) -> dict:
    """How a calibrated science frame departs from its truth, in units of its own uncertainty:
    the mean and rms of (value - truth) / uncertainty over the unmasked values, cosmic rays
    (beyond 8) left out; 0 and 1 when the frame and its uncertainty are right."""
    with fits.open(frame.path) as hdul:
        z = (hdul[0].data - fits.getdata(truth_path)) / hdul["UNCERT"].data
        z = z[(hdul["MASK"].data == 0) & (np.abs(z) < 8)]
    return {"mean": float(z.mean()), "rms": float(z.std())}


def _night(folder, shape, mem_limit, overwrite, say) -> list:
    start = time.perf_counter()
    night = simulate(folder, preset="night", shape=shape, n_lights=2, overscan=_OVERSCAN,
                     overwrite=overwrite)
    say(f"[night] simulated {len(night.frames)} raw frames in {folder} "
        f"({time.perf_counter() - start:.1f} s)")
    built, calibrated = reduce_night(ImageIndex(folder, keywords=INDEX_KEYWORDS), folder,
                                     overwrite=overwrite, mem_limit=mem_limit)
    results = []
    for master in built:
        key = master.group.key
        name = {"bias": "bias", "dark": f"dark_{float(key.get('exptime', 0)):.3f}",
                "flat": f"flat_{key.get('filter')}"}[master.kind]
        subtracted = (built[0].path, night.truth["bias"]) if master.kind == "dark" else None
        check = truth_residual(master.path, night.truth[name], subtracted)
        say(f"[night] {master.kind} {master.group.label() or 'all'}: {master.n_frames} frames -> "
            f"{master.path.name} in {master.seconds:.1f} s; master - truth: median "
            f"{check['median']:+.4f}, noise {check['noise']:.4f} (expected "
            f"{check['expected']:.4f})")
        results.append({"camera": "night", "kind": master.kind, "path": master.path,
                        "frames": master.n_frames, "seconds": master.seconds, **check})
    for frame in calibrated:
        check = calibrated_residual(frame, night.truth[f"light_{fits.getval(frame.source, 'FILTER')}"])
        say(f"[night] science {Path(frame.source).name} -> {frame.path}: "
            f"{frame.choice.describe()}; (value - truth) / uncertainty: mean {check['mean']:+.3f}, "
            f"rms {check['rms']:.3f} (expected 0 and 1)")
        results.append({"camera": "night", "kind": "light", "path": frame.path, **check})
    mask, found = _defects(folder, built, night, overwrite, say)
    camera, measured = _characterize(folder, night, overwrite, say)
    report = write_report(folder / "report.html", built, calibrated=calibrated, camera=camera,
                          defects=[mask], title="calstack demo: the raw night",
                          overwrite=overwrite)
    say(f"[night] report (masters, calibrated frames, photon transfer, defect classes) -> "
        f"{report}")
    return [*results, found, measured, {"camera": "night", "kind": "report", "path": report}]


def _characterize(folder, night, overwrite, say) -> tuple:
    """``calstack characterize`` on the night's raw biases and flats: the gain and read noise
    measured beside the simulator's, written as the night's camera file; what was measured,
    and the demo's numbers."""
    done = characterize(ImageIndex(folder), output=folder / "camera.toml",
                        overwrite=overwrite)
    t, truth = done.transfer, night.camera
    say(f"[night] characterize: gain {t.gain:.4f} e-/ADU (truth {truth.gain:g}), read noise "
        f"{t.read_noise:.3f} e- (truth {truth.read_noise:g}) from {len(t.pairs)} flat pairs "
        f"-> {done.camera_file}")
    return done, {"camera": "night", "kind": "characterize", "path": done.camera_file,
                  "gain": t.gain, "read_noise": t.read_noise, "true_gain": truth.gain,
                  "true_read_noise": truth.read_noise}


def _defects(folder, built, night, overwrite, say) -> tuple:
    """``calstack defects`` on the night's longest master dark and first master flat: the
    mask, and the demo's numbers (the classes counted, the simulator's hot pixels found as
    hot or warm)."""
    dark = max((m for m in built if m.kind == "dark"), key=lambda m: m.group.key["exptime"])
    flat = next(m for m in built if m.kind == "flat")
    mask = find_defects(folder / "defects.fits", dark=dark.path, flat=flat.path,
                        overwrite=overwrite)
    found = fits.getdata(mask.path) & 3 != 0  # hot or warm
    injected = fits.getdata(night.truth["bias"], "HOT") != 0
    share = float(found[injected].mean()) if injected.any() else 1.0
    say(f"[night] defects {mask.describe()}; the simulator's hot pixels found: "
        f"{100 * share:.1f}%")
    return mask, {"camera": "night", "kind": "defects", "path": mask.path, "hot_found": share,
                  **mask.counts}
