"""Is a new master good? Checks of each master as it is built, after LSST cp_verify's tests
(DMTN-101) and BANZAI's comparison of a new master with the previous one.

Each check is measured on the grid of pixels that the anomaly check reads
(:func:`calstack.stacking.anomalies.check_grids`: each input frame prepared as the combine
prepared it, at most 128 pixels a side) and on the master's own values at those pixels:

``residual`` (every master of 2 or more frames)
    Each frame less the master has a median within its noise (the pixel-to-pixel noise of the
    difference, which a leak or a step does not widen), and at most 1 % of its pixels beyond 5
    of it (not counting pixels beyond it in most frames: those are the master's, such as a
    cosmic ray that no rejection removed): a frame of another kind, a light leak, a frame that
    moved fails, by name.
``noise`` (bias)
    The master's pixel-to-pixel noise is within 5 % of the read noise (RDNOISE / GAIN, in ADU)
    over the noise reduction of its method (sqrt(N) for an average): a wrong gain or read noise,
    or frames noisier than the camera, fail.
``level`` (flat, its frames scaled)
    The master's median is 1 within 1 %.
``flat noise`` (flat)
    Each frame's noise (from its difference with the master, so that the flat's pattern
    cancels) follows the photon noise of its level: sqrt(level / gain + (read noise / gain)^2)
    within 10 %.
``dark`` (dark, against the previous master)
    The median dark current and the fraction of hot pixels (above the median by 10 times the
    pixel noise) agree with the previous master's: within 10 % (or half the pixel noise) and
    25 % (or 3 sqrt(count)).
``previous`` (every master, where there is a previous one)
    At most 2 % of pixels differ from the previous master by more than 5 times their combined
    uncertainty (UNCERT of both).

A check that cannot run (no gain in the header, no previous master) is recorded as not run,
with the reason; it neither passes nor fails the master. :class:`Verification` gives the header
cards (``VERIFIED``, ``VERFAIL``, one HISTORY line per check) and the ``--json`` entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FrameError
from ..io.reader import open_auxiliary, open_frame
from ..io.sampling import grid_step, read_grid
from ..kernels.statistics import expected_noise_reduction, median_and_robust_std
from ..options import ELECTRON_UNITS
from ..processing.noise import noise_model
from ..stacking.anomalies import CHECK_SIDE

__all__ = ["Check", "Verification", "rejected_path", "verify"]

#: A frame's residual may have at most this fraction of its pixels beyond 5 robust sigmas.
OUTLIER_FRACTION = 0.01
#: A master bias's noise within this fraction of read noise / noise reduction.
NOISE_TOLERANCE = 0.05
#: A master flat's median within this of 1.
LEVEL_TOLERANCE = 0.01
#: A flat frame's noise within this fraction of its photon and read noise.
FLAT_NOISE_TOLERANCE = 0.10
#: Pixels that may differ from the previous master beyond 5 combined sigmas.
CHANGED_FRACTION = 0.02


@dataclass(frozen=True)
class Check:
    """One test of a master: its name, whether it passed (None: not run) and what it found."""

    name: str
    passed: bool | None
    text: str

    def line(self) -> str:
        state = {True: "passed", False: "FAILED", None: "not run"}[self.passed]
        return f"{self.name} {state}: {self.text}"


@dataclass(frozen=True)
class Verification:
    """The checks of one master (:func:`verify`)."""

    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        """No check failed."""
        return not self.failed

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    def summary(self) -> str:
        """The failed checks in one line ('' when none failed)."""
        return "; ".join(c.line() for c in self.failed)

    def cards(self) -> list[tuple]:
        """Header cards (keyword, value, comment): VERIFIED, VERFAIL (the failed checks'
        names), and a HISTORY line per check."""
        cards = [("VERIFIED", self.passed, "calstack verification of this master"),
                 ("VERFAIL", ",".join(c.name for c in self.failed)[:68],
                  "checks failed (HISTORY: calstack verify)")]
        cards += [("HISTORY", f"calstack verify {c.line()}", "") for c in self.checks]
        return cards

    def as_dict(self) -> dict:
        return {"verified": self.passed,
                "checks": [{"name": c.name, "passed": c.passed, "text": c.text}
                           for c in self.checks]}


def rejected_path(target) -> Path:
    """Where a master that failed verification under ``strict`` is left: ``NAME.rejected``
    beside its name (not a FITS name: folders of masters never pick it up)."""
    target = Path(target)
    return target.with_name(target.name + ".rejected")


def verify(kind, grids, master, *, previous=None) -> Verification:
    """Verify a master just combined.

    Parameters
    ----------
    kind : {'bias', 'dark', 'flat', 'flatdark'} or None
        The master's kind (None: the checks of every kind only).
    grids : list of numpy.ndarray
        Its input frames on the check grid, prepared as combined
        (:func:`calstack.stacking.anomalies.check_grids`), in input order.
    master : Result or Master
        The master: ``data``, ``uncertainty`` (standard errors), ``meta``, ``preparation``.
    previous : str or os.PathLike, optional
        The previous master of the same name, to compare with.

    Returns
    -------
    Verification
    """
    data = np.asarray(master.data)
    step = grid_step(data.shape, CHECK_SIDE)
    grid = data[::step, ::step].astype(np.float64)
    header = master.meta
    checks = [_residual(grids, grid)]
    if kind == "bias":
        checks.append(_bias_noise(grid, header, len(grids)))
    if kind == "flat":
        checks += [_flat_level(grid, master.preparation), _flat_noise(grids, grid, master)]
    old = None if previous is None else _previous_grids(previous, data.shape, step)
    if kind == "dark":
        checks.append(_dark(grid, header, old))
    checks.append(_changed(grid, np.asarray(master.uncertainty)[::step, ::step], old))
    return Verification(tuple(c for c in checks if c is not None))


def _residual(grids, grid) -> Check | None:
    if len(grids) < 2:
        return None
    differences = [frame - grid for frame in grids]
    levels = [float(np.nanmedian(d)) if np.isfinite(d).any() else 0.0 for d in differences]
    noises = [_pixel_noise(d) for d in differences]  # not widened by a leak or a step
    beyond = np.array([np.abs(d - level) > 5 * noise
                       for d, level, noise in zip(differences, levels, noises, strict=True)])
    # a pixel beyond in most frames is the master's (a cosmic ray that no rejection removed
    # moves every frame's residual), not a frame's
    own = beyond & (2 * beyond.sum(axis=0) <= len(grids))
    finite = np.isfinite(np.array(differences)).sum(axis=(1, 2))
    bad = []
    for number, (level, noise, outliers, count) in enumerate(
            zip(levels, noises, own, finite, strict=True), start=1):
        fraction = float(outliers.sum()) / count if count else 0.0
        if not abs(level) <= noise or fraction > OUTLIER_FRACTION:
            bad.append(f"frame {number} residual median {level:.4g} (noise {noise:.4g}), "
                       f"{100 * fraction:.2f}% beyond 5 sigma")
    if bad:
        return Check("residual", False, "; ".join(bad))
    return Check("residual", True, f"{len(grids)} frames within their noise of the master")


def _clipped_std(values) -> float:
    """The standard deviation of the finite values within 5 robust sigmas of their median: not
    moved by outliers, nor quantised as the MAD of whole numbers (or of means of N of them)
    is."""
    finite = np.asarray(values, np.float64).ravel()
    finite = finite[np.isfinite(finite)]
    level, spread = median_and_robust_std(finite)
    if finite.size < 2:
        return math.nan
    if not spread > 0:
        spread = float(np.std(finite))
    return float(np.std(finite[np.abs(finite - level) <= 5 * spread]))


def _pixel_noise(grid) -> float:
    """The noise of differences of vertically neighbouring pixels over sqrt(2) (smooth
    structure and column patterns cancel), as :func:`_clipped_std`."""
    return _clipped_std(np.diff(grid, axis=0)) / math.sqrt(2)


def _camera(header) -> tuple[float, float] | None:
    """Gain and read noise (ADU) from the master's header, or None."""
    try:
        gain, read_noise = noise_model(header, None, None, "master")
    except FrameError:
        return None
    if str(header.get("BUNIT", "adu")).strip().lower() in ELECTRON_UNITS:
        gain = 1.0
    return gain, read_noise / gain


