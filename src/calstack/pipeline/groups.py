"""The whole job of the reference recipe: select frames, group them, combine each group, write.

``combine_groups`` is what ``calstack combine DIR ...`` runs. Every check that can fail (the
output folder, the output names, the options) runs before the first combine, so a bad run
stops before it has written anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import string
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..catalog.closeness import fold
from ..catalog.columns import indexed_frames
from ..catalog.conventions import DEFAULT_TOLERANCES, KINDS, SETUP, kind_of
from ..catalog.grouping import Group, group_by
from ..errors import FrameError, OptionError, VerificationError, unknown_option
from ..io.fitsheader import printable
from ..io.writer import OutputExistsError, check_writable, write_extensions
from ..options import CombineOptions
from ..progress import as_progress
from ..stacking.anomalies import anomalies, check_grids
from ..stacking.combining import results_many
from .layout import extension_keys, file_sets, named_by
from .naming import check_name, check_template, safe_value
from .verification import rejected_path, verify

__all__ = [
    "IMAGETYP_SYNONYMS",
    "BuiltMaster",
    "Plan",
    "check_targets",
    "combine_groups",
    "default_template",
    "output_name",
    "plan_groups",
    "report_ignored",
    "run_plan",
    "without_masters",
]

log = logging.getLogger("calstack")

#: IMAGETYP values (compared case-insensitively, trimmed) for each kind of calibration frame
#: (:data:`calstack.catalog.conventions.KINDS`).
IMAGETYP_SYNONYMS = {kind.name: kind.spellings for kind in KINDS.values()}


@dataclass(frozen=True)
class BuiltMaster:
    """One master written by :func:`combine_groups`.

    ``sources`` are the frames combined (paths, in input order), ``frame_rejected`` the
    fraction of each one's pixels that rejection removed (``Master.frame_rejected``),
    ``preparation`` what was done to them before rejection (``Master.preparation``) and
    ``anomalies`` why each one looks wrong (:func:`calstack.stacking.anomalies.anomalies`; an
    empty tuple for a normal frame).
    """

    group: Group
    path: Path
    n_frames: int
    rejected_fraction: float
    seconds: float
    kind: str | None = None
    sources: tuple = ()
    frame_rejected: tuple = ()
    preparation: object = None
    anomalies: tuple = ()
    verification: object = None  # calstack.pipeline.verification.Verification

    def as_dict(self) -> dict:
        """Plain-data summary (for ``--json``)."""
        return {"kind": self.kind, "group": self.group.key, "setup": self.group.setup,
                "path": str(self.path),
                "n_frames": self.n_frames, "inputs": list(self.sources),
                "frame_rejected": [round(f, 8) for f in self.frame_rejected],
                "anomalies": [list(reasons) for reasons in self.anomalies],
                **(self.verification.as_dict() if self.verification is not None else {}),
                "rejected_fraction": self.rejected_fraction, "seconds": round(self.seconds, 3)}

    def label(self) -> str:
        """``"dark exptime=90.000"``: the kind and the group's key."""
        return " ".join(p for p in (self.kind, self.group.label()) if p) or "all"

    def line(self) -> str:
        """One line for people and logs: what, frames, output, rejection, time."""
        flagged = "; ".join(f"{Path(source).name}: {', '.join(reasons)}" for source, reasons
                            in zip(self.sources, self.anomalies, strict=True) if reasons)
        return (f"{self.label()}: {self.n_frames} frames -> {self.path} "
                f"(rejected {100 * self.rejected_fraction:.3f}% of values, {self.seconds:.1f} s)"
                + (f"; anomalous: {flagged}" if flagged else "")
                + (f"; NOT VERIFIED: {self.verification.summary()}"
                   if self.verification is not None and not self.verification.passed else ""))


def _field(key: str) -> str:
    return key.lower().replace("-", "_").replace(" ", "_")


