"""Multilevel and multivariate meta-analysis: metafor's ``rma.mv`` for nested random intercepts
(``random = ~ 1 | district/study``) and one ``~ inner | outer`` term (struct CS, HCS, UN, ID, DIAG,
AR, HAR, CAR), fitted by REML or ML block by block (see :mod:`pfps_meta.models.multilevel_fit`).

References: Konstantopoulos 2011 (Res Synth Methods 2:61-76) for the three-level model; Berkey et al.
1998 (Stat Med 17:2537-2550) for multivariate outcomes; Ishak et al. 2007 (Clin Trials 4:525-539) for
repeated time points; Viechtbauer 2010 (J Stat Softw 36(3)) and the metafor functions named in each
docstring for every formula.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import numpy as np

from .. import distributions
from ..errors import InputError
from ..formatting import format_number, format_p, json_ready
from .blocks import BlockDiagonal
from . import multilevel_fit as mf
from .multilevel_input import (check_common, check_identified, check_level, level_codes, design_matrix,
                               grouping_column, numeric_column, sigma_spec, sorted_levels, v_matrix)

__all__ = ["multilevel", "multivariate", "MultilevelResult"]



# ============================================================================================ result
@dataclass
class MultilevelResult:
    """One fitted ``rma.mv`` model. Every other quantity (profile CIs, BLUPs, I², predictions,
    robust inference) is computed from it on request."""

    names: list
    estimate: np.ndarray
    se: np.ndarray
    stat: np.ndarray
    pval: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    vcov: np.ndarray
    ddf: int | None
    method: str
    test: str
    level: float
    k: int
    p: int
    sigma2: np.ndarray
    sigma2_names: list
    sigma2_nlevels: list
    struct: str | None
    tau2: np.ndarray
    rho: np.ndarray
    inner: str
    outer: str
    inner_levels: list
    g_nlevels: tuple
    tau2_k_levels: list
    QE: float
    QEp: float
    QE_df: int
    QM: float
    QMp: float
    QM_df: tuple
    btt: list
    fit_stats: dict
    parms: int
    converged: bool
    optimizer_message: str
    n_clusters: int
    _engine: mf.Engine = field(repr=False)
    _state: mf.FitState = field(repr=False)
    _labels: dict = field(repr=False)
    _ci_cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ model pieces for later use
    @property
    def X(self) -> np.ndarray:
        return self._engine.X

    @property
    def y(self) -> np.ndarray:
        return self._engine.y

    def marginal_blocks(self) -> BlockDiagonal:
        """The marginal covariance ``M = V + Z G Z'`` at the estimate, one block per independent
        cluster (rows in their original order inside each block)."""
        eng = self._engine
        G = eng.g_matrix(self._state.nat)
        index, blocks, labels = [], [], []
        for g in eng.groups:
            M = eng.marginal(g, self._state.nat, G)
            for j in range(M.shape[0]):
                index.append(g.rows[j])
                blocks.append(M[j])
                labels.append(eng.cluster_names[g.cluster[j]])
        order = np.argsort([i[0] for i in index], kind="stable")
        return BlockDiagonal(tuple(index[o] for o in order), tuple(blocks[o] for o in order),
                             tuple(labels[o] for o in order))

    def cluster_labels(self, level=None) -> np.ndarray:
        """Each row's label at a random-effects level: a sigma2 level's name (e.g. ``"district"``,
        ``"district/study"``), or ``"outer"``/``"inner"`` (or their column names) for the struct term;
        default the outermost level."""
        if level is None:
            level = self.sigma2_names[0] if self.sigma2_names else "outer"
        if level in self._labels:
            return self._labels[level]
        if level == self.outer and "outer" in self._labels:
            return self._labels["outer"]
        if level == self.inner and "inner" in self._labels:
            return self._labels["inner"]
        raise InputError(f"level: '{level}' is not a level of this model ({', '.join(self._labels)})")

    def robust(self, cluster=None, adjust: str = "CR2"):
        """Cluster-robust inference (metafor ``robust()``, clubSandwich CR2) through
        :func:`pfps_meta.models.robust.cluster_robust`; ``cluster`` a level name or per-row labels,
        default the outermost level."""
        from .robust import cluster_robust

        if cluster is None or isinstance(cluster, str):
            cluster = self.cluster_labels(cluster)
        return cluster_robust(self.X, self.y, self.estimate, self.marginal_blocks(), cluster,
                              adjust=adjust, level=self.level, names=list(self.names))

    def effects_frame(self):
        """One row per effect, in the data's order: ``cluster`` (the outermost level's label), ``label``
        (the innermost level's, or the inner factor's), ``yi``, ``vi`` (the diagonal of V), ``se``,
        ``ci_low``/``ci_high`` at the model's level (normal), and ``weight``: metafor's
        ``weights(fit)`` for rma.mv, ``100 diag(W) / sum(diag(W))`` with ``W = M^-1``."""
        import pandas as pd
        from scipy.special import ndtri

        vi = np.asarray(self._engine_vi(), dtype=float)
        blocks = self.marginal_blocks()
        w = np.empty(self.k)
        for idx, block in zip(blocks.index, blocks.blocks):
            w[idx] = np.diag(np.linalg.inv(block))
        if self.struct is not None:
            cluster, label = self._labels["outer"], self._labels["inner"]
        else:
            cluster = self._labels[self.sigma2_names[0]]
            label = self._labels[self.sigma2_names[-1]]
        z = float(ndtri(0.5 + self.level / 2))
        se = np.sqrt(vi)
        return pd.DataFrame({"cluster": [str(c) for c in cluster], "label": [str(x) for x in label],
                             "yi": self.y, "vi": vi, "se": se, "ci_low": self.y - z * se,
                             "ci_high": self.y + z * se, "weight": 100 * w / w.sum()})

    # ------------------------------------------------------------------ fit statistics
    def fitstats(self) -> dict:
        """metafor ``fitstats``: logLik, deviance, AIC, BIC, AICc of the fitting method."""
        return dict(self.fit_stats[self.method])

    @property
    def logLik(self) -> float:
        return self.fit_stats[self.method]["logLik"]

    # ------------------------------------------------------------------ variance components
    def _components(self):
        """(label, position in the parameter vector, kind) of every variance component."""
        out = []
        L = len(self.sigma2)
        out += [(f"sigma^2.{i + 1}" if L > 1 else "sigma^2", i, "var") for i in range(L)]
        nt, nr = len(self.tau2), len(self.rho)
        out += [(f"tau^2.{i + 1}" if nt > 1 else "tau^2", L + i, "var") for i in range(nt)]
        out += [(f"rho.{i + 1}" if nr > 1 else "rho", L + nt + i, "cor") for i in range(nr)]
        return out

    def confint(self, level: float | None = None):
        """Profile-likelihood CIs of every variance component (metafor ``confint.rma.mv``): the values
        where the (restricted) log-likelihood, maximised over the other components, drops by
        ``qchisq(level, 1) / 2``. A bound at the edge of the search range (0 for a variance, -1/1
        for a correlation) means the profile never dropped enough there. Returns a DataFrame with
        estimate, ci_lb, ci_ub and the square roots for variances."""
        import pandas as pd

        level = self.level if level is None else check_level(level)
        if level in self._ci_cache:
            return self._ci_cache[level].copy()
        rows = []
        for name, pos, kind in self._components():
            est = float(self._state.nat[pos])
            lb, ub, lb_edge, ub_edge = mf.profile_ci(self._engine, self._state, pos, level, self.struct)
            rows.append({"component": name, "estimate": est, "ci_lb": lb, "ci_ub": ub,
                         "lb_at_limit": lb_edge, "ub_at_limit": ub_edge})
            if kind == "var":
                rows.append({"component": name.replace("^2", ""), "estimate": math.sqrt(est),
                             "ci_lb": math.sqrt(lb) if lb >= 0 else np.nan,
                             "ci_ub": math.sqrt(ub) if ub >= 0 else np.nan,
                             "lb_at_limit": lb_edge, "ub_at_limit": ub_edge})
        out = pd.DataFrame(rows).set_index("component")
        self._ci_cache[level] = out
        return out.copy()

    # ------------------------------------------------------------------ BLUPs
    def ranef(self) -> dict:
        """BLUPs of the random effects (metafor ``ranef.rma.mv``): for each sigma2 level
        ``u = sigma2 Z' W e`` with prediction variance ``D - D Z' P Z D`` (P = W - W X (X'WX)^-1 X'W),
        and for the struct term one row per ``inner | outer`` combination. Each value is a DataFrame
        (pred, se, pi_lb, pi_ub) indexed by level label; keys are the level names
        (``"district"``, ``"district/study"``, ``"inner | outer"``)."""
        import pandas as pd

        eng, nat = self._engine, self._state.nat
        res = eng.evaluate(nat, keep=True)
        beta, vb, G = res["beta"], res["vb"], res["G"]
        crit = self._crit()
        out = {}
        spec = eng.spec
        for l, name in enumerate(self.sigma2_names):
            n_l = len(spec.sigma_levels[l])
            s2 = float(nat[l])
            zwe = np.zeros(n_l)
            zwz = np.zeros(n_l)
            zwx = np.zeros((n_l, eng.p))
            for g, (W, WX, Wy) in zip(eng.groups, res["parts"]):
                codes = spec.sigma_codes[l][g.rows]
                u = Wy - WX @ beta
                np.add.at(zwe, codes.ravel(), u.ravel())
                np.add.at(zwz, codes.ravel(), np.einsum("bij,bij->bi", W, g.S[l]).ravel())
                np.add.at(zwx, codes.ravel(), WX.reshape(-1, eng.p))
            pred = s2 * zwe
            pred[np.abs(pred) < 100 * np.finfo(float).eps] = 0.0
            vpred = s2 - s2 * s2 * (zwz - np.einsum("ip,pq,iq->i", zwx, vb, zwx))
            se = np.sqrt(np.maximum(vpred, 0.0))
            out[name] = pd.DataFrame({"pred": pred, "se": se, "pi_lb": pred - crit * se,
                                      "pi_ub": pred + crit * se},
                                     index=pd.Index([str(v) for v in spec.sigma_levels[l]], name=name))
        if spec.struct is not None:
            k = eng.k
            pred = np.zeros(k)
            vpred = np.zeros(k)
            for g, (W, WX, Wy) in zip(eng.groups, res["parts"]):
                Gf = G[g.ic[:, :, None], g.ic[:, None, :]] * g.O
                u = Wy - WX @ beta
                GW = Gf @ W
                p_b = np.einsum("bij,bj->bi", Gf, u)
                GWX = Gf @ WX
                v_b = (np.diagonal(Gf, axis1=1, axis2=2) - np.einsum("bij,bji->bi", GW, Gf)
                       + np.einsum("bip,pq,biq->bi", GWX, vb, GWX))
                pred[g.rows.ravel()] = p_b.ravel()
                vpred[g.rows.ravel()] = v_b.ravel()
            pred[np.abs(pred) < 100 * np.finfo(float).eps] = 0.0
            inner_lab = [str(spec.inner_levels[c]) for c in spec.inner_codes]
            outer_lab = [str(spec.outer_levels[c]) for c in spec.outer_codes]
            labels = [f"{a} | {b}" for a, b in zip(inner_lab, outer_lab)]
            seen, keep = set(), []
            for i, lab in enumerate(labels):
                if lab not in seen:
                    seen.add(lab)
                    keep.append(i)
            keep = np.array(keep)
            order = np.lexsort((spec.inner_codes[keep], spec.outer_codes[keep]))
            keep = keep[order]
            se = np.sqrt(np.maximum(vpred[keep], 0.0))
            out[f"{self.inner} | {self.outer}"] = pd.DataFrame(
                {"pred": pred[keep], "se": se, "pi_lb": pred[keep] - crit * se,
                 "pi_ub": pred[keep] + crit * se},
                index=pd.Index([labels[i] for i in keep], name=f"{self.inner} | {self.outer}"))
        return out

    # ------------------------------------------------------------------ I²
    def i2(self) -> dict:
        """Multilevel I² (metafor FAQ, "I^2 for multilevel and multivariate models"): with
        W = diag(1/v_i) and P = W - W X (X'WX)^-1 X'W, the typical sampling variance is
        (k - p) / tr(P), and I²_l = 100 sigma2_l / (sum sigma2 + typical). Per sigma2 level and total.
        Defined for the sigma2 levels only (a struct term's tau2 has no single share)."""
        vi = self._engine_vi()
        w = 1 / vi
        X = self.X
        XtWX = X.T @ (X * w[:, None])
        XtW2X = X.T @ (X * (w * w)[:, None])
        tr_p = w.sum() - np.trace(np.linalg.solve(XtWX, XtW2X))
        typical = (self.k - self.p) / tr_p
        total = float(np.sum(self.sigma2))
        out = {name: 100 * float(s) / (total + typical) for name, s in zip(self.sigma2_names, self.sigma2)}
        out["total"] = 100 * total / (total + typical)
        out["typical_v"] = float(typical)
        return out

    def _engine_vi(self):
        eng = self._engine
        vi = np.empty(eng.k)
        for g in eng.groups:
            vi[g.rows.ravel()] = np.diagonal(g.V, axis1=1, axis2=2).ravel()
        return vi

    # ------------------------------------------------------------------ predictions
    def _crit(self, level=None):
        level = self.level if level is None else level
        if self.test == "t":
            return float(distributions.t_ppf(1 - (1 - level) / 2, self.ddf))
        return float(distributions.norm_ppf(1 - (1 - level) / 2))

    def predict(self, newmods=None, tau2_level=None, level: float | None = None):
        """Fitted mean for moderator values (metafor ``predict.rma.mv``): pred, se, CI, and a
        prediction interval with variance se² + sum(sigma2) (+ tau2 of the struct term: its single
        value for CS/ID/AR/CAR, or the named inner level's ``tau2_level`` for HCS/UN/DIAG/HAR; without
        it the PI is not defined and is NaN). ``newmods`` rows exclude the intercept column when the
        model has one (as metafor); None predicts the intercept-only model (or every row of X)."""
        import pandas as pd

        level = self.level if level is None else check_level(level)
        has_int = bool(self.names) and self.names[0] == "intrcpt"
        if newmods is None:
            if self.p == 1 and has_int:
                Xn = np.ones((1, 1))
            else:
                Xn = self.X
        else:
            Xn = np.atleast_2d(np.asarray(newmods, dtype=float))
            if Xn.shape[1] == self.p - int(has_int) and has_int:
                Xn = np.column_stack([np.ones(Xn.shape[0]), Xn])
            if Xn.shape[1] != self.p:
                raise InputError(f"newmods: {Xn.shape[1]} columns, the model has "
                                 f"{self.p - int(has_int)} moderators")
        pred = Xn @ self.estimate
        se = np.sqrt(np.einsum("ip,pq,iq->i", Xn, self.vcov, Xn))
        crit = self._crit(level)
        extra = float(np.sum(self.sigma2))
        if self.struct is not None:
            if len(self.tau2) == 1:
                extra += float(self.tau2[0])
            elif tau2_level is not None:
                levels = [str(v) for v in self.inner_levels]
                if str(tau2_level) not in levels:
                    raise InputError(f"tau2_level: '{tau2_level}' is not a level of {self.inner} "
                                     f"({', '.join(levels)})")
                extra += float(self.tau2[levels.index(str(tau2_level))])
            else:
                extra = np.nan
        pi_se = np.sqrt(se ** 2 + extra)
        return pd.DataFrame({"pred": pred, "se": se, "ci_lb": pred - crit * se, "ci_ub": pred + crit * se,
                             "pi_lb": pred - crit * pi_se, "pi_ub": pred + crit * pi_se})

    # ------------------------------------------------------------------ tables and text
    def to_frame(self):
        """The coefficient table (estimate, se, zval/tval, df, pval, ci_lb, ci_ub)."""
        import pandas as pd

        statname = "tval" if self.test == "t" else "zval"
        return pd.DataFrame({"estimate": self.estimate, "se": self.se, statname: self.stat,
                             "df": self.ddf if self.test == "t" else np.nan, "pval": self.pval,
                             "ci_lb": self.ci_lb, "ci_ub": self.ci_ub},
                            index=pd.Index(list(self.names), name="coefficient"))

    def variance_components(self):
        """sigma2 per level (name, nlevels), tau2 and rho of the struct term."""
        out = {"sigma2": [{"name": n, "estimate": float(s), "sqrt": math.sqrt(s), "nlevels": int(m)}
                          for n, s, m in zip(self.sigma2_names, self.sigma2, self.sigma2_nlevels)]}
        if self.struct is not None:
            lv = [str(v) for v in self.inner_levels]
            out["struct"] = {"struct": self.struct, "inner": self.inner, "outer": self.outer,
                             "inner_nlevels": self.g_nlevels[0], "outer_nlevels": self.g_nlevels[1],
                             "tau2": [{"level": lv[i] if len(self.tau2) > 1 else None,
                                       "estimate": float(t), "sqrt": math.sqrt(t),
                                       "k_level": self.tau2_k_levels[i] if len(self.tau2) > 1 else None}
                                      for i, t in enumerate(self.tau2)],
                             "rho": [float(r) for r in self.rho]}
        return out

    def to_dict(self, confint: bool = True) -> dict:
        """Strict-JSON dict: coefficients, qe, qm, variance components (with profile CIs unless
        ``confint=False``), i2 per level, fit statistics and settings."""
        coefs = [{"name": n, "estimate": b, "se": s, "stat": z, "pval": pv, "ci_lb": lo, "ci_ub": hi}
                 for n, b, s, z, pv, lo, hi in zip(self.names, self.estimate, self.se, self.stat,
                                                   self.pval, self.ci_lb, self.ci_ub)]
        vc = self.variance_components()
        if confint:
            ci = self.confint()
            vc["profile_ci"] = [{"component": c, "estimate": r.estimate, "ci_lb": r.ci_lb,
                                 "ci_ub": r.ci_ub, "lb_at_limit": bool(r.lb_at_limit),
                                 "ub_at_limit": bool(r.ub_at_limit)} for c, r in ci.iterrows()]
        return json_ready({
            "coefficients": coefs,
            "qe": {"QE": self.QE, "df": self.QE_df, "pval": self.QEp},
            "qm": {"QM": self.QM, "df": list(self.QM_df), "pval": self.QMp, "coefficients": list(self.btt)},
            "variance_components": vc,
            "i2": self.i2() if len(self.sigma2) else None,
            "fit_stats": self.fit_stats,
            "k": self.k, "p": self.p, "n_clusters": self.n_clusters, "converged": self.converged,
            "settings": {"method": self.method, "test": self.test, "level": self.level,
                         "struct": self.struct, "levels": list(self.sigma2_names),
                         "inner": self.inner or None, "outer": self.outer or None},
        })

    def __repr__(self) -> str:
        vc = ", ".join(f"sigma2[{n}]={s:.4g}" for n, s in zip(self.sigma2_names, self.sigma2))
        if self.struct:
            vc += (", " if vc else "") + f"{self.struct} tau2={np.round(self.tau2, 4).tolist()}"
            if len(self.rho):
                vc += f" rho={np.round(self.rho, 4).tolist()}"
        return (f"<MultilevelResult {self.method} k={self.k} p={self.p} {vc}; "
                f"{self.names[0]}={self.estimate[0]:.4f} (se {self.se[0]:.4f})>")

    def summary(self, digits: int = 4) -> str:
        """Text like metafor's ``print.rma.mv``."""
        f = lambda x: format_number(x, digits)  # noqa: E731
        fs = self.fit_stats[self.method]
        lines = [f"Multivariate Meta-Analysis Model (k = {self.k}; method: {self.method})", ""]
        heads = ["logLik", "Deviance", "AIC", "BIC", "AICc"]
        vals = [fs["logLik"], fs["deviance"], fs["AIC"], fs["BIC"], fs["AICc"]]
        w = max(len(f(v)) for v in vals) + 2
        lines += ["".join(h.rjust(w) for h in heads), "".join(f(v).rjust(w) for v in vals), ""]
        lines.append("Variance Components:")
        lines.append("")
        if len(self.sigma2):
            rows = [["", "estim", "sqrt", "nlvls", "fixed", "factor"]]
            for i, (n, s, m) in enumerate(zip(self.sigma2_names, self.sigma2, self.sigma2_nlevels)):
                rows.append([f"sigma^2.{i + 1}", f(s), f(math.sqrt(s)), str(m), "no", n])
            lines += _table(rows)
            lines.append("")
        if self.struct:
            lines.append(f"outer factor: {self.outer} (nlvls = {self.g_nlevels[1]})")
            lines.append(f"inner factor: {self.inner} (nlvls = {self.g_nlevels[0]})")
            lines.append("")
            rows = [["", "estim", "sqrt", "k.lvl", "fixed", "level"]]
            lv = [str(v) for v in self.inner_levels]
            for i, t in enumerate(self.tau2):
                lab = f"tau^2.{i + 1}" if len(self.tau2) > 1 else "tau^2"
                rows.append([lab, f(t), f(math.sqrt(t)),
                             str(self.tau2_k_levels[i]) if len(self.tau2) > 1 else str(self.k),
                             "no", lv[i] if len(self.tau2) > 1 else ""])
            lines += _table(rows)
            if len(self.rho) == 1 and self.struct != "UN":
                lines.append("rho".ljust(10) + f(self.rho[0]).rjust(8))
            elif len(self.rho) >= 1:
                q = len(lv)
                R = np.eye(q)
                for r, (i, j) in zip(self.rho, mf.lower_pairs(q)):
                    R[i, j] = R[j, i] = r
                rows = [[""] + [f"rho.{v}" for v in lv]]
                for i in range(q):
                    rows.append([lv[i]] + [f(R[i, j]) if j <= i else "" for j in range(q)])
                lines.append("")
                lines += _table(rows)
            lines.append("")
        lines.append("Test for Residual Heterogeneity:")
        lines.append(f"QE(df = {self.QE_df}) = {f(self.QE)}, p-val {format_p(self.QEp)}")
        lines.append("")
        if self.p > 1 or self.names[0] != "intrcpt":
            cf = ", ".join(str(i + 1) for i in self.btt)
            if self.test == "t":
                lines.append(f"Test of Moderators (coefficient{'s' if len(self.btt) > 1 else ''} {cf}):")
                lines.append(f"F(df1 = {self.QM_df[0]}, df2 = {self.QM_df[1]}) = {f(self.QM)}, "
                             f"p-val {format_p(self.QMp)}")
            else:
                lines.append(f"Test of Moderators (coefficient{'s' if len(self.btt) > 1 else ''} {cf}):")
                lines.append(f"QM(df = {self.QM_df[0]}) = {f(self.QM)}, p-val {format_p(self.QMp)}")
            lines.append("")
        lines.append("Model Results:")
        lines.append("")
        statname = "tval" if self.test == "t" else "zval"
        head = ["", "estimate", "se", statname] + (["df"] if self.test == "t" else []) + \
            ["pval", "ci.lb", "ci.ub", ""]
        rows = [head]
        for i, n in enumerate(self.names):
            pv = self.pval[i]
            star = "***" if pv < 0.001 else "**" if pv < 0.01 else "*" if pv < 0.05 else "." if pv < 0.1 else ""
            rows.append([n, f(self.estimate[i]), f(self.se[i]), f(self.stat[i])]
                        + ([str(self.ddf)] if self.test == "t" else [])
                        + [format_p(pv, bare=True), f(self.ci_lb[i]), f(self.ci_ub[i]), star])
        lines += _table(rows)
        if not self.converged:
            lines += ["", f"Warning: the optimiser did not converge ({self.optimizer_message})."]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(self.summary()) + "</pre>"


def _table(rows):
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [r[c].rjust(widths[c]) for c in range(1, len(r))]
        out.append("  ".join(cells).rstrip())
    return out


# ============================================================================================ fitting
def _fit(data, yi, vi, V, spec, mods, intercept, method, test, level, labels):
    y = numeric_column(data, yi, "yi")
    k = y.size
    v = numeric_column(data, vi, "vi") if (V is None and vi is not None) else None
    if V is None and vi is None:
        raise InputError("vi: give the sampling variances (vi) or their covariance matrix (V)")
    Vb = v_matrix(V, v, k, data)
    X, names = design_matrix(data, mods, intercept)
    kinds, nt, nr = spec.layout()
    check_identified(X, names, len(kinds), k)
    first = labels.get(spec.sigma_names[0]) if spec.sigma_names else labels.get("outer")
    row_labels = None if isinstance(Vb, BlockDiagonal) or first is None else [str(v) for v in first]
    eng = mf.Engine(y, X, Vb, spec, method, v_labels=row_labels)
    state = mf.fit(eng)
    mf.warn_if_not_converged(state, "rma.mv fit")
    res = eng.evaluate(state.nat)
    if res is None:
        raise InputError("the marginal covariance is not positive definite at the estimate")
    p = X.shape[1]
    beta, vb = res["beta"], res["vb"]
    se = np.sqrt(np.diag(vb))
    stat = beta / se
    ddf = k - p if test == "t" else None
    btt = list(range(1, p)) if (intercept and p > 1) else list(range(p))
    bt = np.array(btt)
    QM = float(beta[bt] @ np.linalg.solve(vb[np.ix_(bt, bt)], beta[bt]))
    m = len(btt)
    if test == "t":
        crit = distributions.t_ppf(1 - (1 - level) / 2, ddf)
        pval = 2 * distributions.t_sf(np.abs(stat), ddf)
        QM = QM / m
        QMp = float(distributions.f_sf(QM, m, ddf))
        QM_df = (m, ddf)
    else:
        crit = distributions.norm_ppf(1 - (1 - level) / 2)
        pval = 2 * distributions.norm_sf(np.abs(stat))
        QMp = float(distributions.chi2_sf(QM, m))
        QM_df = (m, None)
    # residual heterogeneity: the fixed-effects fit with V only (metafor's QE)
    fe = eng.evaluate(np.zeros(len(kinds)) + np.array([0.5 if kk == "carcor" else 0.0 for kk in kinds]))
    QE = float(fe["rss"]) if k - p > 0 else 0.0
    QE_df = k - p
    QEp = float(distributions.chi2_sf(QE, QE_df)) if QE_df > 0 else 1.0
    logdet_v = 0.0
    for g in eng.groups:
        logdet_v += float(np.linalg.slogdet(g.V)[1].sum())
    ll_qe = -0.5 * k * math.log(2 * math.pi) - 0.5 * logdet_v
    parms = p + len(kinds)
    fit_stats = _fit_stats(res["ll_ML"], res["ll_REML"], ll_qe, parms, k, p)
    L = spec.n_sigma
    nat = state.nat
    tau2_k = []
    if spec.struct is not None:
        tau2_k = np.bincount(spec.inner_codes, minlength=spec.q).tolist()
    return MultilevelResult(
        names=names, estimate=beta, se=se, stat=stat, pval=pval, ci_lb=beta - crit * se,
        ci_ub=beta + crit * se, vcov=vb, ddf=ddf, method=method, test=test, level=level, k=k, p=p,
        sigma2=np.array(nat[:L]), sigma2_names=list(spec.sigma_names),
        sigma2_nlevels=[len(lv) for lv in spec.sigma_levels], struct=spec.struct,
        tau2=np.array(nat[L:L + nt]), rho=np.array(nat[L + nt:L + nt + nr]),
        inner=spec.inner_name, outer=spec.outer_name, inner_levels=list(spec.inner_levels),
        g_nlevels=(spec.q, len(spec.outer_levels)) if spec.struct else (0, 0),
        tau2_k_levels=tau2_k, QE=QE, QEp=QEp, QE_df=QE_df, QM=QM, QMp=QMp, QM_df=QM_df,
        btt=btt, fit_stats=fit_stats, parms=parms, converged=state.converged,
        optimizer_message=state.message, n_clusters=eng.n_clusters, _engine=eng, _state=state,
        _labels=labels)


def _fit_stats(ll_ml, ll_reml, ll_qe, parms, k, p):
    """metafor ``rma.mv``'s fit.stats (both columns): ML deviance against the saturated model
    (ll_QE = -k/2 log 2pi - 1/2 log|V|), REML deviance -2 ll; BIC with log(k) (ML) or log(k - p)
    (REML); AICc with max(n, parms + 2), n = k (ML) or k - p (REML)."""
    def aicc(ll, n):
        nn = max(n, parms + 2)
        return -2 * ll + 2 * parms * nn / (nn - parms - 1)

    return {"ML": {"logLik": ll_ml, "deviance": -2 * (ll_ml - ll_qe), "AIC": -2 * ll_ml + 2 * parms,
                   "BIC": -2 * ll_ml + parms * math.log(k), "AICc": aicc(ll_ml, k)},
            "REML": {"logLik": ll_reml, "deviance": -2 * ll_reml, "AIC": -2 * ll_reml + 2 * parms,
                     "BIC": -2 * ll_reml + parms * math.log(k - p), "AICc": aicc(ll_reml, k - p)}}


def multilevel(data, yi="yi", vi="vi", V=None, levels=("district", "study"), mods=None, intercept=True,
               method="REML", test="z", level=0.95) -> MultilevelResult:
    """Multilevel meta-analysis with nested random intercepts: metafor
    ``rma.mv(yi, V, mods, random = ~ 1 | levels[0]/levels[1]/..., method, test)``.

    Parameters
    ----------
    data : DataFrame
    yi, vi : column names of the effects and their sampling variances (vi unused when V is given)
    V : None (diag(vi)), a dense (k, k) array, or a :class:`BlockDiagonal`
    levels : column names from the outermost to the innermost level; level j's clusters are the
        combinations of the first j+1 columns (``district/study``), each with its own sigma2
    mods : moderator columns as :func:`pfps_meta.models.metareg.design` takes them (``C(col)`` for a
        factor; without an intercept the first factor is fully coded, R's ``~ f - 1``), or ``(array, names)``
    intercept : include metafor's ``intrcpt`` column
    method : "REML" (default) or "ML"
    test : "z" or "t" (t and F tests on k - p df, metafor 3.8's ``dfs="residual"``)
    level : confidence level
    """
    method, level = check_common(data, method, test, level)
    labels = {}
    spec = sigma_spec(data, levels, mf.RandomSpec(), labels)
    return _fit(data, yi, vi, V, spec, mods, intercept, method, test, level, labels)


def multivariate(data, yi="yi", vi="vi", V=None, inner="outcome", outer="trial", struct="UN", mods=None,
                 intercept=True, method="REML", test="z", level=0.95, levels=None) -> MultilevelResult:
    """Multivariate / longitudinal meta-analysis with one ``~ inner | outer`` term: metafor
    ``rma.mv(yi, V, mods, random = ~ inner | outer, struct)``; ``levels`` adds nested random
    intercepts (``random = list(~ 1 | levels..., ~ inner | outer)``).

    struct (metafor's definitions, G the covariance of the inner levels within an outer cluster):
    CS (tau2, rho), HCS (tau2 per level, rho), UN (tau2 per level, rho per pair), ID (tau2), DIAG
    (tau2 per level), AR (tau2, rho^|i - j| over the ranks of the sorted inner values), HAR (tau2 per
    level, same correlation), CAR (tau2, rho^|t_i - t_j| over the inner values themselves). AR, HAR and
    CAR need a numeric inner column.
    """
    method, level = check_common(data, method, test, level)
    if not isinstance(struct, str) or struct.upper() not in mf.STRUCTS:
        raise InputError(f"struct: unknown structure {struct!r} (one of {', '.join(mf.STRUCTS)})")
    struct = struct.upper()
    labels = {}
    spec = mf.RandomSpec()
    if levels:
        sigma_spec(data, levels, spec, labels)
    iv = grouping_column(data, inner, "inner")
    ov = grouping_column(data, outer, "outer")
    import pandas as pd

    if struct in ("AR", "HAR", "CAR"):
        num = pd.to_numeric(data[inner], errors="coerce")
        if num.isna().any():
            row = int(np.flatnonzero(num.isna().to_numpy())[0]) + 1
            raise InputError(f"inner: struct {struct} needs a numeric time variable, got text "
                             f"{data[inner].iloc[row - 1]!r}", row=row, column=inner)
        iv = num.to_numpy(dtype=float)
    inner_levels = sorted_levels(iv)
    outer_levels = sorted_levels(ov)
    spec.struct = struct
    spec.inner_codes = level_codes(iv, inner_levels)
    spec.outer_codes = level_codes(ov, outer_levels)
    spec.inner_levels = [(int(v) if isinstance(v, float) and v.is_integer() else v) for v in inner_levels]
    spec.outer_levels = outer_levels
    spec.inner_values = np.array(inner_levels, dtype=float) if struct == "CAR" else None
    spec.inner_name, spec.outer_name = inner, outer
    if len(outer_levels) < 2:
        raise InputError(f"outer: '{outer}' has a single cluster; the struct term is not identified",
                         column=outer)
    labels["outer"] = np.asarray(ov)
    labels["inner"] = np.asarray(iv)
    return _fit(data, yi, vi, V, spec, mods, intercept, method, test, level, labels)
