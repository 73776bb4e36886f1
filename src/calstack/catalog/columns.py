"""The columns of an index table that everything reading one relies on (pure: no disk access).

The table of :class:`~calstack.catalog.index.ImageIndex` (or any table with its columns): a
keyword's column (:func:`resolve_column`), the rows of files that could not be read
(:func:`unreadable_mask`, the ``error`` column set) and the ``(path, hdu)`` pair by which each
readable frame is opened (:func:`frame_pairs`).
"""

from __future__ import annotations

import numpy as np

from ..errors import unknown_option

__all__ = ["frame_pairs", "index_table", "indexed_frames", "resolve_column", "unreadable_mask"]


def index_table(frames):
    """The table of ``frames``: an index's light :attr:`~calstack.ImageIndex.frame_table`, the
    ``table`` of any other object that has one, or ``frames`` itself (a table)."""
    if hasattr(frames, "frame_table"):
        return frames.frame_table
    return getattr(frames, "table", frames)


def resolve_column(name, colnames, *, where=None, fix=None) -> str:
    """The column of a keyword name among ``colnames`` (the table's lower-case column names).

    The name is trimmed and compared in lower case, a ``HIERARCH`` prefix dropped, and ``_``
    also matches ``-`` or a space (``ccd_temp`` finds ``ccd-temp``).

    Raises
    ------
    UnknownOptionError
        No column has that name: the message, prefixed by ``where``, suggests the closest
        column, lists them all and ends with ``fix`` (see :func:`calstack.errors.unknown_option`).
    """
    key = str(name).strip().lower()
    if key.startswith("hierarch "):
        key = " ".join(key.split()[1:])
    for candidate in (key, key.replace("_", "-"), key.replace("_", " ")):
        if candidate in colnames:
            return candidate
    raise unknown_option(name, colnames, where=where, what="column", fix=fix)


def unreadable_mask(table) -> np.ndarray:
    """A boolean per row of ``table``: True where its ``error`` column is set (the file could not
    be read). A table without an ``error`` column has no unreadable row; a masked cell is not
    an error."""
    if "error" not in table.colnames:
        return np.zeros(len(table), dtype=bool)
    column = table["error"]
    missing = np.ma.getmaskarray(column)
    return np.array([not m and bool(e) for e, m in zip(np.asarray(column).tolist(), missing, strict=True)],
                    dtype=bool)


def frame_pairs(frames) -> list[tuple[str, int]]:
    """``(path, HDU number)`` of each frame, the pairs :func:`calstack.combine` opens.

    Parameters
    ----------
    frames : Group, ImageIndex, FrameTable or astropy.table.Table
        A :class:`~calstack.catalog.grouping.Group` (its frames, in its order), or an index /
        index table (its readable rows, in table order: the rows :func:`unreadable_mask` does
        not mark).

    Returns
    -------
    list of (str, int)
    """
    if hasattr(frames, "paths") and hasattr(frames, "hdus"):  # a Group
        return list(zip(frames.paths, frames.hdus, strict=True))
    table = index_table(frames)
    bad = unreadable_mask(table)
    hdus = np.asarray(table["hdu"]).tolist()
    return [(str(path), int(hdu)) for path, hdu, b in zip(table["path"], hdus, bad, strict=True) if not b]


def indexed_frames(frames) -> list[tuple]:
    """``(path, HDU number, identity)`` of each frame of :func:`frame_pairs`, the identity its
    file had when it was indexed (:func:`calstack.io.reader.file_identity`, from a
    :class:`~calstack.catalog.grouping.Group`'s ``identities`` or the index table's
    ``meta['identity']``; None where unknown): the items :func:`calstack.combine` opens and
    checks against it."""
    pairs = frame_pairs(frames)
    if hasattr(frames, "identities"):  # a Group
        identities = list(frames.identities) or [None] * len(pairs)
    else:
        known = index_table(frames).meta.get("identity", {})
        identities = [known.get(path) for path, _ in pairs]
    return [(path, hdu, identity) for (path, hdu), identity in zip(pairs, identities, strict=True)]