def _bias_noise(grid, header, n) -> Check:
    camera = _camera(header)
    reduction = expected_noise_reduction(str(header.get("CMBMETH", "average")).strip(), n)
    if camera is None or reduction is None:
        return Check("noise", None, "no gain and read noise in the header" if camera is None
                     else "a sum: no noise reduction expected")
    expected = camera[1] / reduction
    measured = _pixel_noise(grid)
    ratio = measured / expected
    return Check("noise", abs(ratio - 1) <= NOISE_TOLERANCE,
                 f"pixel noise {measured:.4g} ADU, read noise {camera[1]:.4g} ADU / "
                 f"{reduction:.3g} = {expected:.4g} (x{ratio:.3f})")


def _flat_level(grid, preparation) -> Check:
    if preparation is None or preparation.scale is None:
        return Check("level", None, "the frames were not scaled (normalised)")
    level = float(np.nanmedian(grid))
    return Check("level", abs(level - 1) <= LEVEL_TOLERANCE, f"median {level:.5g}")


def _flat_noise(grids, grid, master) -> Check | None:
    camera = _camera(master.meta)
    scale = None if master.preparation is None else master.preparation.scale
    if len(grids) < 2 or camera is None or scale is None:
        return None if len(grids) < 2 else Check(
            "flat noise", None, "no gain and read noise in the header" if camera is None
            else "the frames were not scaled")
    gain, read_noise = camera
    n, bad, ratios = len(grids), [], []
    for number, (frame, factor) in enumerate(zip(grids, scale, strict=True), start=1):
        noise = _clipped_std(frame - grid) / math.sqrt(1 - 1 / n) / factor
        level = float(np.nanmedian(frame)) / factor
        expected = math.sqrt(max(level, 0.0) / gain + read_noise ** 2)
        ratios.append(noise / expected)
        if abs(ratios[-1] - 1) > FLAT_NOISE_TOLERANCE:
            bad.append(f"frame {number} at {level:.4g} ADU: noise {noise:.4g}, photon and read "
                       f"noise {expected:.4g} (x{ratios[-1]:.3f})")
    if bad:
        return Check("flat noise", False, "; ".join(bad) + f" (gain {gain:g} e-/ADU)")
    return Check("flat noise", True, f"noise / sqrt(level/gain + read noise^2) "
                 f"{min(ratios):.3f}..{max(ratios):.3f} (gain {gain:g} e-/ADU)")


