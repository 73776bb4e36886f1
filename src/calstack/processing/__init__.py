"""Processing a frame's pixels: applying masters to science frames (bias, dark, flat, gain),
with the uncertainty and mask of each value."""
