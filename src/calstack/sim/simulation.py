"""Simulated camera frames with known truth: for the demo, the tests and the benchmarks.

A :class:`Camera` has a bias level with fixed structure, read noise, dark current with a
population of hot pixels, Poisson noise, cosmic-ray hits and, for flats, vignetting and a
pixel-to-pixel response. :func:`simulate` writes a night of frames and, in ``truth/``, the
noiseless master each group should give, with the noise of one frame as a ``SIGMA`` extension.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import OptionError
from ..io.writer import OutputExistsError, atomic_write

__all__ = ["PRESETS", "Camera", "SimulatedNight", "simulate"]

_MJD_ZERO = datetime.datetime(2026, 1, 1)
_MJD_EPOCH = 61041.0  # MJD of 2026-01-01T00:00:00


@dataclass(frozen=True)
class Camera:
    """A detector and the frames taken with it (the parameters of a preset)."""

    name: str
    shape: tuple[int, int]
    gain: float  # e-/ADU
    read_noise: float  # e-
    bias_level: float  # ADU
    dark_current: float  # e-/s/pixel
    hot_fraction: float  # fraction of pixels that are hot
    hot_current: tuple[float, float]  # e-/s range of hot pixels (log-uniform)
    cosmic_rate: float  # hits per cm^2 per s
    pixel_um: float
    temperature: float  # degrees C
    vignetting: float  # fractional illumination loss in the corners
    calibrated: bool  # True: bias-subtracted float32 frames; False: raw uint16
    n_bias: int = 0
    darks: dict = field(default_factory=dict)  # exposure time (s) -> number of frames
    flats: dict = field(default_factory=dict)  # filter -> number of frames
    flat_level: dict = field(default_factory=dict)  # filter -> e- per pixel
    flat_exptime: float = 5.0
    lights: dict = field(default_factory=dict)  # filter -> number of science frames
    light_exptime: float = 60.0
    sky: float = 2000.0  # e- per pixel per science frame
    star_density: float = 1e-3  # stars per pixel of the science frames
    flat_levels: tuple = ()  # photon transfer: a pair of flats per level (e-), each filter
    full_well: float | None = None  # e-: a pixel holds no more (its response flattens)
    nonlinearity: float = 0.0  # fraction the response falls short of a line at full well
    dark_temperatures: tuple = ()  # degrees C of the darks (each exposure at each); () : camera's
    dark_coefficient: float = 0.1  # per degree C: dark current x exp(coefficient x warming)
    dead_fraction: float = 0.0  # fraction of pixels that are dead (a tenth of the response)
    bad_columns: int = 0  # columns with extra dark current over a stretch of rows
    column_current: float = 2.0  # e-/s of a bad column's extra dark current
    amplifiers: tuple = ()  # (gain e-/ADU, read noise e-) of each strip of columns, left first
    imagetyp_names: dict = field(default_factory=dict)  # type -> spellings used in turn


PRESETS = {
    # the guide's Example 1: a large cryogenically cooled CCD, darks of 7, 70 and 300 s
    "cryo": Camera(name="cryo", shape=(4096, 4096), gain=1.5, read_noise=5.0, bias_level=1000.0,
                   dark_current=0.002, hot_fraction=2e-4, hot_current=(0.5, 50.0),
                   cosmic_rate=0.02, pixel_um=15.0, temperature=-100.0, vignetting=0.0,
                   calibrated=True, darks={7.0: 3, 70.0: 3, 300.0: 3}),
    # the guide's Example 2: a thermoelectrically cooled camera, ten 90 s darks
    "te": Camera(name="te", shape=(4096, 4096), gain=1.0, read_noise=3.0, bias_level=500.0,
                 dark_current=0.2, hot_fraction=1e-3, hot_current=(2.0, 200.0), cosmic_rate=0.05,
                 pixel_um=9.0, temperature=-10.0, vignetting=0.0, calibrated=True,
                 darks={90.0: 10}),
    # a whole raw night: biases, darks of two exposure times, flats in two filters
    "night": Camera(name="night", shape=(1024, 1024), gain=1.2, read_noise=4.0,
                    bias_level=1100.0, dark_current=0.05, hot_fraction=5e-4,
                    hot_current=(1.0, 100.0), cosmic_rate=0.05, pixel_um=9.0, temperature=-20.0,
                    vignetting=0.25, calibrated=False, n_bias=7, darks={30.0: 5, 120.0: 5},
                    flats={"R": 5, "V": 5}, flat_level={"R": 20000.0, "V": 12000.0},
                    imagetyp_names={"bias": ("BIAS", "Bias Frame", "ZERO"),
                                    "dark": ("DARK", "Dark Frame"),
                                    "flat": ("FLAT", "Flat Field")}),
}


@dataclass(frozen=True)
class SimulatedNight:
    """What :func:`simulate` wrote."""

    outdir: Path
    frames: list
    truth: dict  # master name ('bias', 'dark_90.000', 'flat_R') -> truth file
    camera: Camera


class _Sensor:
    """The fixed patterns of one camera (bias structure, dark map, flat response)."""

    def __init__(self, camera: Camera, seed: int):
        rng = np.random.default_rng([seed, 0])
        ny, nx = camera.shape
        y, x = np.mgrid[0:ny, 0:nx].astype(np.float32)
        self.camera = camera
        columns = rng.normal(0.0, 2.0, nx).astype(np.float32)
        self.bias = (camera.bias_level + columns[None, :] + 5.0 * y / ny).astype(np.float32)
        dark = np.full(camera.shape, camera.dark_current, np.float32)
        hot = rng.random(camera.shape) < camera.hot_fraction
        low, high = np.log(camera.hot_current[0]), np.log(camera.hot_current[1])
        dark[hot] = np.exp(rng.uniform(low, high, hot.sum()))
        self.hot = hot
        r2 = ((x - nx / 2) ** 2 + (y - ny / 2) ** 2) / ((nx / 2) ** 2 + (ny / 2) ** 2)
        illumination = 1.0 - camera.vignetting * r2
        self.flat = (illumination * rng.normal(1.0, 0.01, camera.shape)).astype(np.float32)
        defects = np.random.default_rng([seed, 4])  # (the frames above unchanged without them)
        self.dead = (defects.random(camera.shape) < camera.dead_fraction) & ~hot
        self.flat[self.dead] *= np.float32(0.1)
        self.column = np.zeros(camera.shape, bool)
        for x0 in defects.choice(np.arange(4, nx - 4), min(camera.bad_columns, nx - 8),
                                 replace=False):
            start = int(defects.integers(0, ny // 2))
            self.column[start:start + max(ny // 2, 60), x0] = True
        dark[self.column] += np.float32(camera.column_current)
        self.dark = dark  # e-/s
        self.seed = seed
        amps = camera.amplifiers or ((camera.gain, camera.read_noise),)
        self.gain = np.repeat([g for g, _ in amps], self.widths()).astype(np.float32)
        self.read_noise = np.repeat([r for _, r in amps], self.widths()).astype(np.float32)

    def widths(self) -> list[int]:
        """Columns of each amplifier's strip (the first ones one wider where they do not
        divide the width)."""
        n, nx = max(1, len(self.camera.amplifiers)), self.camera.shape[1]
        return [nx // n + (k < nx % n) for k in range(n)]

    @functools.cached_property
    def scene(self):
        """What a science frame sees, e- before the flat field: the sky and Gaussian stars
        (sigma 1.5 px, 2e3..2e5 e- each)."""
        cam = self.camera
        rng = np.random.default_rng([self.seed, 2])
        scene = np.full(cam.shape, cam.sky, np.float32)
        sigma, reach = 1.5, 12
        for _ in range(max(1, round(cam.star_density * cam.shape[0] * cam.shape[1]))):
            cy, cx = rng.uniform(0, cam.shape[0]), rng.uniform(0, cam.shape[1])
            flux = np.exp(rng.uniform(np.log(2e3), np.log(2e5)))
            y0, x0 = max(0, int(cy) - reach), max(0, int(cx) - reach)
            y, x = np.mgrid[y0:min(cam.shape[0], int(cy) + reach),
                            x0:min(cam.shape[1], int(cx) + reach)]
            scene[y, x] += flux / (2 * np.pi * sigma**2) * np.exp(
                -((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
        return scene

    def dark_at(self, temperature):
        """The dark current (e-/s) at ``temperature`` (degrees C; None: the camera's)."""
        cam = self.camera
        if temperature is None or temperature == cam.temperature:
            return self.dark
        return (self.dark * np.exp(cam.dark_coefficient * (temperature - cam.temperature))
                ).astype(np.float32)

    def frame(self, kind, exptime, rng, level=0.0, temperature=None):
        """One frame in ADU (float32, before any clipping to integers)."""
        cam = self.camera
        electrons = self.dark_at(temperature) * exptime
        if kind == "flat":
            electrons = electrons + self.flat * level
        elif kind == "light":
            electrons = electrons + self.flat * self.scene
        signal = rng.poisson(electrons).astype(np.float32) if exptime or level else 0.0
        signal = self.response(signal)
        image = signal + rng.normal(0.0, 1.0, cam.shape).astype(np.float32) * self.read_noise
        self._cosmic_rays(image, exptime, rng)
        image /= self.gain
        if not cam.calibrated:
            image += self.bias
        return image

    def response(self, electrons):
        """The electrons a pixel reports: ``e (1 - nonlinearity e / full well)``, at most
        what it holds at full well (all of them without a full well)."""
        cam = self.camera
        if cam.full_well is None:
            return electrons
        held = np.minimum(electrons, cam.full_well)
        return (held * (1.0 - cam.nonlinearity * held / cam.full_well)).astype(np.float32)

    def with_overscan(self, image, columns, rng):
        """A raw frame with ``columns`` overscan columns on its right: the bias level, its drift
        along the readout and an offset of this frame (a few ADU, which only the overscan
        measures), with read noise; the same offset is in the exposed pixels."""
        cam = self.camera
        ny = cam.shape[0]
        offset = np.float32(rng.normal(0.0, 3.0))
        scan = self.overscan_level()[:, None] + rng.normal(
            0.0, cam.read_noise / cam.gain, (ny, columns)).astype(np.float32)
        return np.hstack([image + offset, scan + offset]).astype(np.float32)

    def overscan_level(self) -> np.ndarray:
        """The bias level of each row that the overscan measures (ADU): the level and its drift
        along the readout, without the column structure of the exposed pixels."""
        cam = self.camera
        return cam.bias_level + 5.0 * np.arange(cam.shape[0], dtype=np.float32) / cam.shape[0]

    def _cosmic_rays(self, image, exptime, rng):
        cam = self.camera
        area_cm2 = cam.shape[0] * cam.shape[1] * (cam.pixel_um * 1e-4) ** 2
        hits = rng.poisson(cam.cosmic_rate * area_cm2 * max(exptime, 1.0))
        ys = rng.integers(1, cam.shape[0] - 1, hits)
        xs = rng.integers(1, cam.shape[1] - 1, hits)
        energy = rng.uniform(1000.0, 20000.0, hits).astype(np.float32)
        image[ys, xs] += energy
        for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):  # charge spread to neighbours
            image[ys + dy, xs + dx] += energy * rng.uniform(0.0, 0.3, hits).astype(np.float32)

    def truth(self, kind, exptime, level=0.0, temperature=None):
        """Noiseless master (ADU) and the noise of one frame (ADU); for a science frame, its
        calibrated values (e-, the flat field normalised by its mean) and their noise (e-)."""
        cam = self.camera
        if kind == "light":
            mean = np.float32(np.mean(self.flat))
            noise = np.sqrt(self.flat * self.scene + self.dark * exptime + self.read_noise**2)
            return (self.scene * mean).astype(np.float32), (noise * mean / self.flat).astype(
                np.float32)
        electrons = self.dark_at(temperature) * exptime
        if kind == "flat":
            electrons = electrons + self.flat * level
        electrons = self.response(electrons)  # (the noise, of the electrons collected)
        noise = np.sqrt(electrons + self.read_noise**2) / self.gain
        master = electrons / self.gain + (0.0 if cam.calibrated else self.bias)
        if kind == "flat":  # the flat field: bias-free response normalised by its median
            scale = np.median(electrons)
            master, noise = electrons / scale, noise * self.gain / scale
        return master.astype(np.float32), noise.astype(np.float32)