def default_template(keys, imagetyp=None, setup=()) -> str:
    """``combined_{imagetyp}_{key}..._{setup key}{value}...fit``.

    The kind's own keys are bare values (``combined_dark_{exptime}.fit``, numbers with 3
    decimals: ``combined_dark_90.000.fit``); camera-setup keys carry their keyword
    (``combined_bias_gain{gain}_offset{offset}.fit`` -> ``combined_bias_gain120_offset30.fit``).
    """
    parts = ["combined"]
    if imagetyp:
        parts.append("{imagetyp}")
    parts.extend(f"{{{_field(k)}}}" for k in keys if k not in setup)
    parts.extend(f"{_field(k).replace('_', '')}{{{_field(k)}}}" for k in keys if k in setup)
    return "_".join(parts) + ".fit"


def output_name(template: str, group: Group, imagetyp=None) -> str:
    """Fill ``template`` with the group's key values (``-`` in keyword names becomes ``_``).

    A bare numeric field (``{exptime}``) is written with 3 decimals, like the recipe's names (a
    setup key's as short as it goes: ``{set_temp}`` is ``-10``); a key the frames lack is
    ``none``. Text values are made safe for a file name (spaces and
    characters other than letters, digits, ``.+=-`` become ``_``; no ``..``; at most 64
    characters): a header value never names a folder.
    """
    values = {_field(k): ("none" if v is None else v if isinstance(v, (int, float))
                          else safe_value(v)) for k, v in group.key.items()}
    if imagetyp is not None:
        values["imagetyp"] = safe_value(str(imagetyp).strip().lower())
    fields = {name for _, name, _, _ in check_template(template) if name}
    missing = fields - set(values)
    if missing:
        raise OptionError(f"template {template!r} uses {', '.join(sorted(missing))}, which is not "
                          f"a grouping key; available: {', '.join(sorted(values))}")
    numeric = {k: v for k, v in values.items() if isinstance(v, float)}
    setup = {_field(k) for k in group.setup}
    filled = template
    for name in numeric:
        filled = filled.replace(f"{{{name}}}", f"{{{name}:{'g' if name in setup else '.3f'}}}")
    try:
        return filled.format(**values)
    except (ValueError, KeyError, IndexError) as exc:
        raise OptionError(f"template {template!r} cannot be filled: {exc}") from exc


def without_masters(index, what="inputs"):
    """``index`` without the frames that are themselves masters (its ``master`` column: calstack,
    IRAF, Siril, MaxIm DL, PixInsight... marks), unless a frame was named explicitly as a file
    to index; a warning lists those left out."""
    table = index.frame_table
    if "master" not in table.colnames or not len(table):
        return index
    named = {os.path.abspath(p) for p in index.locations if not os.path.isdir(p)}
    marks = [str(m) for m in np.asarray(table["master"]).tolist()]
    skip = np.array([bool(m) and os.path.abspath(str(p)) not in named
                     for m, p in zip(marks, table["path"], strict=True)], dtype=bool)
    if skip.any():
        listed = ", ".join(f"{table['path'][i]} ({marks[i]})" for i in np.flatnonzero(skip))
        log.warning("%d frame(s) are masters and are not %s: %s; name a file to combine it "
                    "anyway", int(skip.sum()), what, listed)
    return index.subset(~skip)


def report_ignored(index, kept) -> None:
    """Warn about the frame types not selected: ``kept`` is a boolean per row of ``index``
    (unreadable rows are reported elsewhere)."""
    table = index.frame_table
    column = table[index.column_name("imagetyp")] if "imagetyp" in table.colnames else None
    others = ~np.asarray(kept, bool) & ~index.unreadable_mask
    if column is None:
        counts = Counter(["(no IMAGETYP)"] * int(others.sum()))
    else:
        missing = np.ma.getmaskarray(column)
        cells = np.asarray(column).tolist()
        counts = Counter("(no IMAGETYP)" if missing[i] else str(cells[i]).strip()
                         for i in np.flatnonzero(others))
    if counts:
        log.warning("ignored IMAGETYP values: %s", ", ".join(
            f"{value} ({n} frame{'s' if n > 1 else ''})" for value, n in sorted(counts.items())))


