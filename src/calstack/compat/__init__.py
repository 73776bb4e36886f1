"""Drop-ins with other tools' signatures and numbers: ``ccdproc.combine`` (also importable as
``calstack.ccdproc_compat``, the path the README documents).
"""