def _plan(camera: Camera):
    """(kind, exptime, filter, count, level, temperature) of every group the camera takes:
    with ``flat_levels``, a pair of flats per level, its exposure time in proportion (the
    filter's ``flat_level`` in ``flat_exptime``); with ``dark_temperatures``, the darks of
    each exposure at each temperature (None: the camera's)."""
    groups = []
    if camera.n_bias:
        groups.append(("bias", 0.0, None, camera.n_bias, 0.0, None))
    for t, n in sorted(camera.darks.items()):
        groups.extend(("dark", float(t), None, n, 0.0, temperature)
                      for temperature in camera.dark_temperatures or (None,))
    for f, n in camera.flats.items():
        base = camera.flat_level[f]
        if camera.flat_levels:
            groups.extend(("flat", round(camera.flat_exptime * level / base, 3), f, 2,
                           float(level), None) for level in camera.flat_levels)
        else:
            groups.append(("flat", camera.flat_exptime, f, n, base, None))
    groups.extend(("light", camera.light_exptime, f, n, 0.0, None)
                  for f, n in camera.lights.items())
    return groups


def _write(path, data, header, overwrite, extra=()):
    hdus = fits.HDUList([fits.PrimaryHDU(data, header=header), *extra])
    atomic_write(path, lambda tmp: hdus.writeto(tmp, overwrite=True), overwrite=overwrite)


