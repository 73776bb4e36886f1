"""``calstack characterize FRAMES``: the camera's gain and read noise measured from its frames
(:mod:`calstack.processing.ptc`), written as a camera file that ``combine``, ``masters``,
``calibrate`` and ``reduce`` take (``--camera``).

The flats are paired by setup, filter and exposure time (in file order: the 1st with the 2nd,
the 3rd with the 4th...), the first two biases of that setup give the bias level and the read
noise. Darks at two or more CCD-TEMP give the dark current's temperature coefficient: each
dark's median less the biases' mean, over its exposure, in e-/s, per temperature; the slope of
its logarithm against temperature. Raw frames are trimmed first (TRIMSEC, else DATASEC, or
the option) but by default not overscan-subtracted: a difference cancels the bias and a
frame's offset, while a per-line overscan would add its own noise to it (the read variance
over the number of overscan columns: +3 % on the read noise with 16). Each amplifier of a
camera file's layout, and each extension of multi-extension frames, is measured on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..catalog.closeness import same_value
from ..catalog.conventions import DEFAULT_TOLERANCES, SETUP, kind_of
from ..catalog.index import DEFAULT_KEYWORDS, ImageIndex
from ..errors import OptionError
from ..io.reader import open_frame, read_image
from ..io.writer import atomic_write
from ..processing.camera import Camera, camera_defaults, read_camera
from ..processing.frames import AUTO, AmplifierFrame, ProcessedFrame, place_amplifiers, processed
from ..processing.noise import saturation_level
from ..processing.ptc import PhotonTransfer, difference_variance, flat_pair, photon_transfer

__all__ = ["Characterized", "characterize"]

@dataclass(frozen=True)
class Characterized:
    """What ``characterize`` measured, from which biases, and the camera file written.

    ``amplifiers`` holds ``(name, PhotonTransfer)`` of each amplifier of a camera file's
    layout, in its order, or of each extension (EXTNAME) of multi-extension frames; one pair
    ``(None, transfer)`` for frames of one amplifier.
    """

    amplifiers: tuple
    biases: tuple[str, str]
    camera_file: Path | None
    dark_coefficient: float | None = None  # per degree C, from darks at several CCD-TEMP
    dark_rates: tuple = ()  # (CCD-TEMP, median dark current e-/s, frames) it was fitted to

    @property
    def transfer(self) -> PhotonTransfer:
        """The photon transfer of a camera of one amplifier."""
        if len(self.amplifiers) != 1:
            raise OptionError(f"{len(self.amplifiers)} amplifiers were measured: each has its "
                              "own photon transfer (Characterized.amplifiers)")
        return self.amplifiers[0][1]

    def summary(self) -> dict:
        """For ``--json``: one amplifier's numbers, or ``amplifiers``, a list of each one's
        (with its ``name``)."""
        common = {"biases": list(self.biases),
                  "camera_file": None if self.camera_file is None else str(self.camera_file),
                  "dark_coefficient": self.dark_coefficient,
                  "dark_rates": [{"ccd_temp": t, "rate": r, "frames": n}
                                 for t, r, n in self.dark_rates]}
        measured = [{**({} if name is None else {"name": name}), **_numbers(t)}
                    for name, t in self.amplifiers]
        return {**measured[0], **common} if len(measured) == 1 else {
            "amplifiers": measured, **common}

    def table(self) -> str:
        """The pairs, and the result, as lines of text (per amplifier)."""
        lines = []
        for name, t in self.amplifiers:
            if name is not None:
                lines.append(f"amplifier {name}:")
            lines.append(f"{'flat pair':<40} {'exptime':>8} {'level ADU':>10} {'var ADU2':>10} "
                         f"{'gain':>7}")
            for p in t.pairs:
                names = " + ".join(Path(n).name for n in p.names)
                lines.append(f"{names:<40} {p.exptime or 0:>8.3f} {p.level:>10.1f} "
                             f"{p.variance:>10.2f} {p.gain:>7.4f}"
                             + ("  saturated: left out" if p.saturated else
                                "  non-linear: left out" if p.nonlinear else ""))
            lines.append(f"gain {t.gain:.4f} e-/ADU, read noise {t.read_noise:.3f} e- "
                         f"({t.read_noise_adu:.3f} ADU) from {' + '.join(self.biases)}")
            if t.linearity is not None:
                lines.append(f"linearity: levels within {100 * t.linearity:.2f}% of a line in "
                             "exposure time")
            if t.saturation is not None:
                lines.append(f"saturation: the curve turns over above {t.saturation:.1f} ADU "
                             "over the bias (the highest pair under the turn)")
        if self.dark_coefficient is not None:
            rates = ", ".join(f"{r:.4g} e-/s at {t:g} C" for t, r, _ in self.dark_rates)
            lines.append(f"dark current x exp({self.dark_coefficient:.4f} x warming in C) "
                         f"(doubling every {math.log(2) / self.dark_coefficient:.2f} C): "
                         f"{rates}")
        return "\n".join(lines)


def _numbers(t: PhotonTransfer) -> dict:
    return {"gain": t.gain, "read_noise": t.read_noise, "read_noise_adu": t.read_noise_adu,
            "linearity": t.linearity, "saturation": t.saturation,
            "pairs": [{"frames": list(p.names), "exptime": p.exptime, "level": p.level,
                       "variance": p.variance, "gain": p.gain, "saturated": p.saturated,
                       "nonlinear": p.nonlinear}
                      for p in t.pairs]}


def _load(row, processing, amplifiers) -> list[tuple[np.ndarray, float | None]]:
    """A frame's values (overscan-subtracted and trimmed where raw), float32, and its
    saturation level on those values: one pair for the frame, or with a camera file's
    ``amplifiers`` (several) one per amplifier, its data section (less its overscan, unless
    ``overscan`` is None)."""
    path = str(row["path"])
    frame = open_frame((path, int(row["hdu"])))
    try:
        header = frame.header()
        saturation = saturation_level(header, frame, processing.get("saturation"))
        if len(amplifiers) > 1:
            placements = place_amplifiers(amplifiers, header, frame.shape, path)
            if str(processing["overscan"]).lower() == "none":  # a difference cancels a bias
                placements = [replace(p, overscan=None) for p in placements]
            frame = AmplifierFrame(frame, placements)
            data = read_image(frame)
            frame.frame.verify()
            return [(data[p.place.slices], part.processed_level(saturation))
                    for p, part in zip(frame.placements, frame.parts, strict=True)]
        frame = processed(frame, header, path, overscan=processing["overscan"],
                          trim=processing["trim"])
        if isinstance(frame, ProcessedFrame):
            saturation = frame.processed_level(saturation)
        data = read_image(frame)
        frame.verify()
        return [(data, saturation)]
    finally:
        frame.close()


def _check_one_setup(rows, ignore=()) -> None:
    """Every frame of the camera setup of the first, by grouping's rule (each setup key's
    tolerance: CCD-TEMP within 2 degC), the keys ``ignore`` aside."""
    first = rows[0]
    for row in rows[1:]:
        differ = [f"{k.upper()} {first.get(k)!r} vs {row.get(k)!r}" for k in SETUP
                  if k not in ignore
                  and not same_value(first.get(k), row.get(k), DEFAULT_TOLERANCES.get(k))]
        if differ:
            raise OptionError(f"{row['path']}: of another camera setup than {first['path']} "
                              f"({', '.join(differ)}); characterize one setup at a time "
                              "(--include, or one folder each)")


def characterize(frames, *, output=None, recursive=False, cache=True, overscan=None,
                 trim=AUTO, saturation=None, camera=None, overwrite=False) -> Characterized:
    """Measure the camera's gain and read noise from pairs of flats and two biases, and, from
    darks at two or more sensor temperatures (CCD-TEMP) among the frames, the coefficient of
    its dark current's growth with temperature (one amplifier).

    Parameters
    ----------
    frames : ImageIndex, str, os.PathLike or list of these
        An index, or files and/or folders to index: biases and flats of one camera setup
        (masters and other kinds left out).
    output : str or os.PathLike, optional
        The camera file (TOML) to write: ``gain``, ``read_noise``, and ``saturation`` where
        given or where the curve turned over (the raw level, bias included, of the highest
        pair fitted; the lowest amplifier's; not with ``overscan``, whose frames are no longer
        raw).
    recursive, cache
        Where ``frames`` is not an index: as for :class:`~calstack.catalog.index.ImageIndex`.
    overscan, trim : str or None
        Raw frames: as for :func:`calstack.calibrate`; the overscan is not subtracted by
        default (None), the trim is ``'auto'``.
    saturation : float or str, optional
        The raw level (or its keyword) at which a flat pair is saturated and left out
        (default: the camera file's, SATURATE, else the largest integer the file holds).
    camera : str, os.PathLike or Camera, optional
        A camera file of several amplifiers (:mod:`calstack.processing.camera`): each
        amplifier's data section is measured on its own (its overscan subtracted where
        ``overscan`` is ``'auto'``), and the camera file written is this one with each
        amplifier's measured gain and read noise.
    overwrite : bool
        Replace an existing camera file.

    Returns
    -------
    Characterized

    Raises
    ------
    OptionError
        Fewer than two biases, no two flats of one filter and exposure, frames of several
        setups, or the camera file exists (without ``overwrite``).
    """
    index = frames if isinstance(frames, ImageIndex) else ImageIndex(
        frames, recursive=recursive, cache=cache, keywords=DEFAULT_KEYWORDS)
    rows = [r for r in index.rows() if not r["error"] and not r["master"]]
    units = _extensions(rows)
    frames_of = {unit: _frames_of(unit_rows, index) for unit, unit_rows in units.items()}
    if output is not None and Path(output).exists() and not overwrite:
        raise OptionError(f"{output}: exists; pass --overwrite to replace it")
    camera = None if camera is None else (
        camera if isinstance(camera, Camera) else read_camera(camera))
    amplifiers = () if camera is None else camera_defaults(camera)["amplifiers"]
    if saturation is None and camera is not None:
        saturation = camera.saturation
    if len(amplifiers) > 1 and (len(units) > 1 or str(trim).lower() != AUTO):
        raise OptionError(f"--camera {camera.source}, whose {len(amplifiers)} amplifiers have "
                          "their own data sections, is for single-image frames, without --trim")
    processing = dict(overscan=overscan, trim=trim, saturation=saturation)
    names = [a.name for a in amplifiers] if len(amplifiers) > 1 else [None]
    measured, full = [], []  # each amplifier's transfer; its raw level where it saturates
    rates = ()  # of the darks, for a camera of one amplifier
    for unit, (biases, pairs, darks) in frames_of.items():
        bias_parts = [_load(r, processing, amplifiers) for r in biases[:2]]
        flat_parts = [[_load(r, processing, amplifiers) for r in pair] for pair in pairs]
        for k, name in enumerate(names):
            name = unit if name is None else name
            (b1, _), (b2, _) = (parts[k] for parts in bias_parts)
            read_variance, bias_level = difference_variance(b1, b2)
            flat = [flat_pair(a[k][0], b[k][0], bias_level=bias_level,
                              read_variance=read_variance,
                              names=(str(first["path"]), str(second["path"])),
                              exptime=first.get("exptime"), saturation=a[k][1])
                    for (a, b), (first, second) in zip(flat_parts, pairs, strict=True)]
            try:
                transfer = photon_transfer(flat, float(np.sqrt(read_variance)))
            except ValueError as exc:
                where = "" if name is None else f"{name}: "
                raise OptionError(f"{where}{exc}: add flats at a level below saturation") \
                    from None
            measured.append((name, transfer))
            if transfer.saturation is not None:
                full.append(bias_level + transfer.saturation)
        if len(frames_of) == 1 and len(names) == 1:
            rates = _dark_rates(darks, (bias_parts[0][0][0] + bias_parts[1][0][0]) / 2,
                                measured[-1][1].gain, processing)
    if saturation is None and full and str(overscan).lower() == "none":  # as raw ADU (the
        # biases' level with it), the lowest amplifier's
        saturation = float(np.floor(min(full)))
    coefficient = _dark_coefficient(rates)
    written = None
    if output is not None:
        written = _write_camera(output, measured, camera, saturation, overwrite, coefficient,
                                per_extension=len(units) > 1)
    biases = next(iter(frames_of.values()))[0]
    return Characterized(tuple(measured), (str(biases[0]["path"]), str(biases[1]["path"])),
                         written, coefficient, rates)


def _extensions(rows) -> dict:
    """The rows of each extension (by EXTNAME, else HDU number) of multi-extension frames, one
    amplifier each; ``{None: rows}`` for single-image frames."""
    per_file = {}
    for row in rows:
        per_file.setdefault(row["path"], []).append(row)
    if all(len(hdus) == 1 for hdus in per_file.values()):
        return {None: rows}
    units = {}
    for row in rows:
        units.setdefault(str(row.get("extname") or f"HDU{row['hdu']}"), []).append(row)
    return units


def _frames_of(rows, index) -> tuple[list, list, list]:
    """The biases, flat pairs (by filter and exposure, in file order) and darks of one
    extension's rows, once they are of one camera setup."""
    biases = [r for r in rows if kind_of(r.get("imagetyp")) == "bias"]
    flats = [r for r in rows if kind_of(r.get("imagetyp")) == "flat"]
    if biases + flats:
        _check_one_setup(biases + flats)
    if len(biases) < 2:
        raise OptionError(f"{len(biases)} bias frame(s) in {', '.join(index.locations)}: the "
                          "read noise needs two; add biases")
    groups = {}
    for row in flats:
        groups.setdefault((row.get("filter"), row.get("exptime")), []).append(row)
    pairs = [(g[i], g[i + 1]) for g in groups.values() for i in range(0, len(g) - 1, 2)]
    if not pairs:
        raise OptionError(f"no two flats of one filter and exposure time in "
                          f"{', '.join(index.locations)}: the gain needs a pair; add flats")
    darks = [r for r in rows if kind_of(r.get("imagetyp")) == "dark"]
    if darks:
        _check_one_setup([biases[0], *darks], ignore=_TEMPERATURE_KEYS)
    return biases, pairs, darks


