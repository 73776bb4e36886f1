"""What frames there are and which belong together: the header index (``ImageIndex``),
selection by keyword with one closeness rule, and grouping.

Pure functions of header tables; no pixel is read here.
"""