def simulate(outdir, *, preset="te", shape=None, n_bias=None, n_darks=None, exptimes=None,
             n_flats=None, filters=None, n_lights=0, calibrated=None, cosmic_rays=True,
             overscan=0, flat_levels=None, full_well=None, nonlinearity=0.0,
             dark_temperatures=None, dark_coefficient=None, dead_fraction=None,
             bad_columns=None, amplifiers=None, seed=0, overwrite=False) -> SimulatedNight:
    """Write simulated frames of a camera preset, and their truth, into ``outdir``.

    Parameters
    ----------
    outdir : str or os.PathLike
        Output folder (created); truth masters go to ``outdir/truth``.
    preset : {'te', 'cryo', 'night'}
        ``'te'``: a thermoelectrically cooled camera, ten 90 s calibrated darks, 4096x4096;
        ``'cryo'``: a cryogenically cooled CCD, calibrated darks of 7, 70 and 300 s (3 each);
        ``'night'``: raw uint16 biases, darks (30 and 120 s) and flats (R, V), 1024x1024,
        with IMAGETYP spelled as various acquisition programs do.
    shape : (int, int), optional
        Frame size.
    n_bias, n_darks, n_flats : int, optional
        Frames per group (bias; each exposure time; each filter).
    exptimes : sequence of float, optional
        Dark exposure times.
    filters : sequence of str, optional
        Flat filters.
    n_lights : int
        Science frames (IMAGETYP LIGHT: sky and stars seen through the flat field, with dark
        current, cosmic rays and noise) per flat filter; their truth ``light_<filter>`` is the
        calibrated frame in electrons.
    overscan : int
        Raw frames only: this many overscan columns on the right of each frame (BIASSEC,
        TRIMSEC and DATASEC in the header), holding the bias level and its drift along the
        readout plus an offset of each frame, which is in its exposed pixels too; the truths
        of bias and darks are then those of overscan-subtracted frames.
    flat_levels : sequence of float, optional
        Photon transfer flats: a pair of flats (``flat-<filter>-<exptime>s-001``, ``-002``)
        per level (e- per pixel, before the flat field) in each filter, exposed in proportion
        (``n_flats`` does not apply); truths ``flat_<filter>_<exptime>``.
    full_well : float, optional
        e- a pixel holds: the response flattens there (no more signal, no more noise).
    nonlinearity : float
        The fraction by which the response falls below a line at full well: a pixel reports
        ``e (1 - nonlinearity e / full_well)`` of its ``e`` electrons.
    dark_temperatures : sequence of float, optional
        The darks' CCD-TEMP (degrees C): every exposure's darks at each
        (``dark-<exptime>s-<temperature>C-001``; truths ``dark_<exptime>_<temperature>C``);
        the other frames stay at the camera's temperature.
    dark_coefficient : float, optional
        Per degree C: the dark current at temperature T is the camera's times
        ``exp(dark_coefficient * (T - temperature))`` (default 0.1, a doubling per 6.9 C).
    dead_fraction : float, optional
        Fraction of pixels that are dead: a tenth of the response in flats and science frames.
    bad_columns : int, optional
        Columns with 2 e-/s of extra dark current over half the rows (at least 60) from a row
        of the upper half. The truth files' ``DEFECTS`` extension marks the injected pixels
        with calstack's bits (hot 1, dead 4, column 16; ``HOT`` the hot ones alone).
    amplifiers : sequence of (float, float), optional
        A frame read out by several amplifiers: the gain (e-/ADU) and read noise (e-) of each
        strip of columns, left first; the headers then carry no GAIN or RDNOISE, and
        ``OUTDIR/camera.toml`` is the camera file of the layout (each amplifier's data
        section, gain and read noise). Not with ``overscan``.
    cosmic_rays : bool
        Hit the frames with cosmic rays (False: the same frames, pixel for pixel, without them,
        since the hits are drawn after the noise).
    calibrated : bool, optional
        Bias-subtracted float32 frames (True) or raw uint16 frames with BZERO = 32768.
    seed : int
        Random seed: the same seed writes the same pixels.
    overwrite : bool
        Replace existing files (otherwise an existing file is an error, before anything is written).

    Returns
    -------
    SimulatedNight
    """
    if preset not in PRESETS:
        raise OptionError(f"preset={preset!r} is not valid; allowed values: "
                          f"{', '.join(map(repr, PRESETS))}")
    camera = PRESETS[preset]
    changes = {}
    if shape is not None:
        if len(shape) != 2 or min(shape) < 4:
            raise OptionError(f"shape={shape!r} must be two sizes of at least 4 pixels")
        changes["shape"] = (int(shape[0]), int(shape[1]))
    if calibrated is not None:
        changes["calibrated"] = bool(calibrated)
    if not cosmic_rays:
        changes["cosmic_rate"] = 0.0
    if n_bias is not None:
        changes["n_bias"] = int(n_bias)
    darks = camera.darks
    if exptimes is not None:
        darks = {float(t): next(iter(darks.values()), 3) for t in exptimes}
    if n_darks is not None:
        darks = {t: int(n_darks) for t in darks}
    changes["darks"] = darks
    flats = camera.flats
    if filters is not None:
        flats = {f: next(iter(flats.values()), 3) for f in filters}
    if n_flats is not None:
        flats = {f: int(n_flats) for f in flats}
    changes["flats"] = flats
    changes["flat_level"] = {f: camera.flat_level.get(f, 15000.0) for f in flats}
    changes["lights"] = {f: int(n_lights) for f in flats} if n_lights else {}
    if flat_levels is not None:
        changes["flat_levels"] = tuple(float(level) for level in flat_levels)
    if amplifiers is not None:
        amplifiers = tuple((float(g), float(r)) for g, r in amplifiers)
        if overscan or any(not g > 0 or not r >= 0 for g, r in amplifiers):
            raise OptionError(f"amplifiers={amplifiers!r}: give (gain > 0, read noise >= 0) "
                              "of each, without an overscan")
        changes["amplifiers"] = amplifiers
    if dead_fraction is not None:
        changes["dead_fraction"] = float(dead_fraction)
    if bad_columns is not None:
        changes["bad_columns"] = int(bad_columns)
    if dark_temperatures is not None:
        changes["dark_temperatures"] = tuple(float(t) for t in dark_temperatures)
    if dark_coefficient is not None:
        changes["dark_coefficient"] = float(dark_coefficient)
    if full_well is not None:
        if not full_well > 0 or not 0 <= nonlinearity < 1:
            raise OptionError(f"full_well={full_well!r}, nonlinearity={nonlinearity!r}: give "
                              "a full well > 0 (e-) and a nonlinearity in [0, 1)")
        changes["full_well"], changes["nonlinearity"] = float(full_well), float(nonlinearity)
    camera = replace(camera, **changes)

    outdir = Path(outdir)
    sensor = _Sensor(camera, seed)
    start = datetime.datetime(2026, 3, 14, 20, 0, 0)
    jobs, truths = [], []
    series = bool(camera.flat_levels)
    for kind, exptime, filt, count, level, temperature in _plan(camera):
        flat = f"flat-{filt}-{exptime:07.3f}s" if series else f"flat-{filt}"
        dark = f"dark-{exptime:07.3f}s" + ("" if temperature is None else f"-{temperature:+g}C")
        tag = {"bias": "bias", "dark": dark, "flat": flat, "light": f"light-{filt}"}[kind]
        for i in range(count):
            jobs.append((outdir / f"{tag}-{i + 1:03d}.fits", kind, exptime, filt, i, level,
                         temperature))
        flat = f"flat_{filt}_{exptime:.3f}" if series else f"flat_{filt}"
        dark = f"dark_{exptime:.3f}" + ("" if temperature is None else f"_{temperature:+g}C")
        name = {"bias": "bias", "dark": dark, "flat": flat, "light": f"light_{filt}"}[kind]
        truths.append((name, outdir / "truth" / f"{name}.fits", kind, exptime, filt, level,
                       temperature))
    layout = outdir / "camera.toml" if camera.amplifiers else None
    if not overwrite:
        for path in [j[0] for j in jobs] + [t[1] for t in truths] + [layout] * bool(layout):
            if path.exists():
                raise OutputExistsError(f"{path}: exists; pass overwrite=True (--overwrite)")
    (outdir / "truth").mkdir(parents=True, exist_ok=True)

    frames = []
    for n, (path, kind, exptime, filt, i, level, temperature) in enumerate(jobs):
        rng = np.random.default_rng([seed, 1, n])
        image = sensor.frame(kind, exptime, rng, level, temperature)
        header = _header(camera, kind, exptime, filt, i, start + datetime.timedelta(minutes=3 * n),
                         temperature)
        if overscan and not camera.calibrated:
            image = sensor.with_overscan(image, overscan, np.random.default_rng([seed, 3, n]))
            ny, nx = camera.shape
            header["BIASSEC"] = (f"[{nx + 1}:{nx + overscan},1:{ny}]", "overscan columns")
            header["TRIMSEC"] = (f"[1:{nx},1:{ny}]", "the exposed pixels")
            header["DATASEC"] = (f"[1:{nx},1:{ny}]", "the exposed pixels")
        if camera.calibrated:
            data = image.astype(np.float32)
        else:
            data = np.clip(np.rint(image), 0, 65535).astype(np.uint16)  # stored with BZERO
        _write(path, data, header, overwrite)
        frames.append(path)
    truth = {}
    for name, path, kind, exptime, filt, level, temperature in truths:
        master, sigma = sensor.truth(kind, exptime, level, temperature)
        if overscan and not camera.calibrated and kind in ("bias", "dark"):
            master = master - sensor.overscan_level()[:, None]  # as overscan-subtracted
        header = _header(camera, kind, exptime, filt, 0, start, temperature)
        header["TRUTH"] = (True, "noiseless expected master")
        sigma_hdu = fits.ImageHDU(sigma, name="SIGMA")
        unit = "e-" if kind == "light" else "ADU"
        sigma_hdu.header["COMMENT"] = f"expected noise of one frame, {unit}"
        hot = fits.ImageHDU(sensor.hot.astype(np.uint8), name="HOT")
        defects = fits.ImageHDU((sensor.hot * 1 | sensor.dead * 4 | sensor.column * 16).astype(
            np.uint8), name="DEFECTS")
        defects.header["COMMENT"] = "injected defects: 1 hot, 4 dead, 16 column"
        _write(path, master, header, overwrite, extra=(sigma_hdu, hot, defects))
        truth[name] = path
    if layout is not None:
        _write_layout(layout, camera, sensor.widths(), overwrite)
    return SimulatedNight(outdir=outdir, frames=frames, truth=truth, camera=camera)


