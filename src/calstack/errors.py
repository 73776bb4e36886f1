"""Exception types raised by calstack.

Every error calstack raises on purpose derives from :class:`CalstackError`, so a caller can
catch the project's own failures apart from bugs. Option errors additionally derive from the
built-in type Python users expect (``TypeError`` for an unknown name, ``ValueError`` for a bad
value).
"""

from __future__ import annotations

import difflib

__all__ = ["CalstackError", "FileChangedError", "FrameError", "OptionError", "UnknownOptionError",
           "VerificationError", "did_you_mean", "unknown_option"]


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


class FileChangedError(FrameError):
    """An input file is not the one indexed or opened (replaced or edited): never skipped as an
    unreadable frame, nothing is written."""


class VerificationError(CalstackError):
    """A master failed verification under ``strict`` (exit code 3 on the command line); the
    message names the master, the checks failed and where it was left."""


class OptionError(CalstackError, ValueError):
    """An option has a value that cannot work; the message names the option and the allowed values."""


class UnknownOptionError(CalstackError, TypeError):
    """An option name that calstack does not know; the message suggests the nearest valid name."""


def did_you_mean(name: str, valid) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest valid name, or ``""`` if none is close."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_option(name, valid, *, where=None, what="option", fix=None) -> UnknownOptionError:
    """The error for a name that is not among ``valid``, in calstack's one format.

    ``"{where}: unknown {what} 'x' (did you mean 'y'?); valid {what}s: a, b, c; {fix}"``: the
    ``where`` prefix, the hint and the ``fix`` appear only when there is one. The hint compares
    the name trimmed and in lower case (keyword and column names are case-insensitive), and names
    the valid spelling.

    Parameters
    ----------
    name : str
        The name given (shown as given).
    valid : iterable of str
        The names that would work, in the order to list them.
    where : str, optional
        What was called or read (``'ImageIndex()'``, ``'group_by'``).
    what : str
        What kind of name it is: ``'option'``, ``'column'``, ``'grouping key'``...
    fix : str, optional
        What else to do, after the list (e.g. how to add a column).

    Returns
    -------
    UnknownOptionError
        To raise.
    """
    valid = [str(v) for v in valid]
    lowered = {}
    for v in valid:
        lowered.setdefault(v.lower(), v)  # the first spelling of a name wins
    close = difflib.get_close_matches(str(name).strip().lower(), list(lowered), n=1, cutoff=0.6)
    hint = f" (did you mean {lowered[close[0]]!r}?)" if close else ""
    text = (f"{where + ': ' if where else ''}unknown {what} {name!r}{hint}; valid {what}s: "
            f"{', '.join(valid) or '(none)'}")
    return UnknownOptionError(f"{text}; {fix}" if fix else text)
