"""A camera file (TOML): the camera's gain, read noise and saturation, and the layout of its
amplifiers on a single-HDU frame read out by several of them.

.. code-block:: toml

    name = "two-amplifier CCD"  # optional
    gain = 1.5                  # e-/ADU; each amplifier's own below wins
    read_noise = 4.0            # e-
    saturation = 65000          # raw ADU
    dark_coefficient = 0.1      # per degree C: dark current x exp(0.1 x warming)

    [[amplifier]]
    name = "left"
    data = "[1:1024,1:2048]"       # the pixels kept (DATASEC), FITS 1-based inclusive
    overscan = "[1025:1056,1:2048]" # its overscan (BIASSEC), or leave it out
    gain = 1.48
    read_noise = 3.9

    [[amplifier]]
    name = "right"
    data = "[1089:2112,1:2048]"
    overscan = "[1057:1088,1:2048]"
    gain = 1.53

A camera of one amplifier per extension of a multi-extension frame names each extension
(EXTNAME) with its own numbers instead:

.. code-block:: toml

    [[extension]]
    name = "CCD1"
    gain = 1.51
    read_noise = 4.1

A section may instead name the header keyword that holds it (``data = "DATASECA"``), and a
number the keyword that holds it (``gain = "GAINA"``). Without ``detector`` the amplifiers'
data sections are packed as they lie on the frame (the overscan between them left out); with
``detector = "[1025:2048,1:2048]"`` for every amplifier (DETSEC) each goes where it says,
flipped where it is written the other way round (:func:`calstack.processing.frames.place_amplifiers`).
``calibrate`` and ``reduce`` take the file (``--camera``) for the gain, read noise, saturation
and the amplifiers' sections (:func:`camera_defaults`): one amplifier's sections stand for
``--overscan`` and ``--trim``; several are each overscan-subtracted by their own overscan, put
together into one image (:class:`calstack.processing.frames.AmplifierFrame`) and calibrated
each with its own gain and read noise.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import OptionError, unknown_option

__all__ = ["Amplifier", "Camera", "camera_defaults", "read_camera"]

_TOP = ("name", "gain", "read_noise", "saturation", "dark_coefficient", "amplifier",
        "extension")
_EXTENSION = ("name", "gain", "read_noise")
_AMPLIFIER = ("name", "data", "overscan", "gain", "read_noise", "detector")


@dataclass(frozen=True)
class Amplifier:
    """One amplifier's part of a frame: sections as FITS text or the keyword holding them,
    numbers or the keyword holding them (None: the camera's, else the header's)."""

    name: str
    data: str | None = None
    overscan: str | None = None
    gain: float | str | None = None
    read_noise: float | str | None = None
    detector: str | None = None


@dataclass(frozen=True)
class Camera:
    """A camera file's contents (:func:`read_camera`)."""

    source: str
    name: str = ""
    gain: float | str | None = None
    read_noise: float | str | None = None
    saturation: float | str | None = None
    amplifiers: tuple[Amplifier, ...] = field(default_factory=tuple)
    dark_coefficient: float | None = None
    extensions: tuple[Amplifier, ...] = field(default_factory=tuple)  # by EXTNAME: numbers


def _number(value, where, key, *, positive=False):
    if value is None or (isinstance(value, str) and value.strip()):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        need = "a number > 0" if positive else "a number >= 0"
        raise OptionError(f"{where}: {key} = {value!r} is not {need} or a header keyword")
    return float(value)


def _text(value, where, key):
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise OptionError(f"{where}: {key} = {value!r} is not a section ('[x1:x2,y1:y2]') or a "
                          "header keyword")
    return value.strip()


def _tables(table, key, source) -> list:
    """The camera file's ``[[key]]`` tables (none: an empty list)."""
    tables = table.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise OptionError(f"{source}: '{key}' must be a list of tables ([[{key}]])")
    return tables


def _check_keys(table, valid, where):
    for key in table:
        if key not in valid:
            raise unknown_option(key, valid, where=where, what="key")