def _write_layout(path, camera, widths, overwrite):
    """The camera file of a simulated camera of several amplifiers (strips of columns)."""
    import tomli_w

    starts = np.concatenate([[0], np.cumsum(widths)])
    table = {"name": f"calstack-{camera.name}", "amplifier": [
        {"name": f"A{k + 1}", "data": f"[{starts[k] + 1}:{starts[k + 1]},*]", "gain": gain,
         "read_noise": noise} for k, (gain, noise) in enumerate(camera.amplifiers)]}
    text = "# the simulated camera's amplifiers (calstack simulate)\n" + tomli_w.dumps(table)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"),
                 overwrite=overwrite)


def _header(camera, kind, exptime, filt, i, when, temperature=None) -> fits.Header:
    names = camera.imagetyp_names.get(kind, ("LIGHT" if kind == "light" else kind.upper(),))
    header = fits.Header()
    header["IMAGETYP"] = names[i % len(names)]
    header["EXPTIME"] = (exptime, "s")
    if filt is not None:
        header["FILTER"] = filt
    if not camera.amplifiers:
        header["GAIN"] = (camera.gain, "e-/ADU")
        header["RDNOISE"] = (camera.read_noise, "e-")
    header["CCD-TEMP"] = (camera.temperature if temperature is None else temperature, "C")
    header["DATE-OBS"] = when.strftime("%Y-%m-%dT%H:%M:%S")
    header["MJD-OBS"] = (_MJD_EPOCH + (when - _MJD_ZERO).total_seconds() / 86400.0, "from DATE-OBS")
    header["XBINNING"] = 1
    header["YBINNING"] = 1
    header["INSTRUME"] = f"calstack-{camera.name}"
    header["BUNIT"] = "adu"
    header["CALIBRAT"] = (camera.calibrated, "bias subtracted")
    header["SIMULATE"] = (True, "simulated by calstack")
    return header
