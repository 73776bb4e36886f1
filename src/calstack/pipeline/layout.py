"""Which masters go into one file: the extensions of the same files make one multi-extension
master, which mirrors the inputs' extension layout (mosaic cameras, multi-amplifier CCDs).

Groups whose frames are the same files (different HDUs of them: the SCI extensions of GMOS
frames, the chips of WFPC2) are one *file set*; the keys whose values differ within a set (the
extension's EXTNAME/EXTVER, HDU number, and what comes with them, such as CCDNAME) name its
extensions, not its file.
"""

from __future__ import annotations

from dataclasses import replace

__all__ = ["extension_keys", "file_sets", "named_by"]


def file_sets(groups, *, split=False) -> list[list]:
    """The groups as file sets, in the order of their first group; each set's groups in the
    order of the inputs' HDUs. With ``split``, every group is a set of its own."""
    if split:
        return [[g] for g in groups]
    sets: dict[tuple, list] = {}
    for group in groups:
        sets.setdefault(tuple(group.paths), []).append(group)
    return [sorted(members, key=lambda g: g.hdus[0]) for members in sets.values()]


def extension_keys(members) -> list:
    """The keys whose values differ between the groups of one file set."""
    first = members[0]
    return [k for k in first.key if any(g.key[k] != first.key[k] for g in members)]


def named_by(members):
    """The group that names a file set's file: its first group without the keys that tell its
    extensions apart."""
    if len(members) == 1:
        return members[0]
    drop = set(extension_keys(members))
    first = members[0]
    return replace(first, key={k: v for k, v in first.key.items() if k not in drop},
                   setup={k: v for k, v in first.setup.items() if k not in drop})
