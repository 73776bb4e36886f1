"""Output file names filled from templates and header values (pure: no disk access).

A header value is made safe before it enters a name (:func:`safe_value`), a template may not
ask for fields wider than a file name (:func:`check_template`), and a filled name must leave
room for what calstack adds while writing it (:func:`check_name`). ``combine``, ``masters``
and ``calibrate`` name their outputs through these rules.
"""

from __future__ import annotations

import re
import string

from ..errors import OptionError

__all__ = ["check_name", "check_template", "safe_value"]

#: Characters a header value may bring into a file name; anything else becomes ``_``.
_UNSAFE = re.compile(r"[^A-Za-z0-9.+=-]+")
#: The longest a value may be in a file name.
_VALUE_CHARS = 64
#: The longest file name (bytes) most file systems take.
_NAME_BYTES = 255
#: What calstack adds to an output's name while writing it: the temporary file of a rejected
#: master, ``.NAME.rejected.XXXXXXXX.tmp`` (:func:`calstack.io.writer.atomic_write`).
_NAME_ADDS = len(".") + len(".rejected") + len(".XXXXXXXX.tmp")


def safe_value(value) -> str:
    """A header value as it may appear in a file name.

    No separator, blank, control character or ``..``: characters other than letters, digits
    and ``.+=-`` become ``_``; at most 64 characters.

    Parameters
    ----------
    value : object
        The value (its ``str``).

    Returns
    -------
    str
    """
    text = _UNSAFE.sub("_", str(value).strip())
    text = re.sub(r"_+", "_", re.sub(r"\.{2,}", "_", text)).strip(".") or "_"
    return text[:_VALUE_CHARS]


def check_template(template: str) -> list:
    """The fields of ``template``, once it is known that none is wider than a file name.

    Parameters
    ----------
    template : str
        A ``str.format`` template.

    Returns
    -------
    list of (literal, field, spec, conversion)
        :meth:`string.Formatter.parse`'s parts.

    Raises
    ------
    OptionError
        A field's width is above 255 characters, a width comes from another field
        (``{object:>{gain}}``, which a header value would set), or the template is malformed.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise OptionError(f"template {template!r} cannot be filled: {exc}") from None
    for _, name, spec, _ in parsed:
        if name is not None and spec and "{" in spec:
            raise OptionError(f"template {template!r}: the format of {{{name}}} takes a field "
                              f"({spec}); write its width as a number")
    widths = [int(w) for _, name, spec, _ in parsed if name is not None and spec
              for w in re.findall(r"\d+", spec)]
    if widths and max(widths) > _NAME_BYTES:
        raise OptionError(f"template {template!r} asks for a field {max(widths)} characters "
                          f"wide; a file name has at most {_NAME_BYTES} bytes")
    return parsed


def check_name(template: str, name: str) -> None:
    """Raise OptionError if ``name`` (filled from ``template``) leaves no room for the
    temporary file it is written through, or for ``NAME.rejected``, within 255 bytes."""
    if len(name.encode("utf-8", "surrogateescape")) > _NAME_BYTES - _NAME_ADDS:
        raise OptionError(f"template {template!r} gives a name of more than "
                          f"{_NAME_BYTES - _NAME_ADDS} bytes ({name[:40]}...), too long for its "
                          f"temporary file (.NAME.XXXXXXXX.tmp) or a rejected master "
                          f"(NAME.rejected) within {_NAME_BYTES}; shorten it")