#: The sensor's temperature keys, by which darks of a temperature series differ.
_TEMPERATURE_KEYS = ("ccd-temp", "set-temp", "settemp")


def _dark_rates(darks, bias, gain, processing) -> tuple:
    """``(CCD-TEMP, median dark current in e-/s, frames)`` per temperature (rounded to 0.5 C)
    of the darks that have a CCD-TEMP and an exposure: each dark less the mean of the two
    biases, its median over its exposure, and the median of those of a temperature."""
    groups = {}
    for row in darks:
        temperature, exptime = row.get("ccd-temp"), row.get("darktime") or row.get("exptime")
        if isinstance(temperature, (int, float)) and isinstance(exptime, (int, float)) \
                and exptime > 0:
            groups.setdefault(round(2 * temperature) / 2, []).append((row, float(exptime)))
    rates = []
    for temperature, group in sorted(groups.items()):
        each = [float(np.nanmedian(_load(row, processing, ())[0][0] - bias)) * gain / exptime
                for row, exptime in group]
        rates.append((temperature, float(np.median(each)), len(group)))
    return tuple(rates)


def _dark_coefficient(rates) -> float | None:
    """The slope of ln(dark current) against temperature (per degree C), from two or more
    temperatures whose dark current is positive; None without."""
    usable = [(t, r) for t, r, _ in rates if r > 0]
    if len(usable) < 2:
        return None
    t, r = np.array(usable).T
    return float(np.polyfit(t, np.log(r), 1)[0])