def _previous_grids(path, shape, step):
    """The previous master (data, uncertainty or None) on the grid, or its problem as text."""
    path = Path(path)
    try:
        frame = open_frame(path)
        try:
            if frame.shape != shape:
                return f"{path.name} is {frame.shape[1]}x{frame.shape[0]}, not " \
                       f"{shape[1]}x{shape[0]}"
            data = read_grid(frame, step).astype(np.float64)
            header = frame.header()
        finally:
            frame.close()
        uncertainty = open_auxiliary(path, None, "UNCERT")
        sigma = None
        if uncertainty is not None:
            try:
                sigma = read_grid(uncertainty, step).astype(np.float64)
            finally:
                uncertainty.close()
    except FrameError as exc:
        return f"{path.name} cannot be read ({exc.reason})"
    return data, sigma, header


def _dark(grid, header, old) -> Check:
    if old is None or isinstance(old, str):
        return Check("dark", None, old or "no previous master dark to compare with")
    previous, _, old_header = old
    exptime = header.get("EXPTIME")
    if str(header.get("BUNIT", "")).strip().lower() != str(old_header.get("BUNIT", "")).strip(
            ).lower():
        return Check("dark", False, f"BUNIT {header.get('BUNIT')!r}, previous "
                     f"{old_header.get('BUNIT')!r}")
    new_level, new_hot = _dark_stats(grid)
    old_level, old_hot = _dark_stats(previous)
    noise = _pixel_noise(grid)
    level_ok = abs(new_level - old_level) <= max(0.1 * abs(old_level), 0.5 * noise)
    count = old_hot * grid.size
    hot_ok = abs(new_hot - old_hot) * grid.size <= max(0.25 * count, 3 * math.sqrt(max(count, 1)))
    rate = (f" ({new_level / exptime:.4g} ADU/s)" if isinstance(exptime, (int, float))
            and exptime > 0 else "")
    return Check("dark", level_ok and hot_ok,
                 f"median {new_level:.4g}{rate}, previous {old_level:.4g}; hot pixels "
                 f"{100 * new_hot:.3f}%, previous {100 * old_hot:.3f}%")


def _dark_stats(grid) -> tuple[float, float]:
    """Median, and the fraction of pixels above it by 10 pixel noises (hot)."""
    level = float(np.nanmedian(grid))
    return level, float(np.mean(grid > level + 10 * _pixel_noise(grid)))


def _changed(grid, sigma, old) -> Check | None:
    if old is None:
        return None
    if isinstance(old, str):
        return Check("previous", False, old)
    previous, previous_sigma, _ = old
    if previous_sigma is None:
        return Check("previous", None, "the previous master has no UNCERT")
    combined = np.sqrt(np.square(sigma.astype(np.float64)) + np.square(previous_sigma))
    difference = np.abs(grid - previous)
    valid = np.isfinite(difference) & np.isfinite(combined)
    fraction = float(np.mean(difference[valid] > 5 * combined[valid])) if valid.any() else 0.0
    return Check("previous", fraction <= CHANGED_FRACTION,
                 f"{100 * fraction:.2f}% of pixels differ beyond 5 sigma from the previous master")
