"""A drop-in for ``ccdproc.combine``: ccdproc's signature, defaults and numbers, calstack's engine.

``from calstack.compat.ccdproc import combine`` in place of ``from ccdproc import combine``.
The rejection steps follow ccdproc's semantics (each step judges all the values independently;
extrema clipping counts masked values; ``scale`` multiplies the values after rejection), and
the numbers match ccdproc's. Known functions (``np.ma.median``, ``np.mean``, ``mad_std``,
``np.ma.std``...) map to the fast kernels; other callables, a
``combine_uncertainty_function``, or masked inputs with extrema or sigma clipping run a NumPy
path (ccdproc's algorithm on bands of rows, within ``mem_limit``).

Deliberate differences from ccdproc:

1. An unknown keyword raises ``TypeError`` with a "did you mean" hint. ccdproc passes unknown
   keywords to the FITS reader, which drops them: the reference guide's misspelt
   ``signma_clip_dev_func=mad_std`` silently clipped with the plain std instead.
2. The result's header carries ``NCOMBINE``.
3. In a weighted average, the weights of masked or rejected values do not count (in ccdproc
   they do: ccdproc issue 893).
4. ``output_file`` is written atomically (a temporary name, then a rename); an existing one
   without ``overwrite_output`` raises ccdproc's ``OSError`` and message, before the combine.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.stats import mad_std, sigma_clip
from numpy import ma

from ..errors import unknown_option
from ..io.fitsheader import read_hdus
from ..options import CombineOptions
from ..stacking.dispatch import run
from ..stacking.job import prepare_frames
from ..stacking.plan import plan_tiles

__all__ = ["combine"]

_CENTERS = {ma.median: "median", np.median: "median", np.nanmedian: "median",
            ma.mean: "mean", np.mean: "mean", np.nanmean: "mean", "median": "median",
            "mean": "mean"}
_SPREADS = {mad_std: "mad_std", ma.std: "std", np.std: "std", np.nanstd: "std",
            "mad_std": "mad_std", "std": "std"}
_MIN_MEM_LIMIT = 64e6
#: Keywords ccdproc passes on to ``CCDData.read``.
_READER_KEYWORDS = ("hdu", "unit", "hdu_uncertainty", "hdu_mask", "hdu_flags",
                    "key_uncertainty_type", "hdu_psf")
_PARAMETERS = ("img_list", "output_file", "method", "weights", "scale", "mem_limit",
               "clip_extrema", "nlow", "nhigh", "minmax_clip", "minmax_clip_min",
               "minmax_clip_max", "sigma_clip", "sigma_clip_low_thresh",
               "sigma_clip_high_thresh", "sigma_clip_func", "sigma_clip_dev_func", "dtype",
               "combine_uncertainty_function", "overwrite_output")


def _lookup(table, func):
    try:
        return table.get(func)
    except TypeError:  # unhashable callable
        return None


def _image_list(img_list):
    if hasattr(img_list, "files") and hasattr(img_list, "location"):  # ImageFileCollection
        return [os.path.join(img_list.location or "", f) for f in img_list.files]
    if isinstance(img_list, np.ndarray):
        return img_list.tolist()
    if isinstance(img_list, str):
        return [s.strip() for s in img_list.split(",")] if "," in img_list else [img_list]
    try:
        return list(img_list)
    except TypeError as err:
        raise ValueError("unrecognised input for list of images to combine.") from err


def _read(image, ccdkwargs):
    return image if isinstance(image, CCDData) else CCDData.read(image, **ccdkwargs)


def _has_mask(image, ccdkwargs) -> bool:
    if isinstance(image, CCDData):
        return image.mask is not None and bool(np.any(image.mask))
    name = str(ccdkwargs.get("hdu_mask", "MASK")).upper()
    return any((h.extname or "").upper() == name for h in read_hdus(image))


def combine(img_list, output_file=None, method="average", weights=None, scale=None,
            mem_limit=16e9, clip_extrema=False, nlow=1, nhigh=1, minmax_clip=False,
            minmax_clip_min=None, minmax_clip_max=None, sigma_clip=False,
            sigma_clip_low_thresh=3, sigma_clip_high_thresh=3, sigma_clip_func=ma.mean,
            sigma_clip_dev_func=ma.std, dtype=None, combine_uncertainty_function=None,
            overwrite_output=False, **ccdkwargs):
    """Combine images as ``ccdproc.combine`` does (same parameters and defaults).

    Parameters
    ----------
    img_list : list, numpy.ndarray, str or ImageFileCollection
        FITS file names or ``CCDData`` objects, a comma-separated string of names, or an
        ``ImageFileCollection`` (all its files).
    output_file : str, optional
        Also write the result there.
    method : {'average', 'median', 'sum'}
    weights : numpy.ndarray, optional
        One weight per image, or an array shaped like the stack.
    scale : callable or array_like, optional
        Multiplies each image after rejection: a function of the image data, or the factors.
    mem_limit : float
        Bytes the combine may use; as in ccdproc a guide, not a hard cap: calstack needs at
        least one row of the stack, its outputs and 8 MB, so a smaller value is raised to
        ``_MIN_MEM_LIMIT`` (64 MB) plus the outputs.
    clip_extrema, nlow, nhigh
        Mask the ``nlow`` lowest and ``nhigh`` highest values of each pixel (masked values
        count).
    minmax_clip, minmax_clip_min, minmax_clip_max
        Mask values below / above the thresholds.
    sigma_clip, sigma_clip_low_thresh, sigma_clip_high_thresh, sigma_clip_func, sigma_clip_dev_func
        One pass of ``astropy.stats.sigma_clip`` over all values (masked ones included).
    dtype : dtype, optional
        Working and result dtype (default float64).
    combine_uncertainty_function : callable, optional
        Replaces the default uncertainty function.
    overwrite_output : bool
        Replace an existing ``output_file``.
    **ccdkwargs
        Passed to ``CCDData.read`` (``hdu``, ``unit``...); anything else is a ``TypeError``.

    Returns
    -------
    astropy.nddata.CCDData
        The combined image, with the first image's header plus ``NCOMBINE``.
    """
    for name in ccdkwargs:
        if name not in _READER_KEYWORDS:
            raise unknown_option(name, [*_PARAMETERS, *_READER_KEYWORDS], where="combine()",
                                 fix="ccdproc would pass it to the FITS reader, which ignores it")
    if method not in ("average", "median", "sum"):
        raise ValueError(f"unrecognised combine method : {method}.")
    if output_file is not None and not overwrite_output and os.path.exists(output_file):
        raise _exists(output_file)  # before the combine, not after it
    images = _image_list(img_list)
    first = _read(images[0], ccdkwargs)
    mem_limit = max(float(mem_limit), _MIN_MEM_LIMIT + 32 * first.data.size)
    dtype = np.dtype(np.float64 if dtype is None else dtype)
    post_scale = None
    if scale is not None:
        post_scale = (np.array([scale(_read(im, ccdkwargs).data) for im in images], float)
                      if callable(scale) else np.asarray(scale, float))
    center = _lookup(_CENTERS, sigma_clip_func)
    spread = _lookup(_SPREADS, sigma_clip_dev_func)
    masked = (clip_extrema or sigma_clip) and any(_has_mask(im, ccdkwargs) for im in images)
    fast = (combine_uncertainty_function is None and not masked and dtype.name in ("float32", "float64")
            and (not sigma_clip or (center is not None and spread is not None)))
    if fast:
        options = CombineOptions(
            method=method, rejection="sigma_clip" if sigma_clip else None,
            sigma_lower=3.0 if sigma_clip_low_thresh is None else sigma_clip_low_thresh,
            sigma_upper=3.0 if sigma_clip_high_thresh is None else sigma_clip_high_thresh,
            cenfunc=center or "median", stdfunc=spread or "mad_std", maxiters=1,
            nlow=nlow if clip_extrema else 0, nhigh=nhigh if clip_extrema else 0,
            min_clip=minmax_clip_min if minmax_clip else None,
            max_clip=minmax_clip_max if minmax_clip else None,
            nkeep=0, ccdproc_semantics=True, dtype=dtype.name)
        with prepare_frames(images, options, weights=weights, post_scale=post_scale,
                            mem_limit=mem_limit, hdu=ccdkwargs.get("hdu")) as job:
            result = run(job)
        data, uncertainty, mask = result.data, result.uncertainty, result.mask
    else:
        data, uncertainty, mask = _combine_numpy(
            images, ccdkwargs, first.shape, dtype, method, weights, post_scale, mem_limit,
            (nlow, nhigh) if clip_extrema else None,
            (minmax_clip_min, minmax_clip_max) if minmax_clip else None,
            (sigma_clip_low_thresh, sigma_clip_high_thresh, sigma_clip_func,
             sigma_clip_dev_func) if sigma_clip else None,
            combine_uncertainty_function)
    meta = first.meta.copy()
    meta["NCOMBINE"] = len(images)
    ccd = CCDData(np.asarray(data, dtype), unit=first.unit, mask=mask, meta=meta, wcs=first.wcs,
                  uncertainty=StdDevUncertainty(uncertainty))
    if output_file is not None:
        from ..io.writer import OutputExistsError, atomic_write

        try:
            atomic_write(output_file, lambda tmp: ccd.write(tmp, overwrite=True, format="fits"),
                         overwrite=overwrite_output)
        except OutputExistsError:  # it appeared while combining
            raise _exists(output_file) from None
    return ccd


def _exists(path) -> OSError:
    """ccdproc's error for an existing ``output_file``: astropy's ``OSError`` message, word for
    word (code written for ccdproc matches on it), as a ``FileExistsError`` (an ``OSError``)."""
    return FileExistsError(f"File {path} already exists. If you mean to replace it then use the "
                   'argument "overwrite=True".')


def _combine_numpy(images, ccdkwargs, shape, dtype, method, weights, post_scale, mem_limit,
                   extrema, minmax, clipping, uncertainty_func):
    """ccdproc's Combiner algorithm with NumPy masked arrays, on bands of rows."""
    n = len(images)
    plan = plan_tiles(shape=shape, n_frames=3 * n, mem_limit=int(mem_limit),
                      stack_itemsize=dtype.itemsize + 1, raw_itemsize=0, out_itemsize=8,
                      n_readers=1)
    data = np.empty(shape, dtype)
    uncertainty = np.empty(shape)
    mask = np.empty(shape, bool)
    weights = None if weights is None else np.asarray(weights, float)
    for start, stop in plan.tiles:
        stack = ma.masked_all((n, stop - start, shape[1]), dtype=dtype)
        for i, image in enumerate(images):
            ccd = _read(image, ccdkwargs)
            stack[i] = ccd.data[start:stop]
            stack.mask[i] = False if ccd.mask is None else ccd.mask[start:stop]
        if extrema is not None:
            order = np.argsort(stack.data, axis=0)
            rows, cols = np.mgrid[0 : stop - start, 0 : shape[1]]
            for k in range(-extrema[1], extrema[0]):
                stack.mask[order[k], rows, cols] = True
        if minmax is not None:
            if minmax[0] is not None:
                stack.mask[stack < minmax[0]] = True
            if minmax[1] is not None:
                stack.mask[stack > minmax[1]] = True
        if clipping is not None:
            low, high, func, dev_func = clipping
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                stack.mask |= sigma_clip(stack.data, sigma_lower=low, sigma_upper=high, axis=0,
                                         maxiters=1, cenfunc=func, stdfunc=dev_func,
                                         masked=True, copy=False).mask
        if post_scale is not None:
            stack = stack * post_scale[:, None, None]
        values = ma.filled(stack.astype(float), np.nan)
        missing = np.isnan(values).sum(axis=0)
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            if method == "median":
                combined = np.nanmedian(values, axis=0)
                func = uncertainty_func or (lambda a, axis: mad_std(a, axis=axis, ignore_nan=True))
            else:
                if weights is None:
                    combined = (np.nansum if method == "sum" else np.nanmean)(values, axis=0)
                else:
                    w = weights.reshape(n, 1, 1) if weights.ndim == 1 else weights[:, start:stop]
                    w = np.where(np.isnan(values), 0.0, w)
                    total = np.nansum(values * w, axis=0)
                    combined = total if method == "sum" else total / w.sum(axis=0)
                func = uncertainty_func or np.nanstd
            spread = np.asarray(func(values, axis=0)) / np.sqrt(n - missing)
            if method == "sum":
                spread = spread * (n - missing)
        data[start:stop] = combined
        uncertainty[start:stop] = spread
        mask[start:stop] = missing == n
    return data, uncertainty, mask
