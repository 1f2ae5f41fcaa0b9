"""Every tau² estimator, in two forms: intercept-only (vectorised over rows of a 2-D array) and with
moderators (one k x p design matrix). Their names, labels and methods text are the registry in
:mod:`pfps_meta.conventions`; :data:`IMPLEMENTATIONS` maps each name to its two functions here, and the
module refuses to import if the two lists differ. Adding an estimator: one row in
``conventions.TAU2_ESTIMATORS`` and its two functions in this module.

The model is ``y = X beta + u + e`` with ``u ~ N(0, tau2)`` and ``e ~ N(0, v_i)``; the intercept-only
model has ``X = 1``. Formulas follow metafor's ``rma.uni()`` (Viechtbauer 2005, 2010; Veroniki et al.
2016, Res Synth Methods 7:55-79, give them all in one place; Raudenbush 2009 for the moment estimators
with moderators):

- ``FE``   common (fixed) effect, tau2 = 0.
- ``DL``   DerSimonian & Laird (1986): ``max(0, (Q - (k-p)) / tr P_FE)``; intercept-only
  ``tr P_FE = sum w - sum w^2 / sum w``.
- ``HE``   Hedges (1983) method of moments: ``max(0, (y'P0y - tr(P0 V)) / (k-p))`` with the OLS
  projection ``P0``; intercept-only ``sum (y - ybar)^2 / (k-1) - mean(v)``.
- ``HS``   Hunter & Schmidt (2004): ``max(0, (Q - k) / sum w)``.
- ``SJ``   Sidik & Jonkman (2005): ``tau0 * Q(tau0) / (k-p)`` with ``tau0 = sum (y - ybar)^2 / k``.
- ``PM``   Paule & Mandel (1982): the root of ``Q(tau2) = k - p`` (0 if Q(0) < k - p).
- ``EB``   empirical Bayes (Morris 1983; Berkey et al. 1995). Its estimating equation,
  ``Q(tau2) k/(k-p) = k``, is Paule-Mandel's, so it is solved by the same root finder (metafor
  iterates a fixed point to the same root).
- ``ML``, ``REML`` maximum and restricted maximum likelihood (Viechtbauer 2005), started at max(0, HE),
  with metafor's check that the likelihood at tau2 = 0 is not higher than at the stationary point found.

Here ``Q(tau2) = y'Py`` with ``P = W - W X (X'WX)^-1 X'W``, ``W = diag(1/(v + tau2))`` is the generalised
Q statistic.
"""

from __future__ import annotations

import math
import re
import warnings
from operator import mul as _MUL

import numpy as np

from pfps_meta.conventions import TAU2_ESTIMATORS
from pfps_meta.errors import ConvergenceWarning

def row_sum(a):
    """``a.sum(axis=1)`` (the same reduction, so the same bits) without the method's Python wrapper: the
    single-fit path calls it thousands of times per second."""
    return _ADD_REDUCE(a, 1)


_ADD_REDUCE = np.add.reduce
_LOG_2PI = np.log(2 * np.pi)

#: one row of at most this many study slots is iterated on Python floats (numpy's call overhead, about
#: 1 us per call, dominates arrays this small); numpy's pairwise summation of up to 128 values is
#: reproduced term for term by :func:`pairwise_sum`, so both paths give the same bits (tests/test_fast.py)
SCALAR_MAX_K = 128


def _pairwise_expression(n):
    """numpy's pairwise order for ``n <= 128`` terms ``a0 ... a{n-1}`` as one Python expression: sequential
    from -0.0 below 8 terms; else eight interleaved partial sums (term ``j``, ``j + 8``, ... of the first
    ``n - n % 8``), combined as a tree ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``, then the tail."""
    if n < 8:
        return " + ".join(["-0.0"] + [f"a{i}" for i in range(n)])
    m = n - n % 8
    r = ["(" + " + ".join(f"a{i}" for i in range(j, m, 8)) + ")" for j in range(8)]
    tree = f"(({r[0]} + {r[1]}) + ({r[2]} + {r[3]})) + (({r[4]} + {r[5]}) + ({r[6]} + {r[7]}))"
    return " + ".join([f"({tree})"] + [f"a{i}" for i in range(m, n)])


_SUMMERS = {}


def summer(n):
    """A function summing a sequence of exactly ``n <= 128`` floats as :func:`pairwise_sum` does, compiled once
    per ``n`` as straight-line code (no loop, no indexing: a few times faster on the one-row paths)."""
    func = _SUMMERS.get(n)
    if func is None:
        names = "".join(f"a{i}, " for i in range(n))
        code = f"def _sum(a):\n    {names or '_'} = {'a' if n else '()'}\n    return {_pairwise_expression(n)}\n"
        scope = {}
        exec(compile(code, f"<pairwise sum of {n}>", "exec"), scope)     # noqa: S102 (generated above)
        func = _SUMMERS[n] = scope["_sum"]
    return func


def pairwise_sum(a):
    """``np.add.reduce`` of a list of at most 128 floats in numpy's order (pairwise_sum: sequential from
    -0.0 below 8 values, else eight interleaved partial sums combined as a tree, then the tail); see
    :func:`summer`."""
    func = _SUMMERS.get(len(a))
    return (func or summer(len(a)))(a)


def _scalar_row(y, v):
    """(y, v) of a one-row problem as Python float lists when the scalar path applies, else None."""
    if y.shape[0] != 1 or y.shape[1] > SCALAR_MAX_K:
        return None
    return y[0].tolist(), v[0].tolist()


def _sum_of(n, term):
    """:func:`_pairwise_expression` of ``n`` terms, term ``i`` written as ``term.format(i=i)``."""
    return re.sub(r"\ba(\d+)\b", lambda m: term.format(i=m.group(1)), _pairwise_expression(n))


