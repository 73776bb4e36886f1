"""Drop-ins with other tools' signatures and numbers: ``ccdproc.combine`` (:mod:`.ccdproc`) and
ccdproc's processing functions (:mod:`.processing`), also importable as
``calstack.ccdproc_compat``, the path the README documents.
"""
