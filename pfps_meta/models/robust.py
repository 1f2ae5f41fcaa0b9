"""Cluster-robust (sandwich) inference for dependent-effect models.

A fitted model gives the fixed effects ``beta``, the design ``X``, the effects ``y`` and the marginal
covariance ``M = V + Z G Z'`` at the estimate. :func:`cluster_robust` replaces the model-based
covariance of ``beta`` by a sandwich that only assumes independence between the robust clusters:

``vcov = B (sum_j X_j' W_j A_j e_j e_j' A_j' W_j X_j) B``,   ``B = (sum_j X_j' W_j X_j)^{-1}``,

with ``e_j = y_j - X_j beta`` the residuals of cluster ``j`` and ``W`` the working weights (the model's
own ``M^{-1}``, or the weight matrix the fit used). The adjustment ``A_j`` and the reference
distributions are those of

* ``"CR0"``: ``A_j = I``; t tests with ``m - p`` df and an F(q, m - p) omnibus test, as metafor 3.8-1
  ``robust(fit, cluster, adjust = FALSE)``.
* ``"CR1"``: CR0 times ``m / (m - p)``, metafor 3.8-1's default ``robust(fit, cluster)``.
* ``"CR2"``: the bias-reduced linearisation of Bell & McCaffrey (2002, Surv Methodol 28:169) with
  the model as working covariance, as generalised by Pustejovsky & Tipton (2018, J Bus Econ Stat
  36:672; PT2018): ``A_j = L_j (L_j' (Theta_j - X_j B X_j') L_j)^{-1/2} L_j'`` with
  ``Theta_j = M_j = L_j L_j'`` (for explicit weights the middle matrix is
  ``L_j' [(I - H)Theta(I - H)']_jj L_j``, ``H = X B X' W``). Tests of one coefficient use their
  Satterthwaite df ``2 E[v]^2 / Var[v]`` under the working model (Bell & McCaffrey 2002; PT2018)
  and the omnibus test is the Hotelling T² approximation "HTZ" (Tipton & Pustejovsky 2015, J Educ
  Behav Stat 40:604; PT2018). This is clubSandwich 0.5.8 ``vcovCR(fit, cluster, type = "CR2")`` with
  ``coef_test(test = "Satterthwaite")``, ``conf_int()`` and ``Wald_test(test = "HTZ")``, including
  its choice to take inverse square roots with eigenvalues below 1e-12 set to zero.

Everything runs cluster by cluster (clusters of equal size are stacked and handled in one batched
numpy call), so the cost is linear in the number of clusters; no ``k x k`` matrix is formed.
The Satterthwaite and HTZ degrees of freedom need traces of products of ``m x m`` matrices of the
form ``diag(d) + F E'``; they are computed from ``p x p`` and ``r x r`` cross-products instead.
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass, field

import numpy as np

from .. import distributions
from ..errors import InputError, PfpsWarning
from ..formatting import format_number, format_p, json_ready
from .blocks import BlockDiagonal

__all__ = ["cluster_robust", "RobustResult", "RobustWaldTest", "ADJUSTMENTS"]

#: the adjustments cluster_robust knows, and where each comes from
ADJUSTMENTS = {
    "CR0": "CR0 (no small-sample factor; metafor robust(adjust = FALSE))",
    "CR1": "CR1 (factor m/(m - p); metafor robust())",
    "CR2": "CR2 (bias-reduced linearisation, working model = fitted M; clubSandwich vcovCR)",
}

#: eigenvalues at or below this are treated as zero in inverse square roots (clubSandwich's
#: matrix_power(tol = -12))
_EIG_TOL = 1e-12


class RobustDfWarning(PfpsWarning):
    """A Satterthwaite or HTZ denominator df is so small that the test has no reference distribution."""


# ------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class RobustWaldTest:
    """An omnibus Wald test of ``C beta = 0`` with a cluster-robust covariance.

    ``statistic`` is the F statistic (for CR2/HTZ already multiplied by ``delta``), on
    ``df_num`` and ``df_denom`` df; ``chisq`` is the unscaled quadratic form
    ``(C b)' (C V C')^{-1} (C b)`` and ``chisq_p`` its chi-square(q) p-value (large-sample).
    """

    test: str
    coefficients: tuple
    statistic: float
    df_num: int
    df_denom: float
    p: float
    delta: float
    chisq: float
    chisq_p: float

    def to_dict(self) -> dict:
        return json_ready({"test": self.test, "coefficients": list(self.coefficients),
                           "statistic": self.statistic, "df_num": self.df_num,
                           "df_denom": self.df_denom, "p": self.p, "delta": self.delta,
                           "chisq": self.chisq, "chisq_p": self.chisq_p})

    def __str__(self) -> str:
        name = "HTZ (Hotelling T², clubSandwich)" if self.test == "HTZ" else "F (metafor robust() QM)"
        return (f"Omnibus {name} test of {', '.join(map(str, self.coefficients))}: "
                f"F({self.df_num}, {format_number(self.df_denom, 2)}) = {format_number(self.statistic)}, "
                f"p {format_p(self.p)}")


@dataclass(frozen=True)
class _Pieces:
    """What further Wald tests need, stacked over clusters (``m`` first): ``GG[j] = G_j G_j'``
    (``p x p``) and the factors ``F[j]``, ``E[j]`` (``p x r``) of the off-diagonal part, so that the
    ``m x m`` matrix ``P`` of the df formulas (clubSandwich's get_P_array) for contrasts ``c, d`` is
    ``diag(c' GG_j d) + (F c)(E d)'``."""

    GG: np.ndarray
    F: np.ndarray
    E: np.ndarray


@dataclass(frozen=True)
class RobustResult:
    """Cluster-robust coefficients, their covariance and an omnibus Wald test.

    Attributes
    ----------
    adjust : "CR0", "CR1" or "CR2"
    df_method : str
        ``"m - p"`` (CR0/CR1, as metafor) or ``"Satterthwaite"`` (CR2, as clubSandwich).
    m, k : int
        Robust clusters and effects.
    names : tuple of str
    estimate, se, t, df, p, ci_low, ci_high : arrays, one entry per coefficient
    vcov : (p, p) array
    level : float
    wald : RobustWaldTest
        The omnibus test (default: every coefficient but the intercept, as metafor's ``btt``).
    """

    adjust: str
    df_method: str
    m: int
    k: int
    names: tuple
    estimate: np.ndarray
    se: np.ndarray
    t: np.ndarray
    df: np.ndarray
    p: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    vcov: np.ndarray
    level: float
    wald: RobustWaldTest
    cluster_sizes: tuple = ()
    _pieces: _Pieces | None = field(default=None, repr=False, compare=False)

    # -------------------------------------------------------------- further tests
    def wald_test(self, coefficients=None, constraints=None) -> RobustWaldTest:
        """Wald test of ``C beta = 0``: ``coefficients`` (names or 0-based positions; the rows of
        ``C`` are then unit vectors) or an explicit ``constraints`` matrix ``C`` (``q x p``).
        CR0/CR1: F(q, m - p) as metafor's ``anova(robust(...), btt=)``; CR2: clubSandwich's HTZ."""
        C, labels = _constraint_matrix(constraints, coefficients, self.names)
        return _wald(self.adjust, C, labels, self.estimate, self.vcov, self.m, self._pieces)

    # -------------------------------------------------------------- presentation
    def heading(self) -> str:
        if self.adjust == "CR2":
            dfs = "Satterthwaite df per coefficient; omnibus test HTZ (clubSandwich)"
        else:
            dfs = f"t tests with m - p = {self.m - len(self.names)} df; omnibus F test (metafor robust())"
        return (f"Cluster-robust inference: {ADJUSTMENTS[self.adjust]}; {dfs}; "
                f"{self.m} clusters, {self.k} effects")

    def to_frame(self):
        import pandas as pd

        lo, hi = _ci_names(self.level)
        return pd.DataFrame({"estimate": self.estimate, "se": self.se, "t": self.t, "df": self.df,
                             "p": self.p, lo: self.ci_low, hi: self.ci_high},
                            index=pd.Index(list(self.names), name="coefficient"))

    def to_dict(self) -> dict:
        coefs = [{"name": n, "estimate": b, "se": s, "t": t, "df": d, "p": p, "ci_low": lo,
                  "ci_high": hi}
                 for n, b, s, t, d, p, lo, hi in zip(self.names, self.estimate, self.se, self.t,
                                                     self.df, self.p, self.ci_low, self.ci_high)]
        return json_ready({"adjust": self.adjust, "df_method": self.df_method, "m": self.m,
                           "k": self.k, "level": self.level, "coefficients": coefs,
                           "vcov": self.vcov, "wald": self.wald.to_dict(),
                           "heading": self.heading()})

    def summary(self) -> str:
        width = max([11] + [len(str(n)) for n in self.names])
        pct = format_number(100 * self.level, 0 if float(100 * self.level).is_integer() else 1)
        head = (f"{'':{width}}  {'estimate':>9} {'se':>9} {'t':>8} {'df':>7} {'p':>8}   "
                f"{pct}% CI")
        rows = [self.heading(), "", head]
        for i, name in enumerate(self.names):
            rows.append(f"{str(name):{width}}  {format_number(self.estimate[i]):>9} "
                        f"{format_number(self.se[i]):>9} {format_number(self.t[i], 3):>8} "
                        f"{format_number(self.df[i], 2):>7} {format_p(self.p[i], bare=True):>8}   "
                        f"[{format_number(self.ci_low[i])}, {format_number(self.ci_high[i])}]")
        rows += ["", str(self.wald)]
        if self.adjust == "CR2" and (np.any(self.df < 4) or self.wald.df_denom < 4):
            rows.append("Note: df below 4; such tests can be unreliable (Tipton 2015, Psychol Methods "
                        "20:375; Pustejovsky & Tipton 2018)")
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        lo, hi = _ci_names(self.level)
        cells = "".join(
            "<tr><th>{}</th>{}</tr>".format(
                html.escape(str(n)),
                "".join(f"<td>{v}</td>" for v in (
                    format_number(self.estimate[i]), format_number(self.se[i]),
                    format_number(self.t[i], 3), format_number(self.df[i], 2),
                    format_p(self.p[i], bare=True), format_number(self.ci_low[i]),
                    format_number(self.ci_high[i]))))
            for i, n in enumerate(self.names))
        head = "".join(f"<th>{h}</th>" for h in ("", "estimate", "se", "t", "df", "p", lo, hi))
        return (f"<div><p><b>{html.escape(self.heading())}</b></p>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"
                f"<p>{html.escape(str(self.wald))}</p></div>")


def _ci_names(level):
    pct = f"{100 * level:g}"
    return f"ci_low_{pct}", f"ci_high_{pct}"


# ------------------------------------------------------------------------------------------------
# the computation


def cluster_robust(X, y, beta, marginal, cluster, adjust: str = "CR2", level: float = 0.95,
                   names=None, weights=None, btt=None) -> RobustResult:
    """Cluster-robust covariance, t tests and an omnibus Wald test for a fitted linear model.

    Parameters
    ----------
    X : (k, p) array or DataFrame
        Fixed-effects design (a DataFrame's columns give the coefficient names).
    y : (k,) array
        The effects.
    beta : (p,) array
        The model's estimate (residuals are ``y - X beta``).
    marginal : BlockDiagonal or (k, k) array
        The model's marginal covariance ``M`` at the estimate. Each of its blocks must lie inside one
        robust cluster (the random effects nested within the cluster); blocks are merged per cluster.
    cluster : (k,) labels
        The robust cluster of each row.
    adjust : "CR2" (default), "CR1" or "CR0"
    level : float
        Confidence level of the intervals.
    names : sequence of str, optional
        Coefficient names.
    weights : BlockDiagonal or (k, k) array, optional
        The weight matrix the model was fitted with (metafor ``rma.mv(W = )``); default ``M^{-1}``.
        With explicit weights CR2 uses clubSandwich's general (not inverse-variance) formulas.
    btt : sequence of names or 0-based positions, optional
        Coefficients in the omnibus test; default all but an intercept (a leading column of ones),
        as metafor.

    Returns
    -------
    RobustResult
    """
    adjust = _check_adjust(adjust)
    level = _check_level(level)
    X, names = _design(X, names)
    k, p = X.shape
    y = _vector(y, "y", k)
    beta = _vector(beta, "beta", p)
    labels, codes = _cluster_codes(cluster, k)
    m = labels.size
    _check_cluster_count(m, p, adjust)
    Mblocks = _cluster_blocks(marginal, codes, labels, k, "marginal")
    Wblocks = None if weights is None else _cluster_blocks(weights, codes, labels, k, "weights")
    inverse_var = Wblocks is None

    parts = _cluster_parts(X, y - X @ beta, Mblocks, Wblocks, labels)
    B = _bread(parts)
    vcov, pieces = _sandwich_vcov(parts, B, adjust, inverse_var, m, p)
    se, t, df, df_method, pval, crit = _coefficient_tests(beta, vcov, adjust, pieces, m, p, level)
    C, wald_labels = _constraint_matrix(None, _default_btt(X, names) if btt is None else btt, names)
    wald = _wald(adjust, C, wald_labels, beta, vcov, m, pieces)
    sizes = np.bincount(codes, minlength=m)
    return RobustResult(adjust=adjust, df_method=df_method, m=int(m), k=int(k), names=tuple(names),
                        estimate=beta.copy(), se=se, t=t, df=df, p=pval, ci_low=beta - crit * se,
                        ci_high=beta + crit * se, vcov=vcov, level=level, wald=wald,
                        cluster_sizes=tuple(int(s) for s in sizes), _pieces=pieces)


def _check_cluster_count(m, p, adjust):
    """At least 2 clusters, and for CR0/CR1 (t tests on m - p df) more clusters than coefficients."""
    if m < 2:
        raise InputError(f"cluster: {m} cluster found; cluster-robust inference needs at least 2")
    if adjust in ("CR0", "CR1") and m <= p:
        raise InputError(f"cluster: {m} clusters for {p} coefficients; {adjust} needs more clusters "
                         "than coefficients (its t tests have m - p df)")


def _cluster_parts(X, resid, Mblocks, Wblocks, labels):
    """The clusters' pieces stacked by block size: one dict per size group with ``ids``, ``X`` (n_g, s,
    p), residuals ``e`` (n_g, s), marginal blocks ``Th`` (n_g, s, s) and their Cholesky factors ``L``,
    weights ``W`` (``Th^{-1}`` unless ``Wblocks`` is given) and ``XW = X' W``."""
    inverse_var = Wblocks is None
    groups = _size_groups(Mblocks[0])
    parts = []
    for ids in groups:
        rows = np.stack([Mblocks[0][j] for j in ids])
        Th = np.stack([Mblocks[1][j] for j in ids])
        try:
            L = np.linalg.cholesky(Th)
        except np.linalg.LinAlgError:
            raise InputError(f"marginal: the block of cluster '{labels[ids[_first_bad(Th)]]}' "
                             "is not positive definite") from None
        if inverse_var:
            W = _chol_inverse(L)
        else:
            W = np.stack([Wblocks[1][j] for j in ids])
            if not np.array_equal(np.stack([Wblocks[0][j] for j in ids]), rows):
                raise InputError("weights: its blocks do not cover the same rows as the marginal "
                                 "covariance within each cluster")
        Xg = X[rows]
        XW = _T(Xg) @ W
        parts.append({"ids": ids, "X": Xg, "e": resid[rows], "Th": Th, "L": L, "W": W, "XW": XW})
    return parts


def _bread(parts):
    """The sandwich's bread ``B = (X' W X)^{-1}``, checked positive definite and symmetrised."""
    XWX = sum((g["XW"] @ g["X"]).sum(axis=0) for g in parts)
    try:
        B = np.linalg.inv(XWX)
        np.linalg.cholesky(B)
    except np.linalg.LinAlgError:
        raise InputError("X: X' W X is singular (a coefficient is not identified)") from None
    return (B + B.T) / 2


def _sandwich_vcov(parts, B, adjust, inverse_var, m, p):
    """The robust covariance ``B (sum_j E_j e_j e_j' E_j') B`` with ``E_j = X_j' W_j`` (CR0, CR1 with
    the factor ``m / (m - p)``) or ``X_j' W_j A_j`` (CR2); returns it symmetrised and the CR2 pieces
    (None otherwise)."""
    pieces = None
    if adjust == "CR2":
        E_mats, pieces = _cr2(parts, B, inverse_var, p)
    else:
        E_mats = [g["XW"] for g in parts]
    comps = np.concatenate([(Em @ g["e"][:, :, None])[:, :, 0] for Em, g in zip(E_mats, parts)])
    meat = comps.T @ comps
    vcov = B @ meat @ B
    if adjust == "CR1":
        vcov = vcov * (m / (m - p))
    return (vcov + vcov.T) / 2, pieces


def _coefficient_tests(beta, vcov, adjust, pieces, m, p, level):
    """Per-coefficient t tests: se, t, df (Satterthwaite for CR2, m - p otherwise), the df method's
    name, two-sided p and the t critical value for ``level``."""
    se = np.sqrt(np.diag(vcov))
    t = beta / se
    if adjust == "CR2":
        df = np.array([_satterthwaite(np.eye(p)[[i]], pieces) for i in range(p)])
        df_method = "Satterthwaite"
    else:
        df = np.full(p, float(m - p))
        df_method = "m - p"
    pval = 2 * distributions.t_sf(np.abs(t), df)
    crit = distributions.t_isf((1 - level) / 2, df)
    return se, t, df, df_method, pval, crit


def _cr2(parts, B, inverse_var, p):
    """CR2 adjustment matrices and the pieces of the df formulas (clubSandwich's CR2 and get_GH).

    Returns the adjusted estimating matrices ``X_j' W_j A_j`` per size group and a :class:`_Pieces`.
    """
    Lb = np.linalg.cholesky(B)
    if not inverse_var:
        # sum_j X_j' W_j Theta_j W_j X_j, and the lower Cholesky factor of B (that sum) B
        TWX = [g["Th"] @ g["W"] @ g["X"] for g in parts]
        XWTWX = sum((g["XW"] @ twx).sum(axis=0) for g, twx in zip(parts, TWX))
        Omega_w = B @ XWTWX @ B
        Omega_ct = np.linalg.cholesky((Omega_w + Omega_w.T) / 2)
    E_mats, GG, Fs, Es = [], [], [], []
    for gi, g in enumerate(parts):
        Xg, Th, L, W, XW = g["X"], g["Th"], g["L"], g["W"], g["XW"]
        XBX = Xg @ B @ _T(Xg)
        if inverse_var:
            # Theta_j (I - H_jj)' restricted to the block: Theta_j - X_j B X_j'
            mid = Th - XBX
        else:
            HT = XBX @ W @ Th                                         # H_jj Theta_j, H = X B X' W
            mid = Th - HT - _T(HT) + Xg @ Omega_w @ _T(Xg)
        G = _T(L) @ mid @ L                                           # L' mid L
        A = L @ _inv_sqrt(G) @ _T(L)                                  # L G^{-1/2} L'
        Em = XW @ A                                                   # X_j' W_j A_j
        E_mats.append(Em)
        ME = B @ Em                                                   # B X_j' W_j A_j
        Gd = ME @ L
        GG.append(Gd @ _T(Gd))
        MEX = ME @ Xg
        if inverse_var:
            H1 = MEX @ Lb
            Fs.append(-H1)
            Es.append(H1)
        else:
            H1 = MEX @ Lb
            H2 = ME @ TWX[gi] @ Lb
            H3 = MEX @ Omega_ct
            Fs.append(np.concatenate([H3, -H1, -H2], axis=2))
            Es.append(np.concatenate([H3, H2, H1], axis=2))
    order = np.argsort(np.concatenate([g["ids"] for g in parts]), kind="stable")
    pieces = _Pieces(GG=np.concatenate(GG)[order], F=np.concatenate(Fs)[order],
                     E=np.concatenate(Es)[order])
    return E_mats, pieces


def _satterthwaite(c, pieces) -> float:
    """Satterthwaite df of ``c' beta`` (Bell & McCaffrey 2002; clubSandwich's Satterthwaite()):
    ``(tr P)^2 / sum(P^2)`` with ``P = diag(d) + f e'``, ``d_j = c' GG_j c``, ``f_j = F_j' c``,
    ``e_j = E_j' c``."""
    c = c.ravel()
    d = np.einsum("p,npq,q->n", c, pieces.GG, c)
    f = np.einsum("p,npr->nr", c, pieces.F)
    e = np.einsum("p,npr->nr", c, pieces.E)
    fe = np.einsum("nr,nr->n", f, e)
    trace = d.sum() + fe.sum()
    sumsq = (d ** 2).sum() + 2 * (d * fe).sum() + np.sum((f.T @ f) * (e.T @ e))
    if not sumsq > 0:
        raise InputError("X: a coefficient has no cluster-level variation left for its "
                         "Satterthwaite df (its robust variance is zero)")
    return float(trace ** 2 / sumsq)


def _htz_nu(C, pieces) -> float:
    """Degrees of freedom ``nu`` of the HTZ approximation (clubSandwich's Wald_testing with
    total_variance_mat): ``q (q + 1) / sum_{s,t} Var-terms`` after whitening by ``Omega^{-1/2}``."""
    q = C.shape[0]
    K = np.einsum("sp,npq,tq->nst", C, pieces.GG, C)
    Fc = np.einsum("sp,npr->nsr", C, pieces.F)
    Ec = np.einsum("sp,npr->nsr", C, pieces.E)
    Omega = K.sum(axis=0) + np.einsum("nsr,ntr->st", Fc, Ec)
    On = _inv_sqrt((Omega + Omega.T)[None] / 2)[0]
    K = np.einsum("as,nst,tb->nab", On, K, On)
    Fc = np.einsum("as,nsr->nar", On, Fc)
    Ec = np.einsum("as,nsr->nar", On, Ec)
    FE = np.einsum("nsr,ntr->nst", Fc, Ec)                            # f_{j,s} . e_{j,t}
    QF = np.einsum("nsu,ntv->stuv", Fc, Fc)
    QE = np.einsum("nsu,ntv->stuv", Ec, Ec)
    Kd = np.einsum("nss->ns", K)
    FEd = np.einsum("nss->ns", FE)
    S1 = (np.einsum("nst,nst->st", K, K) + np.einsum("nst,nst->st", K, FE + np.swapaxes(FE, 1, 2))
          + np.einsum("stuv,tsuv->st", QF, QE))
    S2 = (np.einsum("ns,nt->st", Kd, Kd) + np.einsum("ns,nt->st", Kd, FEd)
          + np.einsum("nt,ns->st", Kd, FEd) + np.einsum("stuv,stuv->st", QF, QE))
    return float(q * (q + 1) / np.sum(S1 + S2))


def _wald(adjust, C, labels, beta, vcov, m, pieces) -> RobustWaldTest:
    q, p = C.shape
    Cb = C @ beta
    CVC = C @ vcov @ C.T
    try:
        chisq = float(Cb @ np.linalg.solve(CVC, Cb))
    except np.linalg.LinAlgError:
        raise InputError("btt: the robust covariance of the tested coefficients is singular") from None
    chisq_p = float(distributions.chi2_sf(chisq, q))
    if adjust == "CR2":
        nu = _htz_nu(C, pieces)
        delta = max((nu - q + 1) / nu, 0.0)
        df2 = nu - q + 1
        F = delta * chisq / q
        if df2 > 0:
            pval = float(distributions.f_sf(F, q, df2))
        else:
            warnings.warn(f"HTZ test: denominator df {df2:.3g} <= 0 (too few clusters for {q} "
                          "constraints); no p-value", RobustDfWarning, stacklevel=3)
            pval = float("nan")
        return RobustWaldTest("HTZ", tuple(labels), F, q, float(df2), pval, float(delta), chisq,
                              chisq_p)
    df2 = float(m - p)
    F = chisq / q
    return RobustWaldTest("F", tuple(labels), F, q, df2,
                          float(distributions.f_sf(F, q, df2)), 1.0, chisq, chisq_p)


# ------------------------------------------------------------------------------------------------
# linear algebra helpers (batched over a leading axis)


def _inv_sqrt(G):
    """Symmetric inverse square root of each matrix in ``G`` (n, s, s); eigenvalues <= 1e-12 are
    dropped (a generalized inverse), as clubSandwich's matrix_power."""
    vals, vecs = np.linalg.eigh((G + np.swapaxes(G, 1, 2)) / 2)
    keep = vals > _EIG_TOL
    pw = np.where(keep, np.where(keep, vals, 1.0) ** -0.5, 0.0)
    return (vecs * pw[:, None, :]) @ _T(vecs)


def _chol_inverse(L):
    """``(L L')^{-1}`` for lower-triangular ``L`` (n, s, s)."""
    s = L.shape[1]
    Li = np.linalg.solve(L, np.broadcast_to(np.eye(s), L.shape))
    return _T(Li) @ Li


def _T(a):
    """Transpose of each matrix in a stack."""
    return np.swapaxes(a, -1, -2)


def _first_bad(Th):
    for i in range(Th.shape[0]):
        try:
            np.linalg.cholesky(Th[i])
        except np.linalg.LinAlgError:
            return i
    return 0  # pragma: no cover


# ------------------------------------------------------------------------------------------------
# input handling


def _check_adjust(adjust):
    key = str(adjust).upper() if isinstance(adjust, str) else adjust
    if key not in ADJUSTMENTS:
        raise InputError(f"adjust: '{adjust}' is not one of {', '.join(ADJUSTMENTS)}")
    return key


def _check_level(level):
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise InputError(f"level: '{level}' is not a number") from None
    if not 0 < level < 1:
        raise InputError(f"level: {level} must lie strictly between 0 and 1 (e.g. 0.95)")
    return level


def _design(X, names):
    cols = None
    if hasattr(X, "columns"):
        cols = [str(c) for c in X.columns]
    try:
        X = np.asarray(X, dtype=float)
    except (TypeError, ValueError):
        raise InputError("X: holds a value that is not a number") from None
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(f"X: expected a k x p matrix, got shape {X.shape}")
    bad = np.argwhere(~np.isfinite(X))
    if bad.size:
        raise InputError("X: missing or infinite value", row=int(bad[0, 0]) + 1,
                         column=str(cols[bad[0, 1]] if cols else bad[0, 1] + 1))
    p = X.shape[1]
    if names is None:
        names = cols if cols is not None else (["intrcpt"] if p == 1 else [f"x{i + 1}" for i in range(p)])
    names = [str(n) for n in names]
    if len(names) != p:
        raise InputError(f"names: {len(names)} names for {p} columns of X")
    if len(set(names)) != p:
        raise InputError("names: coefficient names must be distinct")
    return X, names


def _vector(v, what, n):
    try:
        v = np.asarray(v, dtype=float).ravel()
    except (TypeError, ValueError):
        raise InputError(f"{what}: holds a value that is not a number") from None
    if v.size != n:
        raise InputError(f"{what}: {v.size} values, expected {n}")
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        raise InputError(f"{what}: missing or infinite value", row=int(bad[0]) + 1)
    return v


def _cluster_codes(cluster, k):
    """Cluster labels in order of first appearance and each row's code into them."""
    import pandas as pd

    cluster = np.asarray(cluster, dtype=object if not hasattr(cluster, "dtype") else None).ravel()
    if cluster.size != k:
        raise InputError(f"cluster: {cluster.size} labels for {k} rows")
    codes, uniques = pd.factorize(cluster, sort=False, use_na_sentinel=True)
    missing = np.flatnonzero(codes < 0)
    if missing.size:
        raise InputError("cluster: missing cluster label", row=int(missing[0]) + 1)
    return np.asarray(uniques, dtype=object), codes.astype(np.int64)


def _cluster_blocks(mat, codes, labels, k, what):
    """``(index, blocks)`` of ``mat`` with exactly one block per robust cluster (in cluster order).

    Each block of ``mat`` must lie inside one cluster: a model block that spans clusters means the
    random effects (or correlated sampling errors) are not nested within the robust cluster."""
    if isinstance(mat, BlockDiagonal):
        bd = mat
        if bd.n != k:
            raise InputError(f"{what}: covers {bd.n} rows, expected {k}")
    else:
        try:
            dense = np.asarray(mat, dtype=float)
        except (TypeError, ValueError):
            raise InputError(f"{what}: expected a BlockDiagonal or a k x k array") from None
        if dense.shape != (k, k):
            raise InputError(f"{what}: shape {dense.shape}, expected {k} x {k}")
        if not np.all(np.isfinite(dense)):
            raise InputError(f"{what}: holds a missing or infinite value")
        outside = np.argwhere((dense != 0) & (codes[:, None] != codes[None, :]))
        if outside.size:
            i, j = outside[0]
            raise InputError(f"{what}: rows {i + 1} and {j + 1} are correlated but lie in different "
                             f"robust clusters ('{labels[codes[i]]}' and '{labels[codes[j]]}'); the "
                             "random effects must be nested within the cluster")
        bd = BlockDiagonal.from_dense(dense, groups=codes)
    sizes = np.array([len(i) for i in bd.index])
    flat = np.concatenate([np.asarray(i, dtype=np.int64) for i in bd.index])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    bc = codes[flat]
    lo, hi = np.minimum.reduceat(bc, starts), np.maximum.reduceat(bc, starts)
    spans = np.flatnonzero(lo != hi)
    if spans.size:
        j = int(spans[0])
        inside = labels[np.unique(codes[np.asarray(bd.index[j])])][:3]
        raise InputError(f"{what}: the model's block '{bd.labels[j]}' spans robust clusters "
                         f"({', '.join(map(str, inside))}); the random effects must be nested within "
                         "the cluster (use a coarser cluster)")
    per_cluster = np.bincount(lo, minlength=labels.size)
    if np.all(per_cluster == 1):
        order = np.argsort(lo, kind="stable")
        index, blocks = [np.asarray(bd.index[j]) for j in order], [np.asarray(bd.blocks[j]) for j in order]
    else:
        # regroup labels blocks by first appearance of the codes, i.e. 0, 1, ... in our cluster order
        merged = bd.regroup(codes)
        index, blocks = list(merged.index), list(merged.blocks)
    # rows in ascending order within each block (so V, W and X line up row by row)
    flat = np.concatenate(index)
    first = np.zeros(flat.size, dtype=bool)
    first[np.cumsum([0] + [i.size for i in index[:-1]])] = True
    if np.any((np.diff(flat, prepend=-1) < 0) & ~first):
        for j, idx in enumerate(index):
            if idx.size > 1 and np.any(np.diff(idx) < 0):
                o = np.argsort(idx, kind="stable")
                index[j], blocks[j] = idx[o], np.asarray(blocks[j])[np.ix_(o, o)]
    return index, blocks


def _size_groups(index):
    sizes = np.array([len(i) for i in index])
    return [np.flatnonzero(sizes == s) for s in np.unique(sizes)]


def _default_btt(X, names):
    """metafor's default ``btt``: every coefficient but a leading intercept column."""
    p = X.shape[1]
    if p > 1 and np.all(X[:, 0] == 1):
        return list(range(1, p))
    return list(range(p))


def _constraint_matrix(constraints, coefficients, names):
    p = len(names)
    if constraints is not None:
        C = np.atleast_2d(np.asarray(constraints, dtype=float))
        if C.shape[1] != p or not np.all(np.isfinite(C)):
            raise InputError(f"constraints: expected a finite q x {p} matrix, got shape {C.shape}")
        labels = [f"C{i + 1}" for i in range(C.shape[0])]
        return C, labels
    if coefficients is None:
        coefficients = list(range(p))
    if isinstance(coefficients, (str, int, np.integer)):
        coefficients = [coefficients]
    pos = []
    for c in coefficients:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not 0 <= int(c) < p:
                raise InputError(f"btt: position {c} is outside 0..{p - 1}")
            pos.append(int(c))
        elif str(c) in names:
            pos.append(names.index(str(c)) if isinstance(names, list) else list(names).index(str(c)))
        else:
            raise InputError(f"btt: '{c}' is not a coefficient ({', '.join(names)})")
    if not pos or len(set(pos)) != len(pos):
        raise InputError("btt: name at least one coefficient, each once")
    return np.eye(p)[pos], [names[i] for i in pos]
