"""Execution backends: each runs a tile plan over a list of frames into the output arrays."""