def _unpack(n, name, source):
    return f"    {''.join(f'{name}{i}, ' for i in range(n)) or '_'} = {source if n else '()'}"


def _q_code(n):
    """Source of :func:`_q_scalar` for rows of ``n`` studies, in straight-line code on locals."""
    lines = ["def _q(y, v, t):", _unpack(n, "y", "y"), _unpack(n, "v", "v")]
    lines += [f"    w{i} = 1.0 / (v{i} + t)" for i in range(n)]
    lines.append(f"    mu = ({_sum_of(n, 'w{i} * y{i}')}) / ({_sum_of(n, 'w{i}')})")
    lines += [f"    r{i} = y{i} - mu\n    q{i} = w{i} * (r{i} * r{i})" for i in range(n)]
    lines.append(f"    return {_sum_of(n, 'q{i}')}, -({_sum_of(n, 'w{i} * q{i}')})")
    return "\n".join(lines) + "\n"


def _score_code(n):
    """Source of :func:`_score_scalar` for rows of ``n`` studies, in straight-line code on locals."""
    lines = ["def _score(y, v, t, reml):", _unpack(n, "y", "y"), _unpack(n, "v", "v")]
    lines += [f"    w{i} = 1.0 / (v{i} + t)" for i in range(n)]
    lines.append(f"    sum_w = {_sum_of(n, 'w{i}')}")
    lines.append(f"    mu = ({_sum_of(n, 'w{i} * y{i}')}) / sum_w")
    lines += [f"    a{i} = w{i} * (y{i} - mu)\n    b{i} = a{i} * a{i}\n    c{i} = w{i} * w{i}" for i in range(n)]
    lines.append(f"    wa = {_sum_of(n, 'w{i} * a{i}')}")
    lines.append(f"    yp3y = ({_sum_of(n, 'w{i} * b{i}')}) - wa * wa / sum_w")
    lines.append(f"    sum_w2 = {_sum_of(n, 'c{i}')}")
    lines.append("    if reml:\n        ratio = sum_w2 / sum_w\n        a_term = sum_w - ratio")
    lines.append(f"        b_term = sum_w2 - 2.0 * ({_sum_of(n, 'c{i} * w{i}')}) / sum_w + ratio * ratio")
    lines.append("    else:\n        a_term, b_term = sum_w, sum_w2")
    lines.append(f"    return ({_sum_of(n, 'b{i}')}) - a_term, b_term - 2.0 * yp3y, b_term")
    return "\n".join(lines) + "\n"


_GENERATED = {}
_CALLS = {}
#: calls of one function at one number of studies before it is compiled: compiling the straight-line
#: form costs about 1 ms at k = 14 (7 ms at k = 128) and saves 2-4 us per call, so it is compiled once the
#: calls so far have cost about what compiling does (a single fit never pays for it; a notebook does)
COMPILE_AFTER = 256


def _generated(kind, n):
    """The function ``kind`` ("q" or "score") for rows of ``n`` studies in straight-line code, compiled
    from :func:`_q_code` / :func:`_score_code` once it has been asked for :data:`COMPILE_AFTER` times
    (None before: the list form then runs). The same operations in the same order as the list form (so
    the same bits), without building a list per operation (about twice as fast at k = 14)."""
    key = (kind, n)
    func = _GENERATED.get(key)
    if func is None:
        calls = _CALLS[key] = _CALLS.get(key, 0) + 1
        if calls < COMPILE_AFTER:
            return None
        code = _q_code(n) if kind == "q" else _score_code(n)
        scope = {}
        exec(compile(code, f"<{kind} of {n} studies>", "exec"), scope)     # noqa: S102 (generated above)
        func = _GENERATED[key] = scope["_q" if kind == "q" else "_score"]
    return func


def _q_scalar(y, v, t):
    """:func:`generalised_q` of one row on Python floats, operation for operation (so the same bits):
    ``w = 1 / (v + t)``, ``mu = sum w y / sum w``, ``Q = sum w (y - mu)^2``, ``Q' = -sum w^2 (y - mu)^2``,
    every sum in numpy's pairwise order (straight-line code from :func:`_generated` once compiled)."""
    func = _GENERATED.get(("q", len(v))) or _generated("q", len(v))
    if func is not None:
        return func(y, v, t)
    add = summer(len(v))
    w = [1.0 / (vi + t) for vi in v]
    sum_w = add(w)
    mu = add(list(map(_MUL, w, y))) / sum_w
    wr2 = [wi * ((yi - mu) * (yi - mu)) for wi, yi in zip(w, y)]
    return add(wr2), -add(list(map(_MUL, w, wr2)))


def _score_scalar(y, v, t, reml):
    """The ``score_at`` of :func:`_likelihood_root` for one row on Python floats (the same operations;
    straight-line code from :func:`_generated` once compiled)."""
    func = _GENERATED.get(("score", len(v))) or _generated("score", len(v))
    if func is not None:
        return func(y, v, t, reml)
    add = summer(len(v))
    w = [1.0 / (vi + t) for vi in v]
    sum_w = add(w)
    mu = add(list(map(_MUL, w, y))) / sum_w
    a = [wi * (yi - mu) for wi, yi in zip(w, y)]
    a2 = list(map(_MUL, a, a))
    wa = add(list(map(_MUL, w, a)))
    yp3y = add(list(map(_MUL, w, a2))) - wa * wa / sum_w
    w2 = list(map(_MUL, w, w))
    sum_w2 = add(w2)
    if reml:
        ratio = sum_w2 / sum_w
        a_term = sum_w - ratio
        b_term = sum_w2 - 2.0 * add(list(map(_MUL, w2, w))) / sum_w + ratio * ratio
    else:
        a_term, b_term = sum_w, sum_w2
    return add(a2) - a_term, b_term - 2.0 * yp3y, b_term


