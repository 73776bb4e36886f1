"""Group the rows of an index table by keyword values (pure: no disk access).

The reference recipe does ``set(summary['exptime'][darks])`` and then selects the frames of
each exposure time. That breaks on float noise (``7.0`` and ``7.0000001`` are two "values") and
on spelling (``'Dark'`` and ``'DARK '``). :func:`unique_values` and :func:`group_by` cluster
numbers within a tolerance and compare strings case-insensitively after trimming.

Default numeric tolerance
-------------------------
Two sorted neighbouring values ``a <= b`` belong to one cluster when they are close by
:func:`calstack.catalog.closeness.close`: ``b - a <= max(1e-6 * max(|a|, |b|), 1e-9)`` -- the same
closeness the index's ``filter`` uses (``math.isclose(rel_tol=1e-6, abs_tol=1e-9)``), so a
group's representative value selects the same frames with ``index.filter``. Clusters chain:
each value is compared with its sorted neighbour, not with the cluster's first member. It
absorbs float32/float64 round-off and formatting noise but never merges genuinely different
settings (7 s vs 7.001 s). Keywords whose values really wander have a default of their own
(:data:`calstack.catalog.conventions.DEFAULT_TOLERANCES`: exposure times as cameras record them
within max(0.1 %, 10 ms), CCD-TEMP within 2 degC); an explicit absolute tolerance replaces it
(``tolerances={'ccd-temp': 0.5}``). Integer values are compared exactly unless a tolerance is
given.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from ..errors import OptionError, UnknownOptionError, unknown_option
from ..io.fitsheader import printable
from .closeness import DEFAULT_ABS_TOL, DEFAULT_REL_TOL, close, fold
from .columns import frame_pairs, index_table, resolve_column, unreadable_mask
from .conventions import DEFAULT_TOLERANCES

__all__ = ["DEFAULT_ABS_TOL", "DEFAULT_REL_TOL", "Group", "group_by", "unique_values"]


@dataclass(frozen=True)
class Group:
    """Frames that share the values of the grouping keys.

    Attributes
    ----------
    key : dict
        Grouping key (column name) -> representative value, in the order the keys were given,
        e.g. ``{'exptime': 90.0}`` or ``{'filter': 'R', 'exptime': 10.0}``, then the setup
        keys whose values differ between the groups (``{'exptime': 90.0, 'gain': 120}``).
    rows : tuple of int
        Row indices into the table that was grouped.
    paths : tuple of str
        The frames' file paths (``path`` column), row order.
    hdus : tuple of int
        Their HDU numbers (``hdu`` column).
    identities : tuple
        Each frame's file identity when it was indexed
        (:func:`calstack.io.reader.file_identity`; None where the table does not know it),
        which the combine checks the file against.
    setup : dict
        The camera setup the frames share: setup key -> value (None where the frames lack the
        keyword), every setup key grouped by, whether or not it differs between groups.
    """

    key: dict
    rows: tuple
    paths: tuple
    hdus: tuple
    setup: dict = field(default_factory=dict)
    identities: tuple = ()

    def label(self) -> str:
        """``"filter=R exptime=10.000"``: numbers with 3 decimals, ints and strings as they are
        (characters that are not printable ASCII as Python escapes, so a header never sends
        control sequences to a terminal), ``none`` for a keyword the frames lack."""
        return " ".join(f"{name}={_format(value)}" for name, value in self.key.items())


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "none" if value is None else printable(str(value))


# --------------------------------------------------------------------------- clustering
def _check_tolerance(name, tolerance):
    if tolerance is None:
        return None
    if (isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real)
            or not math.isfinite(tolerance) or tolerance < 0):
        raise OptionError(f"{name} must be a finite number >= 0 (absolute tolerance) or None "
                          f"(default: relative 1e-6), not {tolerance!r}")
    return float(tolerance)


def _plain(value):
    """A present value as a Python scalar, or None for missing (None, masked, NaN)."""
    if value is None or value is np.ma.masked:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _cells(values):
    """The values of a column / sequence as Python scalars, None where missing."""
    if isinstance(values, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(values)
        data = np.asarray(values).tolist()
        return [None if m else _plain(v) for v, m in zip(data, mask, strict=True)]
    if isinstance(values, np.ndarray):
        return [_plain(v) for v in values.tolist()]
    return [_plain(v) for v in values]


def _kind(present) -> str:
    """'number', 'bool' or 'str' for a list of present values."""
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present):
        return "number"
    if all(isinstance(v, bool) for v in present):
        return "bool"
    return "str"


def _cluster(cells, tolerance, name, *, missing_is_value=False):
    """Cluster the present cells; return (sorted representatives, label index per cell or None).

    ``name`` is used in error messages (the option or keyword being clustered). With
    ``missing_is_value``, missing cells form one more cluster, represented by None, after the
    others.
    """
    reps, assign = _cluster_present(cells, tolerance, name)
    if missing_is_value and None in assign:
        assign = [len(reps) if a is None else a for a in assign]
        reps = [*reps, None]
    return reps, assign


def _cluster_present(cells, tolerance, name):
    present = [(i, v) for i, v in enumerate(cells) if v is not None]
    assign = [None] * len(cells)
    if not present:
        return [], assign
    kind = _kind([v for _, v in present])
    if kind != "number" and tolerance is not None and not _is_default(tolerance):
        raise OptionError(f"{name}: a tolerance applies to numeric values, but the values are "
                          f"{'logicals' if kind == 'bool' else 'strings'}; drop the tolerance")
    reps = []
    if kind == "number":
        present.sort(key=lambda item: item[1])
        clusters = [[present[0]]]
        for item in present[1:]:
            if close(clusters[-1][-1][1], item[1], tolerance):  # chains: the sorted neighbour
                clusters[-1].append(item)
            else:
                clusters.append([item])
        for label, members in enumerate(clusters):
            reps.append(members[(len(members) - 1) // 2][1])  # the (lower) median member
            for i, _ in members:
                assign[i] = label
        return reps, assign
    if kind == "bool":
        def norm(v):
            return v
    else:
        norm = fold
    spelling = {}
    for _, v in present:
        spelling.setdefault(norm(v), v.strip() if isinstance(v, str) else v)
    order = sorted(spelling)
    label_of = {k: n for n, k in enumerate(order)}
    for i, v in present:
        assign[i] = label_of[norm(v)]
    reps = [spelling[k] if kind == "bool" else str(spelling[k]) for k in order]
    return reps, assign


def unique_values(values, *, tolerance=None) -> list:
    """The distinct values of a column, robust to float noise and spelling.

    A robust ``sorted(set(values))``: numbers are sorted and split into clusters wherever the
    gap to the previous value exceeds the tolerance; each cluster is represented by its median
    member (one of the values). Strings compare case-insensitively after trimming blanks and are
    represented by the first spelling seen (trimmed). Missing values (None, masked, NaN) are
    skipped.

    Parameters
    ----------
    values : sequence or astropy.table.Column
        The values (e.g. ``index.table['exptime']``).
    tolerance : float, optional
        Absolute tolerance for numbers. Default: relative ``1e-6`` (absolute floor ``1e-9``)
        for floats, exact for ints -- see the module docstring.

    Returns
    -------
    list
        Sorted representatives (Python scalars).

    Raises
    ------
    OptionError
        ``tolerance`` is negative or not a number, or is given for non-numeric values.

    Examples
    --------
    >>> unique_values([7.0, 70.0, 7.0000001, 300.0, None])
    [7.0, 70.0, 300.0]
    >>> unique_values(['DARK ', 'dark', 'Bias'])
    ['Bias', 'DARK']
    """
    tolerance = _check_tolerance("tolerance", tolerance)
    reps, _ = _cluster(_cells(values), tolerance, "tolerance")
    return reps


def _is_default(tolerance) -> bool:
    return any(tolerance is t for t in DEFAULT_TOLERANCES.values())


# --------------------------------------------------------------------------- group_by
def _resolve(name, colnames, what="key") -> str:
    if not isinstance(name, str):
        raise OptionError(f"grouping {what}s must be column names (str), not {name!r}")
    return resolve_column(name, colnames, where=f"group_by {what}")


def group_by(table, keys, *, tolerances=None, setup=()) -> list[Group]:
    """Split the rows of an index table into groups of equal key values.

    Parameters
    ----------
    table : astropy.table.Table, FrameTable or ImageIndex
        A table with the index's columns (at least ``path`` and ``hdu``, and the keys); an
        :class:`~calstack.ImageIndex` is grouped through its ``frame_table``. Rows with a non-empty
        ``error`` (unreadable files) are left out.
    keys : str or sequence of str
        Column names, case-insensitive; ``ccd_temp`` finds ``ccd-temp``. No key: one group of
        every readable row.
    tolerances : dict, optional
        Key -> absolute tolerance for numeric keys (e.g. ``{'ccd-temp': 0.5}``). Keys without
        one use their default (:data:`calstack.catalog.conventions.DEFAULT_TOLERANCES`:
        exposure times within max(0.1 %, 10 ms), CCD-TEMP within 2 degC), else that of
        :func:`unique_values` (relative 1e-6 for floats, exact for ints).
    setup : sequence of str
        Camera-setup keys (:data:`calstack.catalog.conventions.SETUP`) that split the groups
        too, where the table has them: a row without one has the value None, which is a
        setting of its own; a key no row has is skipped.

    Returns
    -------
    list of Group
        Sorted by key values (in the order of ``keys``, then ``setup``). Each group's ``key``
        holds the representative value of every key (see :func:`unique_values`) and of each
        setup key whose value differs between the groups; its ``setup`` holds every setup
        key's. Rows missing a key value (not a setup key) belong to no group.

    Raises
    ------
    UnknownOptionError
        A key, or a tolerance's key, is not a column / not among ``keys``; the message suggests
        the closest name.
    OptionError
        Every readable row lacks a key's value (the message names the keyword), or a tolerance
        is not a number >= 0 or is given for a string key.
    """
    table = index_table(table)
    colnames = list(table.colnames)
    for needed in ("path", "hdu"):
        if needed not in colnames:
            raise OptionError(f"table has no {needed!r} column; group an ImageIndex or its table")
    if isinstance(keys, str):
        keys = [keys]
    elif keys is None:
        keys = []
    columns = []
    for name in keys:
        column = _resolve(name, colnames)
        if column in columns:
            raise OptionError(f"grouping key {name!r} is given twice")
        columns.append(column)
    n = len(table)
    good = (~unreadable_mask(table)).tolist()
    setup_columns = [c for c in (_present_column(name, colnames) for name in setup)
                     if c is not None and c not in columns
                     and any(v is not None and ok for v, ok in zip(_cells(table[c]), good, strict=True))]
    setup_columns = list(dict.fromkeys(setup_columns))
    tol = _tolerances(tolerances, [*columns, *setup_columns], colnames)
    if not any(good):
        return []

    labels, reps = [], []
    for column in [*columns, *setup_columns]:
        cells = [c if ok else None for c, ok in zip(_cells(table[column]), good, strict=True)]
        if all(c is None for c in cells):
            raise OptionError(f"no frame has a value for the grouping keyword "
                              f"{column.upper()!r}; choose another key")
        values, assign = _cluster(cells, tol.get(column, DEFAULT_TOLERANCES.get(column)),
                                  f"tolerances[{column!r}]",
                                  missing_is_value=column in setup_columns)
        reps.append(values)
        labels.append(assign)

    groups: dict[tuple, list[int]] = {}
    for row in range(n):
        if not good[row]:
            continue
        label = tuple(assign[row] for assign in labels)
        if None in label:
            continue
        groups.setdefault(label, []).append(row)

    varying = {k for k in range(len(columns), len(labels))
               if len({label[k] for label in groups}) > 1}
    pair_of = dict(zip((row for row in range(n) if good[row]), frame_pairs(table), strict=True))  # good rows
    identity_of = table.meta.get("identity", {})
    out = []
    for label in sorted(groups):  # representatives are sorted, so labels sort like values
        rows = tuple(groups[label])
        values = [(column, reps[k][label[k]]) for k, column in enumerate([*columns, *setup_columns])]
        key = {column: v for k, (column, v) in enumerate(values) if k < len(columns) or k in varying}
        pairs = [pair_of[r] for r in rows]
        out.append(Group(key=key, rows=rows, paths=tuple(path for path, _ in pairs),
                         hdus=tuple(hdu for _, hdu in pairs),
                         identities=tuple(identity_of.get(path) for path, _ in pairs),
                         setup={column: v for column, v in values[len(columns):]}))
    return out


def _present_column(name, colnames):
    """The column of a setup key, or None where the table has none."""
    try:
        return _resolve(name, colnames, "setup key")
    except UnknownOptionError:
        return None


def _tolerances(tolerances, columns, colnames) -> dict:
    """Column -> checked tolerance, for tolerances given for grouping or setup keys."""
    tol = {}
    for name, value in dict(tolerances or {}).items():
        try:
            column = _resolve(name, colnames, "tolerance key")
        except UnknownOptionError:
            column = None
        if column not in columns:
            raise unknown_option(name, columns, where="group_by tolerances",
                                 what="grouping key",
                                 fix=f"give tolerances for grouping keys only ({name!r} is not "
                                     "a grouping key)")
        tol[column] = _check_tolerance(f"tolerances[{name!r}]", value)
    return tol
