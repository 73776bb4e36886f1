"""The index's columns without :mod:`astropy.table` (pure: no disk access).

``astropy.table`` takes about 0.15 s to import, a sixth of a small combine's whole run, and the
command line only selects rows and reads columns. :class:`FrameTable` holds the index's columns
as NumPy arrays (masked arrays where a value is missing) and offers the part of
``astropy.table.Table`` the pipeline reads: ``colnames``, ``len``, ``table[name]``,
``table[rows]`` and ``meta``. :meth:`FrameTable.to_table` builds the astropy Table the public
:attr:`calstack.ImageIndex.table` returns.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FrameTable", "frame_column"]


def frame_column(values) -> np.ndarray:
    """One column of the narrowest fitting type: str, bool, int64 or float64 (mixed types as
    str), a masked array where a value is None.

    Parameters
    ----------
    values : list
        The column's cells: str, bool, int, float or None.

    Returns
    -------
    numpy.ndarray or numpy.ma.MaskedArray
    """
    missing = values.count(None)
    present = [v for v in values if v is not None] if missing else values
    types = set(map(type, present))
    if not present:
        data = np.zeros(len(values), dtype="U1")
    elif types == {str}:
        data = np.array(values if not missing else [v or "" for v in values], dtype=str)
    elif types == {bool}:
        data = np.array([bool(v) for v in values], dtype=bool)
    elif types == {int} and -(2**63) <= min(present) and max(present) < 2**63:
        data = np.array(values if not missing else [v or 0 for v in values], dtype=np.int64)
    elif types <= {int, float}:
        data = np.array(values if not missing else [v or 0.0 for v in values], dtype=np.float64)
    else:
        data = np.array(["" if v is None else str(v) for v in values], dtype=str)
    if missing:
        return np.ma.MaskedArray(data, mask=[v is None for v in values])
    return data


class FrameTable:
    """Named columns of equal length, selected by name or by rows.

    Parameters
    ----------
    columns : dict of str to numpy.ndarray
        Column name to its values (a masked array where cells are missing).
    meta : dict, optional
        Shared, not copied, by every selection of rows (the index keeps the files' identities
        there).
    """

    def __init__(self, columns: dict, meta: dict | None = None):
        self._columns = dict(columns)
        self.meta = {} if meta is None else meta

    @property
    def colnames(self) -> list[str]:
        """The column names, in order."""
        return list(self._columns)

    def __len__(self) -> int:
        return len(next(iter(self._columns.values()))) if self._columns else 0

    def __getitem__(self, key):
        """A column (``table['path']``) or a new table of the selected rows (a boolean mask, an
        array of row numbers or a slice)."""
        if isinstance(key, str):
            return self._columns[key]
        return FrameTable({name: column[key] for name, column in self._columns.items()},
                          self.meta)

    def to_table(self):
        """The same columns and meta as an ``astropy.table.Table`` (MaskedColumn where cells are
        missing)."""
        from astropy.table import Column, MaskedColumn, Table

        columns = [MaskedColumn(column, name=name) if isinstance(column, np.ma.MaskedArray)
                   else Column(column, name=name, copy=False)
                   for name, column in self._columns.items()]
        return Table(columns, copy=False, meta=self.meta)
