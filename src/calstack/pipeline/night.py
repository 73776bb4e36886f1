"""``calstack masters NIGHT_DIR``: every master a night needs, in one command.

Frames are sorted by IMAGETYP (with the spellings acquisition programs use) into biases, darks
and flats. The master bias combines all biases; darks give one master per exposure time; flats
one per filter, each flat normalised by its own median (over ``stat_section``) before rejection.
Extra grouping keys (binning, gain, readout mode, CCD temperature with a tolerance) split every
kind. For raw frames, the master bias can be subtracted from darks and flats, and the master
dark (scaled by exposure time) from flats; both are recorded in the headers (BIASSUB, DARKSUB).
Frames that are themselves masters (``COMBINED = T``) are never inputs.
"""

from __future__ import annotations

import logging

import numpy as np

from ..catalog.closeness import same_value
from ..errors import OptionError
from ..options import RECIPE
from .groups import IMAGETYP_SYNONYMS, combine_groups

__all__ = ["IMAGETYP_SYNONYMS", "build_night", "summary_table"]

log = logging.getLogger("calstack")

_KIND_KEYS = {"bias": [], "dark": ["exptime"], "flat": ["filter"]}


def _same_setup(a: dict, b: dict, keys, tolerances) -> bool:
    """Whether two groups' keys agree on ``keys``, by the rule grouping uses
    (:func:`calstack.catalog.closeness.same_value`, each key's tolerance if given)."""
    return all(same_value(a.get(key), b.get(key), (tolerances or {}).get(key)) for key in keys)


def _matching(built, group, keys, tolerances, what):
    found = [b for b in built if _same_setup(b.group.key, group.key, keys, tolerances)]
    if not found:
        setup = ", ".join(f"{k}={group.key.get(k)!r}" for k in keys) or "this setup"
        raise OptionError(f"no master {what} for {group.label()} ({setup}); take {what} frames "
                          f"with the same setup or drop --subtract-{what}")
    return found


def build_night(index, output_dir, *, group_by=(), tolerances=None, subtract_bias=False,
                subtract_dark=False, stat_section=None, template=None, overwrite=False,
                on_master=None, synonyms=None, **combine_options) -> list:
    """Build the master bias, darks and flats of the frames in ``index``.

    Parameters
    ----------
    index : ImageIndex
        The night's frames (index it with the ``FILTER``, ``EXPTIME`` and grouping keywords).
    output_dir : str or os.PathLike
        Folder for the masters.
    group_by : sequence of str
        Keys that split every kind (e.g. ``['xbinning', 'gain', 'ccd-temp']``); darks are also
        grouped by EXPTIME and flats by FILTER.
    tolerances : dict, optional
        Per-key tolerances, e.g. ``{'ccd-temp': 1.0}``.
    subtract_bias : bool
        Subtract the master bias (same setup) from darks and flats.
    subtract_dark : bool
        Subtract the master dark (same setup; the nearest exposure time, scaled by exposure)
        from flats; needs ``subtract_bias``.
    stat_section : str, optional
        ``'[x1:x2,y1:y2]'`` where each flat's median is measured.
    template : str, optional
        Output name template (``{imagetyp}`` is bias, dark or flat); default
        ``combined_{imagetyp}_{keys}.fit``.
    overwrite : bool
        Replace existing masters.
    on_master : callable, optional
        Called with each :class:`~calstack.pipeline.groups.BuiltMaster` when written.
    synonyms : dict, optional
        More IMAGETYP spellings per kind, e.g. ``{'flat': ['ff']}``.
    **combine_options
        Options of :func:`calstack.combine` for every kind (default: the reference recipe's
        sigma clipping).

    Returns
    -------
    list of BuiltMaster
        In the order built: bias, darks, flats.
    """
    if subtract_dark and not subtract_bias:
        raise OptionError("--subtract-dark needs --subtract-bias: a dark scaled by exposure time "
                          "must be free of bias")
    names = {kind: [*values, *(synonyms or {}).get(kind, ())]
             for kind, values in IMAGETYP_SYNONYMS.items()}
    options = {**RECIPE, **combine_options} if "rejection" not in combine_options else combine_options
    extra = [k.lower() for k in group_by]
    table = index.table
    combined_col = next((c for c in table.colnames if c.lower() == "combined"), None)
    if combined_col is not None:  # earlier masters are not inputs
        values = table[combined_col]
        is_master = ~np.ma.getmaskarray(values) & np.array([str(v).strip().upper() in ("TRUE", "T", "1")
                                                           for v in values])
        index = index.subset(~is_master)
    present = {kind: len(index.filter(imagetyp=list(values)).table) if len(index.table) else 0
               for kind, values in names.items()}
    if not any(present.values()):
        raise OptionError("no bias, dark or flat frames found (IMAGETYP values: "
                          f"{', '.join(sorted(set(map(str, index.table['imagetyp']))) or ['none'])}"
                          "); pass synonyms or use `calstack combine --imagetyp`")
    built = {"bias": [], "dark": [], "flat": []}

    def options_for(kind):
        def extra_options(group):
            more = {}
            if subtract_bias and kind != "bias":
                more["bias"] = str(_matching(built["bias"], group, extra, tolerances, "bias")[0].path)
            if subtract_dark and kind == "flat":
                darks = _matching(built["dark"], group, extra, tolerances, "dark")
                exptime = group.key.get("exptime") or _exptime(group)
                nearest = min(darks, key=lambda b: abs(float(b.group.key["exptime"]) - exptime))
                more["dark"] = str(nearest.path)
            if kind == "flat":
                more.update(scale="median", scale_to=1.0, stat_section=stat_section)
            return more
        return extra_options

    for kind in ("bias", "dark", "flat"):
        if not present[kind]:
            log.warning("no %s frames (IMAGETYP %s); no master %s", kind,
                        "/".join(names[kind][:3]), kind)
            continue
        if kind != "bias" and subtract_bias and not built["bias"]:
            raise OptionError(f"--subtract-bias: there are no bias frames for the {kind}s")
        if kind == "flat" and subtract_dark and not built["dark"]:
            raise OptionError("--subtract-dark: there are no dark frames for the flats")
        built[kind] = combine_groups(
            index, select={"imagetyp": list(names[kind])}, keys=[*_KIND_KEYS[kind], *extra],
            tolerances=tolerances, output_dir=output_dir, template=template,
            overwrite=overwrite, on_master=on_master, kind=kind, options_for=options_for(kind),
            **options)
    return [*built["bias"], *built["dark"], *built["flat"]]


def _exptime(group) -> float:
    """The flats' exposure time (the first frame's), for choosing the nearest dark."""
    from astropy.io import fits

    return float(fits.getheader(group.paths[0], group.hdus[0]).get("EXPTIME", 0.0))


def summary_table(built) -> str:
    """A plain-text table of the masters built: kind, group, frames, file, rejected, seconds."""
    rows = [("kind", "group", "frames", "master", "rejected", "seconds")]
    for b in built:
        rows.append((b.kind or "", b.group.label() or "all", str(b.n_frames), str(b.path),
                     f"{100 * b.rejected_fraction:.3f}%", f"{b.seconds:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
