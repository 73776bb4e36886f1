"""Exception types raised by calstack.

Every error calstack raises on purpose derives from :class:`CalstackError`, so a caller can
catch the project's own failures apart from bugs. Option errors additionally derive from the
built-in type Python users expect (``TypeError`` for an unknown name, ``ValueError`` for a bad
value).
"""

from __future__ import annotations

import difflib

__all__ = ["CalstackError", "FrameError", "OptionError", "UnknownOptionError", "did_you_mean"]


class CalstackError(Exception):
    """Base class of every error calstack raises on purpose."""


class FrameError(CalstackError, ValueError):
    """An input frame cannot be used; the message names the file and what to do."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # pickled with its two arguments, so it crosses process boundaries
        return type(self), (self.path, self.reason)


class OptionError(CalstackError, ValueError):
    """An option has a value that cannot work; the message names the option and the allowed values."""


class UnknownOptionError(CalstackError, TypeError):
    """An option name that calstack does not know; the message suggests the nearest valid name."""


def did_you_mean(name: str, valid) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest valid name, or ``""`` if none is close."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
