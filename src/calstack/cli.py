"""The ``calstack`` command: thin subcommands over the public API.

Heavy modules are imported inside each command so that ``calstack --help`` starts fast.
Errors print one line on stderr (what is wrong, and what to do) and exit non-zero: 2 for a
usage error, 1 for a failed job.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import logging
import math
import os
import signal
import sys
import threading
import warnings

from . import __version__
from .errors import CalstackError, VerificationError, did_you_mean
from .options import number_or_keyword, rejection_guide

__all__ = ["main"]

EXIT_FAILED = 1
#: A master failed verification under --strict.
EXIT_REJECTED = 3
EXIT_USAGE = 2


class _CommandListFormatter(argparse.HelpFormatter):
    """argparse's help, with each command's name counted at the indent it is shown at (argparse
    counts it one step less, so the longest name's help wraps onto the next line)."""

    def add_argument(self, action):
        super().add_argument(action)
        for sub in getattr(action, "_get_subactions", list)():
            width = (len(self._format_action_invocation(sub)) + self._current_indent
                     + self._indent_increment)
            self._action_max_length = max(self._action_max_length, width)


class _Parser(argparse.ArgumentParser):
    """argparse with exact option names and one-line errors that suggest the nearest option."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        if message.startswith("unrecognized arguments:"):
            unknown = message.split(":", 1)[1].split()
            options = [s for a in self._actions for s in a.option_strings]
            hints = "".join(did_you_mean(u.split("=")[0], options) for u in unknown[:1])
            message = f"{message}{hints}"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


class _StderrHandler(logging.StreamHandler):
    """Logs to whatever ``sys.stderr`` is now (tests and callers may swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _key_value(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    key, value = text.split("=", 1)
    try:
        return key.strip(), float(value)
    except ValueError:
        return key.strip(), value.strip()


def _add_index_options(p):
    p.add_argument("folders", nargs="+", metavar="DIR", help="folders (or FITS files) to index")
    p.add_argument("-r", "--recursive", action="store_true", help="descend into subfolders")
    p.add_argument("--include", action="append", metavar="GLOB", help="only file names matching")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="skip file names matching")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--cache", default=True, metavar="PATH",
                       help="header cache file (default: headers.sqlite in $CALSTACK_CACHE_DIR, "
                       "$XDG_CACHE_HOME/calstack or ~/.cache/calstack)")
    cache.add_argument("--no-cache", dest="cache", action="store_false",
                       help="read every header; neither use nor write the header cache")


def _add_combine_options(p, recipe=False, without=()):
    """The combine options of :data:`calstack.options.OPTIONS` that have a flag, but
    ``without``; ``--sigma``/``--sigma-clip`` set sigma_lower and sigma_upper together.
    ``recipe``: the reference recipe's rejection by default (``calstack masters``)."""
    from .options import OPTIONS, RECIPE

    g = p.add_argument_group("combining (see --help of `calstack combine` for when to use which)")
    for option in OPTIONS.values():
        if option.flag is None or option.name in without:
            continue
        default = RECIPE.get(option.name, option.default) if recipe else option.default
        allowed = f" ({' | '.join(str(a).lower() for a in option.allowed)})" if option.allowed else ""
        shown = f" (default {default})" if recipe and option.name in RECIPE else ""
        g.add_argument(option.flag, dest=option.name, default=default,
                       help=f"{option.help}{allowed}{shown}", **option.cli)
        if option.name == "rejection":
            g.add_argument("--sigma-clip", nargs=2, type=float, metavar=("LOW", "HIGH"),
                           help="sigma clipping with these lower/upper thresholds")
            g.add_argument("--sigma", nargs=2, type=float, metavar=("LOW", "HIGH"),
                           default=[RECIPE["sigma_lower"], RECIPE["sigma_upper"]] if recipe
                           else None,
                           help="lower/upper thresholds of any clipping --rejection "
                           f"(default {'5 5' if recipe else '3 3'})")


def _add_camera_noise_option(p):
    """--camera of the jobs that only combine (combine, masters): the noise model's numbers."""
    p.add_argument("--camera", metavar="CAMERA.toml", help="camera file (calstack characterize): "
                   "its gain and read noise where --gain/--read-noise are not given")


def _add_setup_options(p):
    """Options of the jobs that group frames by camera setup (combine, masters, reduce)."""
    p.add_argument("--allow-mixed", action="append", default=[], metavar="KEY",
                   help="combine frames whose setup keyword KEY differs (e.g. ccd-temp); by "
                   "default frames are grouped by their camera setup (repeatable)")
    p.add_argument("--split-extensions", action="store_true",
                   help="one master file per extension of multi-extension inputs (default: one "
                   "multi-extension master mirroring the inputs' extensions)")
    p.add_argument("--keywords", default=None, metavar="K1,K2",
                   help="more header keywords to index (those of --select, --group-by and "
                   "--tolerance are indexed anyway)")


def _add_output_options(p):
    """Options of a job that builds masters (combine, masters); see :func:`_run_job`."""
    p.add_argument("--overwrite", action="store_true", help="replace existing masters")
    p.add_argument("--json", action="store_true",
                   help="print what was built as JSON (paths, groups, frames, rejection, timings)")
    p.add_argument("--report", metavar="REPORT.html",
                   help="write a self-contained HTML report: frames, pictures, anomalous frames")
    p.add_argument("--strict", action="store_true",
                   help="a master that fails verification is an error (exit code 3), left as "
                   "NAME.rejected (default: written with VERIFIED = F)")
    p.add_argument("--previous", metavar="DIR", help="folder of earlier masters: compare each "
                   "new master with the one of its name (default: the master it replaces)")
    _add_scheduler_option(p)


def _add_scheduler_option(p):
    p.add_argument("--scheduler", metavar="ADDRESS|local:N",
                   help="run on a Dask cluster: a running scheduler's address (tcp://host:8786; "
                   "the files at the same paths on every worker) or local:N for N worker "
                   "processes here; needs calstack[cluster]")


def _add_calibrate_options(p):
    """How science frames are calibrated (calibrate, reduce)."""
    p.add_argument("--allow-missing", action="append", default=[], choices=("bias", "dark", "flat"),
                   help="go on without this kind of master where a frame has none (repeatable)")
    p.add_argument("--dark-coefficient", type=float, metavar="PER_C",
                   help="dark current x exp(PER_C x warming): darks of another CCD-TEMP are "
                   "used, scaled (default: the camera file's; none)")
    p.add_argument("--dark-scale", choices=("exposure", "optimize"), default="exposure",
                   help="scale a master dark by the exposure times (default), or by the factor "
                   "that minimises each frame's noise (Siril's -opt)")
    p.add_argument("--gain", type=number_or_keyword, metavar="E/ADU|KEYWORD",
                   help="electrons per ADU (default: EGAIN, or GAIN beside RDNOISE)")
    p.add_argument("--read-noise", type=number_or_keyword, metavar="E|KEYWORD",
                   help="read noise in electrons (default: RDNOISE)")
    p.add_argument("--saturation", type=float, metavar="ADU", help="raw level of saturation "
                   "(default: SATURATE, else the largest value of an integer file)")
    p.add_argument("--camera", metavar="CAMERA.toml", help="camera file: gain, read noise, "
                   "saturation, the amplifier's overscan and data sections, where not given")
    p.add_argument("--adu", action="store_true", help="keep values in ADU (default: electrons)")
    p.add_argument("--cosmic-rays", action="store_true", help="find and clean cosmic rays "
                   "(astroscrappy: pip install 'calstack[cosmic]'); MASK bit 16")
    g = p.add_argument_group("raw frames: overscan and trim (IRAF ccdproc's parameters)")
    g.add_argument("--overscan", default="auto", metavar="[x1:x2,y1:y2]|auto|none",
                   help="overscan section subtracted (default auto: the header's BIASSEC)")
    g.add_argument("--trim", default="auto", metavar="[x1:x2,y1:y2]|auto|none",
                   help="region kept (default auto: TRIMSEC, else DATASEC)")
    g.add_argument("--overscan-method", default="mean", choices=("mean", "median", "clipped"),
                   help="collapse across the serial direction (clipped: 3-sigma-clipped mean)")
    g.add_argument("--overscan-function", default=None,
                   choices=("polynomial", "legendre", "chebyshev", "spline1", "spline3"),
                   help="fit along the readout direction (default: each line's value)")
    g.add_argument("--overscan-order", type=int, default=1, metavar="N",
                   help="IRAF's order: coefficients of a series (1 = a constant), spline pieces")
    g.add_argument("--overscan-reject", nargs=2, type=float, default=[3.0, 3.0],
                   metavar=("LOW", "HIGH"), help="rejection of the fit's points, in sigmas")
    g.add_argument("--overscan-niterate", type=int, default=1, metavar="N",
                   help="rejection iterations of the fit")


def _calibrate_options(args) -> dict:
    fit = dict(method=args.overscan_method, function=args.overscan_function,
               order=args.overscan_order, low_reject=args.overscan_reject[0],
               high_reject=args.overscan_reject[1], niterate=args.overscan_niterate)
    return dict(allow_missing=args.allow_missing, gain=args.gain, read_noise=args.read_noise,
                saturation=args.saturation, electrons=not args.adu,
                cosmic_rays=args.cosmic_rays, overscan=args.overscan, trim=args.trim,
                overscan_fit=fit, bad_pixels=args.bad_pixels, camera=args.camera,
                dark_scale=args.dark_scale, dark_coefficient=args.dark_coefficient)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="calstack", description=(
        "Master calibration frames (bias, dark, flat) from folders of FITS files: fast, exact "
        "(ccdproc's numbers) and within a memory limit."),
        formatter_class=_CommandListFormatter)
    parser.add_argument("--version", action="version", version=f"calstack {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the tile plan and memory estimate")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    # the same two flags after the subcommand too (SUPPRESS keeps the top-level value otherwise)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log the tile plan and memory estimate")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="print nothing but errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    add = functools.partial(commands.add_parser, parents=[common])

    p = add("index", help="list the FITS files of folders with their header keywords")
    _add_index_options(p)
    p.add_argument("--keywords", default=None, metavar="K1,K2|*", help="keywords to list ('*' = all)")
    p.add_argument("--select", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="only frames whose KEY matches (case-insensitive; repeatable)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(run=_cmd_index)

    p = add("simulate", help="write simulated camera frames with known truth")
    p.add_argument("outdir", metavar="OUTDIR")
    p.add_argument("--preset", default="te", help="te (10 darks of 90 s), cryo (darks at 7, 70, "
                   "300 s) or night (raw bias, darks and flats)")
    p.add_argument("--shape", nargs=2, type=int, metavar=("NY", "NX"), help="frame size")
    p.add_argument("--n-bias", type=int, metavar="N", help="bias frames")
    p.add_argument("--n-darks", type=int, metavar="N", help="darks per exposure time")
    p.add_argument("--exptimes", type=float, nargs="+", metavar="S", help="dark exposure times")
    p.add_argument("--n-flats", type=int, metavar="N", help="flats per filter")
    p.add_argument("--n-lights", type=int, default=0, metavar="N",
                   help="science frames (sky and stars) per flat filter")
    p.add_argument("--filters", nargs="+", metavar="F", help="flat filters")
    p.add_argument("--raw", action="store_true", help="raw uint16 frames instead of calibrated")
    p.add_argument("--overscan", type=int, default=0, metavar="COLUMNS",
                   help="raw frames: this many overscan columns (BIASSEC, TRIMSEC in the header)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=_cmd_simulate)

    p = add("combine", help="combine each group of selected frames into a master",
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            description=_COMBINE_HELP.format(guide=rejection_guide(flags=True)))
    _add_index_options(p)
    p.add_argument("--imagetyp", action="append", default=[],
                   help="frame type to select, e.g. dark (case-insensitive; repeat for other "
                   "spellings: --imagetyp dark --imagetyp 'Dark Frame')")
    p.add_argument("--select", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="more selection criteria (repeatable)")
    p.add_argument("--group-by", default="exptime", metavar="K1,K2",
                   help="keywords that split the selection into groups ('' = one group)")
    p.add_argument("--tolerance", action="append", type=_key_value, default=[], metavar="KEY=TOL",
                   help="grouping tolerance of a numeric key")
    _add_combine_options(p)
    _add_camera_noise_option(p)
    p.add_argument("-o", "--output-dir", default=".", metavar="OUT")
    p.add_argument("--template", help="output name, e.g. 'combined_dark_{exptime:6.3f}.fit' "
                   "(default combined_{imagetyp}_{key:.3f}.fit, setup keys that differ as "
                   "_gain{gain})")
    _add_setup_options(p)
    _add_output_options(p)
    p.set_defaults(run=_cmd_combine)

    p = add("masters", help="build every master of a night: bias, darks per exposure time, "
                            "flats per filter",
            formatter_class=argparse.RawDescriptionHelpFormatter, description=_MASTERS_HELP)
    _add_index_options(p)
    p.add_argument("--group-by", default="", metavar="K1,K2",
                   help="more keys that split every kind (e.g. xbinning,gain,ccd-temp)")
    p.add_argument("--tolerance", action="append", type=_key_value, default=[], metavar="KEY=TOL",
                   help="grouping tolerance of a numeric key (e.g. ccd-temp=1)")
    p.add_argument("--subtract-bias", action="store_true",
                   help="subtract the master bias from darks and flats (raw frames)")
    p.add_argument("--subtract-dark", action="store_true",
                   help="subtract the master dark, scaled by exposure time, from flats")
    _add_combine_options(p, recipe=True, without=("bias", "dark"))
    _add_camera_noise_option(p)
    p.add_argument("-o", "--output-dir", default=".", metavar="OUT")
    p.add_argument("--template", help="output name; {imagetyp} is bias, dark, flatdark or flat")
    _add_setup_options(p)
    _add_output_options(p)
    p.set_defaults(run=_cmd_masters)

    p = add("calibrate", help="apply the matching masters to science frames (bias, dark, flat)",
            formatter_class=argparse.RawDescriptionHelpFormatter, description=_CALIBRATE_HELP)
    _add_index_options(p)
    p.add_argument("--masters", required=True, metavar="DIR", help="the folder of masters")
    p.add_argument("-o", "--output-dir", required=True, metavar="OUT")
    p.add_argument("--template", default="{name}", help="output name: {name} (the input's, "
                   "default), {stem}, or an indexed keyword ({filter})")
    _add_calibrate_options(p)
    p.add_argument("--bad-pixels", metavar="MASK.fits", help="bad-pixel mask (calstack defects): "
                   "its pixels get MASK bit 8")
    p.add_argument("--tolerance", action="append", type=_key_value, default=[], metavar="KEY=TOL",
                   help="matching tolerance of a numeric setup key (e.g. ccd-temp=1)")
    p.add_argument("--mem-limit", default="1GB", help="memory for the bands of all frames")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")
    _add_scheduler_option(p)
    p.set_defaults(run=_cmd_calibrate)

    p = add("reduce", help="a whole raw night: build its masters, then calibrate its science "
                           "frames with them", description=_REDUCE_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_index_options(p)
    p.add_argument("-o", "--output-dir", required=True, metavar="OUT",
                   help="masters go to OUT/masters, calibrated frames to OUT/calibrated")
    p.add_argument("--group-by", default="", metavar="K1,K2",
                   help="more keys that split every kind of master")
    p.add_argument("--tolerance", action="append", type=_key_value, default=[], metavar="KEY=TOL",
                   help="tolerance of a numeric key, for grouping and for matching masters")
    _add_combine_options(p, recipe=True, without=("bias", "dark", "gain", "read_noise"))
    _add_calibrate_options(p)
    _add_setup_options(p)
    _add_output_options(p)
    p.set_defaults(run=_cmd_reduce)

    p = add("defects", help="a bad-pixel mask (one bit per class) from a master dark and "
            "flat, or merged from masks of several nights")
    p.add_argument("--dark", metavar="MASTER_DARK", help="bias-subtracted master dark: hot, "
                   "warm, column, saturated pixels")
    p.add_argument("--flat", metavar="MASTER_FLAT", help="master flat: dead, low_qe, column")
    p.add_argument("--merge", nargs="+", metavar="MASK", help="merge these masks instead")
    p.add_argument("--fraction", type=float, default=0.7, help="--merge: bad in at least this "
                   "fraction of the masks (default 0.7, cp_pipe's)")
    p.add_argument("--gain", type=number_or_keyword, metavar="E/ADU|KEYWORD",
                   help="gain of the dark (default: EGAIN, or GAIN beside RDNOISE)")
    p.add_argument("--hot", type=float, default=5.0, metavar="E/S",
                   help="hot: excess dark current at least (default 5 e-/s), else warm")
    p.add_argument("--warm-sigma", type=float, default=5.0, metavar="N",
                   help="hot/warm: excess above N robust sigmas of the dark (default 5)")
    p.add_argument("--lsigma", type=float, default=9.0, metavar="N", help="dead/low_qe: below "
                   "the local median by N local sigmas (ccdmask's lsigma, default 9)")
    p.add_argument("--dead-fraction", type=float, default=0.5, metavar="F",
                   help="dead: response below F of the local median (default 0.5)")
    p.add_argument("--column-sigma", type=float, default=5.0, metavar="N",
                   help="column: running median beyond N sigmas of its own noise (default 5)")
    p.add_argument("--column-length", type=int, default=50, metavar="ROWS",
                   help="column: rows judged together (default 50)")
    p.add_argument("--saturation", type=float, metavar="ADU", help="dark values at or above "
                   "are saturated")
    p.add_argument("-o", "--output", required=True, metavar="MASK.fits")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=_cmd_defects)

    p = add("characterize", help="the camera's gain and read noise from pairs of flats and "
            "two biases (photon transfer), as a camera file")
    _add_index_options(p)
    p.add_argument("-o", "--output", metavar="CAMERA.toml",
                   help="write the camera file (for --camera)")
    p.add_argument("--overscan", default="none", metavar="[x1:x2,y1:y2]|auto|none",
                   help="overscan section subtracted (default none: a difference cancels the "
                   "bias, a per-line overscan adds noise)")
    p.add_argument("--trim", default="auto", metavar="[x1:x2,y1:y2]|auto|none",
                   help="region kept (default auto: TRIMSEC, else DATASEC)")
    p.add_argument("--saturation", type=number_or_keyword, metavar="ADU|KEYWORD",
                   help="raw level of saturation: pairs at it are left out (default: SATURATE, "
                   "else the largest value of an integer file)")
    p.add_argument("--camera", metavar="CAMERA.toml",
                   help="a camera file of several amplifiers: each measured on its own, and "
                   "the file written with each one's gain and read noise")
    p.add_argument("--picture", metavar="PTC.png", help="draw the photon transfer curve")
    p.add_argument("--json", action="store_true", help="print the measurement as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing camera file")
    p.set_defaults(run=_cmd_characterize)

    p = add("show", help="frames side by side on one stretch, as a PNG")
    p.add_argument("frames", nargs="+", metavar="FRAME")
    p.add_argument("-o", "--output", required=True, metavar="PICTURE.png")
    p.add_argument("--stretch", default="zscale", help="zscale | percentile | minmax")
    p.add_argument("--title", action="append", metavar="TEXT", help="panel title (repeatable)")
    p.add_argument("--diff", action="store_true", help="show FRAME1 minus FRAME2 (e.g. a master "
                   "minus one of its frames) on a stretch symmetric around zero")
    p.add_argument("--hist", action="store_true", help="add a panel with the histograms")
    p.set_defaults(run=_cmd_show)

    p = add("demo", help="simulate the reference guide's two cameras, build their "
                            "dark masters and comparison pictures")
    p.add_argument("-o", "--output-dir", default="calstack-demo", metavar="DIR")
    p.add_argument("--shape", nargs=2, type=int, metavar=("NY", "NX"),
                   help="frame size (default: the cameras' own, 4096x4096)")
    p.add_argument("--mem-limit", default="350MB", help="memory limit (the guide's 350MB)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=_cmd_demo)
    parser.commands = commands.choices
    return parser


_COMBINE_HELP = """\
Combine calibrated frames into masters, one per group, e.g. the reference recipe:

  calstack combine DIR --imagetyp dark --group-by exptime --method average \\
      --sigma-clip 5 5 --cenfunc median --stdfunc mad_std --mem-limit 350MB --output-dir OUT

Rejection runs in ccdproc's order: --nlow/--nhigh, then --min-clip/--max-clip, then
--rejection (--sigma-clip LOW HIGH is short for --rejection sigma_clip --sigma LOW HIGH).
Scaling (--scale, --zero) and bias/dark subtraction happen before rejection, so clipping
compares like with like. Which rejection to pick:

{guide}

Weights (--weights noise|EXPTIME) apply to the average and sum; weights of rejected values
do not count.
"""


_MASTERS_HELP = """\
Build every master a night needs from one folder:

  calstack masters NIGHT_DIR --output-dir OUT [--subtract-bias --subtract-dark]

Frames are sorted by IMAGETYP (or OBSTYPE, FRAME, IMGTYPE: BIAS/ZERO/'Bias Frame', DARK/'Dark
Frame', DARKFLAT/'Flat Dark', FLAT/'Flat Field'...) into a master bias, master darks and
flat-darks per exposure time and master flats per filter; each flat is normalised by its median
(over --stat-section) before rejection, so the master flat has median 1. Every kind is split by
the camera setup (INSTRUME/DETECTOR/CCDNAME, EXTNAME+EXTVER, binning, shape, readout mode,
GAIN/OFFSET/EGAIN, SET-TEMP, CCD-TEMP within 2 degC); --group-by splits further, --allow-mixed
KEY combines across a setup keyword. Groups of fewer than 3 frames are built with a warning.
Masters in the folder (COMBINED = T, IRAF's NCOMBINE/IMCMB, Siril's STACKCNT, MaxIm DL's
SNAPSHOT, 'Master Dark'...) are never inputs; other frame types are listed and ignored. Default
rejection: the reference recipe (sigma clipping, 5/5 sigma, median and mad_std).
"""


_REDUCE_HELP = """\
A whole raw night in one command:

  calstack reduce NIGHT_DIR -o OUT [--report OUT/night.html]

builds the night's masters into OUT/masters as `calstack masters --subtract-bias
--subtract-dark` does (the bias and dark subtracted where the night has them), then calibrates
every science frame into OUT/calibrated as `calstack calibrate` does, each with the masters
chosen for it. --report covers the masters and a table of the calibrated frames (masters
used, level, noise, masked fraction). --gain/--read-noise serve both the combines' noise model
and the calibrated frames' uncertainty.
"""


_CALIBRATE_HELP = """\
Calibrate science frames (IMAGETYP LIGHT/OBJECT) with the masters of a folder:

  calstack calibrate LIGHTS_DIR --masters MASTERS_DIR -o OUT

Each frame gets the masters of its camera setup (binning, readout mode, gain/offset,
set-point...), nearest in time (DATE-OBS): the bias; the dark of its exposure, or else the
bias-subtracted dark of the nearest exposure scaled by DARKTIME/EXPTIME; the flat of its filter,
normalised by its mean. Values are written in electrons (--adu keeps ADU) with UNCERT (read
noise, Poisson noise, the masters' own uncertainty) and MASK (1 missing, 2 saturated, 4 no flat)
extensions that CCDData.read recognises; the masters used are recorded in the header (IRAF's
ZEROCOR/DARKCOR/FLATCOR, CALBIAS/CALDARK/CALFLAT) and printed with -v.
"""


def _index(args, keywords=None, progress=False):
    from .catalog.index import DEFAULT_KEYWORDS, ImageIndex

    _end_start_up()  # the run turns to its frames
    if keywords is None:
        keywords = DEFAULT_KEYWORDS
    return ImageIndex(args.folders, recursive=args.recursive, include=args.include,
                      exclude=args.exclude, keywords=keywords, cache=args.cache,
                      progress=progress)


def _cmd_index(args):
    keywords = None
    if args.keywords:
        keywords = "*" if args.keywords.strip() == "*" else [k.strip() for k in args.keywords.split(",")]
    index = _index(args, keywords)
    if args.select:
        index = index.filter(dict(args.select))
    table = index.table
    if keywords not in (None, "*"):  # the columns asked for (the index holds the setup's too)
        table = table[["file", "path", "hdu", "extname",
                       *(index.column_name(k) for k in keywords), "error"]]
    if args.format != "json":  # (JSON escapes control characters itself)
        table = _printable_table(table)
    if args.format == "table":
        table.pprint_all()
    elif args.format == "csv":
        table.write(sys.stdout, format="ascii.csv")
    else:
        rows = [{name: _plain(row[name]) for name in table.colnames} for row in table]
        print(_json(rows))
    return 0


def _visible(text: str) -> str:
    """``text`` with its characters that are not printable (control characters, escape
    sequences) as Python escapes; letters of any script stay as they are."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _printable_table(table):
    """``table`` with the characters of its text cells that are not printable as Python
    escapes, so that a header value never sends control sequences to the terminal (a file
    name in another script stays readable)."""
    import numpy as np

    copied = False
    for name in table.colnames:
        if table[name].dtype.kind != "U":
            continue
        values = np.ma.filled(table[name], "").tolist()
        escaped = [_visible(value) for value in values]
        if escaped != values:
            if not copied:
                table, copied = table.copy(copy_data=False), True
            table[name] = np.ma.MaskedArray(escaped, mask=np.ma.getmaskarray(table[name]))
    return table


def _json(data) -> str:
    """Strict JSON (no NaN or Infinity tokens: a non-finite number is null)."""
    def strict(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: strict(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [strict(v) for v in value]
        return value

    return json.dumps(strict(data), indent=1, allow_nan=False)


def _plain(value):
    if hasattr(value, "mask") and value.mask:
        return None
    return value.item() if hasattr(value, "item") else value


def _cmd_simulate(args):
    from .sim.simulation import simulate

    night = simulate(args.outdir, preset=args.preset, shape=tuple(args.shape) if args.shape else None,
                     n_bias=args.n_bias, n_darks=args.n_darks, exptimes=args.exptimes,
                     n_flats=args.n_flats, filters=args.filters, n_lights=args.n_lights,
                     overscan=args.overscan,
                     calibrated=False if args.raw else None, seed=args.seed,
                     overwrite=args.overwrite)
    _say(args, f"wrote {len(night.frames)} frames to {night.outdir} (truth in {night.outdir}/truth)")
    return 0


def _combine_options(args) -> dict:
    """The combine options given on the command line: every flagged option of the table."""
    from .options import OPTIONS

    options = {o.name: getattr(args, o.name) for o in OPTIONS.values()
               if o.flag is not None and hasattr(args, o.name)}
    sigma = args.sigma
    if args.sigma_clip:
        options["rejection"], sigma = "sigma_clip", args.sigma_clip
    if sigma:
        options.update(sigma_lower=sigma[0], sigma_upper=sigma[1])
    return options


def _run_job(args, build, *, calibrated=None) -> list:
    """Run a job that builds masters: ``build(progress, client)`` returns the BuiltMasters.

    ``client`` is the Dask client of --scheduler, or None to run here.

    Progress goes to stderr (bars on a terminal; nothing with --quiet) and one line per master
    to stdout (stderr with --json); --report is checked before ``build`` and written after it;
    --json prints :meth:`BuiltMaster.as_dict` of each master. ``calibrated``: the list the
    build fills with the science frames it calibrates (``calstack reduce``), one table of the
    report and ``{"masters": ..., "calibrated": ...}`` in --json. Returns what was built.
    """
    from .progress import Progress
    from .stacking.cluster import connect

    progress = Progress("off" if args.quiet else "auto",
                        out=sys.stderr if args.json else sys.stdout)
    if args.report:  # the report's pictures need matplotlib and scipy: only runs with one
        from .viz.report import check_report_path, write_report

        check_report_path(args.report, folder=args.output_dir, overwrite=args.overwrite)
    with progress.logging_to(logging.getLogger("calstack")), connect(args.scheduler) as client:
        built = build(progress, client)
        if args.report:
            write_report(args.report, built, calibrated=calibrated or (),
                         overwrite=args.overwrite, progress=progress)
    if args.json:
        masters = [b.as_dict() for b in built]
        print(_json(masters if calibrated is None else {
            "masters": masters, "calibrated": [f.summary() for f in calibrated]}))
    return built


def _job_keywords(args, keys, select=()) -> list:
    """The keywords a combine or masters run indexes: the defaults, those its selection,
    grouping and tolerances name, and --keywords."""
    from .catalog.index import DEFAULT_KEYWORDS

    named = [*keys, *(k for k, _ in select), *(k for k, _ in args.tolerance),
             *(k.strip() for k in (args.keywords or "").split(",") if k.strip())]
    return list(dict.fromkeys([*DEFAULT_KEYWORDS, *(k.upper() for k in named)]))


class _Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled like Ctrl-C (SIGINT): the same clean-up on the way out."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _stop(signum, _frame):
    raise _Stopped(signum)


def _preload_kernel(options) -> None:
    """Start loading the stack kernel for ``options`` in a thread, so that numba's cache load
    overlaps the header scan (its waits on the disk, where it is not in the page cache); any
    error is left to the combine itself to raise. Call it once the command's modules are
    imported: a thread started before them contends with those imports for the interpreter
    lock, which made a 3 x 64^2 combine slower than no preload at all."""

    def load():
        with contextlib.suppress(Exception):  # the combine reports it, with its context
            from .stacking.kernel_call import preload

            preload(_kernel_options(options))

    threading.Thread(target=load, name="calstack-preload", daemon=True).start()


def _kernel_options(options):
    """The CombineOptions of the command line's ``options`` (what :func:`_preload_kernel`
    loads the kernel for)."""
    from .options import CombineOptions

    return CombineOptions(**{k: v for k, v in options.items()
                             if k in CombineOptions.__dataclass_fields__})


def _camera_noise(args, options) -> dict:
    """``options`` with the camera file's gain and read noise where they are not given (the
    noise model of ccdclip and of the uncertainty: combine, masters)."""
    if args.camera is None:
        return options
    from .options import OPTIONS
    from .processing.camera import camera_defaults, read_camera

    camera = read_camera(args.camera)
    given = camera_defaults(camera, **{  # the options' defaults (the header keywords) yield
        key: None if options.get(key) == OPTIONS[key].default else options.get(key)
        for key in ("gain", "read_noise")})
    if len(camera.amplifiers) > 1 and (given["gain"] is None or given["read_noise"] is None):
        raise CalstackError(f"--camera {args.camera}: its {len(camera.amplifiers)} amplifiers "
                            "have gains or read noises of their own, and a combine takes one; "
                            "give --gain and --read-noise, or calibrate the frames with "
                            "calstack reduce or calibrate, which read each amplifier's")
    return {**options, **{key: given[key] for key in ("gain", "read_noise")
                          if given[key] is not None}}


def _cmd_combine(args):
    from .pipeline.groups import combine_groups

    options = _camera_noise(args, _combine_options(args))
    if args.scheduler is None:  # on a cluster the workers load the kernel
        _preload_kernel(options)

    select = dict(args.select)
    if args.imagetyp:
        select["imagetyp"] = args.imagetyp[0] if len(args.imagetyp) == 1 else args.imagetyp
    keys = [k.strip() for k in args.group_by.split(",") if k.strip()]
    keywords = _job_keywords(args, keys, args.select)
    _run_job(args, lambda progress, client: combine_groups(
        _index(args, keywords, progress=progress), select=select, keys=keys,
        tolerances=dict(args.tolerance) or None, output_dir=args.output_dir,
        template=args.template, overwrite=args.overwrite, progress=progress, client=client,
        allow_mixed=args.allow_mixed, split_extensions=args.split_extensions,
        also_writes=[args.report] if args.report else (), on_master=args.written.append,
        strict=args.strict, previous=args.previous, **options))
    return 0


def _night_options(args) -> tuple[list, list, dict]:
    """The grouping keys, indexed keywords and combine options of a night (masters, reduce)."""
    keys = [k.strip() for k in args.group_by.split(",") if k.strip()]
    options = _combine_options(args)
    options.pop("scale_to")  # flats are normalised to 1; --scale would fight that
    if options.pop("scale") or options.pop("zero"):
        raise CalstackError("masters scales each flat by its median itself; --scale/--zero are "
                            "for `calstack combine`")
    return keys, _job_keywords(args, keys), options


def _cmd_masters(args):
    from .pipeline.night import build_night, summary_table

    keys, keywords, options = _night_options(args)
    options = _camera_noise(args, options)
    stat_section = options.pop("stat_section")
    if args.scheduler is None:
        _preload_kernel(options)
    built = _run_job(args, lambda progress, client: build_night(
        _index(args, keywords, progress), args.output_dir, group_by=keys,
        tolerances=dict(args.tolerance) or None, subtract_bias=args.subtract_bias,
        subtract_dark=args.subtract_dark, stat_section=stat_section, template=args.template,
        overwrite=args.overwrite, progress=progress, client=client,
        allow_mixed=args.allow_mixed, split_extensions=args.split_extensions,
        also_writes=[args.report] if args.report else (), on_master=args.written.append,
        strict=args.strict, previous=args.previous, **options))
    if not (args.json or args.quiet):
        print(summary_table(built))
    return 0


def _cmd_reduce(args):
    from .pipeline.calibrate import INDEX_KEYWORDS
    from .pipeline.reduce import reduce_night

    keys, keywords, options = _night_options(args)
    calibrate_options = _calibrate_options(args)
    for name in ("gain", "read_noise"):  # one noise model for ccdclip and the uncertainty
        options.pop(name)
        if calibrate_options[name] is not None:
            options[name] = calibrate_options[name]
    frames = []  # the calibrated frames, in input order once the reduction is done

    def done(frame):
        args.written.append(frame)
        _print_choice(args, frame)

    def build(progress, client):
        reduced = reduce_night(
            _index(args, [*keywords, *INDEX_KEYWORDS], progress), args.output_dir,
            group_by=keys, tolerances=dict(args.tolerance) or None, overwrite=args.overwrite,
            progress=progress, client=client, allow_mixed=args.allow_mixed,
            split_extensions=args.split_extensions,
            also_writes=[args.report] if args.report else (), on_master=args.written.append,
            on_frame=done, calibrate_options=calibrate_options, strict=args.strict,
            previous=args.previous, **options)
        frames.extend(reduced.frames)
        return reduced.masters

    _run_job(args, build, calibrated=frames)
    _say_calibrated(args, frames)
    return 0


def _print_choice(args, frame):
    if args.verbose and not args.quiet:
        print(f"{frame.source} -> {frame.path}: {frame.describe()}",
              file=sys.stderr if args.json else sys.stdout, flush=True)


def _say_calibrated(args, frames):
    if not (args.json or args.verbose) and frames:
        _say(args, f"calibrated {len(frames)} frame(s) -> {frames[0].path.parent}")


def _cmd_calibrate(args):
    from .pipeline.calibrate import INDEX_KEYWORDS, calibrate

    def done(frame):
        args.written.append(frame)
        _print_choice(args, frame)

    from .stacking.cluster import connect

    index = _index(args, INDEX_KEYWORDS)
    with connect(args.scheduler) as client:
        frames = calibrate(index, args.masters, args.output_dir, template=args.template,
                           tolerances=dict(args.tolerance) or None, overwrite=args.overwrite,
                           mem_limit=args.mem_limit, cache=args.cache, on_frame=done,
                           client=client, **_calibrate_options(args))
    if args.json:
        print(_json([f.summary() for f in frames]))
    _say_calibrated(args, frames)
    return 0


def _cmd_defects(args):
    from .pipeline.defects import find_defects, merge_defects

    if args.merge:
        if args.dark or args.flat:
            raise CalstackError("--merge merges masks; give it without --dark/--flat")
        mask = merge_defects(args.merge, args.output, fraction=args.fraction,
                             overwrite=args.overwrite)
    else:
        mask = find_defects(args.output, dark=args.dark, flat=args.flat, gain=args.gain,
                            hot_current=args.hot, warm_sigma=args.warm_sigma,
                            lsigma=args.lsigma, dead_fraction=args.dead_fraction,
                            column_sigma=args.column_sigma, column_length=args.column_length,
                            saturation=args.saturation, overwrite=args.overwrite)
    _say(args, mask.describe())
    return 0


def _cmd_characterize(args):
    from .pipeline.characterize import characterize

    result = characterize(_index(args), output=args.output, overscan=args.overscan, trim=args.trim,
                          saturation=args.saturation, camera=args.camera,
                          overwrite=args.overwrite)
    if args.picture:
        from .viz.ptc import draw_photon_transfer

        draw_photon_transfer(list(result.amplifiers), args.picture)
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        _say(args, result.table())
        for path in (result.camera_file, args.picture):
            if path is not None:
                _say(args, f"wrote {path}")
    return 0


def _cmd_show(args):
    from .viz.pictures import show

    path = show(args.frames, args.output, titles=args.title, stretch=args.stretch,
                diff=args.diff, hist=args.hist)
    _say(args, f"wrote {path}")
    return 0


def _cmd_demo(args):
    from .sim.demo import run_demo

    run_demo(args.output_dir, shape=tuple(args.shape) if args.shape else None,
             mem_limit=args.mem_limit, overwrite=args.overwrite,
             say=(lambda _text: None) if args.quiet else print)
    return 0


def _say(args, text):
    if not args.quiet:
        print(text, flush=True)


#: The commands whose start-up ends when they index their frames (see :func:`run`).
_INDEXING = (_cmd_index, _cmd_combine, _cmd_masters, _cmd_calibrate, _cmd_reduce,
             _cmd_characterize)
#: Whether :func:`run` holds the cyclic garbage collector off for the start-up.
_start_up_paused = False


def _end_start_up() -> None:
    """End :func:`run`'s start-up, if it is on: what the start-up made (modules, mostly) moves
    to the garbage collector's permanent generation, and collection resumes."""
    global _start_up_paused
    if _start_up_paused:
        _start_up_paused = False
        gc.freeze()
        gc.enable()


def main(argv=None) -> int:
    """Run the ``calstack`` command line; returns the exit code."""
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # let the subcommand's parser report it, so the hint can name its options
        parser.commands.get(args.command, parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.run not in _INDEXING:
        _end_start_up()
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("calstack: %(message)s"))
    logger = logging.getLogger("calstack")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO if args.verbose else logging.WARNING)
    args.written = []  # the masters written, for the message after an interruption
    shown = warnings.showwarning  # Python warnings (astropy's) as calstack's one-line warnings
    warnings.showwarning = lambda message, category, *_args, **_kw: logger.warning(
        "%s: %s", category.__name__, message)
    handlers = ({sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
                if threading.current_thread() is threading.main_thread() else {})
    try:
        return args.run(args)
    except CalstackError as exc:
        print(f"calstack {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_REJECTED if isinstance(exc, VerificationError) else EXIT_FAILED
    except BrokenPipeError:  # `calstack index | head`: the reader has gone, which is fine
        with contextlib.suppress(AttributeError, OSError, ValueError):  # not a real file
            out = sys.stdout.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)  # so the flush at exit has a reader
            os.dup2(devnull, out)
            os.close(devnull)
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        paths = list(dict.fromkeys(str(b.path) for b in args.written))
        done = (f"{len(paths)} output(s) were completed: {', '.join(paths)}" if paths
                else "no output was completed")
        print(f"calstack {args.command}: interrupted ({signal.Signals(signum).name}); {done}; "
              "no partial file was left", file=sys.stderr)
        return 128 + signum
    finally:
        _end_start_up()
        warnings.showwarning = shown
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def run() -> None:
    """The ``calstack`` program: :func:`main`, then exit with its code.

    A run on this machine ends without the interpreter's teardown, which frees the objects of
    every module (numba's and astropy's: about 0.15 s) of a process that is about to end
    anyway; by the time :func:`main` returns, every output is closed and in place. The other
    threads are joined, logging and the standard streams flushed first, as at a normal exit.
    A run that used Dask, or left child processes, exits the normal way: its exit hooks close
    them.

    The start-up (importing numpy, astropy and numba: about 200,000 objects, of which 2,000
    are cyclic garbage) runs without the cyclic garbage collector, whose collections of that
    growing heap cost it 0.05-0.1 s; collection resumes when the run turns to its frames
    (:func:`_end_start_up`).
    """
    import multiprocessing

    global _start_up_paused
    _start_up_paused = True
    gc.disable()
    code = main()
    if "distributed" in sys.modules or multiprocessing.active_children():
        sys.exit(code)
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing left to say
            stream.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
