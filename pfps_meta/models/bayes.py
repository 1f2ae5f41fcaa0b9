"""Exact Bayesian random-effects meta-analysis: the normal-normal hierarchical model by quadrature.

Model (Röver 2020, J Stat Softw 93(6), Sec. 2; the model of R bayesmeta)::

    y_i | theta_i ~ N(theta_i, v_i),   theta_i | mu, tau ~ N(mu, tau²),   tau ~ p(tau),
    mu ~ flat  or  N(m0, s0²)  (independent of tau).

Given tau, everything is normal (Röver 2020, eqs. 6-11): with ``w_i = 1 / (v_i + tau²)``, ``P = sum w_i``
(``+ 1/s0²`` for a normal prior) the conditional posterior of mu is ``N(m(tau), 1/P)``,
``m(tau) = (sum w_i y_i [+ m0/s0²]) / P``, and the marginal likelihood of tau is

    log L(tau) = const + 1/2 sum log w_i - 1/2 log P - 1/2 [sum w_i (y_i - m)² (+ (m - m0)²/s0²)].

The marginal posterior of ``u = log tau``, ``p(u | y) ∝ p_u(u) L(e^u)``, is smooth in u, so it is
integrated numerically over u (composite Gauss-Legendre on a range found per meta-analysis; below
``tau_min = 1e-5 min_i sqrt(v_i)`` the likelihood equals L(0) to ~1e-10 and that part is one point mass
with the prior's own probability). Every marginal of mu, of a new trial's effect
``theta_new | tau, y ~ N(m, 1/P + tau²)`` and of a study's shrunken effect
``theta_i | tau, y ~ N(b_i m + (1 - b_i) y_i, (1 - b_i) v_i + b_i² / P)``, ``b_i = v_i / (v_i + tau²)``,
is then a finite mixture of normals, whose CDF is exact up to the quadrature; quantiles solve the CDF by
safeguarded Newton steps, tau's CDF integrates the per-panel interpolating polynomial. The grid is fixed
per row, so :func:`bayes_batch` runs many meta-analyses at once (the simulation engine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.polynomial import legendre
from scipy import special

from pfps_meta.errors import InputError
from pfps_meta.formatting import json_ready, render
from pfps_meta.models.pooling import as_float_array
from pfps_meta.models.priors import Prior, check_measure, parse_prior

#: Gauss-Legendre nodes per panel and panels over the posterior's range of log tau
NODES = 12
PANELS = 20
#: points of the coarse scan that finds where the posterior of log tau lives
SCAN = 160
#: log-density drop (from the maximum) below which the posterior of log tau counts as zero
DROP = 36.0
#: tau below TAU_MIN_FACTOR * min(sqrt(v_i)) is one point mass (L(tau) = L(0) there to ~1e-10)
TAU_MIN_FACTOR = 1e-5

_XI, _WI = legendre.leggauss(NODES)
_FIT = np.linalg.inv(legendre.legvander(_XI, NODES - 1))             # values -> Legendre coefficients
_INT = np.stack([legendre.legint(np.eye(NODES)[j], lbnd=-1) for j in range(NODES)], axis=1)  # (n+1, n)
# the same polynomials in the power basis (values -> coefficients of eta^0..eta^n), evaluated by Horner
_POW = np.stack([np.pad(legendre.leg2poly(c), (0, NODES + 1 - len(legendre.leg2poly(c))))
                 for c in np.eye(NODES + 1)], axis=1)                                              # (n+1, n+1)
_POW_FIT = _POW[:NODES, :NODES] @ _FIT                                                             # (n, n)
_POW_ANTI = _POW @ _INT @ _FIT                                                                     # (n+1, n)


def _horner(coef, x):
    """sum_j coef[:, j] x^j per row."""
    out = coef[:, -1].copy()
    for j in range(coef.shape[1] - 2, -1, -1):
        out = out * x + coef[:, j]
    return out
_LOG2PI = math.log(2.0 * math.pi)
_EPS = float(np.finfo(float).eps)

METHOD_TEXT = (f"exact posterior by quadrature over log(tau) ({PANELS} panels x {NODES}-point Gauss-Legendre on "
               "the range holding the posterior; closed-form normal conditionals for mu given tau)")


@dataclass(frozen=True)
class MuPrior:
    """The prior of mu: flat (``mean=None``) or normal(mean, sd)."""

    mean: float | None = None
    sd: float | None = None

    def __post_init__(self):
        if (self.mean is None) != (self.sd is None):
            raise InputError("mu prior: give both mean and sd (normal) or neither (flat)")
        if self.sd is not None:
            for name, value in (("mean", self.mean), ("sd", self.sd)):
                if not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise InputError(f"mu prior: {name} must be a finite number, not {value!r}")
            if self.sd <= 0:
                raise InputError(f"mu prior: sd must be > 0, not {self.sd:g}")

    @property
    def proper(self) -> bool:
        return self.sd is not None

    @property
    def label(self) -> str:
        return f"normal({self.mean:g}, {self.sd:g})" if self.proper else "flat (improper uniform)"


def _mu_prior(value) -> MuPrior:
    if value is None or isinstance(value, MuPrior):
        return value or MuPrior()
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return MuPrior(float(value[0]), float(value[1]))
    raise InputError(f"mu_prior: give None (flat) or (mean, sd) of a normal prior, not {value!r}")


# ------------------------------------------------------------------------------------------------
# the conditional model given tau


def _conditional(y, v, tau2, mu_prior: MuPrior):
    """log L(tau), m(tau), 1/P(tau) for y, v of shape (R, k) and tau2 of shape (R, N)."""
    w = 1.0 / (v[:, None, :] + tau2[:, :, None])
    P = w.sum(-1)
    swy = (w * y[:, None, :]).sum(-1)
    k = y.shape[1]
    if mu_prior.proper:
        p0 = 1.0 / mu_prior.sd ** 2
        P = P + p0
        m = (swy + p0 * mu_prior.mean) / P
        q = (w * (y[:, None, :] - m[:, :, None]) ** 2).sum(-1) + p0 * (m - mu_prior.mean) ** 2
        loglik = -0.5 * k * _LOG2PI + 0.5 * np.log(w).sum(-1) + 0.5 * math.log(p0) - 0.5 * np.log(P) - 0.5 * q
    else:
        m = swy / P
        q = (w * (y[:, None, :] - m[:, :, None]) ** 2).sum(-1)
        loglik = -0.5 * (k - 1) * _LOG2PI + 0.5 * np.log(w).sum(-1) - 0.5 * np.log(P) - 0.5 * q
    return loglik, m, 1.0 / P


@dataclass
class _Grid:
    """The quadrature of a block of meta-analyses: component 0 is the point mass at tau_min."""

    tau: np.ndarray          # (R, N+1)
    W: np.ndarray            # (R, N+1) posterior weights, summing to 1 per row
    m: np.ndarray            # (R, N+1) E[mu | tau, y]
    V: np.ndarray            # (R, N+1) Var[mu | tau, y]
    log_z: np.ndarray        # (R,) log of the normalising constant (marginal likelihood for a proper mu prior)
    loglik0: np.ndarray      # (R,) log L(tau = 0)
    edges: np.ndarray        # (R, PANELS+1) panel edges in log tau
    f: np.ndarray            # (R, PANELS, NODES) normalised posterior density of log tau at the nodes
    cum: np.ndarray          # (R, PANELS+1) posterior CDF of log tau at the edges
    tau_min: np.ndarray      # (R,)
    prior_min: np.ndarray    # (R,) prior CDF at tau_min
    heavy_tail: np.ndarray   # (R,) tau² p(u) still not negligible at the end of the search range


def _build_grid(y, v, prior: Prior, mu_prior: MuPrior) -> _Grid:
    R, k = y.shape
    tau_min = TAU_MIN_FACTOR * np.sqrt(v.min(axis=1))
    u_lo = np.log(tau_min)
    spread = np.ptp(y, axis=1) + np.sqrt(v.max(axis=1))
    u_top = np.log(spread) + DROP / max(k - (0 if mu_prior.proper else 1), 1) + 3.0
    prior_hi = float(np.log(prior.quantile_tau(1.0 - 1e-15))) if prior.upper_tau == math.inf else \
        math.log(prior.upper_tau)
    capped_by_prior = u_top >= prior_hi
    u_top = np.maximum(np.minimum(u_top, prior_hi), u_lo + 1.0)
    t = np.linspace(0.0, 1.0, SCAN)
    u_scan = u_lo[:, None] + (u_top - u_lo)[:, None] * t[None, :]
    ll_scan, _, _ = _conditional(y, v, np.exp(2.0 * u_scan), mu_prior)
    ld_scan = prior.log_density_logtau(u_scan) + ll_scan
    peak = ld_scan.max(axis=1)
    if not np.all(np.isfinite(peak)):
        bad = int(np.flatnonzero(~np.isfinite(peak))[0])
        raise InputError(f"meta-analysis {bad + 1}: the posterior of tau does not integrate (its density is not "
                         "finite anywhere on the search range; check the prior and the data)")
    keep = ld_scan > (peak - DROP)[:, None]
    first = np.argmax(keep, axis=1)
    last = SCAN - 1 - np.argmax(keep[:, ::-1], axis=1)
    open_top = (last == SCAN - 1) & ~capped_by_prior
    if np.any(open_top):
        bad = int(np.flatnonzero(open_top)[0])
        raise InputError(f"meta-analysis {bad + 1}: the posterior of tau does not integrate numerically: it is "
                         f"still non-negligible at tau = {math.exp(u_top[bad]):.3g} (with k = {k} the likelihood "
                         "barely decays in tau; use a prior with a lighter tail or a proper prior for mu)")
    # the moments of tau² (tau's SD, theta_new's variance) weight the upper tail by tau² = e^(2u): under a
    # heavy-tailed prior that tail decays slowly, so the range extends until tau² p(u) is negligible too
    moment = ld_scan + 2.0 * u_scan
    keep2 = moment > (moment.max(axis=1) - DROP)[:, None]
    last2 = SCAN - 1 - np.argmax(keep2[:, ::-1], axis=1)
    heavy = (last2 == SCAN - 1) & ~capped_by_prior
    last = np.maximum(last, last2)
    rows = np.arange(R)
    u_a = u_scan[rows, np.maximum(first - 1, 0)]
    u_b = u_scan[rows, np.minimum(last + 1, SCAN - 1)]
    edges = u_a[:, None] + (u_b - u_a)[:, None] * np.linspace(0.0, 1.0, PANELS + 1)[None, :]
    half = 0.5 * (edges[:, 1:] - edges[:, :-1])                            # (R, P)
    mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
    u = (mid[:, :, None] + half[:, :, None] * _XI[None, None, :]).reshape(R, -1)
    qw = (half[:, :, None] * _WI[None, None, :]).reshape(R, -1)
    tau = np.exp(u)
    ll, m, V = _conditional(y, v, tau ** 2, mu_prior)
    ld = prior.log_density_logtau(u) + ll
    prior_min = np.asarray(prior.cdf_tau(tau_min), dtype=float)
    ll_min, m_min, V_min = _conditional(y, v, (tau_min ** 2)[:, None], mu_prior)
    with np.errstate(divide="ignore"):
        ld0 = np.log(prior_min) + ll_min[:, 0]
    top = np.maximum(ld.max(axis=1), ld0)
    dens = np.exp(ld - top[:, None])
    mass0 = np.exp(ld0 - top)
    z_rel = (qw * dens).sum(axis=1) + mass0
    if not np.all(np.isfinite(z_rel) & (z_rel > 0)):
        bad = int(np.flatnonzero(~(np.isfinite(z_rel) & (z_rel > 0)))[0])
        raise InputError(f"meta-analysis {bad + 1}: the posterior of tau does not integrate (normalising constant "
                         f"{z_rel[bad]!r})")
    W = np.concatenate([(mass0 / z_rel)[:, None], qw * dens / z_rel[:, None]], axis=1)
    f = (dens / z_rel[:, None]).reshape(R, PANELS, NODES)
    panel_mass = (qw.reshape(R, PANELS, NODES) * f).sum(axis=2)
    cum = np.concatenate([W[:, :1], W[:, :1] + np.cumsum(panel_mass, axis=1)], axis=1)
    ll0, _, _ = _conditional(y, v, np.zeros((R, 1)), mu_prior)
    return _Grid(tau=np.concatenate([tau_min[:, None], tau], axis=1), W=W,
                 m=np.concatenate([m_min, m], axis=1), V=np.concatenate([V_min, V], axis=1),
                 log_z=top + np.log(z_rel), loglik0=ll0[:, 0], edges=edges, f=f, cum=cum, tau_min=tau_min,
                 prior_min=prior_min, heavy_tail=heavy)


# ------------------------------------------------------------------------------------------------
# marginals: normal mixtures (mu, theta_new, theta_i) and tau


def _mix_cdf(W, m, s, x):
    return (W * special.ndtr((x[:, None] - m) / s)).sum(axis=1)


def _mix_pdf(W, m, s, x):
    z = (x[:, None] - m) / s
    return (W * np.exp(-0.5 * z * z) / (s * math.sqrt(2.0 * math.pi))).sum(axis=1)


def _mix_moments(W, m, s):
    mean = (W * m).sum(axis=1)
    var = (W * (s * s + m * m)).sum(axis=1) - mean ** 2
    return mean, np.sqrt(np.maximum(var, 0.0))


def _mix_quantile(W, m, s, p):
    """Quantile of sum_j W_j N(m_j, s_j²) at probability p (array per row): Newton steps inside a bracket."""
    p = np.broadcast_to(np.asarray(p, dtype=float), (W.shape[0],))
    return _mix_quantiles(W, m, s, p[None, :])[0]


def _mix_quantiles(W, m, s, P, start=None, rounding_stop=False):
    """:func:`_mix_quantile` at G probability vectors at once (``P`` of shape (G, rows); returns (G, rows)).

    Each group g iterates as one call ``_mix_quantile(W, m, s, P[g])`` would: Newton steps
    ``x <- x - (F(x) - p) / f(x)`` kept inside the bracket [lo, hi] (bisection when a step leaves it),
    until every row of the group moved by at most 1e-13 x max(|mean|, sd); a group that is done drops out
    of the loop, so the numbers are those of separate calls (the mixture's CDF and density share
    ``z = (x - m_j) / s_j``). ``start`` (G, rows): first iterates (quantiles at nearby probabilities)
    instead of the normal approximation ``mean + Phi^-1(p) sd``. ``rounding_stop``: a row with p > 1/2
    also counts as done once ``|F(x) - p| <= 8 eps``, as close as F (a sum near 1, known to a few eps)
    can tell; far in the upper tail (p within ~1e-7 of 1, where the density is tiny) x otherwise jitters
    at that level for all 200 steps without meeting the step tolerance."""
    P = np.asarray(P, dtype=float)
    G, rows = P.shape
    mean, sd = _mix_moments(W, m, s)
    x = mean + special.ndtri(np.clip(P, 1e-300, 1 - 1e-16)) * sd if start is None else np.array(start, dtype=float)
    lo = np.repeat((m - 40.0 * s).min(axis=1)[None, :], G, axis=0)
    hi = np.repeat((m + 40.0 * s).max(axis=1)[None, :], G, axis=0)
    scale = np.maximum(np.abs(mean), sd)
    norm = s * math.sqrt(2.0 * math.pi)
    active = np.arange(G)
    for _ in range(200):
        xa, pa, la, ha = x[active], P[active], lo[active], hi[active]
        z = ((xa[:, :, None] - m) / s).reshape(-1, m.shape[1])
        Wz = np.broadcast_to(W, (len(active),) + W.shape).reshape(z.shape)
        F = (Wz * special.ndtr(z)).sum(axis=1).reshape(xa.shape)
        below = F < pa
        la = np.where(below, xa, la)
        ha = np.where(below, ha, xa)
        dens = (Wz * np.exp(-0.5 * z * z) / np.broadcast_to(norm, (len(active),) + norm.shape).reshape(z.shape)
                ).sum(axis=1).reshape(xa.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = xa - (F - pa) / dens
        outside = ~np.isfinite(new) | (new < la) | (new > ha)
        new = np.where(outside, 0.5 * (la + ha), new)
        new = np.where(F == pa, xa, new)
        done = np.abs(new - xa) <= 1e-13 * scale
        if rounding_stop:
            done |= (np.abs(F - pa) <= 8 * _EPS) & (pa > 0.5)
        x[active], lo[active], hi[active] = new, la, ha
        active = active[~done.all(axis=1)]
        if not active.size:
            break
    return x


def _tau_cdf(grid: _Grid, t):
    """Posterior P(tau <= t) per row."""
    R = grid.W.shape[0]
    u = np.log(np.asarray(t, dtype=float))
    idx = np.clip((grid.edges[:, 1:] <= u[:, None]).sum(axis=1), 0, PANELS - 1)
    rows = np.arange(R)
    a, b = grid.edges[rows, idx], grid.edges[rows, idx + 1]
    eta = np.clip((2.0 * u - a - b) / (b - a), -1.0, 1.0)
    anti = grid.f[rows, idx] @ _POW_ANTI.T
    inside = grid.cum[rows, idx] + 0.5 * (b - a) * _horner(anti, eta)
    below_grid = u < grid.edges[:, 0]
    low = grid.W[:, 0] * np.minimum(np.asarray(_cdf_ratio(grid, t)), 1.0)
    return np.where(below_grid, low, np.clip(inside, 0.0, 1.0))


def _cdf_ratio(grid, t):
    return np.asarray(grid._prior.cdf_tau(t)) / np.where(grid.prior_min > 0, grid.prior_min, 1.0)


def _tau_quantile(grid: _Grid, p, prior: Prior):
    """Posterior p-quantile of tau per row (Newton steps on the per-panel antiderivative polynomial)."""
    p = np.broadcast_to(np.asarray(p, dtype=float), (grid.W.shape[0],))
    return _tau_quantiles(grid, p[None, :], prior)[0]


def _tau_quantiles(grid: _Grid, P, prior: Prior, start=None):
    """:func:`_tau_quantile` at G probability vectors at once (``P`` of shape (G, R); returns (G, R)).

    In the panel [a, b] where the posterior CDF of u = log tau reaches p, solve
    ``cum(a) + (b - a)/2 A(eta) = p`` for eta in [-1, 1] (A: the antiderivative of the panel's density
    polynomial) by Newton steps kept in a bracket; each group stops when all its rows moved by < 1e-14,
    as a separate call would, so the numbers are those of separate calls. p below the point mass at
    tau_min gives the prior's quantile scaled into it. ``start`` (G, R): quantiles at nearby
    probabilities, the first iterate where they lie in the same panel (else eta = 0)."""
    P = np.asarray(P, dtype=float)
    G, R = P.shape
    rows = np.arange(R)
    idx = np.clip((grid.cum[None, :, 1:] < P[:, :, None]).sum(axis=2), 0, PANELS - 1)          # (G, R)
    a, b = grid.edges[rows, idx], grid.edges[rows, idx + 1]
    half = 0.5 * (b - a)
    values = grid.f[rows, idx]                                                                  # (G, R, n)
    coef = np.stack([v @ _POW_FIT.T for v in values]).reshape(G * R, -1)
    anti = np.stack([v @ _POW_ANTI.T for v in values]).reshape(G * R, -1)
    target = ((P - grid.cum[rows, idx]) / half).ravel()
    lo, hi = -np.ones(G * R), np.ones(G * R)
    eta = np.zeros(G * R)
    if start is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            e0 = ((2.0 * np.log(np.asarray(start, dtype=float)) - a - b) / (b - a)).ravel()
        eta = np.where(np.isfinite(e0) & (np.abs(e0) < 1.0), e0, 0.0)
    active = np.arange(G)
    for _ in range(100):
        at = (active[:, None] * R + rows[None, :]).ravel()
        e = eta[at]
        g_val = _horner(anti[at], e) - target[at]
        g_der = _horner(coef[at], e)
        lo[at] = np.where(g_val < 0, e, lo[at])
        hi[at] = np.where(g_val < 0, hi[at], e)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = e - g_val / g_der
        outside = ~np.isfinite(new) | (new < lo[at]) | (new > hi[at])
        new = np.where(outside, 0.5 * (lo[at] + hi[at]), new)
        new = np.where(g_val == 0, e, new)
        done = (np.abs(new - e) < 1e-14).reshape(len(active), R)
        eta[at] = new
        active = active[~done.all(axis=1)]
        if not active.size:
            break
    tau = np.exp(a + half * (eta.reshape(G, R) + 1.0))
    in_mass = P <= grid.W[:, 0]
    if np.any(in_mass):
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(grid.W[:, 0] > 0, P / grid.W[:, 0], 0.0) * grid.prior_min
        low = np.asarray(prior.quantile_tau(np.clip(frac, 0.0, 1.0)), dtype=float)
        tau = np.where(in_mass, low, tau)
    return tau


def _shortest(quantiles, rows, level, iters=40, from_zero=False, final=None):
    """Shortest interval of probability ``level``: minimise q(a + level) - q(a) over a in [0, 1 - level]
    (a coarse scan, then golden-section search in the best bracket); ``from_zero`` (tau) also tries the
    interval that starts at 0. ``quantiles(P, start)`` gives the quantiles at a (G, rows) array of
    probabilities, ``rows`` per group, its Newton iterations starting from ``start`` (the quantiles at
    the neighbouring point of the search) when given; ``final`` (default ``quantiles``) solves the ends
    of the interval found."""
    edge = 0.0 if from_zero else 1e-6 * (1.0 - level)
    alphas = np.linspace(edge, 1.0 - level - edge, 21)
    scan = quantiles(np.repeat(np.concatenate([alphas + level, alphas])[:, None], rows, axis=1), None)
    widths = (scan[:len(alphas)] - scan[len(alphas):]).T
    best = widths.argmin(axis=1)
    lo = alphas[np.maximum(best - 1, 0)]
    hi = alphas[np.minimum(best + 1, len(alphas) - 1)]
    g = (math.sqrt(5.0) - 1.0) / 2.0

    def width(*starts, near=None):
        q = quantiles(np.stack([x for a in starts for x in (a + level, a)]), near)
        return [q[2 * i] - q[2 * i + 1] for i in range(len(starts))], q

    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    (wc, wd), q = width(c, d)
    qc, qd = q[:2], q[2:]
    for _ in range(iters):               # golden-section search: one new point per step
        left = wc < wd
        hi = np.where(left, d, hi)
        lo = np.where(left, lo, c)
        new = np.where(left, hi - g * (hi - lo), lo + g * (hi - lo))
        (wn,), qn = width(new, near=np.where(left, qc, qd))     # Newton starts at the neighbour's quantiles
        c, d, wc, wd = (np.where(left, new, d), np.where(left, c, new), np.where(left, wn, wd),
                        np.where(left, wc, wn))
        qc, qd = np.where(left, qn, qd), np.where(left, qc, qn)
    a = 0.5 * (lo + hi)
    ends = [a, a + level] + ([np.zeros_like(a), np.full_like(a, level)] if from_zero else [])
    q = (final or quantiles)(np.stack(ends), None)
    lower, upper = q[0], q[1]
    if not from_zero:
        return lower, upper
    zero_lo, zero_hi = q[2], q[3]
    at_zero = (zero_hi - zero_lo) < (upper - lower)     # the interval from tau = 0 beats the interior one
    return np.where(at_zero, zero_lo, lower), np.where(at_zero, zero_hi, upper)


# ------------------------------------------------------------------------------------------------
# batch: many meta-analyses


def _as_rows(yi, vi):
    y = np.atleast_2d(as_float_array(yi, "yi"))
    v = np.atleast_2d(as_float_array(vi, "vi"))
    if y.shape != v.shape:
        raise InputError(f"yi and vi must have the same shape, got {y.shape} and {v.shape}")
    if y.shape[1] == 0 or y.shape[0] == 0:
        raise InputError("bayes: no studies (k = 0): at least one study with yi and vi is needed")
    if not np.all(np.isfinite(y)):
        r, c = np.argwhere(~np.isfinite(y))[0]
        raise InputError(f"yi is missing or not finite (meta-analysis {r + 1}, study {c + 1})")
    if not np.all(np.isfinite(v) & (v > 0)):
        r, c = np.argwhere(~(np.isfinite(v) & (v > 0)))[0]
        raise InputError(f"vi must be a finite number > 0 (meta-analysis {r + 1}, study {c + 1}: {v[r, c]!r})")
    return y, v


def bayes_batch(yi, vi, tau_prior="half-normal:0.5", mu_prior=None, level: float = 0.95, measure=None,
                chunk: int = 2000) -> dict:
    """Posterior summaries of many meta-analyses (one per row of ``yi``, ``vi``; shape (R, k)).

    Returns a dict of arrays of length R: ``mu_median``, ``mu_mean``, ``mu_sd``, ``mu_lower``, ``mu_upper``
    (central ``level`` credible interval), ``tau_median``, ``tau_lower``, ``tau_upper``, ``theta_lower``,
    ``theta_upper`` (predictive interval of a new study's effect). Same quadrature as :func:`bayes`.
    """
    prior = parse_prior(tau_prior)
    check_measure(prior, measure)
    mu_prior = _mu_prior(mu_prior)
    _check_level(level)
    y, v = _as_rows(yi, vi)
    keys = ("mu_median", "mu_mean", "mu_sd", "mu_lower", "mu_upper", "tau_median", "tau_lower", "tau_upper",
            "theta_lower", "theta_upper")
    out = {key: np.empty(y.shape[0]) for key in keys}
    lo_p, hi_p = (1 - level) / 2, 1 - (1 - level) / 2
    for start in range(0, y.shape[0], chunk):
        block = slice(start, start + chunk)
        grid = _build_grid(y[block], v[block], prior, mu_prior)
        s = np.sqrt(grid.V)
        out["mu_mean"][block], out["mu_sd"][block] = _mix_moments(grid.W, grid.m, s)
        for key, p in (("mu_median", 0.5), ("mu_lower", lo_p), ("mu_upper", hi_p)):
            out[key][block] = _mix_quantile(grid.W, grid.m, s, p)
        s_new = np.sqrt(grid.V + grid.tau ** 2)
        out["theta_lower"][block] = _mix_quantile(grid.W, grid.m, s_new, lo_p)
        out["theta_upper"][block] = _mix_quantile(grid.W, grid.m, s_new, hi_p)
        for key, p in (("tau_median", 0.5), ("tau_lower", lo_p), ("tau_upper", hi_p)):
            out[key][block] = _tau_quantile(grid, p, prior)
    return out


def _check_level(level):
    if not isinstance(level, (int, float)) or not 0 < level < 1:
        raise InputError(f"level must be a number between 0 and 1 (e.g. 0.95), not {level!r}")


# ------------------------------------------------------------------------------------------------
# one meta-analysis: the result object


@dataclass
class BayesResult:
    """The posterior of one meta-analysis (see :func:`bayes`).

    ``summary`` is a DataFrame with rows median, mean, sd, lower, upper (central interval),
    shortest_lower, shortest_upper and columns tau, mu, theta_new; ``studies`` holds each study's
    shrinkage estimate (posterior of theta_i). ``log_marginal_likelihood`` is None under a flat mu prior
    (improper); ``bayes_factor_tau0`` is p(y | tau = 0) / p(y) and ``bayes_factor_mu0`` (proper mu prior
    only) p(y | mu = 0) / p(y), both Savage-Dickey ratios as in bayesmeta.
    """

    yi: np.ndarray
    vi: np.ndarray
    labels: list
    prior: Prior
    mu_prior: MuPrior
    level: float
    measure: str | None
    summary: pd.DataFrame
    studies: pd.DataFrame
    log_marginal_likelihood: float | None
    bayes_factor_tau0: float
    bayes_factor_mu0: float | None
    method: str = METHOD_TEXT
    notes: list = field(default_factory=list)
    _grid: _Grid | None = field(default=None, repr=False)

    @property
    def k(self) -> int:
        return len(self.yi)

    def _components(self, parameter):
        g = self._grid
        if parameter == "mu":
            return g.W, g.m, np.sqrt(g.V)
        if parameter == "theta_new":
            return g.W, g.m, np.sqrt(g.V + g.tau ** 2)
        raise InputError(f"parameter must be 'mu', 'theta_new' or 'tau', not {parameter!r}")

    def cdf(self, parameter: str, x: float) -> float:
        """Posterior P(parameter <= x) for parameter 'mu', 'theta_new' or 'tau'."""
        x = float(x)
        if parameter == "tau":
            if x <= 0:
                return 0.0
            return float(_tau_cdf(self._grid, np.array([x]))[0])
        W, m, s = self._components(parameter)
        return float(_mix_cdf(W, m, s, np.array([x]))[0])

    def prob(self, parameter: str = "mu", below: float | None = None, above: float | None = None) -> float:
        """Posterior probability that the parameter is below ``below`` (or above ``above``), e.g.
        ``res.prob("mu", below=-mcid)`` or ``res.prob("theta_new", below=-mcid)``."""
        if (below is None) == (above is None):
            raise InputError("prob: give exactly one of below= and above=")
        for name, value in (("below", below), ("above", above)):
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise InputError(f"prob: {name} must be a finite number, not {value!r}")
        p = self.cdf(parameter, below if below is not None else above)
        return p if below is not None else 1.0 - p

    def quantile(self, parameter: str, p: float) -> float:
        if not 0 < p < 1:
            raise InputError(f"quantile: p must be between 0 and 1, not {p!r}")
        if parameter == "tau":
            return float(_tau_quantile(self._grid, np.array([p]), self.prior)[0])
        W, m, s = self._components(parameter)
        return float(_mix_quantile(W, m, s, np.array([p]))[0])

    def tau_density(self, tau) -> np.ndarray:
        """Posterior density of tau at ``tau`` (array), exact (not interpolated)."""
        tau = np.atleast_1d(as_float_array(tau, "tau"))
        y, v = self.yi[None, :], self.vi[None, :]
        ll, _, _ = _conditional(y, v, (tau ** 2)[None, :], self.mu_prior)
        with np.errstate(divide="ignore"):
            logd = self.prior.log_density_logtau(np.log(tau)) + ll[0] - self._grid.log_z[0] - np.log(tau)
        return np.where(tau > 0, np.exp(logd), np.nan)

    def mu_density(self, x) -> np.ndarray:
        x = np.atleast_1d(as_float_array(x, "x"))
        W, m, s = self._components("mu")
        return _mix_pdf(np.repeat(W, len(x), 0), np.repeat(m, len(x), 0), np.repeat(s, len(x), 0), x)

    def to_frame(self) -> pd.DataFrame:
        """One row per study (its shrinkage estimate), then the rows mu and theta_new, then tau."""
        rows = self.studies.copy()
        extra = []
        for name in ("mu", "theta_new", "tau"):
            col = self.summary[name]
            extra.append({"study": name, "yi": np.nan, "sei": np.nan, "median": col["median"], "mean": col["mean"],
                          "sd": col["sd"], "lower": col["lower"], "upper": col["upper"],
                          "shortest_lower": col["shortest_lower"], "shortest_upper": col["shortest_upper"]})
        return pd.concat([rows, pd.DataFrame(extra)], ignore_index=True)

    def to_dict(self) -> dict:
        """Strict-JSON fields (the keys of ``pfps-meta bayes --format json``)."""
        def block(name):
            col = self.summary[name]
            return {"median": col["median"], "mean": col["mean"], "sd": col["sd"],
                    "ci_lower": col["lower"], "ci_upper": col["upper"],
                    "shortest_lower": col["shortest_lower"], "shortest_upper": col["shortest_upper"]}
        return json_ready({
            "model": "normal-normal hierarchical model (Bayesian random effects)", "k": self.k,
            "measure": self.measure, "level": self.level, "tau_prior": self.prior.to_dict(),
            "mu_prior": {"label": self.mu_prior.label, "mean": self.mu_prior.mean, "sd": self.mu_prior.sd},
            "mu": block("mu"), "tau": block("tau"), "theta_new": block("theta_new"),
            "log_marginal_likelihood": self.log_marginal_likelihood,
            "bayes_factor_tau0": self.bayes_factor_tau0, "bayes_factor_mu0": self.bayes_factor_mu0,
            "studies": self.studies, "method": self.method, "notes": list(self.notes),
        })

    def __str__(self) -> str:
        return render(self, "text")

    def summary_text(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return render(self, "html")


def bayes(data=None, measure=None, tau_prior="half-normal:0.5", mu_prior=None, level: float = 0.95, *, yi=None,
          vi=None, labels=None, outcome: str | None = None, comparison: str | None = None,
          settings=None) -> BayesResult:
    """Bayesian random-effects meta-analysis with an exact posterior (the model of R bayesmeta).

    ``data`` is a table (DataFrame or CSV path) as :func:`pfps_meta.pool` reads it, or give ``yi`` and
    ``vi`` directly. ``tau_prior`` is a :class:`~pfps_meta.models.priors.Prior` or its spelling
    (``half-normal:0.5``, ``log-t5:-3.02:2.27``, ``rhodes2015`` with ``outcome`` and ``comparison``);
    ``mu_prior`` None (flat) or ``(mean, sd)``. A prior derived for another measure is an InputError.
    """
    prior = parse_prior(tau_prior, outcome, comparison)
    mu_prior = _mu_prior(mu_prior)
    _check_level(level)
    y, v, labels = _effects_and_labels(data, measure, yi, vi, labels, settings)
    check_measure(prior, measure)
    y2, v2 = _as_rows(y, v)
    if len(labels) != y2.shape[1]:
        raise InputError(f"labels: {len(labels)} labels for {y2.shape[1]} studies")
    grid = _build_grid(y2, v2, prior, mu_prior)
    grid._prior = prior
    table = _mixture_table(grid, y, v, level)
    summary = {"mu": table[:, 0], "theta_new": table[:, 1], "tau": _tau_column(grid, prior, level)}
    frame = pd.DataFrame(summary, index=["median", "mean", "sd", "lower", "upper", "shortest_lower",
                                         "shortest_upper"])[["tau", "mu", "theta_new"]]
    study_rows = [{"study": label, "yi": y[i], "sei": math.sqrt(v[i]), "median": table[0, 2 + i],
                   "mean": table[1, 2 + i], "sd": table[2, 2 + i], "lower": table[3, 2 + i], "upper": table[4, 2 + i],
                   "shortest_lower": table[5, 2 + i], "shortest_upper": table[6, 2 + i]}
                  for i, label in enumerate(labels)]
    log_z, bf_tau0, bf_mu0 = _marginal_and_bayes_factors(grid, mu_prior)
    notes = _posterior_notes(grid, prior, y2.shape[1])
    result = BayesResult(yi=y, vi=v, labels=labels, prior=prior, mu_prior=mu_prior, level=level, measure=measure,
                         summary=frame, studies=pd.DataFrame(study_rows),
                         log_marginal_likelihood=log_z if mu_prior.proper else None, bayes_factor_tau0=bf_tau0,
                         bayes_factor_mu0=bf_mu0, notes=notes, _grid=grid)
    _check_finite(result)
    return result


def _effects_and_labels(data, measure, yi, vi, labels, settings):
    """(yi, vi, study labels) from a table (as :func:`pfps_meta.pool` reads it) or from yi and vi given
    directly (one meta-analysis)."""
    if data is not None:
        if yi is not None or vi is not None:
            raise InputError("give either data or yi and vi, not both")
        from pfps_meta.inputs.validate import effect_table

        table = effect_table(data, measure, settings=settings)
        if len(table) == 0:
            raise InputError("bayes: no studies (k = 0): the table has no rows with data")
        y, v = table["yi"].to_numpy(float), table["vi"].to_numpy(float)
        labels = [str(s) for s in table["study"]] if "study" in table else [str(i + 1) for i in range(len(y))]
    else:
        if yi is None or vi is None:
            raise InputError("bayes: give data, or both yi and vi")
        y = np.atleast_1d(as_float_array(yi, "yi"))
        v = np.atleast_1d(as_float_array(vi, "vi"))
        if y.ndim != 1:
            raise InputError("bayes: yi must be one meta-analysis (a 1-d list); use bayes_batch for many")
        labels = [str(s) for s in labels] if labels is not None else [str(i + 1) for i in range(len(y))]
    return y, v, labels


def _mixture_table(grid, y, v, level):
    """Posterior summaries of every normal mixture over the tau grid at once, one column each: mu,
    theta_new, then each study's shrunken effect (b = v / (v + tau²) towards the mean of mu given tau).
    Rows: median, mean, sd, central lower and upper, shortest lower and upper (a (7, k + 2) array)."""
    lo_p, hi_p = (1 - level) / 2, 1 - (1 - level) / 2
    # every normal mixture at once, one row each: mu, theta_new, then each study's shrunken effect
    b = v[:, None] / (v[:, None] + grid.tau ** 2)                          # (k, N+1)
    means = np.vstack([grid.m, grid.m, b * grid.m + (1 - b) * y[:, None]])
    sds = np.sqrt(np.vstack([grid.V, grid.V + grid.tau ** 2, (1 - b) * v[:, None] + b * b * grid.V]))
    W = np.repeat(grid.W, means.shape[0], axis=0)
    mix_mean, mix_sd = _mix_moments(W, means, sds)
    central = _mix_quantiles(W, means, sds, np.repeat(np.array([[0.5], [lo_p], [hi_p]]), W.shape[0], axis=1))
    # the search for the shortest interval stops the far upper tail's Newton steps at F's rounding level
    # (see _mix_quantiles); the interval's ends themselves are solved to the full tolerance
    short_lo, short_hi = _shortest(lambda P, start: _mix_quantiles(W, means, sds, P, start, rounding_stop=True),
                                   W.shape[0], level, final=lambda P, start: _mix_quantiles(W, means, sds, P, start))
    return np.vstack([central[0], mix_mean, mix_sd, central[1], central[2], short_lo, short_hi])   # (7, rows)


def _tau_column(grid, prior, level) -> list:
    """The posterior of tau summarised as the rows of :func:`_mixture_table` (the shortest interval may
    start at 0)."""
    lo_p, hi_p = (1 - level) / 2, 1 - (1 - level) / 2
    quantiles = lambda P, start=None: _tau_quantiles(grid, P, prior, start)  # noqa: E731
    t_mean = (grid.W * grid.tau).sum(axis=1)[0]
    t_sd = math.sqrt(max((grid.W * grid.tau ** 2).sum(axis=1)[0] - t_mean ** 2, 0.0))
    sl, su = _shortest(quantiles, grid.W.shape[0], level, from_zero=True)
    median, lower, upper = quantiles(np.array([[0.5], [lo_p], [hi_p]]))[:, 0]
    return [median, t_mean, t_sd, lower, upper, sl[0], su[0]]


def _marginal_and_bayes_factors(grid, mu_prior):
    """(log marginal likelihood, Bayes factor for tau = 0, Bayes factor for mu = 0 or None): the latter by
    the Savage-Dickey ratio of posterior to prior density at mu = 0, only with a proper prior for mu."""
    log_z = float(grid.log_z[0])
    bf_tau0 = math.exp(float(grid.loglik0[0]) - log_z)
    bf_mu0 = None
    if mu_prior.proper:
        W, m, s = grid.W, grid.m, np.sqrt(grid.V)
        post0 = float(_mix_pdf(W, m, s, np.array([0.0]))[0])
        prior0 = math.exp(-0.5 * (mu_prior.mean / mu_prior.sd) ** 2) / (mu_prior.sd * math.sqrt(2 * math.pi))
        bf_mu0 = post0 / prior0
    return log_z, bf_tau0, bf_mu0


def _posterior_notes(grid, prior, k) -> list:
    """Notes on a heavy upper tail of tau's posterior and on few studies (k < 3)."""
    notes = []
    if grid.heavy_tail[0]:
        notes.append(f"the posterior of tau has a heavy upper tail (prior {prior.label}): the mean and SD of tau and "
                     "the SD of theta_new are integrated up to tau = "
                     f"{math.exp(grid.edges[0, -1]):.3g} and may not exist; quantiles and intervals are unaffected")
    if k < 3:
        notes.append(f"k = {k}: the posterior of tau is close to its prior; the prior decides the result")
    return notes


def _check_finite(result: BayesResult):
    values = result.summary.to_numpy(float)
    if not np.all(np.isfinite(values)):
        raise InputError("bayes: the posterior summary is not finite (the posterior does not integrate "
                         "numerically for these data and prior)")


__all__ = ["bayes", "bayes_batch", "BayesResult", "MuPrior", "METHOD_TEXT"]
