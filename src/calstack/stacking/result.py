"""The plain result of a combine: arrays and a header, written as FITS with ``astropy.io.fits``
alone. The command line writes it as it is; :func:`calstack.combine` turns it into a
:class:`~calstack.stacking.master.Master` (a ``CCDData``), so the command line never imports
``astropy.nddata`` (and the ``wcs``, ``coordinates`` and ``table`` it pulls in)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Result"]


@dataclass(eq=False)
class Result:
    """What :class:`~calstack.stacking.master.Master` holds (see there), as plain arrays:
    ``uncertainty`` is the standard-error array itself and ``unit`` an ``astropy.units.Unit``."""

    data: np.ndarray
    uncertainty: np.ndarray
    mask: np.ndarray
    meta: object
    unit: object
    ncombine: np.ndarray
    rejected_fraction: float
    frame_rejected: np.ndarray
    sources: list = field(default_factory=list)
    preparation: object = None
    weights: object = None
    plan: object = None
    skipped: list = field(default_factory=list)

    def write(self, path, *, overwrite: bool = False):
        """Write as :meth:`Master.write` does (the same extensions, byte for byte)."""
        from ..io.writer import write_master

        return write_master(self, path, overwrite=overwrite)

    def to_master(self):
        """The :class:`~calstack.stacking.master.Master` (a ``CCDData``) of this result,
        sharing its arrays."""
        from astropy.nddata import StdDevUncertainty

        from .master import Master

        return Master(self.data, unit=self.unit,
                      uncertainty=StdDevUncertainty(self.uncertainty, copy=False),
                      mask=self.mask, meta=self.meta, copy=False, ncombine=self.ncombine,
                      rejected_fraction=self.rejected_fraction,
                      frame_rejected=self.frame_rejected, sources=self.sources,
                      preparation=self.preparation, weights=self.weights, plan=self.plan,
                      skipped=self.skipped)