def _at_least(x, floor):
    """``np.maximum(x, floor)`` for Python floats (NaN propagates, as there)."""
    return x if x >= floor or x != x else floor


def fit_at(y, v, tau2):
    """Weights, their sum, the weighted mean and residuals at the given tau2 (one per row).

    Absent studies have v = inf, hence w = 0: every weighted sum ignores them without masking.
    """
    w = 1.0 / (v + tau2[:, None])
    sum_w = row_sum(w)
    mu = row_sum(w * y) / sum_w
    resid = y - mu[:, None]
    return w, sum_w, mu, resid


def generalised_q(y, v, tau2):
    """``Q(tau2) = sum w (y - mu_w)^2`` and its derivative ``-sum w^2 (y - mu_w)^2``."""
    w, _, _, resid = fit_at(y, v, tau2)
    wr2 = w * resid ** 2
    return row_sum(wr2), -row_sum(w * wr2)


def solve_q(y, v, present, target, rtol=1e-12, maxiter=200):
    """Root in tau2 >= 0 of ``Q(tau2) = target`` for intercept-only rows (see :func:`decreasing_root`);
    one small row is iterated on Python floats (:func:`_solve_q_scalar`, the same steps and bits)."""
    row = _scalar_row(y, v)
    if row is not None:
        done = _solve_q_scalar(row[0], row[1], present[0].tolist(), float(np.ravel(target)[0]), rtol, maxiter)
        if done is not None:
            return done
    k = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ybar = np.where(present, y, 0).sum(axis=1) / k
        spread = np.where(present, (y - ybar[:, None]) ** 2, 0.0).sum(axis=1)
    rows = y.shape[0]

    def q_at(idx, t):                                   # no copy while every row is still iterating
        return generalised_q(y, v, t) if idx.size == rows else generalised_q(y[idx], v[idx], t)

    return decreasing_root(q_at, target, spread, v.min(axis=1), rtol=rtol, maxiter=maxiter)


def decreasing_root(q_at, target, spread, vmin, rtol=1e-12, maxiter=200):
    """Root in tau2 >= 0 of ``Q(tau2) = target`` for every row, where Q decreases in tau2 (Viechtbauer 2007).

    ``q_at(idx, tau2)`` returns Q and dQ/dtau2 for the rows ``idx``. ``spread`` is the unweighted residual
    sum of squares of each row (OLS fit), ``vmin`` its smallest sampling variance: since
    ``Q(t) <= spread / (vmin + t)``, ``Q(spread/target - vmin) <= target`` bounds the root from above.
    Rows where ``Q(0) <= target`` get 0. Newton steps on ``1/Q(tau2) - 1/target``, which is close to
    linear in tau2 (``Q ~ S / (tau2 + v)``), inside a bracket that every evaluation narrows; a step that
    leaves the bracket is replaced by bisection, so every row converges. Returns (root, converged, iters).
    """
    rows = len(spread)
    target = np.broadcast_to(np.asarray(target, dtype=float), (rows,))
    if rows == 1:
        return _decreasing_root_one(q_at, target, spread, vmin, rtol, maxiter)
    q0, _ = q_at(np.arange(rows), np.zeros(rows))
    active = q0 > target
    with np.errstate(invalid="ignore", divide="ignore"):
        hi = np.where(active, np.maximum(spread / target - vmin, 0.0) * (1 + 1e-9) + 1e-300, 0.0)
    lo = np.zeros(rows)
    converged = ~active
    iterations = np.zeros(rows, dtype=int)
    t = np.zeros(rows)
    for _ in range(maxiter):
        idx = np.flatnonzero(~converged)
        if idx.size == 0:
            break
        ti, tgt = t[idx], target[idx]
        q, dq = q_at(idx, ti)
        above = q > tgt
        lo_i = np.where(above, ti, lo[idx])
        hi_i = np.where(above, hi[idx], ti)
        with np.errstate(invalid="ignore", divide="ignore"):
            # g(t) = 1/Q - 1/target, g'(t) = -Q'/Q^2
            newton = ti - (1.0 / q - 1.0 / tgt) * q ** 2 / (-dq)
        inside = np.isfinite(newton) & (newton >= lo_i) & (newton <= hi_i)
        new = np.where(q == tgt, ti, np.where(inside, newton, 0.5 * (lo_i + hi_i)))
        lo[idx], hi[idx] = lo_i, hi_i
        t[idx] = new
        iterations[idx] += 1
        converged[idx] = ((np.abs(new - ti) <= rtol * np.maximum(new, 1e-300)) | (np.abs(q - tgt) <= rtol * tgt)
                          | (hi_i - lo_i <= rtol * hi_i))
    return np.where(active, t, 0.0), converged, iterations


_ONE_ROW = np.arange(1)


def _decreasing_root_one(q_at, target, spread, vmin, rtol, maxiter):
    """:func:`decreasing_root` for a single row, the same steps in the same floating-point operations on
    numpy scalars (so the same bits), without the per-iteration masking and indexing of many rows."""
    tgt = target[0]
    q0, _ = q_at(_ONE_ROW, np.zeros(1))
    active = bool(q0[0] > tgt)
    with np.errstate(invalid="ignore", divide="ignore"):
        hi = (np.maximum(spread[0] / tgt - vmin[0], 0.0) * (1 + 1e-9) + 1e-300) if active else np.float64(0.0)
        lo = np.float64(0.0)
        converged = not active
        iterations = 0
        t = np.float64(0.0)
        for _ in range(maxiter):
            if converged:
                break
            q, dq = q_at(_ONE_ROW, np.array([t]))
            q, dq = q[0], dq[0]
            if q > tgt:
                lo_i, hi_i = t, hi
            else:
                lo_i, hi_i = lo, t
            newton = t - (1.0 / q - 1.0 / tgt) * (q * q) / (-dq)
            inside = np.isfinite(newton) and lo_i <= newton <= hi_i
            new = t if q == tgt else (newton if inside else 0.5 * (lo_i + hi_i))
            lo, hi = lo_i, hi_i
            converged = bool((abs(new - t) <= rtol * np.maximum(new, 1e-300)) or (abs(q - tgt) <= rtol * tgt)
                             or (hi_i - lo_i <= rtol * hi_i))
            t = new
            iterations += 1
    return (np.array([t if active else 0.0]), np.array([converged]), np.array([iterations]))