def _kind_keys(chosen, select, keys) -> list:
    """The keys of the kind selected that ``keys`` lacks (darks: EXPTIME, flats: FILTER): frames
    of one kind are split by them whatever ``--group-by`` says (``--allow-mixed`` lifts that);
    flats without any filter keyword are one group, with a warning."""
    kinds = {kind_of(v) for v in _imagetyps(select)} - {None, "light"}
    if len(kinds) != 1:
        return []
    more = [k for k in KINDS[kinds.pop()].keys if k not in {fold(k) for k in keys}]
    table = chosen.frame_table
    present = [k for k in more if k in table.colnames and not np.ma.getmaskarray(table[k]).all()]
    if "filter" in more and "filter" not in present and len(table):
        log.warning("no flat has a FILTER (or FILTERS, FILTER1/FILTER2, SUBSET) keyword: they "
                    "are not split by filter (a colour camera?)")
    return present


#: What ``allow_mixed`` may name: the setup keys and the kinds' own keys.
_MIXABLE = (*SETUP, *dict.fromkeys(k for kind in KINDS.values() for k in kind.keys))


def _check_allow_mixed(allow_mixed) -> list:
    allow = [str(k).strip().lower() for k in ([allow_mixed] if isinstance(allow_mixed, str)
                                               else allow_mixed or ())]
    for key in allow:
        if key.replace("_", "-") not in _MIXABLE and key not in _MIXABLE:
            raise unknown_option(key, _MIXABLE, where="allow_mixed", what="setup key",
                                 fix="--allow-mixed names keywords of the camera setup or "
                                     "EXPTIME/FILTER")
    return [k if k in _MIXABLE else k.replace("_", "-") for k in allow]


def _setup_groups(table, keys, tolerances, allow_mixed) -> list:
    """Groups by ``keys`` and the camera setup (but ``allow_mixed``); the extensions of one file
    are told apart by HDU number when EXTNAME/EXTVER do not (unnamed mosaic extensions)."""
    setup = [k for k in SETUP if k not in allow_mixed]
    groups = group_by(table, keys, tolerances=tolerances, setup=setup)
    if any(len(set(g.paths)) < len(g.paths) for g in groups):
        groups = group_by(table, keys, tolerances=tolerances, setup=[*setup, "hdu"])
    return groups


def _name_keys(groups) -> list:
    """The keys a default output name shows: the kind's own keys and the setup settings that
    differ between the groups (``gain``, ``offset``); a measured setup value (CCD-TEMP, which
    has a tolerance) only where the settings do not tell the groups apart."""
    first = groups[0]
    chosen = [k for k in first.key if k not in first.setup or k not in DEFAULT_TOLERANCES]
    measured = [k for k in first.key if k not in chosen]
    if len({tuple(g.key[k] for k in chosen) for g in groups}) < len(groups):
        chosen += measured
    return chosen


def _collision(template, groups, targets) -> str:
    """Why ``template`` names two groups alike, and the fix."""
    seen = {}
    for group, target in zip(groups, targets, strict=True):
        if target in seen:
            other = seen[target]
            differ = [k for k in group.key if group.key[k] != other.key[k]]
            fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
            shown = [k for k in differ if _field(k) in fields]
            values = "; ".join(f"{k.upper()} {other.key[k]!r} and {group.key[k]!r}" for k in differ)
            values += f" (e.g. {other.paths[0]} and {group.paths[0]})"
            if shown and len(shown) == len(differ):
                numeric = ", ".join(f"{k}=..." for k in shown)
                return (f"template {template!r} gives groups with {values} the same file name "
                        f"{target.name}: they differ by less than the name shows; widen the "
                        f"grouping tolerance (--tolerance {numeric}) or write more decimals")
            hidden = [k for k in differ if k not in shown]
            return (f"template {template!r} gives groups with {values} the same file name "
                    f"{target.name}; add {', '.join('{' + _field(k) + '}' for k in hidden)} to "
                    "it, or pass --allow-mixed "
                    f"{' --allow-mixed '.join(hidden)} to combine those frames together")
        seen[target] = group
    return ""