def read_camera(path) -> Camera:
    """Read a camera file.

    Parameters
    ----------
    path : str or os.PathLike
        The TOML file.

    Returns
    -------
    Camera

    Raises
    ------
    OptionError
        The file cannot be read or parsed, has an unknown key, a value of the wrong kind, or
        amplifiers without a data section or with one name twice; the message names the file
        and the key.
    """
    source = str(path)
    try:
        table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise OptionError(f"--camera {source}: cannot be read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise OptionError(f"--camera {source}: not a TOML camera file ({exc})") from None
    _check_keys(table, _TOP, source)
    amplifiers = _tables(table, "amplifier", source)
    parsed = []
    for number, amp in enumerate(amplifiers, start=1):
        where = f"{source}: amplifier {number}"
        _check_keys(amp, _AMPLIFIER, where)
        name = str(amp.get("name", number))
        if amp.get("data") is None and len(amplifiers) > 1:
            raise OptionError(f"{where} ({name}) has no 'data' section; give each amplifier's")
        parsed.append(Amplifier(
            name, _text(amp.get("data"), where, "data"),
            _text(amp.get("overscan"), where, "overscan"),
            _number(amp.get("gain"), where, "gain", positive=True),
            _number(amp.get("read_noise"), where, "read_noise"),
            _text(amp.get("detector"), where, "detector")))
    names = [a.name for a in parsed]
    if len(set(names)) < len(names):
        raise OptionError(f"{source}: two amplifiers are named alike ({names}); name each its own")
    if parsed and any(a.detector for a in parsed) and not all(a.detector for a in parsed):
        raise OptionError(f"{source}: 'detector' given for some amplifiers only; give it for "
                          "every amplifier or none")
    named = []
    for number, ext in enumerate(_tables(table, "extension", source), start=1):
        where = f"{source}: extension {number}"
        _check_keys(ext, _EXTENSION, where)
        if not isinstance(ext.get("name"), str) or not ext["name"].strip():
            raise OptionError(f"{where} has no 'name' (its EXTNAME); give each extension's")
        named.append(Amplifier(ext["name"].strip(),
                               gain=_number(ext.get("gain"), where, "gain", positive=True),
                               read_noise=_number(ext.get("read_noise"), where, "read_noise")))
    if parsed and named:
        raise OptionError(f"{source}: both [[amplifier]] and [[extension]]: a camera is read "
                          "out by amplifiers of one image or by one per extension; give one")
    coefficient = table.get("dark_coefficient")
    if coefficient is not None and isinstance(coefficient, str):
        raise OptionError(f"{source}: dark_coefficient = {coefficient!r} is not a number (per "
                          "degree C)")
    return Camera(source, str(table.get("name", "")),
                  _number(table.get("gain"), source, "gain", positive=True),
                  _number(table.get("read_noise"), source, "read_noise"),
                  _number(table.get("saturation"), source, "saturation"), tuple(parsed),
                  _number(coefficient, source, "dark_coefficient"), tuple(named))


def camera_defaults(camera, *, gain=None, read_noise=None, saturation=None, overscan="auto",
                    trim="auto", dark_coefficient=None) -> dict:
    """The options a camera file gives where they are not given (None, or ``'auto'`` for the
    sections): ``gain``, ``read_noise``, ``saturation``, ``overscan``, ``trim``,
    ``dark_coefficient``, ``amplifiers``, the layout of a frame read out by several
    amplifiers (empty for one), and ``extensions``, EXTNAME to ``(gain, read_noise)`` of a
    camera of one amplifier per extension (empty without).

    An amplifier's own value wins over the camera's; given options win over both. With several
    amplifiers each of ``amplifiers`` has its gain and read noise so resolved, and ``gain`` and
    ``read_noise`` are the value they all share (None where they differ).

    Parameters
    ----------
    camera : Camera, str, os.PathLike or None
        The camera (a path is read); None gives the options back as they are.

    Raises
    ------
    OptionError
        A camera of several amplifiers with ``overscan`` or ``trim`` given: each amplifier's
        sections are the camera file's.
    """
    options = dict(gain=gain, read_noise=read_noise, saturation=saturation, overscan=overscan,
                   trim=trim, dark_coefficient=dark_coefficient, amplifiers=(), extensions={})
    if camera is None:
        return options
    if not isinstance(camera, Camera):
        camera = read_camera(camera)
    if options["saturation"] is None:
        options["saturation"] = camera.saturation
    if options["dark_coefficient"] is None:
        options["dark_coefficient"] = camera.dark_coefficient
    options["extensions"] = {ext.name.upper(): (_first(gain, ext.gain, camera.gain),
                                                _first(read_noise, ext.read_noise,
                                                       camera.read_noise))
                             for ext in camera.extensions}
    if len(camera.amplifiers) > 1:
        given = [key for key in ("overscan", "trim") if str(options[key]).lower() != "auto"]
        if given:
            raise OptionError(f"--{given[0]} with --camera {camera.source}, whose "
                              f"{len(camera.amplifiers)} amplifiers have their own sections: "
                              "give one or the other")
        amplifiers = tuple(replace(
            amp, gain=_first(gain, amp.gain, camera.gain),
            read_noise=_first(read_noise, amp.read_noise, camera.read_noise))
            for amp in camera.amplifiers)
        for key in ("gain", "read_noise"):
            values = {getattr(amp, key) for amp in amplifiers}
            options[key] = values.pop() if len(values) == 1 else None
        options["amplifiers"] = amplifiers
        return options
    amp = camera.amplifiers[0] if camera.amplifiers else Amplifier("1")
    options["gain"] = _first(gain, amp.gain, camera.gain)
    options["read_noise"] = _first(read_noise, amp.read_noise, camera.read_noise)
    for key, section in (("overscan", amp.overscan), ("trim", amp.data)):
        if section is not None and str(options[key]).lower() == "auto":
            options[key] = section
    return options


def _first(*values):
    """The first of ``values`` that is not None."""
    return next((v for v in values if v is not None), None)
