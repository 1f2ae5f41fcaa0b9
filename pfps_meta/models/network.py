"""Network meta-analysis: every treatment compared with every other through a connected network of
trials, multi-arm trials included (contrast-based model).

Model (Salanti 2012, Res Synth Methods 3:80-97; metafor's ``?dat.senn2013`` worked example): study i
contributes its contrasts ``y_i`` (each arm against the study's baseline arm) with their exact sampling
covariance ``V_i`` (contrasts sharing the baseline arm covary by that arm's variance, built by
:func:`pfps_meta.models.vcalc.contrasts_from_arms`), and::

    y_i ~ N(X_i d, V_i + tau^2 R_i),   R_i = (I + J) / 2,

where ``d`` holds each treatment's effect against the reference, ``X_i`` has +1 in the column of the
contrast's treatment and -1 in that of its baseline (the reference column dropped), and ``R_i`` gives
every contrast the variance tau^2 and two contrasts of one study the covariance tau^2 / 2 (metafor
``rma.mv(yi, V, mods = X - 1, random = ~ comp | study, rho = 1/2)``). ``tau^2 = 0`` is the
common-effect model. Everything is block algebra, one (studies x m x m) batch per block size m, so a
network of 50 treatments and 500 studies fits in a few hundredths of a second.

tau^2 estimators:

- ``"REML"`` / ``"ML"``: the root of the (restricted) likelihood score, located by a log-grid search
  of the log-likelihood (the boundary tau^2 = 0 included) and refined by Brent's method to 1e-14;
- ``"DL"``: the generalised DerSimonian-Laird estimator of netmeta (Rücker 2012, Res Synth Methods
  3:312-324; Jackson, White & Riley 2012 for the matrix form), ``tau^2 = max(0, (Q - df) / tr(P R))``
  with ``P = W - W X (X'WX)^-1 X'W`` at ``W = V^-1`` -- algebraically the same as netmeta's
  ``(Q - df) / tr((I - H) (B B' * E / 2) W)`` on the all-pairs representation;
- ``"FE"``: tau^2 = 0.

Pairwise relative effects, P-scores (Rücker & Schwarzer 2015, BMC Med Res Methodol 15:58), SUCRA
(Salanti, Ades & Ioannidis 2011, J Clin Epidemiol 64:163-171), the design-based decomposition of Q
(Higgins et al. 2012, Res Synth Methods 3:98-110; Krahn, Binder & König 2013, netmeta
``decomp.design``) and node-splitting by back-calculation (König, Krahn & Binder 2013, Stat Med
32:5414-5429; netmeta ``netsplit``) are methods of :class:`NetworkResult`. The additive component
model (Rücker et al. 2020, Biom J 62:808-821; netmeta ``netcomb``) is in
:mod:`pfps_meta.models.network_components`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize

from .. import distributions as dist

from ..effects import measures as measure_registry
from ..errors import InputError
from ..formatting import format_number, format_p, json_ready, render, renders
from .blocks import BlockDiagonal
from .network_inputs import check_connected, from_arm_rows, from_contrast_rows

__all__ = ["network", "fit_design", "NetworkResult", "NetworkFit", "RANKING_WARNING"]

METHODS = ("REML", "ML", "DL", "FE")
CI_METHODS = ("wald", "t", "hk")
_ARM_MEASURES = ("MD", "SMD", "RR", "OR", "RD")

RANKING_WARNING = ("A ranking is not an effect: P-scores and SUCRA order the treatments by how surely each "
                   "beats the others, not by how much; read them with the relative effects and their CIs.")


# ================================================================================================
# block algebra


@dataclass(frozen=True)
class _Groups:
    """Studies grouped by their number of contrasts m: per group, the rows (g x m), y (g x m),
    V (g x m x m) and X (g x m x p)."""

    parts: tuple          # of (rows, y, V, X)
    k: int
    p: int

    @classmethod
    def build(cls, y, V: BlockDiagonal, X):
        X = np.asarray(X, dtype=float)
        by_size = {}
        for idx, block in zip(V.index, V.blocks):
            by_size.setdefault(len(idx), []).append((np.asarray(idx), np.asarray(block, dtype=float)))
        parts = []
        for m in sorted(by_size):
            rows = np.stack([r for r, _ in by_size[m]])
            blocks = np.stack([b for _, b in by_size[m]])
            parts.append((rows, y[rows], blocks, X[rows]))
        return cls(tuple(parts), int(y.size), int(X.shape[1]))

    def with_X(self, X):
        X = np.asarray(X, dtype=float)
        return _Groups(tuple((r, y, V, X[r]) for r, y, V, _ in self.parts), self.k, int(X.shape[1]))


def _R(m: int) -> np.ndarray:
    """The m x m correlation pattern of a study's contrasts against one base arm: 1 on the diagonal, 1/2
    off it (read-only, built once per m)."""
    R = _R_CACHE.get(m)
    if R is None:
        R = _R_CACHE[m] = (np.eye(m) + np.ones((m, m))) / 2.0
        R.setflags(write=False)
    return R


_R_CACHE: dict = {}


@dataclass
class _GLS:
    beta: np.ndarray
    vb: np.ndarray
    Q: float
    logdet: float        # sum log|V_i + tau^2 R_i|
    logdet_A: float      # log|X' W X|
    A: np.ndarray
    trWR: float
    parts: list          # per group: W (g x m x m), residuals (g x m)


def _contract(a, b):
    """``sum_{g,i} a[g, :, i] (x) b[g, i, ...]``: what ``np.tensordot(a, b, axes=([0, 2], [0, 1]))``
    computes, by the same transpose, reshape and single ``np.dot`` (so the same numbers), without its
    argument checks (this runs in every likelihood evaluation)."""
    n = a.shape[0] * a.shape[2]
    out = np.dot(a.transpose(1, 0, 2).reshape(a.shape[1], n), b.reshape(n, -1))
    return out.reshape(a.shape[1:2] + b.shape[2:])


def _gls(G: _Groups, tau2: float) -> _GLS:
    p = G.p
    A = np.zeros((p, p))
    c = np.zeros(p)
    logdet = 0.0
    trWR = 0.0
    Ws = []
    for rows, y, V, X in G.parts:
        m = y.shape[1]
        S = V + tau2 * _R(m)
        chol = np.linalg.cholesky(S)
        logdet += 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
        W = np.linalg.inv(S)
        Ws.append(W)
        XtW = np.swapaxes(X, 1, 2) @ W                       # g x p x m
        A += _contract(XtW, X)                               # sum_g X_g' W_g X_g
        c += _contract(XtW, y)
        trWR += float((W * _R(m)).sum())
    try:
        cA = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        raise InputError("the design is not identifiable (X'WX is singular)") from None
    vb = np.linalg.inv(A)
    vb = (vb + vb.T) / 2.0
    beta = vb @ c
    Q = 0.0
    parts = []
    for (rows, y, V, X), W in zip(G.parts, Ws):
        r = y - X @ beta
        Q += float(((W @ r[:, :, None])[:, :, 0] * r).sum())
        parts.append((W, r))
    return _GLS(beta, vb, Q, logdet, 2.0 * float(np.log(np.diag(cA)).sum()), A, trWR, parts)


def _score_terms(G: _Groups, fit: _GLS):
    """tr(A^-1 X'WRWX) and r'WRWr at the fit's tau^2 (for the likelihood scores and DL)."""
    M = np.zeros((G.p, G.p))
    rr = 0.0
    for (rows, y, V, X), (W, r) in zip(G.parts, fit.parts):
        m = y.shape[1]
        WRW = W @ _R(m) @ W
        M += _contract(np.swapaxes(X, 1, 2) @ WRW, X)
        rr += float(((WRW @ r[:, :, None])[:, :, 0] * r).sum())
    return float(np.sum(fit.vb * M)), rr


def _loglik(G: _Groups, tau2: float, reml: bool, logdet_XtX: float):
    """metafor's rma.mv log-likelihood (REML with its + 1/2 log|X'X| term)."""
    f = _gls(G, tau2)
    k, p = G.k, G.p
    if reml:
        return -0.5 * ((k - p) * math.log(2 * math.pi) + f.logdet + f.logdet_A + f.Q) + 0.5 * logdet_XtX, f
    return -0.5 * (k * math.log(2 * math.pi) + f.logdet + f.Q), f


def _score(G: _Groups, tau2: float, reml: bool) -> float:
    f = _gls(G, tau2)
    tr_corr, rr = _score_terms(G, f)
    tr = f.trWR - tr_corr if reml else f.trWR
    return 0.5 * (rr - tr)


def _dl(G: _Groups) -> float:
    f = _gls(G, 0.0)
    df = G.k - G.p
    if df <= 0:
        return 0.0
    tr_corr, _ = _score_terms(G, f)
    denom = f.trWR - tr_corr
    return max(0.0, (f.Q - df) / denom) if denom > 0 else 0.0


def _xtx_logdet(G: _Groups) -> float:
    XtX = sum(np.tensordot(X, X, axes=([0, 1], [0, 1])) for _, _, _, X in G.parts)
    sign, val = np.linalg.slogdet(XtX)
    return float(val)


def _estimate_tau2(G: _Groups, method: str) -> float:
    if method == "FE":
        return 0.0
    if method == "DL":
        return _dl(G)
    if G.k - G.p <= 0:
        return 0.0
    reml = method == "REML"
    lxx = _xtx_logdet(G)
    scale = float(np.median(np.concatenate([np.diagonal(V, axis1=1, axis2=2).ravel() for _, _, V, _ in G.parts])))
    grid = np.concatenate([[0.0], scale * np.logspace(-6, 3, 19)])
    ll = np.array([_loglik(G, t, reml, lxx)[0] for t in grid])
    best = int(np.argmax(ll))
    if best == 0:
        if _score(G, 0.0, reml) <= 0:
            return 0.0
        lo, hi = 0.0, grid[1]
        while _score(G, hi, reml) > 0:
            hi *= 2.0
    else:
        lo = grid[best - 1]
        hi = grid[best + 1] if best + 1 < grid.size else grid[best]
        while _score(G, hi, reml) > 0:
            hi *= 2.0
        if _score(G, lo, reml) < 0:       # a maximum at the boundary side of the bracket
            lo = 0.0
            if _score(G, 0.0, reml) <= 0:
                return 0.0
    return float(optimize.brentq(lambda t: _score(G, t, reml), lo, hi, xtol=1e-15, rtol=1e-14, maxiter=500))


# ================================================================================================
# results


@dataclass(frozen=True)
class NetworkFit:
    """One fitted model: effects of every treatment against the reference and their covariance."""

    model: str               # "common" or "random"
    tau2: float
    d: np.ndarray            # per treatment, against the reference (0 at the reference)
    cov: np.ndarray          # T x T covariance of d (zero row/column at the reference)
    Q: float                 # (y - X b)' W (y - X b) at this model's weights
    loglik: float | None

    def se(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))


