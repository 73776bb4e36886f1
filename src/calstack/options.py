"""The combine options, each declared once: the option table, and the validated options object.

:data:`OPTIONS` holds every option of :func:`calstack.combine` (name, default, allowed values,
documentation, command-line flag, provenance card), in the style of LSST cp_pipe's
``pexConfig`` fields. ``combine()``'s signature and docstring, the command line's flags and help,
the provenance header and :class:`CombineOptions` (whose fields are the ``"combine"`` options,
checked field by field, then across fields in :meth:`CombineOptions.validate`) all come from it.

Names follow astropy's ``sigma_clip`` (``sigma``, ``sigma_lower``, ``sigma_upper``, ``maxiters``,
``cenfunc``, ``stdfunc``). A bad value is reported before any file is opened, with the option's
name and the allowed values. This module imports no numpy (the command line's ``--help`` reads
the table).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import textwrap
from dataclasses import dataclass, replace

from .errors import OptionError, did_you_mean, unknown_option
from .kernels.params import METHOD_CODES, KernelParams, pclip_rank_offset
from .kernels.registry import ALGORITHMS, NO_REJECTION

__all__ = [
    "AUTO",
    "CENFUNCS",
    "DEFAULT_MEM_LIMIT",
    "DTYPES",
    "ELECTRON_UNITS",
    "METHODS",
    "OPTIONS",
    "RECIPE",
    "REJECTIONS",
    "STDFUNCS",
    "CombineOptions",
    "Option",
    "check_names",
    "number_or_keyword",
    "options_in",
    "parameters_doc",
    "rejection_guide",
]

METHODS = tuple(METHOD_CODES)
#: ``'auto'``: chosen per combine from the frames (:meth:`CombineOptions.resolve_auto`).
AUTO = "auto"
REJECTIONS = (None, *ALGORITHMS, AUTO)

#: ``rejection='auto'``: percentile clipping up to this many frames, where no noise model is
#: known (a standard deviation of so few values means little). ``bench/bench_quality.py``: at
#: N = 3 and 4 it beats the recipe's sigma clipping (1.07x and 1.03x the ideal noise against
#: 1.10x and 1.04x), at N = 5 no longer (1.15x against 1.06x).
AUTO_PCLIP_FRAMES = 4
CENFUNCS = ("median", "mean")
STDFUNCS = ("mad_std", "std")
DTYPES = ("float32", "float64")
DEFAULT_MEM_LIMIT = "1GB"

#: ``maxiters=None`` means "until nothing changes"; a pixel of N values converges in < N passes.
_UNTIL_CONVERGED = 2**30


def _choice(allowed):
    def check(name, value):
        if value not in allowed:
            shown = ", ".join(repr(a) for a in allowed)
            hint = did_you_mean(str(value), [a for a in allowed if a]) if isinstance(value, str) else ""
            raise OptionError(f"{name}={value!r} is not valid{hint}; allowed values: {shown}")
        return value
    return check


def _number(*, minimum=None, allow_none=False, integer=False, keyword=False):
    """A check for a number (or None, or a header keyword's name, as allowed)."""
    def check(name, value):
        if (value is None and allow_none) or (keyword and isinstance(value, str)):
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise OptionError(f"{name}={value!r} must be a number")
        if integer and int(value) != value:
            raise OptionError(f"{name}={value!r} must be a whole number")
        value = int(value) if integer else float(value)
        if math.isnan(value):
            raise OptionError(f"{name} must not be NaN")
        if minimum is not None and value < minimum:
            raise OptionError(f"{name}={value!r} must be >= {minimum}")
        return value
    return check


def _dtype(name, value):
    import numpy as np  # only where a dtype is checked: --help reads this module

    try:
        value = np.dtype(value).name
    except TypeError:
        pass
    return _choice(DTYPES)(name, value)


def _flag(_name, value):
    return bool(value)


def _text(_name, value):
    return None if value is None else str(value)


def _frames(name, value):
    """None, or one finite number per frame (as a tuple)."""
    if value is None:
        return None
    numbers_ = tuple(float(v) for v in value)
    if not all(math.isfinite(v) for v in numbers_):
        raise OptionError(f"{name} must be finite numbers, one per frame")
    return numbers_


@dataclass(frozen=True)
class Option:
    """One option of :func:`calstack.combine`.

    Attributes
    ----------
    name : str
        The keyword argument.
    default : object
        Its default.
    type : str
        Its type, as numpydoc writes it.
    doc : str
        What it does: the first line is the command line's help, the rest completes the
        docstring.
    allowed : tuple, optional
        Its allowed values, when they are a list.
    kind : {'combine', 'frames', 'run', 'internal'}
        ``'combine'``: a field of :class:`CombineOptions` (rejection and combination);
        ``'frames'``: how frames are read and prepared; ``'run'``: where the combine runs;
        ``'internal'``: a :class:`CombineOptions` field that ``combine()`` does not take.
    check : callable, optional
        ``check(name, value)`` returns the value normalised or raises :class:`OptionError`
        (default: one of :attr:`allowed`, when given).
    flag : str, optional
        The command line's flag (options without one are given otherwise, or not at all).
    cli : dict
        More ``argparse.add_argument`` arguments for the flag (``type``, ``metavar``, ``nargs``).
    card : tuple of (str, str), optional
        The header keyword and comment that record it in every master.
    card_value : callable, optional
        ``card_value(options)``: the recorded value (default: the option's value).
    recorded : {'always', 'algorithm', 'set'}
        When the card is written: always, when the rejection algorithm reads the option (its
        registry entry), or when the option is set (not None).
    """

    name: str
    default: object
    type: str
    doc: str
    allowed: tuple | None = None
    kind: str = "combine"
    check: object = None
    flag: str | None = None
    cli: dict = dataclasses.field(default_factory=dict)
    card: tuple | None = None
    card_value: object = None
    recorded: str = "always"

    def __post_init__(self):
        if self.check is None and self.allowed is not None:
            object.__setattr__(self, "check", _choice(self.allowed))

    @property
    def help(self) -> str:
        """The first line of :attr:`doc`: the command line's help."""
        return self.doc.split("\n", 1)[0]

    def value_for_card(self, options):
        """The value :attr:`card` records for ``options``, or None when it is not recorded."""
        if self.recorded == "algorithm" and (
                options.rejection is None or self.name not in ALGORITHMS[options.rejection].options):
            return None
        value = getattr(options, self.name)
        if self.recorded == "set" and value is None:
            return None
        return value if self.card_value is None else self.card_value(options)


def number_or_keyword(text):
    """A command-line value that is a number, or else a header keyword's name."""
    try:
        return float(text)
    except ValueError:
        return text


def _none_or_text(text):
    return None if text.strip().lower() == "none" else text


def _maxiters(text):
    import argparse

    if text.lower() in ("none", "converge", "0"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number, or 'none' to iterate "
                                         "until nothing changes") from None


def _hdu(text):
    return int(text) if text.lstrip("-").isdigit() else text


_REJECTION_DOC = "\n".join(f"- ``'{a.name}'``: {a.spread}." for a in ALGORITHMS.values())

#: Every option of :func:`calstack.combine`, in the order of its signature.
OPTIONS = {o.name: o for o in (
    Option("method", "average", "{'average', 'median', 'sum'}",
           "how the kept values of a pixel combine", allowed=METHODS, flag="--method",
           card=("CMBMETH", "combine method")),
    Option("rejection", None, "{None, " + ", ".join(f"'{a}'" for a in ALGORITHMS) + ", 'auto'}",
           "outlier rejection after extrema and thresholds\n"
           "See Notes for when to pick which. All clipping algorithms reject values below ``center - sigma_lower * spread`` or "
           "above ``center + sigma_upper * spread``; they differ in the spread (``esd`` is a "
           "test, not a clip):\n\n" + _REJECTION_DOC + "\n- ``'auto'``: chosen from the "
           "frames: ``ccdclip`` where gain and read noise are known (given as numbers, or "
           "both in the header; frames in electrons have gain 1), else ``percentile_clip`` "
           f"for up to {AUTO_PCLIP_FRAMES} frames, else ``sigma_clip``; the choice and why are "
           "logged and recorded (CMBAUTO).",
           allowed=REJECTIONS, flag="--rejection", cli={"type": _none_or_text},
           card=("CMBREJ", "rejection algorithm"),
           card_value=lambda o: o.rejection or "none"),
    Option("sigma", 3.0, "float",
           "clipping threshold in units of the spread, for both sides",
           check=_number(minimum=0)),
    Option("sigma_lower", None, "float, optional",
           "lower clipping threshold (default: sigma)", check=_number(minimum=0, allow_none=True),
           card=("CMBSLOW", "sigma_lower"), card_value=lambda o: o.low, recorded="algorithm"),
    Option("sigma_upper", None, "float, optional",
           "upper clipping threshold (default: sigma)", check=_number(minimum=0, allow_none=True),
           card=("CMBSHIGH", "sigma_upper"), card_value=lambda o: o.high, recorded="algorithm"),
    Option("cenfunc", "median", "{'median', 'mean'}", "center of sigma clipping, ccdclip, avsigclip and sigclip",
           allowed=CENFUNCS, flag="--cenfunc", card=("CMBCEN", "cenfunc"),
           recorded="algorithm"),
    Option("stdfunc", "mad_std", "{'mad_std', 'std'}",
           "spread of sigma clipping: 1.4826 MAD, or the standard deviation (ddof=0)",
           allowed=STDFUNCS, flag="--stdfunc", card=("CMBSTD", "stdfunc"),
           recorded="algorithm"),
    Option("maxiters", 1, "int or None",
           "clipping passes (1 = ccdproc; none = until nothing changes)\n"
           "More passes iterate until nothing changes or the count is reached; None iterates "
           "until nothing changes (``astropy.stats.sigma_clip``). The last bounds decide, as in "
           "astropy.",
           check=_number(minimum=1, allow_none=True, integer=True), flag="--maxiters",
           cli={"type": _maxiters, "metavar": "N|none"},
           card=("CMBITER", "maxiters (0 = until nothing changes)"),
           card_value=lambda o: o.maxiters or 0, recorded="algorithm"),
    Option("min_clip", None, "float, optional", "reject values below",
           check=_number(allow_none=True), flag="--min-clip", cli={"type": float},
           card=("CMBMIN", "values below were rejected"), recorded="set"),
    Option("max_clip", None, "float, optional", "reject values above",
           check=_number(allow_none=True), flag="--max-clip", cli={"type": float},
           card=("CMBMAX", "values above were rejected"), recorded="set"),
    Option("nlow", 0, "int", "drop the N lowest valid values of each pixel",
           check=_number(minimum=0, integer=True), flag="--nlow", cli={"type": int},
           card=("CMBNLOW", "lowest values dropped per pixel")),
    Option("nhigh", 0, "int", "drop the N highest valid values of each pixel",
           check=_number(minimum=0, integer=True), flag="--nhigh", cli={"type": int},
           card=("CMBNHIGH", "highest values dropped per pixel")),
    Option("pclip", -0.5, "float",
           "percentile_clip: rank offset from the median (>= 1) or fraction of half the frames "
           "(< 1, truncated); negative = below the median (IRAF's default -0.5)",
           check=_number(), flag="--pclip", cli={"type": float}, card=("CMBPCLIP", "pclip"),
           recorded="algorithm"),
    Option("nkeep", 1, "int",
           "clipping keeps at least N values of a pixel (N >= 0), or rejects at most -N (IRAF)\n"
           "Where a clipping algorithm left fewer, the rejected values nearest the center come "
           "back (IRAF's ``nkeep``; 0 lets a pixel lose every value, as astropy's sigma_clip).",
           check=_number(integer=True), flag="--nkeep", cli={"type": int},
           card=("CMBNKEEP", "values kept at least (< 0: rejected at most)"),
           recorded="algorithm"),
    Option("grow", 0.0, "float",
           "reject the neighbours within this radius (pixels) of every rejected value (IRAF)\n"
           "A value rejected by ``nlow``/``nhigh`` or the algorithm (not by thresholds or "
           "masks) takes with it the values of its frame within ``grow`` pixels "
           "(dx**2 + dy**2 <= grow**2), as IRAF's ``grow``: the pixels are then combined "
           "without further rejection; with ``nkeep > 0`` a pixel left with no value keeps "
           "the result before growing.",
           check=_number(minimum=0), flag="--grow", cli={"type": float},
           card=("CMBGROW", "radius [px] rejections grew by"),
           card_value=lambda o: o.grow or None),
    Option("gain", "GAIN", "float or str",
           "e-/ADU, or the header keyword holding it (ccdclip, noise weights)",
           check=_number(minimum=0, keyword=True), flag="--gain",
           cli={"type": number_or_keyword}, card=("CMBGAIN", "gain [e-/ADU] of the noise model"),
           card_value=lambda o: float(o.gain), recorded="algorithm"),
    Option("read_noise", "RDNOISE", "float or str",
           "read noise in e-, or the header keyword holding it (ccdclip, noise weights)",
           check=_number(minimum=0, keyword=True), flag="--read-noise",
           cli={"type": number_or_keyword},
           card=("CMBRDNS", "read noise [e-] of the noise model"),
           card_value=lambda o: float(o.read_noise), recorded="algorithm"),
    Option("sense_noise", 0.0, "float",
           "ccdclip's sensitivity noise, a fraction of the level (IRAF snoise)",
           check=_number(minimum=0), flag="--sense-noise", cli={"type": float},
           card=("CMBSNOIS", "sensitivity noise of the noise model"), recorded="algorithm"),
    Option("esd_max", 0.3, "float", "esd: most outliers per pixel, a count (>= 1) or a fraction",
           check=_number(minimum=0), flag="--esd-max", cli={"type": float},
           card=("CMBESDMX", "most outliers sought (count or fraction)"), recorded="algorithm"),
    Option("esd_alpha", 0.05, "float", "esd: significance level",
           check=_number(), flag="--esd-alpha", cli={"type": float},
           card=("CMBESDAL", "significance level of the ESD test"), recorded="algorithm"),
    Option("dtype", "float32", "{'float32', 'float64'}",
           "dtype of the result and of the working stack\nfloat32 holds 16-bit camera data "
           "exactly; arithmetic is float64 either way.", allowed=DTYPES, check=_dtype,
           flag="--dtype"),
    Option("rejection_reason", None, "str, optional",
           "why rejection='auto' chose the algorithm; set by combine", kind="internal",
           check=_text,
           card=("CMBAUTO", "auto's reason"), recorded="set"),
    Option("quantum", 0.0, "float",
           "the unscaled values' quantisation step (0: none); set by combine from the data\n"
           "No estimated spread is smaller, and no value within it of the center is rejected.",
           kind="internal", check=_number(minimum=0)),
    Option("frame_scale", None, "tuple of float, optional",
           "each frame's scale factor before rejection; set by combine\n"
           "ccdclip evaluates its noise model on the unscaled values, as IRAF does.",
           kind="internal", check=_frames),
    Option("frame_zero", None, "tuple of float, optional",
           "each frame's zero offset before rejection (subtracted after scaling); set by combine",
           kind="internal", check=_frames),
    Option("ccdproc_semantics", False, "bool",
           "ccdproc's order: missing values count among the highest in extrema clipping, and "
           "each rejection step judges all valid values (for calstack.compat.ccdproc)",
           kind="internal", check=_flag),
    Option("scale", None, "None, {'median', 'mean', 'mode'}, str or array_like",
           "scale frames before rejection: median | mean | mode | KEYWORD\n"
           "Each frame is multiplied so that clipping compares like with like: by "
           "``reference / statistic`` of the frame (the statistic over ``stat_section``), by "
           "``reference / value`` of a header keyword (e.g. ``'EXPTIME'``), or by the numbers "
           "given.", kind="frames", flag="--scale", card=("CMBSCALE", "frames scaled before rejection")),
    Option("zero", None, "None, {'median', 'mean', 'mode'} or array_like",
           "zero offsets before rejection: median | mean | mode\n"
           "Subtracted after scaling: the frame's statistic minus the mean over the frames, or "
           "the numbers given.", kind="frames", flag="--zero",
           card=("CMBZERO", "zero offsets subtracted before rejection")),
    Option("scale_to", None, "float or 'first', optional",
           "level frames are scaled to: a number, or first (default: their mean)\n"
           "1.0 normalises each frame, as for flats; ``'first'`` scales and offsets every "
           "frame to the first one, IRAF's reference frame.", kind="frames", flag="--scale-to",
           cli={"type": number_or_keyword, "metavar": "LEVEL|first"}),
    Option("stat_section", None, "str, optional",
           "where statistics are measured: '[x1:x2,y1:y2]' (1-based, inclusive)",
           kind="frames", flag="--stat-section", cli={"metavar": "[x1:x2,y1:y2]"}),
    Option("weights", None, "None, 'noise', str, or array_like",
           "weights of the average/sum: noise | KEYWORD (e.g. exptime)\n"
           "``'noise'`` for inverse variance from the noise model, a header keyword such as "
           "``'EXPTIME'``, one number per frame, or one 2-D array per frame (per-pixel weights). "
           "Weights of rejected or missing values do not count; a median takes none.",
           kind="frames", flag="--weights", card=("CMBWEIGH", "weights of the combination")),
    Option("bias", None, "path, CCDData or array, optional",
           "master bias to subtract from every frame, before anything else", kind="frames",
           flag="--bias", cli={"metavar": "FITS"}, card=("BIASSUB", "master bias subtracted")),
    Option("dark", None, "path, CCDData or array, optional",
           "master dark (bias-free) to subtract, scaled by dark_scale, before anything else",
           kind="frames", flag="--dark", cli={"metavar": "FITS"},
           card=("DARKSUB", "master dark subtracted")),
    Option("bad_pixels", None, "path, optional",
           "bad-pixel mask (calstack defects): its nonzero pixels are missing in every frame",
           kind="frames", flag="--bad-pixels", cli={"metavar": "MASK.fits"},
           card=("BADPIX", "bad-pixel mask: its pixels missing")),
    Option("dark_scale", "EXPTIME", "str or None",
           "header keyword of the exposure time: the dark is multiplied by frame / dark exposure"
           "\nNone subtracts the dark as it is.", kind="frames"),
    Option("mem_limit", DEFAULT_MEM_LIMIT, "int, float or str",
           f"memory limit, e.g. 350MB (default {DEFAULT_MEM_LIMIT})\n"
           "Bytes (``350e6``) or a size string (``'350MB'``): the most this combine allocates, "
           "outputs included. The stack is processed in bands of rows that fit.",
           kind="frames", flag="--mem-limit"),
    Option("hdu", None, "int or str, optional",
           "HDU number or EXTNAME to combine (default: the first image HDU)", kind="frames",
           flag="--hdu", cli={"type": _hdu}),
    Option("masks", None, "list of array_like of bool, optional",
           "one mask per in-memory frame, True = ignore the pixel", kind="frames"),
    Option("skip_bad", False, "bool",
           "skip unreadable files (reported) instead of stopping\n"
           "They are listed in ``master.skipped`` and in the header (``CMBSKIP``, HISTORY).",
           kind="frames", flag="--skip-bad", cli={"action": "store_true"}),
    Option("n_readers", 2, "int", "threads reading frames", kind="frames"),
    Option("client", None, "distributed.Client, optional",
           "run on this Dask cluster\nBands of rows are combined as tasks on its workers, which "
           "read the files themselves (they must see them at the same paths); the master is "
           "assembled here. Frames must be files, and ``mem_limit`` applies to each task.",
           kind="run"),
    Option("parallel", None, "{None, 'current-scheduler'}",
           "'current-scheduler' runs on the Dask client this process has already set up",
           kind="run"),
    Option("progress", False, "bool, str or calstack.progress.Progress",
           "show a progress bar over the rows combined (True: when stderr is a terminal)",
           kind="run"),
)}

#: The reference recipe's settings: ``ccdproc.combine(method='average', sigma_clip=True,
#: sigma_clip_low_thresh=5, sigma_clip_high_thresh=5, sigma_clip_func=np.ma.median,
#: sigma_clip_dev_func=mad_std)``.
RECIPE = dict(method="average", rejection="sigma_clip", sigma_lower=5.0, sigma_upper=5.0,
              cenfunc="median", stdfunc="mad_std", maxiters=1)


def options_in(*kinds) -> list:
    """The names of the options of these kinds, in table order."""
    return [o.name for o in OPTIONS.values() if o.kind in kinds]


def check_names(function: str, given, valid) -> None:
    """Raise :class:`~calstack.errors.UnknownOptionError` for the first of ``given`` not in
    ``valid``."""
    for name in given:
        if name not in valid:
            raise unknown_option(name, valid, where=f"{function}()")


def rejection_guide(flags: bool) -> str:
    """The "which rejection to pick" guidance: the registry's lines, then extrema and
    thresholds; option names as command-line flags (``flags``) or Python names."""
    extra = [("--nlow/--nhigh" if flags else "nlow/nhigh",
              "you know how many frames are hit (e.g. a trail in one of 5 flats)"),
             ("--min-clip/--max-clip" if flags else "min_clip/max_clip",
              "saturation or dead levels")]
    auto = (AUTO, ("not knowing which: ccdclip where gain and read noise are known, else "
            f"percentile_clip up to {AUTO_PCLIP_FRAMES} frames, else sigma_clip (recorded in "
            "CMBAUTO)"))
    rows = [(a.name, a.pick) for a in ALGORITHMS.values()] + [auto] + extra
    width = max(len(name) for name, _ in rows) + 4
    return "\n".join(textwrap.fill(pick, 92, initial_indent=f"  {name}".ljust(width),
                                    subsequent_indent=" " * width) for name, pick in rows)


def parameters_doc(kinds) -> str:
    """The numpydoc ``Parameters`` entries of the options of these kinds."""
    lines = []
    for option in OPTIONS.values():
        if option.kind in kinds:
            first, _, rest = option.doc.partition("\n")
            lines.append(f"{option.name} : {option.type}")
            paragraphs = [first[0].upper() + first[1:].rstrip(".") + "."]
            for paragraph in paragraphs + (rest.split("\n") if rest else []):
                lines.extend(textwrap.wrap(paragraph, 96, initial_indent="    ",
                                           subsequent_indent="      " if paragraph[:1] == "-"
                                           else "    ") or [""])
    return "\n".join(lines)


def _combine_field(option):
    return (option.name, object, dataclasses.field(default=option.default))


class _Rules:
    """What :class:`CombineOptions` does besides holding its fields (generated from the table)."""

    def __post_init__(self):
        for name in self.__dataclass_fields__:
            object.__setattr__(self, name, OPTIONS[name].check(name, getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Rules across fields, and values the field checks let through."""
        if self.min_clip is not None and self.max_clip is not None and self.min_clip > self.max_clip:
            raise OptionError(
                f"min_clip={self.min_clip} is above max_clip={self.max_clip}: every value would "
                "be rejected; swap them")
        if self.pclip == 0:
            raise OptionError("pclip=0 is not valid: give a rank offset from the median (>= 1) "
                              "or a fraction of half the values (< 1); negative = low side")
        if self.gain == 0:
            raise OptionError("gain=0 is not valid: give electrons per ADU (> 0)")
        if self.frame_scale is not None and not all(v > 0 for v in self.frame_scale):
            raise OptionError("frame_scale must be positive factors")
        if self.grow and self.rejection is None and not (self.nlow or self.nhigh):
            raise OptionError(f"grow={self.grow:g} grows rejected values, but nothing rejects "
                              "any: choose a rejection (or nlow/nhigh), or leave grow at 0")
        if self.esd_max <= 0:
            raise OptionError("esd_max must be > 0: a count of outliers (>= 1) or a fraction")
        if not 0 < self.esd_alpha < 1:
            raise OptionError(f"esd_alpha={self.esd_alpha} must be between 0 and 1 (e.g. 0.05)")

    @classmethod
    def from_kwargs(cls, **kwargs):
        """Build options from keyword arguments; an unknown name raises with a did-you-mean hint."""
        check_names("CombineOptions", kwargs, list(cls.__dataclass_fields__))
        return cls(**kwargs)

    @property
    def low(self) -> float:
        """Lower sigma-clipping threshold (``sigma_lower``, or ``sigma`` when that is None)."""
        return self.sigma if self.sigma_lower is None else self.sigma_lower

    @property
    def high(self) -> float:
        """Upper sigma-clipping threshold (``sigma_upper``, or ``sigma`` when that is None)."""
        return self.sigma if self.sigma_upper is None else self.sigma_upper

    def check_frame_count(self, n: int) -> None:
        """Raise if extrema clipping would reject every value of a stack of ``n`` frames."""
        if self.nlow + self.nhigh >= n > 0:
            raise OptionError(
                f"nlow={self.nlow} + nhigh={self.nhigh} rejects all {n} frames; "
                f"choose nlow + nhigh <= {n - 1}")

    def kernel_params(self, n_frames, *, weighted=False, post_scaled=False) -> KernelParams:
        """The kernel's parameters (:class:`calstack.kernels.params.KernelParams`) for a stack of
        ``n_frames`` frames.

        ``gain`` and ``read_noise`` must be numbers by now for ``ccdclip`` (see
        :meth:`with_noise_model`); as numbers they also floor the spread of sigma clipping.
        """
        noise = self.rejection == "ccdclip"
        known = not (isinstance(self.gain, str) or isinstance(self.read_noise, str))
        if noise and not known:
            raise OptionError("ccdclip needs numbers for gain and read_noise")
        floor = known and self.rejection in ("sigma_clip", "winsorized_sigma_clip")
        scales = self.frame_scale or (1.0,)
        zeros = self.frame_zero or (0.0,)
        return KernelParams(
            method=METHOD_CODES[self.method],
            nlow=self.nlow,
            nhigh=self.nhigh,
            nan_is_high=self.ccdproc_semantics,
            min_clip=-math.inf if self.min_clip is None else self.min_clip,
            max_clip=math.inf if self.max_clip is None else self.max_clip,
            rejection=NO_REJECTION if self.rejection is None else ALGORITHMS[self.rejection].code,
            independent=self.ccdproc_semantics,
            sigma_lower=self.low,
            sigma_upper=self.high,
            cen_median=self.cenfunc == "median",
            std_mad=self.stdfunc == "mad_std",
            maxiters=_UNTIL_CONVERGED if self.maxiters is None else self.maxiters,
            pclip=math.copysign(pclip_rank_offset(self.pclip, n_frames), self.pclip),
            nkeep=self.nkeep,
            quantum=self.quantum * max(abs(v) for v in scales),
            gain=float(self.gain) if noise or floor else 1.0,
            read_noise=float(self.read_noise) if noise or floor else 0.0,
            sense_noise=self.sense_noise,
            frame_noise=(noise or self.rejection in ("avsigclip", "sigclip"))
            and (self.frame_scale is not None or self.frame_zero is not None),
            noise_floor=floor,
            noise_scale=sum(scales) / len(scales),
            noise_zero=sum(zeros) / len(zeros),
            esd_max=self.esd_max,
            weighted=weighted,
            post_scaled=post_scaled,
        )

    def resolve_auto(self, header, unit, n_frames) -> tuple[CombineOptions, str]:
        """For ``rejection='auto'``: the options with the algorithm chosen for these frames
        (``header``: the first frame's, ``unit``: their BUNIT), and why, in words."""
        known = self.with_noise_model(header, unit, required=False)
        if not (isinstance(known.gain, str) or isinstance(known.read_noise, str)):
            chosen, rejection, why = known, "ccdclip", (
                f"gain {float(known.gain):g} e-/ADU, read noise {float(known.read_noise):g} e- "
                "known")
        elif n_frames <= AUTO_PCLIP_FRAMES:
            chosen, rejection, why = self, "percentile_clip", f"{n_frames} frames, no noise model"
        else:
            chosen, rejection, why = self, "sigma_clip", f"{n_frames} frames, no noise model"
        return replace(chosen, rejection=rejection, rejection_reason=why), f"{rejection}: {why}"

    def with_noise_model(self, header, unit="adu", *, required=True) -> CombineOptions:
        """Resolve ``gain``/``read_noise`` given as header keywords from ``header``.

        Frames whose ``unit`` (BUNIT) is electrons have gain 1: a ``gain`` keyword is then not
        read (the camera's GAIN describes the raw frames), and a number other than 1 is refused.
        A keyword the header lacks, or a value that is not a gain (> 0) or a read noise (>= 0),
        raises when ``required`` (ccdclip, noise weights); otherwise nothing is resolved and the
        noise model floors no spread: a CMOS camera's GAIN is its gain setting (N.I.N.A. writes
        ``GAIN = 0``), not electrons per ADU, and is no model without a read noise beside it.
        """
        values = {}
        electrons = str(unit).strip().lower() in ELECTRON_UNITS
        if electrons:
            if not isinstance(self.gain, str) and float(self.gain) != 1.0:
                raise OptionError(
                    f"gain={self.gain:g} but the frames are in electrons (BUNIT={unit!r}), whose "
                    "gain is 1: drop --gain (or give 1), or combine the frames in ADU")
            values["gain"] = 1.0
        for name in ("gain", "read_noise"):
            value = getattr(self, name)
            if isinstance(value, str) and name not in values:
                if value.upper() not in header:
                    if not required:
                        return self
                    raise OptionError(
                        f"{name}={value!r} names a header keyword that the first frame lacks; "
                        f"give {name} as a number (--{name.replace('_', '-')} N) or the keyword "
                        "your camera writes")
                values[name] = header[value.upper()]
                if isinstance(values[name], (str, bool)):
                    if not required:
                        return self
                    raise OptionError(f"header keyword {value.upper()}={values[name]!r} is not a "
                                      f"number; give {name} as a number")
        if not required and not (values.get("gain", 1.0) > 0 and values.get("read_noise", 0) >= 0):
            return self
        return replace(self, **values) if values else self


#: BUNIT values of frames in electrons (gain 1).
ELECTRON_UNITS = ("electron", "electrons", "e-", "e")


CombineOptions = dataclasses.make_dataclass(
    "CombineOptions", [_combine_field(o) for o in OPTIONS.values()
                       if o.kind in ("combine", "internal")],
    bases=(_Rules,), frozen=True)
CombineOptions.__module__ = __name__
CombineOptions.__doc__ = """Validated combine options (see :func:`calstack.combine` for their meaning).

Its fields are the ``'combine'`` and ``'internal'`` options of :data:`OPTIONS`, each checked by
its own rule, then across fields by :meth:`validate`. Rejection steps run in ccdproc's order:
extrema (``nlow``/``nhigh``), then thresholds (``min_clip``/``max_clip``), then ``rejection``,
then the ``method``. ``gain`` and ``read_noise`` may name header keywords until
:func:`calstack.combine` resolves them (:meth:`with_noise_model`).
"""