def check_targets(template, targets, folder, index, also_writes=()) -> None:
    """Every output's file is a file name in ``folder`` that no file of ``index`` (masters left
    out), other output or other file of the run (``also_writes``: the report) is, before
    anything is read."""
    for target in targets:
        if target.parent != folder or target.name in (".", ".."):
            raise OptionError(f"template {template!r} gives {target.relative_to(folder)}, a "
                              "path: give a file name (the folder is --output-dir)")
        if target.suffix.lower() in (".gz", ".fz", ".bz2", ".zip"):
            raise OptionError(f"template {template!r} gives {target.name}: outputs are written "
                              "as plain FITS, so a compressed file's name would not be true; "
                              "end it in .fit or .fits")
        check_name(template, target.name)
        if target.is_dir():
            raise OptionError(f"{target}: is a folder; an output never replaces a folder: "
                              "choose another --output-dir or --template")
    masters = {os.path.realpath(t) for t in targets}
    for other in also_writes:
        if os.path.realpath(os.fspath(other)) in masters:
            raise OptionError(f"{other}: is a master of this run; the report must be a file of "
                              "its own: choose another --report name")
    existing = {}  # only an output that exists can be an input: the inputs are stat'ed then
    for output in [*targets, *also_writes]:
        with contextlib.suppress(OSError):
            st = os.stat(output)
            existing[(st.st_dev, st.st_ino)] = output
    for path in index.frame_table["path"] if existing else ():
        with contextlib.suppress(OSError):
            st = os.stat(str(path))
            output = existing.get((st.st_dev, st.st_ino))
            if output is not None:
                raise OptionError(f"{output}: is an input of this run ({path}); an output "
                                  "never replaces an input (with or without "
                                  "--overwrite): choose another --output-dir, --template or "
                                  "--report name")


def _record_setup(header, group) -> None:
    """Write the setup the master was built for into its header (nominal values; text that is
    not printable ASCII, which a FITS card cannot hold, as Python escapes)."""
    keys = {**group.setup, **group.key}
    for key, value in keys.items():
        if value is None or key.upper() in ("EXTNAME", "EXTVER", "NAXIS1", "NAXIS2", "HDU"):
            continue
        header[key.upper()] = printable(value) if isinstance(value, str) else value
    agreed = ",".join(k.upper() for k, v in keys.items() if v is not None)
    header["CMBKEYS"] = (agreed, "the frames agree on these" if len(agreed) <= 40 else "")