def _write_camera(path, measured, camera, saturation, overwrite, coefficient=None, *,
                  per_extension=False) -> Path:
    """The camera file: the gain and read noise measured; for a camera of several amplifiers
    its layout with each amplifier's, or each extension's (``[[extension]]``); the dark
    coefficient where measured."""
    import tomli_w

    if per_extension:
        table = {"extension": [{"name": name, "gain": round(t.gain, 5),
                                "read_noise": round(t.read_noise, 4)} for name, t in measured]}
    elif len(measured) == 1:
        transfer = measured[0][1]
        table = {"gain": round(transfer.gain, 5), "read_noise": round(transfer.read_noise, 4)}
    else:
        table = {"name": camera.name} if camera.name else {}
        table["amplifier"] = [
            {"name": amp.name,
             **{key: value for key in ("data", "overscan", "detector")
                if (value := getattr(amp, key)) is not None},
             "gain": round(t.gain, 5), "read_noise": round(t.read_noise, 4)}
            for amp, (_, t) in zip(camera.amplifiers, measured, strict=True)]
    if coefficient is not None:
        table = {"dark_coefficient": round(coefficient, 5), **table}
    if saturation is not None:
        table = {"saturation": saturation, **table}
    text = ("# measured by calstack characterize (photon transfer)\n" + tomli_w.dumps(table))

    def write(tmp):
        Path(tmp).write_text(text, encoding="utf-8")

    return atomic_write(path, write, overwrite=overwrite)