def _q_start(y, v, present):
    """(spread, (Q(0), Q'(0)), smallest v) of one row on Python floats, as :func:`solve_q` computes them."""
    ybar = pairwise_sum([yi if p else 0.0 for yi, p in zip(y, present)]) / sum(present)
    spread = pairwise_sum([(yi - ybar) * (yi - ybar) if p else 0.0 for yi, p in zip(y, present)])
    return spread, _q_scalar(y, v, 0.0), min(v)


def solve_q_pair(y, v, present, first, second, rtol=1e-12, maxiter=200):
    """:func:`solve_q` for two targets (the two Q-profile bounds); one small row computes its spread and
    Q(0) once for both (the same bits)."""
    row = _scalar_row(y, v)
    if row is not None:
        flags = present[0].tolist()
        try:
            start = _q_start(row[0], row[1], flags)
        except (ZeroDivisionError, OverflowError):
            start = None
        done = [_solve_q_scalar(row[0], row[1], flags, float(np.ravel(t)[0]), rtol, maxiter, start)
                for t in (first, second)] if start is not None else [None]
        if all(d is not None for d in done):
            return done[0], done[1]
    return solve_q(y, v, present, first, rtol, maxiter), solve_q(y, v, present, second, rtol, maxiter)


def _solve_q_scalar(y, v, present, tgt, rtol, maxiter, start=None, floats=False):
    """:func:`solve_q` of one row on Python floats: the spread, the bracket and the steps of
    :func:`_decreasing_root_one` in the same order; None (the numpy path then runs) if a division by
    zero or an overflow would need numpy's inf/NaN arithmetic. ``start``: :func:`_q_start` of the row."""
    try:
        spread, at_zero, vmin = _q_start(y, v, present) if start is None else start
        active = at_zero[0] > tgt
        hi = _at_least(spread / tgt - vmin, 0.0) * (1 + 1e-9) + 1e-300 if active else 0.0
        lo, t, converged, iterations = 0.0, 0.0, not active, 0
        for _ in range(maxiter):
            if converged:
                break
            q, dq = at_zero if iterations == 0 else _q_scalar(y, v, t)      # the first step is at tau2 = 0
            lo_i, hi_i = (t, hi) if q > tgt else (lo, t)
            newton = t - (1.0 / q - 1.0 / tgt) * (q * q) / (-dq)
            inside = math.isfinite(newton) and lo_i <= newton <= hi_i
            new = t if q == tgt else (newton if inside else 0.5 * (lo_i + hi_i))
            lo, hi = lo_i, hi_i
            converged = (abs(new - t) <= rtol * _at_least(new, 1e-300) or abs(q - tgt) <= rtol * tgt
                         or hi_i - lo_i <= rtol * hi_i)
            t = new
            iterations += 1
    except (ZeroDivisionError, OverflowError):
        return None
    if floats:
        return t if active else 0.0, converged, iterations
    return np.array([t if active else 0.0]), np.array([converged]), np.array([iterations])


def _likelihood_root(y, v, present, k, init, reml, tol=1e-12, maxiter=1000):
    """ML/REML tau2 for intercept-only rows (see :func:`likelihood_root`).

    For the intercept-only model ``Py = w (y - mu_w)``, ``tr P = sum w - sum w^2 / sum w`` and
    ``tr PP = sum w^2 - 2 sum w^3 / sum w + (sum w^2 / sum w)^2``.
    """
    rows = y.shape[0]

    def score_at(idx, ti):
        every = idx.size == rows                        # no copy while every row is still iterating
        w, sum_w, _, resid = fit_at(y if every else y[idx], v if every else v[idx], ti)
        a = w * resid                                   # P y
        a2 = a * a
        ypppy = a2.sum(axis=1)
        wa = (w * a).sum(axis=1)
        yp3y = (w * a2).sum(axis=1) - wa ** 2 / sum_w   # (Py)' P (Py)
        w2 = w * w
        sum_w2 = w2.sum(axis=1)
        if reml:
            sum_w3 = (w2 * w).sum(axis=1)
            a_term = sum_w - sum_w2 / sum_w
            b_term = sum_w2 - 2.0 * sum_w3 / sum_w + (sum_w2 / sum_w) ** 2
        else:
            a_term, b_term = sum_w, sum_w2
        return ypppy - a_term, b_term - 2.0 * yp3y, b_term

    row = _scalar_row(y, v)
    scalar = None if row is None else (lambda t: _score_scalar(row[0], row[1], t, reml))

    def loglik_at(t):
        if row is not None:
            ll = _loglik_scalar(row[0], row[1], present[0].tolist(), float(k[0]), float(t[0]), reml)
            if ll is not None:
                return np.array([ll])
        return loglik_intercept(y, v, present, k, t, reml)

    return likelihood_root(score_at, loglik_at, init, tol=tol, maxiter=maxiter, scalar_score=scalar)


