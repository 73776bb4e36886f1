"""Progress of long work: a tqdm bar on a terminal, plain lines in logs, or nothing.

Long steps (reading thousands of headers, combining tiles, building the masters of a job,
writing a report) report to a :class:`Progress`:

* ``'bar'`` -- tqdm bars with rate and ETA on ``stream`` (stderr), nested bars for nested work
  (a group's rows under the job's masters), each cleared when its work ends; lines are written
  above the bars;
* ``'lines'`` -- no bars, no carriage returns: only the lines (one per master built), so CI
  logs stay clean;
* ``'off'`` -- nothing;
* ``'auto'`` -- ``'bar'`` when ``stream`` is a terminal, ``'lines'`` otherwise (what the command
  line uses; ``--quiet`` is ``'off'``).

The Python API reports nothing unless asked: ``progress=True`` is ``'auto'``.
"""

from __future__ import annotations

import contextlib
import logging
import sys

from .errors import OptionError

__all__ = ["MODES", "Progress", "as_progress"]

MODES = ("auto", "bar", "lines", "off")


class _Silent:
    """A task that shows nothing (modes 'lines' and 'off')."""

    def update(self, n=1):
        """Count ``n`` more units done."""

    def note(self, text):
        """Show what is being worked on (the bar's postfix)."""


class _Bar(_Silent):
    def __init__(self, bar):
        self._bar = bar

    def update(self, n=1):
        self._bar.update(n)

    def note(self, text):
        self._bar.set_postfix_str(text, refresh=False)


class Progress:
    """Where long work reports how far it is.

    Parameters
    ----------
    mode : {'auto', 'bar', 'lines', 'off'}
        See the module documentation.
    stream : file, optional
        Where bars go (default ``sys.stderr``).
    out : file, optional
        Where lines go (default: ``stream``). The command line sends them to stdout, or to
        stderr when stdout carries ``--json``.
    """

    def __init__(self, mode="auto", *, stream=None, out=None):
        if mode not in MODES:
            raise OptionError(f"progress mode {mode!r} is not valid; allowed values: "
                              f"{', '.join(map(repr, MODES))}")
        self.stream = stream if stream is not None else sys.stderr
        self.out = out if out is not None else self.stream
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", None)
            mode = "bar" if isatty is not None and isatty() else "lines"
        self.mode = mode
        self._depth = 0

    @contextlib.contextmanager
    def task(self, desc, total, unit):
        """A unit of long work, as a context manager yielding an object with ``update(n)``.

        Parameters
        ----------
        desc : str
            What is being done (the bar's label).
        total : int
            Units of work in all.
        unit : str
            Name of one unit (``'file'``, ``'row'``, ``'master'``): the rate is shown in it.
        """
        if self.mode != "bar":
            yield _Silent()
            return
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=False,
                   position=self._depth, dynamic_ncols=True, mininterval=0.2)
        self._depth += 1
        try:
            yield _Bar(bar)
        finally:
            self._depth -= 1
            bar.close()

    def line(self, text):
        """Write one line (above any bars); nothing in mode 'off'."""
        if self.mode == "off":
            return
        if self.mode == "bar":
            from tqdm import tqdm

            tqdm.write(text, file=self.out)
            self.out.flush()
        else:
            print(text, file=self.out, flush=True)

    def logging_to(self, logger: logging.Logger):
        """Context manager: while bars show, ``logger``'s console records are written above them."""
        if self.mode != "bar":
            return contextlib.nullcontext()
        from tqdm.contrib.logging import logging_redirect_tqdm

        return logging_redirect_tqdm(loggers=[logger])


def as_progress(progress) -> Progress:
    """The ``progress=`` argument of the API as a :class:`Progress`.

    ``False``/``None`` report nothing, ``True`` is ``'auto'``, a mode name picks the mode, and
    a :class:`Progress` is used as it is (so nested work shares one set of bars).
    """
    if isinstance(progress, Progress):
        return progress
    if progress is None or progress is False:
        return Progress("off")
    if progress is True:
        return Progress("auto")
    if isinstance(progress, str):
        return Progress(progress)
    raise OptionError(f"progress={progress!r} must be True, False, one of "
                      f"{', '.join(map(repr, MODES))} or a calstack.progress.Progress")
