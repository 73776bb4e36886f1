"""``calstack masters NIGHT_DIR``: every master a night needs, in one command.

Frames are sorted by frame type (IMAGETYP or its aliases, with the spellings acquisition
programs use: :data:`calstack.catalog.conventions.KINDS`) into biases, darks, flat-darks and
flats. Every kind is split by the camera setup (detector, extension, binning, shape, readout
mode, gain/offset, cooler); darks and flat-darks also give one master per exposure time, flats
one per filter, each flat normalised by its own median (over ``stat_section``) before rejection.
Extra grouping keys split every kind further. For raw frames, the master bias of the same setup
can be subtracted from darks and flats, and the master flat-dark (or the master dark, scaled by
exposure time) from flats; both are recorded in the headers (BIASSUB, DARKSUB). Frames that are
themselves masters are never inputs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..catalog.closeness import same_value
from ..catalog.columns import resolve_column
from ..catalog.conventions import DEFAULT_TOLERANCES, KINDS, normalise
from ..catalog.grouping import Group
from ..errors import OptionError
from ..options import RECIPE
from .groups import IMAGETYP_SYNONYMS, plan_groups, report_ignored, run_plan, without_masters

__all__ = ["IMAGETYP_SYNONYMS", "build_night", "summary_table"]

log = logging.getLogger("calstack")


def _same_setup(a, b, tolerances) -> bool:
    """Whether two groups were built for one camera setup: every setup key that either has agrees,
    by the rule grouping uses (:func:`calstack.catalog.closeness.same_value`, each key's
    tolerance)."""
    keys = dict.fromkeys([*a.setup, *b.setup])
    return all(same_value(a.setup.get(k), b.setup.get(k),
                          tolerances.get(k, DEFAULT_TOLERANCES.get(k))) for k in keys)


def _differences(a, b, tolerances) -> list:
    """The setup keys on which groups ``a`` and ``b`` differ, as ``'GAIN 0 vs 120'``."""
    keys = dict.fromkeys([*a.setup, *b.setup])
    return [f"{k.upper()} {a.setup.get(k)!r} vs {b.setup.get(k)!r}" for k in keys
            if not same_value(a.setup.get(k), b.setup.get(k),
                              tolerances.get(k, DEFAULT_TOLERANCES.get(k)))]


def _matching(built, group, tolerances, what):
    found = [b for b in built if _same_setup(b.group, group, tolerances)]
    if not found:
        differences = [_differences(b.group, group, tolerances) for b in built]
        nearest = (f" (the nearest differs in {', '.join(min(differences, key=len))})"
                   if built else "")
        raise OptionError(f"no master {what} of the same camera setup for {group.label() or 'the'} "
                          f"frames{nearest}; take {what} frames with that setup, or drop "
                          f"--subtract-{what}")
    return found


def _flat_dark(built, group, tolerances, exptime):
    """The master dark for flats of ``exptime``: a master flat-dark of that exposure when there
    is one (CMOS users take them), else the master dark of the nearest exposure (scaled)."""
    tolerance = DEFAULT_TOLERANCES["exptime"]
    same = [b for b in built["flatdark"] if _same_setup(b.group, group, tolerances)]
    for b in same:
        if exptime is not None and same_value(float(b.group.key["exptime"]), exptime, tolerance):
            return b
    darks = _matching(built["dark"], group, tolerances, "dark") if built["dark"] or not same \
        else same
    if exptime is None:
        return darks[0]
    return min(darks, key=lambda b: abs(float(b.group.key["exptime"]) - exptime))


def build_night(index, output_dir, *, group_by=(), tolerances=None, subtract_bias=False,
                subtract_dark=False, stat_section=None, template=None, overwrite=False,
                on_master=None, synonyms=None, allow_mixed=(), split_extensions=False,
                also_writes=(), **combine_options) -> list:
    """Build the master bias, darks, flat-darks and flats of the frames in ``index``.

    Parameters
    ----------
    index : ImageIndex
        The night's frames (index it with the ``FILTER``, ``EXPTIME`` and grouping keywords).
    output_dir : str or os.PathLike
        Folder for the masters.
    group_by : sequence of str
        Keys that split every kind beyond the camera setup, which always does
        (:data:`calstack.catalog.conventions.SETUP`); darks and flat-darks are also grouped by
        EXPTIME and flats by FILTER (:data:`calstack.catalog.conventions.KINDS`).
    tolerances : dict, optional
        Per-key tolerances, e.g. ``{'ccd-temp': 1.0}``.
    subtract_bias : bool
        Subtract the master bias (same setup) from darks, flat-darks and flats.
    subtract_dark : bool
        Subtract from each flat the master flat-dark of its exposure time (same setup), or
        where there is none the master dark of the nearest exposure time, scaled by exposure;
        needs ``subtract_bias``.
    stat_section : str, optional
        ``'[x1:x2,y1:y2]'`` where each flat's median is measured.
    template : str, optional
        Output name template (``{imagetyp}`` is bias, dark, flatdark or flat); default
        :func:`calstack.pipeline.groups.default_template`.
    overwrite : bool
        Replace existing masters.
    on_master : callable, optional
        Called with each :class:`~calstack.pipeline.groups.BuiltMaster` when written.
    synonyms : dict, optional
        More IMAGETYP spellings per kind, e.g. ``{'flat': ['ff']}``.
    allow_mixed : sequence of str
        Setup keys whose values may differ within a group.
    split_extensions : bool
        One file per extension of multi-extension inputs (default: one multi-extension master
        per set of files, see :func:`calstack.combine_groups`).
    also_writes : sequence of path
        Other files the run writes (the report), which no master nor input may be.
    **combine_options
        Options of :func:`calstack.combine` for every kind (default: the reference recipe's
        sigma clipping).

    Returns
    -------
    list of BuiltMaster
        In the order built: bias, darks, flat-darks, flats.

    Notes
    -----
    Frames that are masters (``COMBINED = T``, IRAF's NCOMBINE/IMCMB, Siril's STACKCNT...) are
    not inputs; frames of other types (lights) are listed in a warning; flats without any
    filter keyword (colour cameras) are one "no filter" group, with a warning.
    """
    if subtract_dark and not subtract_bias:
        raise OptionError("--subtract-dark needs --subtract-bias: a dark scaled by exposure time "
                          "must be free of bias")
    names = {kind: [*values, *(synonyms or {}).get(kind, ())]
             for kind, values in IMAGETYP_SYNONYMS.items()}
    options = {**RECIPE, **combine_options} if "rejection" not in combine_options else combine_options
    extra = [k.lower() for k in group_by]
    index = without_masters(index)
    table = index.frame_table
    tolerances = {resolve_column(k, table.colnames, where="tolerances"): v
                  for k, v in (tolerances or {}).items()}
    selected = {kind: index.mask(imagetyp=list(values)) if len(table) else np.zeros(0, bool)
                for kind, values in names.items()}
    if not any(mask.any() for mask in selected.values()):
        values = sorted(set(map(str, table["imagetyp"]))) if "imagetyp" in table.colnames else []
        raise OptionError("no bias, dark or flat frames found (IMAGETYP values: "
                          f"{', '.join(values or ['none'])}); pass synonyms or use "
                          "`calstack combine --imagetyp`")
    report_ignored(index, np.logical_or.reduce(list(selected.values())))
    progress = options.pop("progress", False)
    plans = {}  # every kind planned (and checked) before any frame is read
    for kind in KINDS.values():
        if not selected[kind.name].any():
            if kind.name != "flatdark":
                log.warning("no %s frames (IMAGETYP %s); no master %s", kind.name,
                            "/".join(names[kind.name][:3]), kind.name)
            continue
        if subtract_bias and "bias" in kind.needs and "bias" not in plans:
            raise OptionError(f"--subtract-bias: there are no bias frames for the {kind.name}s")
        if kind.name == "flat" and subtract_dark and not ({"dark", "flatdark"} & set(plans)):
            raise OptionError("--subtract-dark: there are no dark frames for the flats")
        plans[kind.name] = plan_groups(
            index, select={"imagetyp": list(names[kind.name])}, keys=extra,
            tolerances=tolerances or None, output_dir=output_dir, template=template,
            overwrite=overwrite, kind=kind.name, allow_mixed=allow_mixed, report_others=False,
            split_extensions=split_extensions, also_writes=also_writes, **options)
    _check_distinct(plans, template)
    planned = {kind: [_Planned(group, path) for group, path in plans[kind].planned()]
               if kind in plans else [] for kind in KINDS}

    def extra_options(kind, group) -> dict:
        """The options a group's combine adds: its master bias and dark, a flat's scaling."""
        more = {}
        if subtract_bias and "bias" in KINDS[kind].needs:
            more["bias"] = _hdu_of(_matching(planned["bias"], group, tolerances, "bias")[0])
        if subtract_dark and kind == "flat":
            exptime = group.key.get("exptime") or _exptime(group)
            more["dark"] = _hdu_of(_flat_dark(planned, group, tolerances, exptime))
        if kind == "flat":
            more.update(scale="median", scale_to=1.0, stat_section=stat_section)
        return more

    # each group's bias and dark found before any master is built (the groups' identities:
    # run_plan combines these same Group objects)
    extra = {kind: {id(group): extra_options(kind, group) for group, _ in plan.planned()}
             for kind, plan in plans.items()}
    built = {kind: run_plan(plan, options_for=lambda group, kind=kind: extra[kind][id(group)],
                            progress=progress, on_master=on_master)
             for kind, plan in plans.items()}
    return [b for kind in KINDS for b in built.get(kind, ())]


class _Planned(NamedTuple):
    """A master a night will build: its group and its file."""

    group: Group
    path: Path


def _hdu_of(master: _Planned):
    """What a combine subtracts: the master's file, or of a multi-extension master (one per
    file set of extensions) the extension built for its group, by EXTNAME and EXTVER."""
    name, ver = master.group.setup.get("extname"), master.group.setup.get("extver")
    if name is None and ver is None:
        return str(master.path)
    return str(master.path), (name, ver)


def _check_distinct(plans, template) -> None:
    """No two masters of a night share a file (a template without ``{imagetyp}``)."""
    seen = {}
    for kind, plan in plans.items():
        for target in plan.targets:
            if target in seen and seen[target] != kind:
                raise OptionError(f"template {template!r} names a {seen[target]} master and a "
                                  f"{kind} master {target.name}; put {{imagetyp}} in it")
            seen[target] = kind


def _exptime(group) -> float | None:
    """The flats' exposure time (the first frame's), for choosing their dark."""
    from astropy.io import fits

    header, _ = normalise(dict(fits.getheader(group.paths[0], group.hdus[0])))
    value = header.get("EXPTIME")
    return float(value) if isinstance(value, (int, float)) else None


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
