"""The reference distributions the models need (normal, t, chi-squared, F), from ``scipy.special``.

One home for every tail probability and quantile in the package. ``scipy.stats`` would give the same
numbers (its ``norm``, ``t``, ``chi2`` and ``f`` call these very functions: ``ndtr``/``ndtri``,
``stdtr``/``stdtrit``, ``chdtrc``/``chdtri``/``gammaincinv``, ``fdtrc``), but importing it costs about half a second,
which every command and report paid at start. The functions broadcast like numpy ufuncs and return
numpy floats (or arrays).

Degrees of freedom may be ``inf`` in ``t_*`` (the normal limit, as ``scipy.stats.t`` handles it).

These are building blocks for the package's own models, not part of the user-facing API (``pfps_meta``
does not export them): their callers have checked the arguments already, so nothing is checked twice on
the fitting paths, and a value outside a function's domain (a probability outside [0, 1], df <= 0) gives
NaN, as in ``scipy.stats``.
"""

import numpy as np
from scipy import special


def norm_cdf(x):
    """P(Z <= x) for a standard normal Z."""
    return special.ndtr(x)


def norm_sf(x):
    """P(Z > x) = Phi(-x), accurate in the upper tail."""
    return special.ndtr(np.negative(x))


def norm_ppf(q):
    """The q-quantile of the standard normal, Phi^-1(q)."""
    return special.ndtri(q)


def norm_isf(q):
    """The upper q-quantile of the standard normal, Phi^-1(1 - q) = -Phi^-1(q)."""
    return np.negative(special.ndtri(q))


def t_cdf(x, df):
    """P(T <= x) for Student's t with ``df`` degrees of freedom."""
    return special.stdtr(df, x)


def t_sf(x, df):
    """P(T > x) = P(T <= -x), by symmetry."""
    return special.stdtr(df, np.negative(x))


def t_ppf(q, df):
    """The q-quantile of Student's t with ``df`` degrees of freedom (df = inf: the normal's)."""
    return special.stdtrit(df, q)


def t_isf(q, df):
    """The upper q-quantile of Student's t."""
    return np.negative(t_ppf(q, df))


def chi2_cdf(x, df):
    """P(X <= x) for chi-squared with ``df`` degrees of freedom."""
    return special.chdtr(df, x)


def chi2_sf(x, df):
    """P(X > x) for chi-squared with ``df`` degrees of freedom."""
    return special.chdtrc(df, x)


def chi2_ppf(q, df):
    """The q-quantile of chi-squared with ``df`` degrees of freedom."""
    return 2.0 * special.gammaincinv(np.multiply(df, 0.5), q)


def chi2_isf(q, df):
    """The upper q-quantile of chi-squared: the x with P(X > x) = q."""
    return special.chdtri(df, q)


def f_sf(x, dfn, dfd):
    """P(F > x) for the F distribution with (dfn, dfd) degrees of freedom."""
    return special.fdtrc(dfn, dfd, x)


def f_cdf(x, dfn, dfd):
    """P(F <= x) for the F distribution with (dfn, dfd) degrees of freedom."""
    return special.fdtr(dfn, dfd, x)
