"""The result of a combine: a ``CCDData`` that also carries its per-pixel counts and knows how
to write itself safely."""

from __future__ import annotations

from astropy.nddata import CCDData

__all__ = ["Master"]


class Master(CCDData):
    """A combined frame: ``CCDData`` with the per-pixel number of values kept.

    Attributes
    ----------
    data : numpy.ndarray
        Combined values; NaN where every value was rejected or missing.
    uncertainty : astropy.nddata.StdDevUncertainty
        Standard error of the combined value: std/sqrt(n) for the average, 1.4826*MAD/sqrt(n)
        for the median and std*sqrt(n) for the sum, over the n values kept (ccdproc's
        definitions; std with ddof=0, so a single value gives 0).
    mask : numpy.ndarray of bool
        True where nothing was kept.
    ncombine : numpy.ndarray of int16
        Number of values kept per pixel.
    rejected_fraction : float
        Fraction of the finite input values that rejection removed.
    frame_rejected : numpy.ndarray
        Per input frame, the fraction of its pixels that rejection removed (a frame with a
        satellite trail stands out).
    sources : list of str
        The frames combined, in input order.
    preparation : calstack.stacking.preparation.Preparation
        What was done to each frame before rejection (bias/dark subtraction, scale, zero); the
        report applies it to the frames it shows.
    weights : numpy.ndarray or None
        The per-frame weights of the average or sum.
    plan : calstack.stacking.plan.TilePlan
        How the stack was cut into tiles under the memory limit.
    skipped : list of (str, str)
        Frames skipped as unreadable (``skip_bad=True``) and why.
    meta : astropy.io.fits.Header
        The first frame's header with the provenance keywords (COMBINED, NCOMBINE, IMCMBnnn...).

    Every other argument is ``CCDData``'s; the attributes above default to "unknown" (None or
    empty), as for a ``Master`` that astropy's arithmetic builds.
    """

    def __init__(self, data, *args, ncombine=None, rejected_fraction=None, frame_rejected=None,
                 sources=(), preparation=None, weights=None, plan=None, skipped=(), **kwargs):
        super().__init__(data, *args, **kwargs)
        self.ncombine = ncombine
        self.rejected_fraction = rejected_fraction
        self.frame_rejected = frame_rejected
        self.sources = list(sources)
        self.preparation = preparation
        self.weights = weights
        self.plan = plan
        self.skipped = list(skipped)

    @property
    def scale_factors(self):
        """The per-frame factors frames were multiplied by before rejection, or None."""
        return None if self.preparation is None else self.preparation.scale

    @property
    def zero_offsets(self):
        """The per-frame offsets subtracted before rejection, or None."""
        return None if self.preparation is None else self.preparation.zero

    def write(self, path, *, overwrite: bool = False):
        """Write the master as FITS: primary = data, then UNCERT, MASK and NCOMB extensions.

        The file is written under a temporary name in the same folder and renamed into place,
        so a crash never leaves a partial file under ``path``. ``CCDData.read(path)`` reads it
        back with its uncertainty and mask.

        Parameters
        ----------
        path : str or os.PathLike
            Output file.
        overwrite : bool
            Replace an existing file (default: refuse with ``FileExistsError``).

        Returns
        -------
        pathlib.Path
            The path written.
        """
        from ..io.writer import write_master

        return write_master(self, path, overwrite=overwrite)