def _loglik_scalar(y, v, present, k, t, reml):
    """:func:`loglik_intercept` of one row on Python floats, for metafor's check of the likelihood at
    tau2 = 0 only (``math.log`` may differ from numpy's in the last bit, which moves no reported number:
    the check compares two log-likelihoods against a margin of 1e-10); None on a math error."""
    try:
        w = [1.0 / (vi + t) for vi in v]
        sum_w = pairwise_sum(w)
        mu = pairwise_sum([wi * yi for wi, yi in zip(w, y)]) / sum_w
        rss = pairwise_sum([wi * (yi - mu) * (yi - mu) for wi, yi in zip(w, y)])
        logdet = pairwise_sum([math.log(vi + t) if p else 0.0 for vi, p in zip(v, present)])
        if reml:
            return -0.5 * (k - 1) * _LOG_2PI - 0.5 * logdet - 0.5 * math.log(sum_w) - 0.5 * rss
        return -0.5 * k * _LOG_2PI - 0.5 * logdet - 0.5 * rss
    except (ZeroDivisionError, OverflowError, ValueError):
        return None


def likelihood_root(score_at, loglik_at, init, tol=1e-12, maxiter=1000, scalar_score=None):
    """Stationary point of the ML or REML likelihood in tau2 >= 0 for every row (Viechtbauer 2005).

    ``score_at(idx, tau2)`` returns, for the rows ``idx``, the score (up to a factor 1/2)
    ``S = y'PPy - A``, its derivative ``S' = -2 y'PPPy + B`` and the Fisher information ``B``, with
    ``P = W - W X (X'WX)^-1 X'W``, ``A = tr P`` and ``B = tr(PP)`` (REML) or ``A = sum w``, ``B = sum w^2``
    (ML); ``dP/dtau2 = -PP``. ``loglik_at(tau2)`` returns every row's log-likelihood.
    Newton steps where the likelihood is concave (S' < 0), metafor's Fisher-scoring step ``S / B``
    elsewhere, both kept inside a bracket [lo, hi] that every evaluation narrows (bisection when a step
    leaves it). Plain Fisher scoring, as metafor iterates it, can oscillate around the root for
    hundreds of iterations; the bracket removes that while converging to the same root. A negative
    score at tau2 = 0 ends at the boundary 0, as metafor's step halving does.
    Stops when ``|change| <= tol * max(1, tau2)``. ``scalar_score(tau2)``, when given for a single row,
    is ``score_at`` on Python floats (:func:`_likelihood_root_scalar`: the same steps and bits).
    """
    t = np.maximum(np.asarray(init, dtype=float), 0.0)
    rows = t.shape[0]
    done = None
    if rows == 1 and scalar_score is not None:
        done = _likelihood_root_scalar(scalar_score, float(t[0]), tol, maxiter)
    if done is not None:
        t, converged, iterations = done
    elif rows == 1:
        t, converged, iterations = _likelihood_root_one(score_at, t[0], tol, maxiter)
    else:
        t, converged, iterations = _likelihood_root_rows(score_at, t, tol, maxiter)
    # metafor's ll0check: keep tau2 = 0 when the likelihood there is higher than at the root found.
    candidates = converged & (t > tol)
    if not np.any(candidates):          # every root is already at the boundary: nothing to compare
        return t, converged, iterations
    ll_here = loglik_at(t)
    ll_zero = loglik_at(np.zeros_like(t))
    to_zero = candidates & (ll_zero - ll_here > 1e-10)
    if np.any(to_zero):
        warnings.warn(f"{int(to_zero.sum())} fit(s): the likelihood is higher at tau2 = 0 than at the "
                      "stationary point found; tau2 = 0 is used instead (as metafor does).",
                      ConvergenceWarning, stacklevel=3)
        t = np.where(to_zero, 0.0, t)
    return t, converged, iterations


def _likelihood_root_one(score_at, t, tol, maxiter):
    """The iteration of :func:`likelihood_root` for a single row: the same steps in the same floating-point
    operations on numpy scalars (so the same bits), without the masking and indexing of many rows."""
    lo = np.float64(0.0)
    hi = np.float64(np.inf)
    converged = False
    iterations = 0
    with np.errstate(invalid="ignore", divide="ignore"):
        for _ in range(maxiter):
            if converged:
                break
            score, slope, b_term = (value[0] for value in score_at(_ONE_ROW, np.array([t])))
            if score > 0:
                lo_i, hi_i = t, hi
            else:
                lo_i, hi_i = lo, t
            step = -score / slope if slope < 0 else score / b_term
            new = t + (step if np.isfinite(step) else 0.0)
            if not (lo_i <= new <= hi_i):
                new = 0.5 * (lo_i + hi_i) if np.isfinite(hi_i) else 2.0 * t + 1.0
            at_zero = t == 0 and score <= 0
            new = np.float64(0.0) if at_zero else (t if score == 0 else np.maximum(new, 0.0))
            lo, hi = lo_i, hi_i
            iterations += 1
            collapsed = np.isfinite(hi_i) and hi_i - lo_i <= tol * np.maximum(1.0, hi_i)
            converged = bool(at_zero or score == 0 or abs(new - t) <= tol * np.maximum(1.0, new) or collapsed)
            t = new
    return np.array([t], dtype=float), np.array([converged]), np.array([iterations])


