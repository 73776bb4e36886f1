"""A frame's noise model and saturation level: from options, or the header keywords cameras and
pipelines write (EGAIN/GAIN, RDNOISE/READNOIS/RON, SATURATE/SATLEVEL), with one-line errors
naming the frame and the option that would do."""

from __future__ import annotations

from ..errors import FrameError

__all__ = ["GAIN_KEYS", "READ_NOISE_KEYS", "header_number", "noise_model", "saturation_level"]

#: Header keywords of the gain (e-/ADU) and the read noise (e-), first found first.
GAIN_KEYS = ("EGAIN", "GAIN")
READ_NOISE_KEYS = ("RDNOISE", "READNOIS", "RON")
_SATURATION_KEYS = ("SATURATE", "SATLEVEL")


def header_number(header, value, keys, what, option, source) -> float:
    """An option given as a number, a header keyword, or (None) the first of ``keys`` present.

    Parameters
    ----------
    header : astropy.io.fits.Header or dict
        The frame's header.
    value : float, str or None
        The option: a number, the keyword holding it, or None (the first of ``keys``).
    keys : tuple of str
        The keywords tried for None.
    what, option, source : str
        What the number is, the option that gives it and the frame, for the error.

    Raises
    ------
    FrameError
        The header has none of the keywords (as a number).
    """
    if value is not None and not isinstance(value, str):
        return float(value)
    names = (value.upper(),) if isinstance(value, str) else keys
    for name in names:
        if name in header and isinstance(header[name], (int, float)) and not isinstance(
                header[name], bool):
            return float(header[name])
    raise FrameError(source, f"has no {what} ({' or '.join(names)}); give {option} N")


def noise_model(header, gain, read_noise, source) -> tuple[float, float]:
    """Gain (e-/ADU) and read noise (e-) of a frame.

    ``gain`` and ``read_noise`` are numbers, keywords or None: then EGAIN, or GAIN where the
    header also has a read noise (a CMOS camera's GAIN alone is its gain setting, not e-/ADU),
    and RDNOISE/READNOIS/RON.

    Raises
    ------
    FrameError
        No gain in e-/ADU or no read noise, or values that are not a gain (> 0) and a read
        noise (>= 0); the message names ``source`` and the options.
    """
    if gain is None and "EGAIN" not in header and not any(k in header for k in READ_NOISE_KEYS):
        raise FrameError(source, "has no gain in electrons per ADU (EGAIN, or GAIN beside "
                         "RDNOISE); give --gain and --read-noise (e-/ADU, e-)")
    g = header_number(header, gain, GAIN_KEYS, "gain", "--gain", source)
    r = header_number(header, read_noise, READ_NOISE_KEYS, "read noise", "--read-noise", source)
    if not g > 0 or not r >= 0:
        raise FrameError(source, f"gain {g:g} / read noise {r:g} are not a gain (> 0) and a "
                         "read noise (>= 0); give --gain and --read-noise")
    return g, r


def saturation_level(header, frame, saturation) -> float | None:
    """The level at which raw values saturate: the option, SATURATE/SATLEVEL, or for integer
    data the largest value the file can hold."""
    if isinstance(saturation, str):
        return header_number(header, saturation, (), "saturation level", "--saturation",
                             frame.source)
    if saturation is not None:
        return float(saturation)
    for key in _SATURATION_KEYS:
        if isinstance(header.get(key), (int, float)):
            return float(header[key])
    bitpix = getattr(getattr(frame, "info", None), "bitpix", -32)
    if bitpix <= 0:
        return None
    top = 255 if bitpix == 8 else 2 ** (bitpix - 1) - 1
    return top * float(header.get("BSCALE", 1)) + float(header.get("BZERO", 0))