@dataclass
class NetworkResult:
    """A fitted network meta-analysis (:func:`network`).

    ``common`` and ``random`` are :class:`NetworkFit`; ``fit`` is the one the summaries use (``random``
    unless ``method="FE"``). ``Q``/``df`` are the common-effect Q and its degrees of freedom
    ``sum(a_i - 1) - (T - 1)``.
    """

    treatments: tuple
    reference: str
    measure: str
    method: str
    ci_method: str
    level: float
    common: NetworkFit
    random: NetworkFit
    k: int                   # contrasts
    n_studies: int
    df: int
    contrasts: pd.DataFrame  # study, treat, base, yi, vi, design
    _groups: _Groups = field(repr=False)
    _X: np.ndarray = field(repr=False)
    small_values: str = "good"
    participants: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- basics
    @property
    def fit(self) -> NetworkFit:
        return self.common if self.method == "FE" else self.random

    @property
    def tau2(self) -> float:
        return self.random.tau2

    @property
    def Q(self) -> float:
        return self.common.Q

    @property
    def pval_Q(self) -> float:
        return float(dist.chi2_sf(self.Q, self.df)) if self.df > 0 else float("nan")

    @property
    def I2(self) -> float:
        """netmeta's I^2 = max(0, (Q - df) / Q) from the common-effect Q."""
        return max(0.0, (self.Q - self.df) / self.Q) if self.df > 0 and self.Q > 0 else 0.0

    @property
    def measure_info(self):
        return measure_registry.get(self.measure)

    def _index(self, t):
        if t not in self.treatments:
            raise InputError(f"treatment '{t}' is not in the network (treatments: {', '.join(self.treatments)})")
        return self.treatments.index(t)

    def _scale(self, fit: NetworkFit) -> float:
        """The Hartung-Knapp factor Q(tau^2) / df (1 for the other CI methods)."""
        if self.ci_method != "hk" or self.df <= 0:
            return 1.0
        return fit.Q / self.df

    def _quantile(self):
        a = (1.0 + self.level) / 2.0
        if self.ci_method == "wald":
            return float(dist.norm_ppf(a))
        return float(dist.t_ppf(a, self.df)) if self.df > 0 else float("nan")

    def relative_effect(self, treat, versus, model=None):
        """Estimate, SE, CI and PI of ``treat`` against ``versus`` (dict)."""
        fit = self._model(model)
        i, j = self._index(treat), self._index(versus)
        est = float(fit.d[i] - fit.d[j])
        var = float(fit.cov[i, i] + fit.cov[j, j] - 2 * fit.cov[i, j]) * self._scale(fit)
        se = math.sqrt(max(var, 0.0))
        q = self._quantile()
        stat = est / se if se > 0 else float("nan")
        if self.ci_method == "wald":
            p = float(2 * dist.norm_sf(abs(stat)))
        else:
            p = float(2 * dist.t_sf(abs(stat), self.df)) if self.df > 0 else float("nan")
        if fit.model == "random" and self.df >= 2:
            qt = float(dist.t_ppf((1.0 + self.level) / 2.0, self.df))
            sp = math.sqrt(se ** 2 + fit.tau2)
            pi = (est - qt * sp, est + qt * sp)
        else:
            pi = (float("nan"), float("nan"))
        return {"treatment": treat, "versus": versus, "estimate": est, "se": se, "ci_lb": est - q * se,
                "ci_ub": est + q * se, "pi_lb": pi[0], "pi_ub": pi[1], "statistic": stat, "pval": p}

    def _model(self, model):
        if model is None:
            return self.fit
        if model not in ("common", "random"):
            raise InputError(f"model must be 'common' or 'random', got {model!r}")
        return self.common if model == "common" else self.random

    def to_frame(self, reference=None, model=None) -> pd.DataFrame:
        """Every treatment against ``reference`` (default: the network's): one row each."""
        ref = self.reference if reference is None else reference
        self._index(ref)
        rows = [self.relative_effect(t, ref, model) for t in self.treatments if t != ref]
        return pd.DataFrame(rows)

    def league_table(self, model=None, long=True) -> pd.DataFrame:
        """Every ordered pair (row treatment against column treatment). ``long=True``: one row per pair
        with estimate, SE, CI, PI and p; ``long=False``: a square table of "est (lb, ub)" strings."""
        rows = [self.relative_effect(a, b, model) for a in self.treatments for b in self.treatments if a != b]
        table = pd.DataFrame(rows)
        if long:
            return table
        digits = 2
        square = pd.DataFrame("", index=list(self.treatments), columns=list(self.treatments))
        for r in rows:
            square.loc[r["treatment"], r["versus"]] = (f"{r['estimate']:.{digits}f} "
                                                       f"({r['ci_lb']:.{digits}f}, {r['ci_ub']:.{digits}f})")
        for t in self.treatments:
            square.loc[t, t] = t
        return square

    # ---------------------------------------------------------------- ranking
    def pscores(self, model=None, small_values=None) -> pd.Series:
        """P-scores (Rücker & Schwarzer 2015): ``P_i = mean_{j != i} Phi((d_j - d_i) / se_ij)`` when small
        values are good (``Phi((d_i - d_j) / se_ij)`` otherwise), from the estimates and their covariance
        (Wald SEs, as netmeta). A ranking is not an effect (:data:`RANKING_WARNING`)."""
        fit = self._model(model)
        sv = self.small_values if small_values is None else small_values
        if sv not in ("good", "bad"):
            raise InputError(f"small_values must be 'good' or 'bad', got {sv!r}")
        d, C = fit.d, fit.cov
        diff = d[:, None] - d[None, :]
        var = np.diag(C)[:, None] + np.diag(C)[None, :] - 2 * C
        with np.errstate(divide="ignore", invalid="ignore"):
            z = diff / np.sqrt(var)
        P = dist.norm_cdf(-z if sv == "good" else z)
        np.fill_diagonal(P, np.nan)
        return pd.Series(np.nanmean(P, axis=1), index=list(self.treatments), name="P-score")

    def sucra(self, model=None, small_values=None, nsim=10000, seed=1) -> pd.Series:
        """SUCRA (Salanti et al. 2011) from ``nsim`` draws of the effects from N(d, cov):
        ``(T - mean rank) / (T - 1)``. Monte Carlo: close to the P-scores, not equal to them."""
        fit = self._model(model)
        sv = self.small_values if small_values is None else small_values
        rng = np.random.default_rng(seed)
        keep = [i for i, t in enumerate(self.treatments) if t != self.reference]
        draws = np.zeros((nsim, len(self.treatments)))
        draws[:, keep] = rng.multivariate_normal(fit.d[keep], fit.cov[np.ix_(keep, keep)], size=nsim,
                                                 method="cholesky")
        order = draws if sv == "good" else -draws
        ranks = order.argsort(axis=1).argsort(axis=1) + 1
        T = len(self.treatments)
        return pd.Series((T - ranks.mean(axis=0)) / (T - 1), index=list(self.treatments), name="SUCRA")

    # ---------------------------------------------------------------- inconsistency
    def decomp_design(self) -> dict:
        """Q split into within-design heterogeneity and between-design inconsistency (design-by-treatment
        interaction; Higgins et al. 2012; netmeta ``decomp.design``): ``Q_total = Q_within + Q_between``
        with ``Q_within`` the sum over designs of each design's own fit. ``random`` repeats the split
        with weights ``(V + tau_w^2 R)^-1``, tau_w^2 the DL estimate in the design-by-treatment model
        (netmeta ``tau.within``)."""
        Xf, designs_df = _design_by_treatment(self)
        Gf = self._groups.with_X(Xf)
        f_full = _gls(Gf, 0.0)
        df_w = self.k - Xf.shape[1]
        q_w = f_full.Q
        out = {"common": _qtable(self.Q, self.df, q_w, df_w)}
        tau_w = _dl(Gf)
        q_tot_r = _gls(self._groups, tau_w).Q
        q_w_r = _gls(Gf, tau_w).Q
        out["random"] = {"tau2_within": tau_w, "Q_between": q_tot_r - q_w_r, "df_between": self.df - df_w,
                         "pval_between": _chi2(q_tot_r - q_w_r, self.df - df_w)}
        out["designs"] = designs_df
        return out

    def netsplit(self, model=None) -> pd.DataFrame:
        """Node-splitting by back-calculation (König et al. 2013; netmeta ``netsplit``): for every comparison
        with direct evidence, the direct estimate (inverse-variance pooling of the studies' contributions
        to that comparison, with the multi-arm weights of Rücker 2012 at this model's tau^2), the indirect
        estimate ``(d_net - P d_dir) / (1 - P)`` with variance ``v_net / (1 - P)``, ``P = v_net / v_dir``,
        and the z-test of direct minus indirect. Comparisons with only direct evidence (P = 1) have no
        indirect estimate (NaN)."""
        fit = self._model(model)
        direct = _direct_estimates(self, fit.tau2)
        rows = []
        for (a, b), (est, var, k) in sorted(direct.items()):
            i, j = self._index(a), self._index(b)
            net = float(fit.d[i] - fit.d[j])
            vnet = float(fit.cov[i, i] + fit.cov[j, j] - 2 * fit.cov[i, j])
            P = vnet / var
            if P < 1 - 1e-8:
                ind = (net - P * est) / (1 - P)
                vind = vnet / (1 - P)
                diff = est - ind
                sed = math.sqrt(var + vind)
                z = diff / sed
                p = float(2 * dist.norm_sf(abs(z)))
            else:
                ind = vind = diff = sed = z = p = float("nan")
            rows.append({"comparison": f"{a}:{b}", "treatment": a, "versus": b, "k": k, "prop_direct": P,
                         "network": net, "network_se": math.sqrt(vnet), "direct": est, "direct_se": math.sqrt(var),
                         "indirect": ind, "indirect_se": math.sqrt(vind) if np.isfinite(vind) else float("nan"),
                         "difference": diff, "difference_se": sed, "z": z, "pval": p})
        return pd.DataFrame(rows)

    # ---------------------------------------------------------------- output
    def to_dict(self) -> dict:
        league = self.league_table()
        dd = self.decomp_design()
        out = {
            "model": "network meta-analysis (contrast-based, rho = 1/2)",
            "measure": self.measure, "method": self.method, "ci_method": self.ci_method, "level": self.level,
            "treatments": list(self.treatments), "reference": self.reference,
            "studies": self.n_studies, "contrasts": self.k,
            "tau2": self.random.tau2, "tau": math.sqrt(self.random.tau2), "I2": self.I2,
            "Q": {"total": self.Q, "df": self.df, "pval": self.pval_Q,
                  "within_designs": dd["common"]["within"], "between_designs": dd["common"]["between"],
                  "between_designs_random": {k: v for k, v in dd["random"].items()}},
            "versus_reference": self.to_frame().to_dict("records"),
            "league": league.to_dict("records"),
            "pscores": self.pscores().to_dict(), "small_values": self.small_values,
            "ranking_warning": RANKING_WARNING,
            "netsplit": self.netsplit().to_dict("records"),
        }
        comp = getattr(self, "components", None)
        if comp is not None:
            out["components"] = comp.to_dict()
        return json_ready(out)

    def summary(self) -> str:
        return render(self, "text")

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return render(self, "html")