def _likelihood_root_scalar(score, t, tol, maxiter, floats=False):
    """:func:`_likelihood_root_one` on Python floats (the same operations, so the same bits); None when a
    division by zero or an overflow would need numpy's inf/NaN arithmetic (the numpy loop then runs)."""
    lo, hi, converged, iterations = 0.0, math.inf, False, 0
    try:
        for _ in range(maxiter):
            if converged:
                break
            value, slope, b_term = score(t)
            lo_i, hi_i = (t, hi) if value > 0 else (lo, t)
            step = -value / slope if slope < 0 else (value / b_term if b_term != 0 else math.inf)
            new = t + (step if math.isfinite(step) else 0.0)
            if not (lo_i <= new <= hi_i):
                new = 0.5 * (lo_i + hi_i) if math.isfinite(hi_i) else 2.0 * t + 1.0
            at_zero = t == 0 and value <= 0
            new = 0.0 if at_zero else (t if value == 0 else _at_least(new, 0.0))
            lo, hi = lo_i, hi_i
            iterations += 1
            collapsed = math.isfinite(hi_i) and hi_i - lo_i <= tol * _at_least(hi_i, 1.0)
            converged = at_zero or value == 0 or abs(new - t) <= tol * _at_least(new, 1.0) or collapsed
            t = new
    except (ZeroDivisionError, OverflowError):
        return None
    if floats:
        return t, converged, iterations
    return np.array([t], dtype=float), np.array([converged]), np.array([iterations])


def _likelihood_root_rows(score_at, t, tol, maxiter):
    """The iteration of :func:`likelihood_root` over many rows at once (masking the converged ones)."""
    rows = t.shape[0]
    lo = np.zeros(rows)
    hi = np.full(rows, np.inf)
    converged = np.zeros(rows, dtype=bool)
    iterations = np.zeros(rows, dtype=int)
    for _ in range(maxiter):
        idx = np.flatnonzero(~converged)
        if idx.size == 0:
            break
        ti = t[idx]
        score, slope, b_term = score_at(idx, ti)
        lo_i = np.where(score > 0, ti, lo[idx])
        hi_i = np.where(score > 0, hi[idx], ti)
        with np.errstate(invalid="ignore", divide="ignore"):
            step = np.where(slope < 0, -score / slope, score / b_term)
        new = ti + np.where(np.isfinite(step), step, 0.0)
        outside = ~((new >= lo_i) & (new <= hi_i))
        bisect = np.where(np.isfinite(hi_i), 0.5 * (lo_i + hi_i), 2.0 * ti + 1.0)
        new = np.where(outside, bisect, new)
        at_zero = (ti == 0) & (score <= 0)              # boundary: likelihood decreasing at tau2 = 0
        new = np.where(at_zero, 0.0, np.where(score == 0, ti, np.maximum(new, 0.0)))
        lo[idx], hi[idx] = lo_i, hi_i
        t[idx] = new
        iterations[idx] += 1
        collapsed = np.isfinite(hi_i) & (hi_i - lo_i <= tol * np.maximum(1.0, hi_i))
        converged[idx] = at_zero | (score == 0) | (np.abs(new - ti) <= tol * np.maximum(1.0, new)) | collapsed
    return t, converged, iterations


def loglik_intercept(y, v, present, k, tau2, reml, at=None):
    """Log-likelihood of the intercept-only model (ML, or REML when ``reml``), as metafor's ``logLik``.
    ``at``: :func:`fit_at` of these rows at this tau2 when the caller has it already."""
    w, sum_w, _, resid = fit_at(y, v, tau2) if at is None else at
    rss = row_sum(w * resid * resid)
    if present.all():
        logdet = row_sum(np.log(v + tau2[:, None]))
    else:
        logdet = row_sum(np.where(present, np.log(np.where(present, v, 1.0) + tau2[:, None]), 0.0))
    if reml:
        return -0.5 * (k - 1) * _LOG_2PI - 0.5 * logdet - 0.5 * np.log(sum_w) - 0.5 * rss
    return -0.5 * k * _LOG_2PI - 0.5 * logdet - 0.5 * rss


def tau2_standard_error(vi, tau2, method) -> float:
    """SE of an intercept-only ML or REML tau2 from the Fisher information, as metafor's ``se.tau2``:
    ``sqrt(2 / sum w^2)`` (ML) or ``sqrt(2 / tr(PP))`` (REML) with
    ``tr(PP) = sum w^2 - 2 sum w^3 / sum w + (sum w^2 / sum w)^2``."""
    w = 1.0 / (np.asarray(vi, dtype=float) + tau2)
    s1, s2, s3 = w.sum(), (w ** 2).sum(), (w ** 3).sum()
    info = (s2 - 2 * s3 / s1 + (s2 / s1) ** 2) if method == "REML" else s2
    return float(math.sqrt(2.0 / info))


def fit_statistics(loglik, k, p, method, sat_loglik):
    """metafor's ``fitstats``: log-likelihood, deviance, AIC, BIC, AICc (arrays over rows).

    ``loglik`` is the REML log-likelihood for REML fits and the ML one otherwise (as metafor's
    ``logLik``); ``p`` counts the fixed effects, and tau2 adds one parameter unless the model is FE.
    Deviance: ``-2 ll`` for REML, ``-2 (ll - ll_saturated)`` for ML with
    ``ll_saturated = -(k log 2 pi + sum log v_i) / 2``. BIC and AICc use ``n = k - p`` for REML and ``k``
    otherwise: ``BIC = -2 ll + q log n``, ``AICc = -2 ll + 2 q max(n, q + 2) / (max(n, q + 2) - q - 1)``.
    """
    q = p + (0 if method == "FE" else 1)
    n = k - p if method == "REML" else k
    deviance = -2.0 * loglik if method == "REML" else -2.0 * (loglik - sat_loglik)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.maximum(n, q + 2)
        return {"loglik": loglik, "deviance": deviance, "aic": -2.0 * loglik + 2.0 * q,
                "bic": -2.0 * loglik + q * np.log(n), "aicc": -2.0 * loglik + 2.0 * q * m / (m - q - 1)}


