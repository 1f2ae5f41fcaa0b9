"""A compiled kernel for the simulation hot path: tau2 (FE, DL, ML, REML), the pooled estimate and its SE
(Wald or HKSJ) for many meta-analyses at once, row by row in machine code (numba).

The numpy core (:func:`pfps_meta.models.pooling.pool_batch`) stays the reference: this kernel implements the same
formulas and the same bracketed Newton/Fisher-scoring iteration with metafor's check of the likelihood
at tau2 = 0, and ``tests/test_fast.py`` holds it to ``pool_batch`` at 1e-10. It is optional
(``pip install 'pfps-meta[fast]'``): :func:`available` says whether numba is installed, nothing is
compiled on import (importing ``pfps_meta`` does not import this module), and the first call compiles
(cached on disk by numba afterwards). Quantiles and
p-values (scipy) are computed outside the kernel, vectorised.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy.special import ndtr, ndtri, stdtr, stdtrit

from pfps_meta.conventions import COUNT_METHODS, DEFAULTS
from pfps_meta.errors import InputError
from pfps_meta.models.pooling import t_quantile
from pfps_meta.models.tau2 import SCALAR_MAX_K, pairwise_sum

KERNEL_METHODS = ("FE", "DL", "ML", "REML")
_EPS = np.finfo(float).eps
_Z = {}           # level -> normal quantile 0.5 + level / 2 (a scipy call costs a tenth of a one-row call)
_T = {}           # (df, level) -> t quantile 0.5 + level / 2, for the one-row path (stdtrit is slower still)


try:                 # numba is optional: without it the kernel is never called (see available())
    import numba

    _jit = numba.njit(cache=True)     # compiled on first call, then cached on disk; nothing on import
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

    def _jit(func):
        return func


def available() -> bool:
    """True when numba is installed (the kernel can be compiled)."""
    return numba is not None


@_jit
def _weighted_mean(y, v, n, t):
    """(sum of weights, weighted mean, sum of w y^2) at tau2 = t."""
    sw = 0.0
    swy = 0.0
    swy2 = 0.0
    for i in range(n):
        w = 1.0 / (v[i] + t)
        sw += w
        swy += w * y[i]
        swy2 += w * y[i] * y[i]
    return sw, swy / sw, swy2


@_jit
def _loglik_kernel(y, v, n, t, reml):
    sw, mu, _ = _weighted_mean(y, v, n, t)
    out = 0.0
    for i in range(n):
        w = 1.0 / (v[i] + t)
        out += math.log(v[i] + t) + w * (y[i] - mu) ** 2
    if reml:
        return -0.5 * (n - 1) * math.log(2 * math.pi) - 0.5 * out - 0.5 * math.log(sw)
    return -0.5 * n * math.log(2 * math.pi) - 0.5 * out

@_jit
def _tau2_kernel(y, v, n, method, maxiter, tol):
    # method: 0 FE, 1 DL, 2 ML, 3 REML; returns (tau2, converged)
    if n < 2 or method == 0:
        return 0.0, True
    if method == 1:
        sw = 0.0
        sw2 = 0.0
        swy = 0.0
        for i in range(n):
            w = 1.0 / v[i]
            sw += w
            sw2 += w * w
            swy += w * y[i]
        mu = swy / sw
        q = 0.0
        for i in range(n):
            q += (y[i] - mu) ** 2 / v[i]
        return max(0.0, (q - (n - 1)) / (sw - sw2 / sw)), True
    reml = method == 3
    ybar = 0.0
    for i in range(n):
        ybar += y[i]
    ybar /= n
    spread = 0.0
    vsum = 0.0
    for i in range(n):
        spread += (y[i] - ybar) ** 2
        vsum += v[i]
    t = spread / (n - 1) - vsum / n
    if not (t > 0.0):
        t = 0.0
    lo = 0.0
    hi = math.inf
    converged = False
    for _ in range(maxiter):
        sw, mu, _ = _weighted_mean(y, v, n, t)
        ypppy = 0.0
        wa = 0.0
        wa2 = 0.0
        sw2 = 0.0
        sw3 = 0.0
        for i in range(n):
            w = 1.0 / (v[i] + t)
            a = w * (y[i] - mu)
            ypppy += a * a
            wa += w * a
            wa2 += w * a * a
            sw2 += w * w
            sw3 += w * w * w
        yp3y = wa2 - wa * wa / sw
        if reml:
            a_term = sw - sw2 / sw
            b_term = sw2 - 2.0 * sw3 / sw + (sw2 / sw) ** 2
        else:
            a_term = sw
            b_term = sw2
        score = ypppy - a_term
        slope = b_term - 2.0 * yp3y
        if score > 0:
            lo = t
        else:
            hi = t
        step = -score / slope if slope < 0 else score / b_term
        new = t + step if math.isfinite(step) else t
        if not (lo <= new <= hi):
            new = 0.5 * (lo + hi) if math.isfinite(hi) else 2.0 * t + 1.0
        at_zero = t == 0.0 and score <= 0
        if at_zero:
            new = 0.0
        elif score == 0:
            new = t
        else:
            new = max(new, 0.0)
        collapsed = math.isfinite(hi) and hi - lo <= tol * max(1.0, hi)
        done = at_zero or score == 0 or abs(new - t) <= tol * max(1.0, new) or collapsed
        t = new
        if done:
            converged = True
            break
    if converged and t > tol and _loglik_kernel(y, v, n, 0.0, reml) - _loglik_kernel(y, v, n, t, reml) > 1e-10:
        t = 0.0
    return t, converged

@_jit
def _pool_rows_kernel(yi, vi, method, hksj, maxiter, tol, eps):
    rows, slots = yi.shape
    est = np.full(rows, np.nan)
    se = np.full(rows, np.nan)
    tau2 = np.full(rows, np.nan)
    k = np.zeros(rows, dtype=np.int64)
    conv = np.ones(rows, dtype=np.bool_)
    y = np.empty(slots)
    v = np.empty(slots)
    for r in range(rows):
        n = 0
        for j in range(slots):
            if math.isfinite(yi[r, j]) and math.isfinite(vi[r, j]):
                y[n] = yi[r, j]
                v[n] = vi[r, j]
                n += 1
        k[r] = n
        if n == 0:
            continue
        t, c = _tau2_kernel(y, v, n, method, maxiter, tol)
        conv[r] = c
        tau2[r] = t if n >= 2 else np.nan
        sw, mu, swy2 = _weighted_mean(y, v, n, t)
        est[r] = mu
        if hksj and n >= 2:
            rss = 0.0
            for i in range(n):
                rss += (y[i] - mu) ** 2 / (v[i] + t)
            if rss <= eps * max(1.0, swy2):
                se[r] = np.nan
            else:
                se[r] = math.sqrt(rss / (n - 1) / sw)
        else:
            se[r] = math.sqrt(1.0 / sw)
    return est, se, tau2, k, conv


#: seconds to compile the kernel without a cache (numba, measured: 4.4 s on a shared 2-core machine), to
#: load it from numba's on-disk cache in a new process (0.4 s), and the CPU cost of one row in the numpy
#: core and in the kernel, per study slot and fixed (measured at k = 5..40, REML/ML and the moment
#: estimators): the model behind :func:`worth_compiling`
COMPILE_SECONDS = 5.0
CACHE_LOAD_SECONDS = 0.5
_NUMPY_ROW_SECONDS = {"likelihood": (4.0e-6, 0.17e-6), "moment": (1.0e-6, 0.05e-6)}
_KERNEL_ROW_SECONDS = (0.1e-6, 0.08e-6)


def compiled() -> bool:
    """True when the kernel is compiled (or loaded from the cache) in this process."""
    return available() and bool(_pool_rows_kernel.signatures)


def cached_on_disk() -> bool:
    """True when numba's on-disk cache holds the kernel (a new process loads it instead of compiling:
    ``cache=True``); False when it cannot tell."""
    if not available():
        return False
    try:
        return Path(_pool_rows_kernel._cache._cache_file._index_path).is_file()
    except (AttributeError, TypeError, OSError):       # numba internals moved: assume a cold compile
        return False


def worth_compiling(fits, k, method="REML") -> bool:
    """Whether ``fits`` meta-analyses of ``k`` study slots with ``method`` are worth the compiled kernel:
    the CPU it saves over the numpy core (``fits * (numpy - kernel)`` seconds per row, from the measured
    costs above) must exceed what getting the kernel costs now: nothing when it is compiled in this
    process, :data:`CACHE_LOAD_SECONDS` when numba's cache has it, :data:`COMPILE_SECONDS` otherwise. A
    single fit, a leave-one-out or a small simulation never compiles; the default-sized report
    simulation compiles only when the cache will pay it back. False without numba or for a method the
    kernel does not cover."""
    if not available() or method not in KERNEL_METHODS:
        return False
    if compiled():
        return True
    base, per_slot = _NUMPY_ROW_SECONDS["likelihood" if method in ("ML", "REML") else "moment"]
    saved = float(fits) * ((base + per_slot * k) - (_KERNEL_ROW_SECONDS[0] + _KERNEL_ROW_SECONDS[1] * k))
    return saved > (CACHE_LOAD_SECONDS if cached_on_disk() else COMPILE_SECONDS)


#: rows per call of the compiled kernel: between calls Python sees Ctrl-C (and ``callback`` runs)
CHUNK_ROWS = 32_768


def _interrupt_in_chain(exc) -> bool:
    """True when ``exc`` was caused by a KeyboardInterrupt (numba wraps one that arrives inside compiled
    code in a chain of SystemErrors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _call_kernel(kernel, *args):
    """``kernel(*args)``; a Ctrl-C that numba turned into a SystemError surfaces as KeyboardInterrupt."""
    try:
        return kernel(*args)
    except SystemError as exc:
        if _interrupt_in_chain(exc):
            raise KeyboardInterrupt() from None
        raise


def _i2(y, v, tau2, k, method, i2_method, every=False, complete=False):
    """I² (percent) per row as :func:`pfps_meta.models.pooling.pool_batch` computes it: from tau² with the
    typical within-study variance ``v_typ = (k-1) sum w / ((sum w)^2 - sum w^2)``, ``w = 1/v`` (Higgins &
    Thompson 2002, eq. 9; metafor), or from Q, ``max(0, (Q - (k-1)) / Q)`` (RevMan, R meta; always for FE).
    NaN for k < 2. ``every``: no row has k < 2; ``complete``: no study is absent (the same numbers without
    the masks). Call it under ``np.errstate(invalid="ignore", divide="ignore")``."""
    if complete or (np.isfinite(y) & np.isfinite(v)).all():
        w, yz = 1.0 / v, y
    else:
        present = np.isfinite(y) & np.isfinite(v)
        w = np.where(present, 1.0 / np.where(present, v, 1.0), 0.0)
        yz = np.where(present, y, 0.0)
    sw = w.sum(axis=1)
    df = (k - 1 if every else np.maximum(k - 1, 0)).astype(float)
    if method == "FE" or i2_method == "q":
        mu = (w * yz).sum(axis=1) / sw
        q = np.maximum((w * (yz - mu[:, None]) ** 2).sum(axis=1), 0.0)
        out = np.maximum(0.0, 100.0 * (q - df) / q)
    else:
        v_typ = df * sw / (sw ** 2 - (w ** 2).sum(axis=1))
        out = 100.0 * tau2 / (v_typ + tau2)
    return out if every else np.where(k >= 2, out, np.nan)


def _t_crit(df, level):
    """``t_quantile(df, 0.5 + level / 2)`` for one df, remembered (the same value)."""
    crit = _T.get((df, level))
    if crit is None:
        crit = stdtrit(df, 0.5 + level / 2)
        if len(_T) < 512:
            _T[(df, level)] = crit
    return crit


def _one_row(y, v, out, method, hksj, level, z, i2_method):
    """:func:`pool_rows`' outputs for one complete row of 2 to ``SCALAR_MAX_K`` studies with a finite SE > 0:
    the same operations on scalars (numpy's for the scipy functions, Python floats for I² through
    :func:`pfps_meta.models.tau2.pairwise_sum`), so the same bits, without a dozen array calls; None for
    any other row (the array path then runs)."""
    est, se, tau2, k, conv = out
    e, s, kk = est[0], se[0], int(k[0])
    if not (2 <= kk == y.shape[1] <= SCALAR_MAX_K and 0.0 < s < math.inf):
        return None
    if method == "FE":
        tau2 = np.zeros(1)
    stat = e / s
    if hksj:
        df = np.float64(kk - 1)
        p = 2.0 * stdtr(df, -abs(stat))
        crit = _t_crit(df, level)
    else:
        p = 2.0 * ndtr(-abs(stat))
        crit = z
    half = crit * s
    w = [1.0 / x for x in v[0].tolist()]
    sw, df_q, t2 = pairwise_sum(w), float(kk - 1), float(tau2[0])
    if method == "FE" or i2_method == "q":
        mu = pairwise_sum([wi * yi for wi, yi in zip(w, y[0].tolist())]) / sw
        q = pairwise_sum([wi * ((yi - mu) * (yi - mu)) for wi, yi in zip(w, y[0].tolist())])
        q = q if q >= 0.0 or q != q else 0.0
        if q == 0.0:
            return None
        i2 = 100.0 * (q - df_q) / q
        i2 = i2 if i2 > 0.0 or i2 != i2 else 0.0
    else:
        v_typ = df_q * sw / (sw * sw - pairwise_sum([wi * wi for wi in w]))
        i2 = 100.0 * t2 / (v_typ + t2)
    return {"k": k, "estimate": est, "se": se, "statistic": np.array([stat]), "p": np.array([p]),
            "ci_low": np.array([e - half]), "ci_high": np.array([e + half]), "tau2": tau2, "i2": np.array([i2]),
            "converged": conv}


def pool_rows(yi, vi, method=None, ci_method=None, level=None, maxiter=None, *, settings=None, callback=None,
              chunk_rows=CHUNK_ROWS):
    """Pool every row of ``yi``/``vi`` (NaN = study absent) with the compiled kernel.

    ``method``, ``ci_method``, ``level`` and ``maxiter`` default to ``settings``
    (:data:`pfps_meta.conventions.DEFAULTS` when None: REML with a Wald CI); the I² rule is
    ``settings.i2_method``. Returns a dict of arrays: ``k, estimate, se, statistic, p, ci_low, ci_high, tau2,
    i2, converged`` with the meaning they have in :class:`pfps_meta.models.pooling.BatchResult` (HKSJ with
    t(k-1); k = 1 gets Wald z). Rows go to the kernel ``chunk_rows`` at a time; after each chunk
    ``callback(rows_done, rows_total)`` is called when given, and a Ctrl-C raises KeyboardInterrupt (as do
    exceptions from ``callback``, unchanged).
    """
    settings = settings if settings is not None else DEFAULTS
    method = settings.method if method is None else method
    ci_method = settings.ci_method if ci_method is None else ci_method
    level = settings.level if level is None else level
    maxiter = settings.maxiter if maxiter is None else maxiter
    if method in COUNT_METHODS:
        raise InputError(f"method: {method} pools 2x2 tables of counts (pfps_meta.pool on the counts); the "
                         f"compiled kernel pools study effects yi, vi with {', '.join(KERNEL_METHODS)}")
    if method not in KERNEL_METHODS:
        raise InputError(f"method: the compiled kernel covers {', '.join(KERNEL_METHODS)}; use pool_batch for "
                         f"{method}")
    if ci_method not in ("wald", "hksj"):
        raise InputError(f"ci_method: must be 'wald' or 'hksj' (got {ci_method!r})")
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise InputError(f"level: must lie strictly between 0 and 1 (got {level!r})")
    if not available():
        raise ImportError("the compiled kernel needs numba: pip install 'pfps-meta[fast]'")
    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    y = np.ascontiguousarray(y if y.ndim >= 2 else y.reshape(1, -1))
    v = np.ascontiguousarray(v if v.ndim >= 2 else v.reshape(1, -1))
    if y.shape != v.shape:
        raise InputError(f"vi: shape {v.shape} differs from yi's {y.shape}")
    hksj = ci_method == "hksj"
    rows = y.shape[0]
    step = max(1, int(chunk_rows))
    code = KERNEL_METHODS.index(method)
    z = _Z.get(level)
    if z is None:
        z = _Z.setdefault(level, ndtri(0.5 + level / 2)) if len(_Z) < 64 else ndtri(0.5 + level / 2)
    if rows <= step and callback is None:     # one chunk: no slicing, no concatenation
        est, se, tau2, k, conv = _call_kernel(_pool_rows_kernel, y, v, code, hksj, int(maxiter), 1e-12, _EPS)
        if rows == 1:
            one = _one_row(y, v, (est, se, tau2, k, conv), method, hksj, level, z, settings.i2_method)
            if one is not None:
                return one
    else:
        parts = []
        for start in range(0, max(rows, 1), step):
            parts.append(_call_kernel(_pool_rows_kernel, y[start:start + step], v[start:start + step], code, hksj,
                                      int(maxiter), 1e-12, _EPS))
            if callback is not None:
                callback(min(start + step, rows), rows)
        est, se, tau2, k, conv = (np.concatenate(column) for column in zip(*parts))
    multi = k >= 2
    every = bool(multi.all())           # no k < 2 row: the same numbers without the selections
    if method == "FE":
        tau2 = np.zeros(len(k)) if every else np.where(multi, 0.0, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = est / se
        if hksj and every:
            df = (k - 1).astype(float)
            p = 2.0 * stdtr(df, -np.abs(stat))
            crit = t_quantile(df, 0.5 + level / 2)
        elif hksj:
            df = np.where(multi, k - 1, np.nan)
            p = np.where(multi, 2.0 * stdtr(df, -np.abs(stat)), 2.0 * ndtr(-np.abs(stat)))
            crit = np.where(multi, t_quantile(df, 0.5 + level / 2), z)
        else:
            p = 2.0 * ndtr(-np.abs(stat))
            crit = z
        half = crit * se
        i2 = _i2(y, v, tau2, k, method, settings.i2_method, every, every and bool((k == y.shape[1]).all()))
    return {"k": k, "estimate": est, "se": se, "statistic": stat, "p": p, "ci_low": est - half,
            "ci_high": est + half, "tau2": tau2, "i2": i2, "converged": conv}