def _chi2(q, df):
    return float(dist.chi2_sf(q, df)) if df > 0 else float("nan")


def _qtable(q_tot, df_tot, q_w, df_w):
    return {"total": {"Q": q_tot, "df": df_tot, "pval": _chi2(q_tot, df_tot)},
            "within": {"Q": q_w, "df": df_w, "pval": _chi2(q_w, df_w)},
            "between": {"Q": q_tot - q_w, "df": df_tot - df_w, "pval": _chi2(q_tot - q_w, df_tot - df_w)}}


def _design_by_treatment(res: NetworkResult):
    """The design-by-treatment interaction model's X: each design its own effects (against the design's
    first treatment), and the per-design Q/df table."""
    con = res.contrasts
    designs = con["design"].to_numpy()
    cols = {}
    for dsg in dict.fromkeys(designs):
        trts = dsg.split(":")
        for t in trts[1:]:
            cols[(dsg, t)] = len(cols)
    X = np.zeros((len(con), len(cols)))
    for r, (dsg, t, b) in enumerate(zip(designs, con["treat"], con["base"])):
        first = dsg.split(":")[0]
        if t != first:
            X[r, cols[(dsg, t)]] += 1
        if b != first:
            X[r, cols[(dsg, b)]] -= 1
    rows = []
    for dsg in dict.fromkeys(designs):
        sel = np.flatnonzero(designs == dsg)
        studies = pd.unique(con["study"].to_numpy()[sel])
        a = len(dsg.split(":"))
        df = sel.size - (a - 1)
        if df > 0:
            sub = _subset_groups(res, studies, X[:, [cols[(dsg, t)] for t in dsg.split(":")[1:]]])
            q = _gls(sub, 0.0).Q
        else:
            q = 0.0
        rows.append({"design": dsg, "studies": len(studies), "Q": q, "df": df, "pval": _chi2(q, df)})
    return X, pd.DataFrame(rows)


