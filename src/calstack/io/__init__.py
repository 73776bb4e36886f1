"""Reading and writing FITS: the header parser and its SQLite cache, band reads of pixel data
(BZERO/BSCALE, compressed, MEF, big-endian), sampled reads, atomic output and provenance cards.

Nothing here knows about combining: the layers above hand it paths, rows and headers.
"""