def combine_groups(
    index,
    *,
    select=None,
    keys=("exptime",),
    tolerances=None,
    output_dir=".",
    template=None,
    overwrite=False,
    on_master=None,
    kind=None,
    options_for=None,
    progress=False,
    allow_mixed=(),
    report_others=True,
    split_extensions=False,
    also_writes=(),
    strict=False,
    previous=None,
    **combine_options,
) -> list[BuiltMaster]:
    """Select frames from an index, group them, and write one master per group.

    Parameters
    ----------
    index : ImageIndex
        The frames to choose from.
    select : dict, optional
        Keyword criteria passed to ``index.filter`` (e.g. ``{'imagetyp': 'dark'}``; a list
        matches any of its values). Frames whose IMAGETYP is another spelling of the one
        selected (``'Dark Frame'``, see :data:`IMAGETYP_SYNONYMS`) are not selected, and a
        warning names them.
    keys : sequence of str
        Grouping keywords (the recipe groups darks by ``exptime``). The camera setup
        (:data:`calstack.catalog.conventions.SETUP`: detector, extension, binning, shape,
        readout mode, gain and offset, cooler set-point and temperature) splits the groups
        too, always: frames of different setups are never combined.
    tolerances : dict, optional
        Per-key tolerances for numeric keys (see :func:`calstack.group_by`; exposure times
        are one group within max(0.1 %, 10 ms) by default, CCD-TEMP within 2 degC).
    output_dir : str or os.PathLike
        Folder for the masters (created if needed; must be writable).
    template : str, optional
        Output file name, filled with the group's key values and ``imagetyp``; the default is
        :func:`default_template`, e.g. ``combined_dark_{exptime:.3f}.fit``. The reference guide's
        exact names come from ``'combined_dark_{exptime:6.3f}.fit'``.
    overwrite : bool
        Replace existing masters.
    on_master : callable, optional
        Called with each :class:`BuiltMaster` as soon as it is written.
    kind : str, optional
        What ``{imagetyp}`` in the output name stands for (default: the selected imagetyp).
    options_for : callable, optional
        ``options_for(group)`` returns more :func:`calstack.combine` options for that group
        (e.g. the master bias to subtract).
    allow_mixed : sequence of str
        Setup keys whose values may differ within a group (``['ccd-temp']``), or the kind's own
        keys (``exptime`` for darks, ``filter`` for flats, which split those kinds whatever
        ``keys`` says): frames are then combined whatever their value.
    split_extensions : bool
        Write each extension of multi-extension inputs (mosaics, amplifiers) as a file of its
        own; by default the masters of one set of files are the extensions of one master file,
        with the inputs' EXTNAME and EXTVER, in their order (also when ``template`` names an
        extension key such as ``{extver}``, each is a file).
    report_others : bool
        Warn about the frames that the selection left out, by IMAGETYP value.
    also_writes : sequence of path
        Other files this run writes (the report): no master may be one, and none may be an
        input. Every master must be a file name in ``output_dir`` and no file of ``index``,
        with or without ``overwrite``; all of it is checked before the first frame is read.
    strict : bool
        A master that fails verification (:mod:`calstack.pipeline.verification`) is an error
        (:class:`~calstack.errors.VerificationError`), and is left under its name
        with ``.rejected`` appended; without it, such a master is written with ``VERIFIED = F``.
    previous : str or os.PathLike, optional
        A folder of earlier masters: each new master is compared with the one of its name there
        (default: the master it replaces, with ``overwrite``).
    progress : bool, str or calstack.progress.Progress
        Report progress (see :func:`calstack.progress.as_progress`): a bar over the groups and,
        nested, one over each combine's rows; and :meth:`BuiltMaster.line` for each master
        written. Default: nothing.
    hdu : int or str, optional
        Combine only this HDU (number or EXTNAME) of each file. Without it, files with several
        image extensions (mosaic cameras) give one master per extension (grouped by EXTNAME and
        EXTVER, or by HDU number when extensions have neither).
    **combine_options
        Options of :func:`calstack.combine`.

    Returns
    -------
    list of BuiltMaster
    """
    plan = plan_groups(index, select=select, keys=keys, tolerances=tolerances,
                       output_dir=output_dir, template=template, overwrite=overwrite, kind=kind,
                       allow_mixed=allow_mixed, report_others=report_others,
                       split_extensions=split_extensions, also_writes=also_writes,
                       strict=strict, previous=previous, **combine_options)
    return run_plan(plan, options_for=options_for, progress=progress, on_master=on_master)


@dataclass(frozen=True)
class Plan:
    """What :func:`combine_groups` will write, known before any frame is read: the groups as
    file sets (:func:`calstack.pipeline.layout.file_sets`), each set's master file, what
    ``{imagetyp}`` stands for, and the combine options."""

    sets: list
    targets: list
    imagetyp: str | None
    overwrite: bool
    combine_options: dict
    strict: bool = False  # a master that fails verification is an error, left as .rejected
    previous: Path | None = None  # the folder of earlier masters to compare with

    def planned(self) -> list:
        """``(group, master file)`` of every group, in the order they will be combined."""
        return [(group, target) for members, target in zip(self.sets, self.targets, strict=True)
                for group in members]


