"""One combine, from frames to a ``Master``: the public ``combine()``, the preparation of frames
(bias, dark, scale, zero, weights), the tile plan under the memory limit, the one dispatcher
and its backends (this machine, a Dask cluster), and the result class.
"""