def _subset_groups(res: NetworkResult, studies, X):
    con = res.contrasts
    keep = np.isin(con["study"].to_numpy(), studies)
    parts = []
    for rows, y, V, _ in res._groups.parts:
        sel = keep[rows[:, 0]]
        if sel.any():
            parts.append((rows[sel], y[sel], V[sel], X[rows[sel]]))
    return _Groups(tuple(parts), int(keep.sum()), int(X.shape[1]))


def _direct_estimates(res: NetworkResult, tau2: float) -> dict:
    """Per treatment pair with direct evidence: (pooled direct estimate, its variance, studies), from each
    study's arm Laplacian ``L_i = C_i' (V_i + tau^2 R_i)^-1 C_i``: pair (a, b) of study i has the weight
    ``-L_i[a, b]`` and the estimate ``y_a - y_b`` (Rücker 2012's reduced weights)."""
    con = res.contrasts
    base_of, treat_of = con["base"].to_numpy(), con["treat"].to_numpy()
    T = {t: q for q, t in enumerate(res.treatments)}
    acc = {}
    for rows, y, V, _ in res._groups.parts:
        g, m = y.shape
        W = np.linalg.inv(V + tau2 * _R(m))
        for s in range(g):
            r = rows[s]
            arms = [base_of[r[0]]] + list(treat_of[r])
            C = np.zeros((m, m + 1))
            C[:, 0] = -1
            C[np.arange(m), np.arange(1, m + 1)] = 1
            L = C.T @ W[s] @ C
            ya = np.concatenate([[0.0], y[s]])
            for u in range(m + 1):
                for v in range(u + 1, m + 1):
                    a, b = arms[u], arms[v]
                    w = -L[u, v]
                    est = ya[u] - ya[v]
                    if T[a] > T[b]:
                        a, b, est = b, a, -est
                    e = acc.setdefault((a, b), [0.0, 0.0, 0])
                    e[0] += w * est
                    e[1] += w
                    e[2] += 1
    return {key: (s / w, 1.0 / w, k) for key, (s, w, k) in acc.items()}


