"""Critical values of the generalized extreme studentized deviate (ESD) test.

The test needs quantiles of Student's t distribution; they come from the regularized incomplete
beta function (a continued fraction) inverted by bisection, vectorised over every critical value
a stack can need, so that calstack does not depend on scipy.
"""

from __future__ import annotations

import math

import numpy as np

from .stack import esd_max_outliers

__all__ = ["student_t_ppf", "critical_values"]

_CF_TERMS = 300
_TINY = 1e-300


def _betacf(a, b, x):
    """Continued fraction of the incomplete beta function (modified Lentz), vectorised."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 - qab * x / qap
    d = np.where(np.abs(d) < _TINY, _TINY, d)
    d = 1.0 / d
    h = d.copy()
    for m in range(1, _CF_TERMS + 1):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = np.where(np.abs(d) < _TINY, _TINY, d)
            c = 1.0 + aa / c
            c = np.where(np.abs(c) < _TINY, _TINY, c)
            d = 1.0 / d
            h = h * d * c
        if np.all(np.abs(d * c - 1.0) < 1e-15):
            break
    return h


def _betainc(a, b, x):
    """Regularized incomplete beta function I_x(a, b) for arrays a, b, x in [0, 1]."""
    lgamma = np.vectorize(math.lgamma, otypes=[float])
    with np.errstate(divide="ignore"):
        front = np.exp(lgamma(a + b) - lgamma(a) - lgamma(b)
                       + a * np.log(x) + b * np.log1p(-x))
    direct = x < (a + 1.0) / (a + b + 2.0)
    xs = np.where(direct, x, 1.0 - x)
    aa = np.where(direct, a, b)
    bb = np.where(direct, b, a)
    frac = front * _betacf(aa, bb, xs) / aa
    return np.where(direct, frac, 1.0 - frac)


def student_t_ppf(p, df):
    """Quantile of Student's t distribution (``scipy.stats.t.ppf``) for ``0.5 <= p < 1``.

    Parameters
    ----------
    p : array_like
        Probabilities, at least 0.5.
    df : array_like
        Degrees of freedom (> 0).

    Returns
    -------
    numpy.ndarray
        t such that P(T <= t) = p.
    """
    p, df = np.broadcast_arrays(np.asarray(p, float), np.asarray(df, float))
    target = 2.0 * (1.0 - p)  # I_x(df/2, 1/2) at x = df / (df + t**2)
    lo = np.zeros_like(p)
    hi = np.ones_like(p)
    for _ in range(64):  # I_x is increasing in x: bisect
        mid = (lo + hi) / 2.0
        below = _betainc(df / 2.0, np.full_like(p, 0.5), mid) < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    x = (lo + hi) / 2.0
    with np.errstate(divide="ignore"):
        return np.sqrt(df * (1.0 - x) / x)


def critical_values(n_frames: int, esd_max: float, alpha: float) -> np.ndarray:
    """The ESD test's critical values lambda for stacks of up to ``n_frames`` values.

    Parameters
    ----------
    n_frames : int
        Most values a pixel can have.
    esd_max : float
        Most outliers sought: a count (>= 1) or a fraction of the values.
    alpha : float
        Significance level of the test.

    Returns
    -------
    numpy.ndarray, shape (n_frames + 1, r + 1)
        ``table[k, i]`` is lambda_i for k values (Rosner 1983):
        ``(k - i) t / sqrt((k - i - 1 + t**2) (k - i + 1))`` with t the
        ``1 - alpha / (2 (k - i + 1))`` quantile of Student's t with ``k - i - 1`` degrees of
        freedom. Unused entries are +inf.
    """
    r_max = max(esd_max_outliers(k, esd_max) for k in range(n_frames + 1))
    table = np.full((n_frames + 1, r_max + 1), np.inf)
    ks, iis = [], []
    for k in range(n_frames + 1):
        for i in range(1, esd_max_outliers(k, esd_max) + 1):
            ks.append(k)
            iis.append(i)
    if ks:
        k = np.array(ks, float)
        i = np.array(iis, float)
        t = student_t_ppf(1.0 - alpha / (2.0 * (k - i + 1.0)), k - i - 1.0)
        table[ks, iis] = (k - i) * t / np.sqrt((k - i - 1.0 + t * t) * (k - i + 1.0))
    return table