def intercept_fit_statistics(y, v, present, k, tau2, method, at=None):
    """:func:`fit_statistics` of intercept-only rows (metafor's REML log-likelihood includes
    ``+ log|X'X| / 2 = log(k) / 2``); ``at`` as in :func:`loglik_intercept`."""
    with np.errstate(invalid="ignore", divide="ignore"):
        reml = method == "REML"
        ll = loglik_intercept(y, v, present, k, tau2, reml, at)
        if reml:
            ll = ll + 0.5 * np.log(k)
        logs = np.log(v) if present.all() else np.where(present, np.log(np.where(present, v, 1.0)), 0.0)
        sat = -0.5 * (k * _LOG_2PI + row_sum(logs))
        return fit_statistics(ll, k, 1, method, sat)


# ------------------------------------------------------------------------------------------------
# intercept-only estimators: f(y, v, present, k, maxiter) -> (tau2, converged, iterations), per row


def _spread(y, present, k):
    ybar = np.where(present, y, 0.0).sum(axis=1) / k
    return np.where(present, (y - ybar[:, None]) ** 2, 0.0).sum(axis=1)


def _done(tau2):
    rows = tau2.shape[0]
    return tau2, np.ones(rows, dtype=bool), np.zeros(rows, dtype=int)


def _fe(y, v, present, k, maxiter):
    return _done(np.zeros(y.shape[0]))


def _dl(y, v, present, k, maxiter):
    q, _ = generalised_q(y, v, np.zeros(y.shape[0]))
    w = 1.0 / v
    sum_w = w.sum(axis=1)
    return _done(np.maximum((q - (k - 1)) / (sum_w - (w ** 2).sum(axis=1) / sum_w), 0.0))


def _hs(y, v, present, k, maxiter):
    q, _ = generalised_q(y, v, np.zeros(y.shape[0]))
    return _done(np.maximum((q - k) / (1.0 / v).sum(axis=1), 0.0))


def _hedges(y, v, present, k):
    return _spread(y, present, k) / (k - 1) - np.where(present, v, 0.0).sum(axis=1) / k


def _he(y, v, present, k, maxiter):
    return _done(np.maximum(_hedges(y, v, present, k), 0.0))


def _sj(y, v, present, k, maxiter):
    tau0 = _spread(y, present, k) / k
    q, _ = generalised_q(y, v, tau0)
    return _done(np.maximum(tau0 * q / (k - 1), 0.0))


def _pm(y, v, present, k, maxiter):
    return solve_q(y, v, present, (k - 1).astype(float), maxiter=maxiter)


def _likelihood(reml):
    def estimator(y, v, present, k, maxiter):
        he = _hedges(y, v, present, k)
        return _likelihood_root(y, v, present, k, np.where(np.isfinite(he), he, 0.0), reml, maxiter=maxiter)
    return estimator


def estimate_one_row(y, v, method, maxiter, spread, q0, sum_w0):
    """tau2 of one complete row (``y``, ``v``: lists of 2 to :data:`SCALAR_MAX_K` Python floats, nothing
    absent) for every method but DL and FE, as :func:`estimate_intercept_only` computes it: the same
    operations in the same order (so the same bits), without arrays. ``spread = sum (y - ybar)^2``,
    ``q0 = (Q(0), Q'(0))`` and ``sum_w0 = sum 1/v`` are the caller's (the fixed-effect sums). Returns
    ``(tau2, converged, iterations)`` as Python values, or None when a division by zero or an overflow
    would need numpy's inf/NaN arithmetic (the array path then runs)."""
    k = len(y)
    if method == "HS":
        return _at_least((q0[0] - k) / sum_w0, 0.0), True, 0
    if method in ("PM", "EB"):
        return _solve_q_scalar(y, v, None, float(k - 1), 1e-12, maxiter, (spread, q0, min(v)), floats=True)
    he = spread / (k - 1) - pairwise_sum(v) / k
    if method == "HE":
        return _at_least(he, 0.0), True, 0
    if method == "SJ":
        tau0 = spread / k
        return _at_least(tau0 * _q_scalar(y, v, tau0)[0] / (k - 1), 0.0), True, 0
    reml = method == "REML"
    done = _likelihood_root_scalar(lambda t: _score_scalar(y, v, t, reml),
                                   _at_least(he if math.isfinite(he) else 0.0, 0.0), 1e-12, maxiter, floats=True)
    if done is None:
        return None
    t, converged, iterations = float(done[0]), bool(done[1]), int(done[2])
    if converged and t > 1e-12:          # metafor's ll0check, as likelihood_root
        flags = [True] * k
        ll_here = _loglik_scalar(y, v, flags, float(k), t, reml)
        ll_zero = _loglik_scalar(y, v, flags, float(k), 0.0, reml)
        if ll_here is None or ll_zero is None:
            return None
        if ll_zero - ll_here > 1e-10:
            warnings.warn("1 fit(s): the likelihood is higher at tau2 = 0 than at the stationary point found; "
                          "tau2 = 0 is used instead (as metafor does).", ConvergenceWarning, stacklevel=4)
            t = 0.0
    return t, converged, iterations


def q_profile_row(y, v, first, second, start):
    """:func:`solve_q_pair` of one complete row on Python floats (``start``: :func:`_q_start`'s
    ``(spread, (Q(0), Q'(0)), min v)``, which the caller has): ``((low, converged), (high, converged))``
    or None (the array path then runs)."""
    out = []
    for target in (first, second):
        done = _solve_q_scalar(y, v, None, target, 1e-12, 200, start, floats=True)
        if done is None:
            return None
        out.append((float(done[0]), bool(done[1])))
    return out