def fit_design(net: NetworkResult, X, tau2=None) -> dict:
    """The network's contrasts and V refitted with another design ``X`` (one row per contrast, in
    ``net.contrasts`` order), e.g. the additive component model: tau^2 by the network's method unless
    given; returns tau2, beta, vb, the common-effect Q, its df and Q at tau^2."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] != net.k:
        raise InputError(f"X must have one row per contrast ({net.k}), got shape {X.shape}")
    G = net._groups.with_X(X)
    common = _gls(G, 0.0)
    if tau2 is None:
        tau2 = _estimate_tau2(G, net.method)
    fit = _gls(G, tau2)
    return {"tau2": float(tau2), "beta": fit.beta, "vb": fit.vb, "Q_common": common.Q, "df": G.k - G.p,
            "Q_random": fit.Q}


# ================================================================================================
# the entry point


def network(data: pd.DataFrame, study="study", treatment="treatment", measure=None, reference=None, method="REML",
            ci_method="wald", level=0.95, *, treat1="treat1", treat2="treat2", yi="yi", sei="sei",
            var_shared=None, V=None, n="n", mean="mean", sd="sd", events="events", small_values="good",
            order=None, tau2=None, **arm_options) -> NetworkResult:
    """Fit a network meta-analysis (contrast-based; see the module docstring for the model).

    Input, one of:

    - arm rows: ``study``, ``treatment`` and ``n``/``mean``/``sd`` (MD, SMD) or ``events``/``n``
      (OR, RR, RD); ``measure`` is required. Contrasts against each study's first arm and their exact
      covariance come from :func:`pfps_meta.models.vcalc.contrasts_from_arms` (``arm_options``:
      ``sd_pool``, ``correct``, ``add``).
    - contrast rows: ``study``, ``treat1``, ``treat2``, ``yi`` (treat1 minus treat2) and ``sei``. A
      multi-arm study gives either all its pairs (netmeta's layout; they must be consistent), or its
      contrasts against one baseline (treat2) with ``var_shared`` (a column: the variance of the
      shared arm's estimate), or the covariance of all contrasts as ``V`` (BlockDiagonal or dense).

    ``method``: "REML" (default), "ML", "DL" (netmeta's generalised DerSimonian-Laird), "FE".
    ``ci_method``: "wald" (z), "t" (t with the network's df, netmeta 3.6 ``method.random.ci =
    "t-dist"``), "hk" (Hartung-Knapp: the covariance times ``Q(tau^2) / df`` and t(df); with two
    treatments this is metafor ``rma(test = "knha")``). Prediction intervals: ``d +- t(df)
    sqrt(se^2 + tau^2)`` (netmeta), when df >= 2. ``reference`` defaults to the first treatment in
    ``order`` (default: sorted names). ``small_values``: "good" (a lower value is better, e.g. pain) or
    "bad", for the rankings. ``tau2``: a fixed tau^2 (netmeta's ``tau.preset``) instead of estimating it.
    """
    method, ci_method, level = _check_network_options(data, method, ci_method, level, small_values)
    measure, con = _read_network_contrasts(data, study, treatment, measure, treat1, treat2, yi, sei, var_shared, V,
                                           n, mean, sd, events, arm_options)
    treatments, reference = _treatment_order(con, order, reference)
    T = len(treatments)
    pos, keep, X = _contrast_design(con, treatments, reference)
    G = _Groups.build(con.y, con.V, X)
    df = G.k - G.p
    common = _network_fit(G, "common", 0.0, method, T, keep)
    tau2 = _network_tau2(G, method, tau2)
    random = _network_fit(G, "random", tau2, method, T, keep)
    table, n_studies = _contrast_table(con, pos)
    return NetworkResult(treatments, reference, measure, method, ci_method, level, common, random, G.k,
                         n_studies, df, table, G, X, small_values, dict(con.arms_n))


def _check_network_options(data, method, ci_method, level, small_values):
    """Validate the data frame and the scalar options of :func:`network`; returns the normalised
    ``(method, ci_method, level)``."""
    if not isinstance(data, pd.DataFrame):
        raise InputError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if len(data) == 0:
        raise InputError("data has no rows")
    method = str(method).upper()
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    ci_method = str(ci_method).lower()
    if ci_method not in CI_METHODS:
        raise InputError(f"ci_method must be one of {', '.join(CI_METHODS)}, got {ci_method!r}")
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise InputError(f"level must be a number in (0, 1), got {level!r}") from None
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level:g}")
    if small_values not in ("good", "bad"):
        raise InputError(f"small_values must be 'good' or 'bad', got {small_values!r}")
    return method, ci_method, level


def _read_network_contrasts(data, study, treatment, measure, treat1, treat2, yi, sei, var_shared, V, n, mean,
                            sd, events, arm_options):
    """The contrasts and their covariance from arm rows or contrast rows, whichever layout ``data``
    has; returns ``(measure, contrasts)`` with the measure's name normalised ("effect" if unnamed)."""
    arm_layout = treatment in data.columns and not (treat1 in data.columns and treat2 in data.columns)
    if arm_layout:
        if measure is None:
            raise InputError(f"measure is required with arm rows (one of {', '.join(_ARM_MEASURES)})")
        measure = str(measure).upper()
        if measure not in _ARM_MEASURES:
            raise InputError(f"measure must be one of {', '.join(_ARM_MEASURES)} for arm rows, got {measure!r}")
        con = from_arm_rows(data, study, treatment, measure, n, mean, sd, events, arm_options)
    else:
        if treat1 not in data.columns or treat2 not in data.columns:
            raise InputError(f"data needs either a '{treatment}' column (arm rows) or '{treat1}' and '{treat2}' "
                             "(contrast rows)")
        if measure is not None and str(measure).upper() not in measure_registry.MEASURES:
            raise InputError(f"unknown measure {measure!r} (known: {', '.join(measure_registry.MEASURES)})")
        measure = "effect" if measure is None else str(measure).upper()
        con = from_contrast_rows(data, study, treat1, treat2, yi, sei, var_shared, V)
    return measure, con


def _treatment_order(con, order, reference):
    """The network's treatments in ``order`` (default: sorted names) and the checked reference
    treatment (default: the first); the network must be connected."""
    present = sorted(set(con.treat) | set(con.base))
    if order is not None:
        order = [str(t) for t in order]
        missing = [t for t in present if t not in order]
        if missing:
            raise InputError(f"order misses treatment(s) {', '.join(missing)}")
        treatments = tuple(t for t in order if t in present)
    else:
        treatments = tuple(present)
    if reference is None:
        reference = treatments[0]
    reference = str(reference)
    if reference not in treatments:
        raise InputError(f"reference '{reference}' is not in the network (treatments: {', '.join(treatments)})")
    check_connected(con, treatments)
    return treatments, reference


def _contrast_design(con, treatments, reference):
    """The contrast design: +1 in the treatment's column, -1 in the baseline's, the reference column
    dropped; returns ``(pos, keep, X)`` (treatment -> column, kept columns, design)."""
    T = len(treatments)
    pos = {t: q for q, t in enumerate(treatments)}
    keep = [q for q, t in enumerate(treatments) if t != reference]
    full = np.zeros((con.y.size, T))
    full[np.arange(con.y.size), [pos[t] for t in con.treat]] += 1
    full[np.arange(con.y.size), [pos[t] for t in con.base]] -= 1
    X = full[:, keep]
    return pos, keep, X


def _network_fit(G, model, tau2, method, T, keep) -> NetworkFit:
    """The GLS fit at ``tau2`` as a :class:`NetworkFit`: effects and covariance against the reference
    (zero row and column for it), Q and the log-likelihood (REML/ML, or the common-effect model)."""
    f = _gls(G, tau2)
    d = np.zeros(T)
    d[keep] = f.beta
    C = np.zeros((T, T))
    C[np.ix_(keep, keep)] = f.vb
    if method in ("REML", "ML") or model == "common":
        ll = _loglik(G, tau2, method == "REML", _xtx_logdet(G))[0] if model == "random" else \
            -0.5 * (G.k * math.log(2 * math.pi) + f.logdet + f.Q)
    else:
        ll = None
    return NetworkFit(model, float(tau2), d, C, f.Q, ll)


def _network_tau2(G, method, tau2):
    """tau^2 estimated by ``method``, or the given fixed value checked to be finite and >= 0."""
    if tau2 is None:
        tau2 = _estimate_tau2(G, "FE" if method == "FE" else method)
    else:
        try:
            tau2 = float(tau2)
        except (TypeError, ValueError):
            raise InputError(f"tau2 must be a number >= 0, got {tau2!r}") from None
        if not (np.isfinite(tau2) and tau2 >= 0):
            raise InputError(f"tau2 must be a finite number >= 0, got {tau2!r}")
    return tau2


def _contrast_table(con, pos):
    """One row per contrast (study, treat, base, yi, vi, design: the study's treatments joined by ':'
    in network order); returns ``(table, number of studies)``."""
    designs = {}
    for s, t, b in zip(con.study, con.treat, con.base):
        designs.setdefault(s, set()).update((t, b))
    design_of = {s: ":".join(sorted(v, key=lambda x: pos[x])) for s, v in designs.items()}
    table = pd.DataFrame({"study": con.study, "treat": con.treat, "base": con.base, "yi": con.y,
                          "vi": con.V.diagonal(), "design": [design_of[s] for s in con.study]})
    return table, len(designs)


# ================================================================================================
# printing (netmeta-like)


def _fmt_ci(lb, ub, digits=4):
    return f"[{format_number(lb, digits)}; {format_number(ub, digits)}]"


@renders("text", "NetworkResult")
def _network_text(res: NetworkResult, digits: int = 4) -> str:
    lines = []
    multi = int((res.contrasts["study"].value_counts(sort=False) > 1).sum())
    lines.append(f"Network meta-analysis ({res.measure}): {res.n_studies} studies, {len(res.treatments)} treatments, "
                 f"{res.k} contrasts ({multi} multi-arm {'study' if multi == 1 else 'studies'})")
    label = {"wald": "Wald z", "t": f"t({res.df})", "hk": f"Hartung-Knapp t({res.df})"}[res.ci_method]
    pct = f"{100 * res.level:g}%"
    for fit in ((res.common,) if res.method == "FE" else (res.common, res.random)):
        lines.append("")
        if fit.model == "common":
            lines.append(f"Common-effect model, against {res.reference} ({pct} CI: Wald z)")
            saved, res.ci_method = res.ci_method, "wald"
        else:
            lines.append(f"Random-effects model ({res.method}), against {res.reference} ({pct} CI: {label}; "
                         f"{pct} PI: t({res.df}))")
            saved = res.ci_method
        try:
            frame = res.to_frame(model=fit.model)
        finally:
            res.ci_method = saved
        width = max(len(t) for t in res.treatments)
        head = f"  {'treatment':<{width}}  {'estimate':>9}  {'se':>7}  {pct + '-CI':>20}"
        if fit.model == "random":
            head += f"  {pct + '-PI':>20}"
        lines.append(head + "  p")
        for r in frame.to_dict("records"):
            row = (f"  {r['treatment']:<{width}}  {format_number(r['estimate'], digits):>9}  "
                   f"{format_number(r['se'], digits):>7}  {_fmt_ci(r['ci_lb'], r['ci_ub'], digits):>20}")
            if fit.model == "random":
                row += f"  {_fmt_ci(r['pi_lb'], r['pi_ub'], digits):>20}"
            lines.append(row + f"  {format_p(r['pval'], bare=True)}")
    lines.append("")
    lines.append(f"Quantifying heterogeneity / inconsistency: tau^2 = {format_number(res.tau2, 4)}; "
                 f"tau = {format_number(math.sqrt(res.tau2), 4)}; I^2 = {100 * res.I2:.1f}%")
    dd = res.decomp_design()
    lines.append("Tests of heterogeneity (within designs) and inconsistency (between designs):")
    lines.append(f"  {'':<16}{'Q':>9}  {'d.f.':>4}  p-value")
    for key, name in (("total", "Total"), ("within", "Within designs"), ("between", "Between designs")):
        e = dd["common"][key]
        lines.append(f"  {name:<16}{format_number(e['Q'], 2):>9}  {e['df']:>4}  {format_p(e['pval'], bare=True)}")
    r = dd["random"]
    lines.append(f"  Between designs, random effects (tau^2 within = {format_number(r['tau2_within'], 4)}): "
                 f"Q = {format_number(r['Q_between'], 2)}, d.f. = {r['df_between']}, p = {format_p(r['pval_between'], bare=True)}")
    lines.append("")
    ps = res.pscores().sort_values(ascending=False)
    lines.append(f"P-scores ({'lower' if res.small_values == 'good' else 'higher'} values are better): " +
                 ", ".join(f"{t} {v:.3f}" for t, v in ps.items()))
    lines.append(RANKING_WARNING)
    return "\n".join(lines)


@renders("html", "NetworkResult")
def _network_html(res: NetworkResult) -> str:
    import html as _html

    frame = res.to_frame()
    pct = f"{100 * res.level:g}%"
    cells = "".join(
        f"<tr><td>{_html.escape(str(r['treatment']))}</td><td>{format_number(r['estimate'])}</td>"
        f"<td>{format_number(r['se'])}</td><td>{_fmt_ci(r['ci_lb'], r['ci_ub'])}</td>"
        f"<td>{_fmt_ci(r['pi_lb'], r['pi_ub'])}</td><td>{format_p(r['pval'], bare=True)}</td></tr>"
        for r in frame.to_dict("records"))
    ps = res.pscores().sort_values(ascending=False)
    return (f"<div class='pfps-network'><p>Network meta-analysis ({_html.escape(res.measure)}, {res.method}): "
            f"{res.n_studies} studies, {len(res.treatments)} treatments; against {_html.escape(res.reference)}; "
            f"tau<sup>2</sup> = {format_number(res.tau2)}, I<sup>2</sup> = {100 * res.I2:.1f}%, "
            f"Q = {format_number(res.Q, 2)} on {res.df} df (p {format_p(res.pval_Q)})</p>"
            f"<table><thead><tr><th>treatment</th><th>estimate</th><th>se</th><th>{pct} CI</th><th>{pct} PI</th>"
            f"<th>p</th></tr></thead><tbody>{cells}</tbody></table>"
            f"<p>P-scores: {', '.join(f'{_html.escape(t)} {v:.3f}' for t, v in ps.items())}</p>"
            f"<p><em>{_html.escape(RANKING_WARNING)}</em></p></div>")