def plan_groups(index, *, select=None, keys=("exptime",), tolerances=None, output_dir=".",
                template=None, overwrite=False, kind=None, allow_mixed=(), report_others=True,
                split_extensions=False, also_writes=(), strict=False, previous=None,
                **combine_options) -> Plan:
    """Select, group and name, and check everything that can fail before a frame is read (the
    options, unreadable files, output names, containment, existing files): the first half of
    :func:`combine_groups`, whose parameters these are."""
    CombineOptions.from_kwargs(**{k: v for k, v in combine_options.items()
                                  if k in CombineOptions.__dataclass_fields__})
    if previous is not None and not Path(previous).is_dir():
        raise OptionError(f"--previous {previous}: not a folder; give the folder of the "
                          "earlier masters to compare with")
    table = index.frame_table
    bad = [(str(path), str(error)) for path, error, unreadable
           in zip(table["path"], table["error"], index.unreadable_mask, strict=True) if unreadable]
    if bad and not combine_options.get("skip_bad"):
        raise FrameError(bad[0][0], f"{bad[0][1]}; {len(bad)} file(s) here cannot be read and "
                         "may belong to a group: fix or remove them, or pass --skip-bad "
                         "(skip_bad=True) to go on without them")
    for path, reason in bad:
        log.warning("skipping unreadable %s: %s", path, reason)
    select = dict(select or {})
    allow_mixed = _check_allow_mixed(allow_mixed)
    _report_missing(index, select)
    _report_other_spellings(index, select)
    index = without_masters(index)  # earlier masters may be replaced (--overwrite); not inputs
    selected = index.mask(select) if select else None
    chosen = index.subset(selected) if select else index
    if report_others and select:
        report_ignored(index, selected)
    keys = [keys] if isinstance(keys, str) else list(keys)
    keys += _kind_keys(chosen, select, [*keys, *allow_mixed])
    hdu = combine_options.pop("hdu", None)
    if hdu is not None:  # one HDU of every file
        chosen = chosen.filter({"hdu": hdu} if isinstance(hdu, int) else {"extname": hdu})
    groups = _setup_groups(chosen.frame_table, keys, tolerances, allow_mixed)
    if not groups or not groups[0].paths:
        criteria = ", ".join(f"{k}={v!r}" for k, v in select.items()) or "no criteria"
        raise OptionError(f"no frames match {criteria}; run `calstack index` on the folder to see "
                          "what it holds")
    grouped = {row for group in groups for row in group.rows}
    paths = chosen.frame_table["path"]
    left_out = [str(paths[i]) for i in range(len(paths)) if i not in grouped]
    if left_out:
        log.warning("%d selected frame(s) lack a value for %s and were not combined: %s",
                    len(left_out), "/".join(keys), ", ".join(left_out))
    for group in groups:
        if len(group.paths) < 3:
            log.warning("%s: only %d frame(s); rejection cannot work well with fewer than 3",
                        group.label() or "all", len(group.paths))
    imagetyp = kind or next(iter(_imagetyps(select)), None)  # several spellings: the first
    sets = file_sets(groups, split=split_extensions)
    if not split_extensions and _names_extensions(template, sets):
        sets = file_sets(groups, split=True)
    namers = [named_by(members) for members in sets]
    template = template or default_template(_name_keys(namers), imagetyp, setup=namers[0].setup)
    folder = check_writable(output_dir)
    targets = [folder / output_name(template, g, imagetyp) for g in namers]
    check_targets(template, targets, folder, index, also_writes)
    if len(set(targets)) != len(targets):
        raise OptionError(_collision(template, namers, targets))
    if not overwrite:
        existing = [str(t) for t in targets if t.exists()]
        if existing:
            raise OutputExistsError(f"{existing[0]}: exists; pass --overwrite (overwrite=True) to "
                                    "replace it, or choose another --output-dir")
    return Plan(sets=sets, targets=targets, imagetyp=imagetyp, overwrite=overwrite,
                combine_options=combine_options, strict=strict,
                previous=None if previous is None else Path(previous))