def estimate_intercept_only(y, v, present, k, method, maxiter=1000):
    """tau2 of every row of prepared (rows x slots) arrays (absent studies: y = 0, v = inf)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return IMPLEMENTATIONS[method][0](y, v, present, k, maxiter)


# ------------------------------------------------------------------------------------------------
# helpers with a design matrix


def weighted_fit_mods(y, v, X, tau2):
    """Weights, (X'WX)^-1, beta and residuals at one tau2."""
    w = 1.0 / (v + tau2)
    xtwx_inv = np.linalg.inv(X.T @ (w[:, None] * X))
    beta = xtwx_inv @ (X.T @ (w * y))
    return w, xtwx_inv, beta, y - X @ beta


def q_mods(y, v, X, tau2):
    """``Q(tau2) = y'Py`` and its derivative ``-y'PPy``."""
    w, _, _, r = weighted_fit_mods(y, v, X, tau2)
    return float(np.sum(w * r ** 2)), -float(np.sum((w * r) ** 2))


def _score(y, v, X, tau2, reml):
    """(score, slope, information) of the ML or REML likelihood at tau2 (see ``likelihood_root``)."""
    w, m, _, r = weighted_fit_mods(y, v, X, tau2)
    a = w * r                                   # P y
    xwa = X.T @ (w * a)
    yp3y = float(np.sum(w * a ** 2) - xwa @ m @ xwa)
    ypppy = float(np.sum(a ** 2))
    if reml:
        xw2x = X.T @ ((w ** 2)[:, None] * X)
        xw3x = X.T @ ((w ** 3)[:, None] * X)
        tr_p = float(np.sum(w) - np.trace(m @ xw2x))
        tr_pp = float(np.sum(w ** 2) - 2 * np.trace(m @ xw3x) + np.trace(m @ xw2x @ m @ xw2x))
        a_term, b_term = tr_p, tr_pp
    else:
        a_term, b_term = float(np.sum(w)), float(np.sum(w ** 2))
    return ypppy - a_term, b_term - 2 * yp3y, b_term


def loglik_mods(y, v, X, tau2, reml):
    w, m, _, r = weighted_fit_mods(y, v, X, tau2)
    k, p = X.shape
    rss = float(np.sum(w * r ** 2))
    ll = -0.5 * np.sum(np.log(v + tau2)) - 0.5 * rss
    if reml:
        return ll - 0.5 * (k - p) * math.log(2 * math.pi) + 0.5 * np.linalg.slogdet(m)[1]
    return ll - 0.5 * k * math.log(2 * math.pi)


# ------------------------------------------------------------------------------------------------
# estimators with moderators: f(y, v, X, maxiter) -> (tau2, converged, iterations)


def _ols_hedges(y, v, X):
    k, p = X.shape
    xtx_inv = np.linalg.inv(X.T @ X)
    resid_ols = y - X @ (xtx_inv @ (X.T @ y))
    rss_ols = float(np.sum(resid_ols ** 2))
    return rss_ols, (rss_ols - (np.sum(v) - np.trace(xtx_inv @ (X.T @ (v[:, None] * X))))) / (k - p)


def _fe_mods(y, v, X, maxiter):
    return 0.0, True, 0


def _dl_mods(y, v, X, maxiter):
    k, p = X.shape
    w = 1.0 / v
    xtwx_inv = np.linalg.inv(X.T @ (w[:, None] * X))
    tr_p = float(np.sum(w) - np.trace(xtwx_inv @ (X.T @ ((w ** 2)[:, None] * X))))
    return max(0.0, (q_mods(y, v, X, 0.0)[0] - (k - p)) / tr_p), True, 0


def _hs_mods(y, v, X, maxiter):
    k = X.shape[0]
    return max(0.0, (q_mods(y, v, X, 0.0)[0] - k) / float(np.sum(1.0 / v))), True, 0


def _he_mods(y, v, X, maxiter):
    return max(0.0, _ols_hedges(y, v, X)[1]), True, 0


def _sj_mods(y, v, X, maxiter):
    k, p = X.shape
    tau0 = float(np.var(y, ddof=1) * (k - 1) / k)
    return tau0 * q_mods(y, v, X, tau0)[0] / (k - p), True, 0


def _pm_mods(y, v, X, maxiter):
    k, p = X.shape
    rss_ols, _ = _ols_hedges(y, v, X)
    root, conv, it = decreasing_root(lambda idx, t: tuple(np.array([c]) for c in q_mods(y, v, X, float(t[0]))),
                                     float(k - p), np.array([rss_ols]), np.array([v.min()]), maxiter=200)
    return float(root[0]), bool(conv[0]), int(it[0])


def _likelihood_mods(reml):
    def estimator(y, v, X, maxiter):
        he = _ols_hedges(y, v, X)[1]
        root, conv, it = likelihood_root(
            lambda idx, t: tuple(np.array([c]) for c in _score(y, v, X, float(t[0]), reml)),
            lambda t: np.array([loglik_mods(y, v, X, float(t[0]), reml)]), np.array([max(0.0, he)]),
            maxiter=maxiter)
        return float(root[0]), bool(conv[0]), int(it[0])
    return estimator


def estimate_tau2_mods(y, v, X, method, maxiter=1000):
    """tau2 of a meta-regression; returns (tau2, converged, iterations)."""
    return IMPLEMENTATIONS[method][1](y, v, X, maxiter)


IMPLEMENTATIONS = {
    "FE": (_fe, _fe_mods),
    "DL": (_dl, _dl_mods),
    "REML": (_likelihood(True), _likelihood_mods(True)),
    "ML": (_likelihood(False), _likelihood_mods(False)),
    "PM": (_pm, _pm_mods),
    "SJ": (_sj, _sj_mods),
    "HE": (_he, _he_mods),
    "EB": (_pm, _pm_mods),
    "HS": (_hs, _hs_mods),
}
if set(IMPLEMENTATIONS) != set(TAU2_ESTIMATORS):
    raise ImportError("pfps_meta.models.tau2: the implementations and conventions.TAU2_ESTIMATORS name different "
                      f"estimators: {sorted(set(IMPLEMENTATIONS) ^ set(TAU2_ESTIMATORS))}")
