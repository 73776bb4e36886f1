"""Frames into the page cache before a timed run, so that every tool reads them from memory.

Done before each run, not once per workload: this VM pages out idle page-cache pages (DAMON's
``pageout`` scheme), so frames read a minute earlier may be on disk again.
"""

from __future__ import annotations


def into_page_cache(paths) -> None:
    """Read each file of ``paths`` once, to its end."""
    buffer = bytearray(16 * 1024**2)
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buffer):
                pass
