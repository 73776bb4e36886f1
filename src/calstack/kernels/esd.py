"""Critical values of the generalized extreme studentized deviate (ESD) test (Rosner 1983).

Student's t quantiles come from scipy (``scipy.special.stdtrit``, what ``scipy.stats.t.ppf``
computes), imported only when an ESD combine is prepared: ``scipy.special`` alone adds half
the resident memory that ``scipy.stats`` would. Plain Python and NumPy: the kernel compiles :func:`esd_max_outliers` itself.
"""

from __future__ import annotations

import numpy as np

__all__ = ["critical_values", "esd_max_outliers"]


def esd_max_outliers(k, esd_max):
    """The most outliers the ESD test looks for among ``k`` values (it needs 3 to remain)."""
    r = int(esd_max) if esd_max >= 1.0 else int(esd_max * k)
    return max(0, min(r, k - 3))


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
    from scipy.special import stdtrit  # Student's t quantile: stdtrit(df, p)

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
        t = stdtrit(k - i - 1.0, 1.0 - alpha / (2.0 * (k - i + 1.0)))
        table[ks, iis] = (k - i) * t / np.sqrt((k - i - 1.0 + t * t) * (k - i + 1.0))
    return table