def run_plan(plan, *, options_for=None, progress=False, on_master=None) -> list[BuiltMaster]:
    """Combine and write what :func:`plan_groups` planned (the second half of
    :func:`combine_groups`); returns the :class:`BuiltMaster` of every group."""
    progress = as_progress(progress)
    sets, targets, imagetyp, overwrite = plan.sets, plan.targets, plan.imagetyp, plan.overwrite
    ordered = [group for members in sets for group in members]
    built = []
    masters = results_many(ordered, progress=progress, options_for=options_for,
                           **plan.combine_options)
    with progress.task("masters", total=len(ordered), unit="master") as task, \
            contextlib.closing(masters):
        start = time.perf_counter()

        def combined(group, target):
            """The next master, its setup recorded, and what was built appended to ``built``."""
            nonlocal start
            task.note(group.label() or "all")
            master = next(masters)
            _record_setup(master.meta, group)
            used = set(master.sources)  # without the frames --skip-bad skipped
            grids = check_grids([item for item in indexed_frames(group) if item[0] in used],
                                master)
            verification = verify(kind_of(imagetyp), grids, master,
                                  previous=_previous(plan, target))
            for key, value, comment in verification.cards():  # HISTORY cards append
                master.meta[key] = (value, comment)
            built.append(BuiltMaster(
                group=group, path=target, n_frames=len(master.sources), kind=imagetyp,
                rejected_fraction=master.rejected_fraction,
                seconds=time.perf_counter() - start, sources=tuple(master.sources),
                frame_rejected=tuple(map(float, master.frame_rejected)),
                preparation=master.preparation, anomalies=tuple(anomalies(grids, master)),
                verification=verification))
            task.update()
            start = time.perf_counter()
            return master

        for members, target in zip(sets, targets, strict=True):
            done = len(built)
            # under strict, written as .rejected first and named the master once it passed
            written = rejected_path(target) if plan.strict else target
            if len(members) == 1:
                combined(members[0], target).write(written, overwrite=plan.strict or overwrite)
            else:  # one file, its extensions as the inputs'
                _write_file_set(written, members, combined, plan.strict or overwrite)
            failed = [b for b in built[done:] if not b.verification.passed]
            if plan.strict and failed:
                raise VerificationError(f"{target}: verification failed ({failed[0].verification.summary()}); "
                                        f"the master is left as {written}, nothing under its name")
            if plan.strict:
                os.replace(written, target)
            for result in failed:
                log.warning("%s: %s NOT VERIFIED (VERIFIED = F): %s", target, result.label(),
                            result.verification.summary())
            for result in built[done:]:  # written: say so
                progress.line(result.line())
                if on_master is not None:
                    on_master(result)
    return built


def _previous(plan, target) -> Path | None:
    """The earlier master a new one is compared with: the one of its name in ``previous``, or
    the file it replaces; None where there is none."""
    earlier = plan.previous / target.name if plan.previous is not None else target
    return earlier if earlier.is_file() else None


def _names_extensions(template, sets) -> bool:
    """Whether a template names the extensions of a file set apart (``{extver}``): then each
    extension is a file."""
    if template is None:
        return False
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    return any(fields & {_field(k) for k in extension_keys(members)} for members in sets)


def _write_file_set(target, members, combined, overwrite):
    """Combine the groups of one file set and write them as the extensions of ``target``, each
    with the EXTNAME and EXTVER of its inputs."""
    extensions = ((combined(group, target), group.setup.get("extname"), group.setup.get("extver"))
                  for group in members)
    write_extensions(target, extensions, overwrite=overwrite)


def _imagetyps(select) -> list:
    """The IMAGETYP values ``select`` asks for (a value or a list of them), as a list."""
    wanted = select.get("imagetyp")
    return [] if wanted is None else list(wanted) if isinstance(wanted, (list, tuple)) else [wanted]


def _report_other_spellings(index, select):
    """Warn about frames whose IMAGETYP means the kind selected but is spelled otherwise
    ('Dark Frame' when selecting 'dark'): the selection matches the spellings given only."""
    wanted = {fold(v) for v in _imagetyps(select)}
    if not wanted:
        return
    others = {name for names in IMAGETYP_SYNONYMS.values() if wanted & set(names)
              for name in names} - wanted
    table = index.frame_table
    column = table[index.column_name("imagetyp")]
    present = ~np.ma.getmaskarray(column) & ~index.unreadable_mask
    found = [i for i in range(len(table)) if present[i] and fold(column[i]) in others]
    if found:
        spellings = sorted({str(column[i]).strip() for i in found})
        log.warning("%d frame(s) have IMAGETYP %s, another spelling of %s, and were not "
                    "selected: %s; select every spelling (--imagetyp %s --imagetyp '%s'), or "
                    "build every master with `calstack masters`", len(found),
                    "/".join(map(repr, spellings)), "/".join(sorted(wanted)),
                    ", ".join(str(table["path"][i]) for i in found), min(wanted),
                    spellings[0])


def _report_missing(index, select):
    """Warn about readable frames that cannot be selected because they lack a keyword."""
    table = index.frame_table
    good = ~index.unreadable_mask
    for key in select:
        missing = good & np.ma.getmaskarray(table[index.column_name(key)])
        if missing.any():
            paths = [str(p) for p in table["path"][missing]]
            log.warning("%d frame(s) have no %s and were not considered: %s", len(paths),
                        key.upper(), ", ".join(paths))
