"""The combine kernels: the numba stack kernel with its rejection algorithms, the pure-NumPy
reference twin, the ESD critical values, and the registry that ties each algorithm's name to
its kernel code, its twin and its provenance cards.

A kernel takes arrays and returns numbers; it keeps no state between calls.
"""
