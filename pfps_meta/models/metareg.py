"""Mixed-effects meta-regression: ``y = X beta + u + e`` with ``u ~ N(0, tau2)``, ``e ~ N(0, v_i)``.

One model at a time (a k x p design matrix), with the same tau2 estimators as the pooling core and the
same iterations (:func:`pfps_meta.models.pooling.likelihood_root`, :func:`pfps_meta.models.pooling.decreasing_root`).
Formulas follow metafor's ``rma.uni(mods=...)`` (Viechtbauer 2010; Raudenbush 2009 for the moment
estimators with moderators):

- ``P = W - W X (X'WX)^-1 X'W`` with ``W = diag(1/(v + tau2))``; ``Q(tau2) = y'Py``; the tau2
  estimators with moderators are in :mod:`pfps_meta.models.tau2`.
- Wald tests (z, chi2 omnibus ``QM``) or Knapp-Hartung (t(k-p), F omnibus ``QM / m``) with
  ``vb = s2w (X'WX)^-1``, ``s2w = y'Py / (k-p)``.
- ``R2 = max(0, 100 (tau2_RE - tau2_ME) / tau2_RE)`` against the intercept-only fit with the same
  estimator (Raudenbush 2009), as metafor; for a common-effect model metafor's choice, the adjusted R2 of
  the weighted least-squares fit (statsmodels ``WLS``).

Moderators are written as a metafor user writes them (:func:`rma`, or ``mods=`` of :func:`meta_regression`):
a formula (``"~ ablat + alloc"``, read by formulaic with R's treatment contrasts), a DataFrame or a named
Series. Coefficient names: ``intercept``, the column (``ablat``), ``column[level]`` for each non-reference
level of a categorical moderator (``alloc[random]``; metafor's ``allocrandom``), ``a:b`` for interactions.
``anova(btt=)`` takes those names, a term name (``"alloc"``) or 0-based positions (metafor's are 1-based).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import chdtrc, fdtrc, ndtr, ndtri, stdtr, stdtrit

from pfps_meta.conventions import COUNT_METHODS, Settings
from pfps_meta.models.tau2 import loglik_mods, q_mods, weighted_fit_mods, estimate_tau2_mods, fit_statistics
from pfps_meta.errors import InputError, PfpsWarning
from pfps_meta.formatting import json_ready, render
from pfps_meta.inputs.validate import where_in_table
from pfps_meta.models.pooling import as_float_array, resolve_settings

_EPS = np.finfo(float).eps


def _inputs(yi, vi, X):
    """yi, vi (vectors of one length k, finite, vi > 0) and the moderators as a k x m matrix; anything else
    is an InputError naming the argument."""
    y, v = as_float_array(yi, "yi"), as_float_array(vi, "vi")
    if y.ndim != 1 or y.size == 0:
        raise InputError(f"yi: a vector of effect sizes is needed, got shape {y.shape}")
    if v.shape != y.shape:
        raise InputError(f"vi: must have the shape of yi {y.shape}, got {v.shape}")
    X = as_float_array(X, "X")
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] != y.size:
        raise InputError(f"X: the moderators need one row per study ({y.size}), got shape {X.shape}")
    for name, array in (("yi", y), ("vi", v), ("X", X)):
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            index = [int(i) for i in np.unravel_index(bad[0], array.shape)]
            raise InputError(f"{name}{index}: value {array.flat[bad[0]]} is not finite (missing values are refused)")
    if np.any(v <= 0):
        index = int(np.flatnonzero(v <= 0)[0])
        raise InputError(f"vi[{index}]: sampling variance {v[index]:g} must be > 0")
    return y, v, X


# --------------------------------------------------------------------------------------------------
# Result containers that print. Both keep the access their callers already use (a dict's keys, a
# DataFrame's columns) and add metafor-style printing through the renderer registry of
# :mod:`pfps_meta.formatting` (the renderers live in :mod:`pfps_meta.present.tables`), ``to_frame()``,
# ``to_dict()`` (strict JSON: NaN as null) and ``_repr_html_`` for notebooks.


class _Printed:
    """Prints through the renderer registry (formatting.render): text for str/repr, HTML in notebooks; a
    type with no text renderer falls back to its container's own repr (``_plain_repr``)."""

    def __str__(self):
        return render(self, "text")

    def __repr__(self):
        try:
            return render(self, "text")
        except LookupError:
            return self._plain_repr()

    def _repr_html_(self):
        return render(self, "html")


class ResultDict(_Printed, dict):
    """A result as a dict (``egger(res)["classic"]`` keeps working) that prints as a table.

    Display facts that are not part of the dict (``scale``: the scale of the estimates, e.g. "log RR";
    ``level``) are attributes; ``to_dict()`` adds them to the keys.
    """

    def __init__(self, data=(), **attributes):
        super().__init__(data)
        self.attributes = dict(attributes)

    def __getattr__(self, name):
        attributes = self.__dict__.get("attributes", {})
        if name in attributes:
            return attributes[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def to_dict(self) -> dict:
        """The keys plus the display attributes, strict JSON (NaN and infinities as None)."""
        return json_ready({**{k: v for k, v in self.attributes.items() if k not in self}, **dict(self)})

    def to_frame(self) -> pd.DataFrame:
        """One row of the scalar entries (subclasses give their own tables)."""
        return pd.DataFrame([{k: v for k, v in self.items() if v is None or np.isscalar(v)}])

    def _plain_repr(self):
        return dict.__repr__(self)


class ResultFrame(_Printed, pd.DataFrame):
    """A result table (a DataFrame: its columns, ``.loc`` and arithmetic keep working) that prints in
    metafor's manner. ``meta`` holds what the print states (method, CI method, scale, level, ...); frames
    derived from it (a selection, a copy) are plain DataFrames. ``to_dict()`` with no argument is the
    strict-JSON form ``{**meta, "rows": [...]}``; with pandas' arguments it is pandas' ``to_dict``."""

    _metadata = ["meta"]

    @property
    def _constructor(self):
        return pd.DataFrame

    @classmethod
    def of(cls, frame, **meta):
        out = cls(frame)
        object.__setattr__(out, "meta", dict(meta))
        return out

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self).copy()

    def to_dict(self, *args, **kwargs):
        if args or kwargs:
            return pd.DataFrame(self).to_dict(*args, **kwargs)
        return json_ready({**getattr(self, "meta", {}), "rows": pd.DataFrame(self)})

    def _plain_repr(self):
        return pd.DataFrame(self).__repr__()


class AnovaResult(ResultDict):
    """A Wald test of coefficients (metafor ``anova(res, btt=)``), naming the coefficients it tested."""

    def to_frame(self) -> pd.DataFrame:
        if "combinations" in self:
            return self["combinations"].copy()
        return pd.DataFrame([{"coefficients": ", ".join(self["coefficients"]), "qm": self["qm"],
                              "df": "/".join(str(d) for d in self["df"]), "p": self["p"],
                              "distribution": self["distribution"]}])


class LikelihoodRatioResult(ResultDict):
    """A likelihood-ratio test of nested meta-regressions (metafor ``anova(full, reduced)``)."""


class ModeratorPermutationResult(ResultDict):
    """Permutation p-values of a meta-regression's coefficients (metafor ``permutest``)."""

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"term": self["terms"], "estimate": self.attributes.get("estimate"),
                             "statistic": self.attributes.get("statistic"), "permutation_p": self["p"]})


class MetaRegressionSummary(ResultDict):
    """A meta-regression's ``to_dict()`` (e.g. read back from JSON) as a printable result."""

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self["coefficients"])


@dataclass(repr=False)              # printed by _Printed (the renderer registry), not the dataclass repr
class MetaRegression(_Printed):
    """A fitted meta-regression (all arrays have one entry per coefficient)."""

    names: list
    beta: np.ndarray
    se: np.ndarray
    statistic: np.ndarray
    p: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    df: float
    tau2: float
    i2: float
    h2: float
    qe: float
    qe_df: int
    qe_p: float
    qm: float
    qm_df: tuple
    qm_p: float
    r2: float
    k: int
    method: str
    ci: str
    converged: bool
    X: np.ndarray = None            # the design (k x p), intercept column included when fitted with one
    yi: np.ndarray = None
    vi: np.ndarray = None
    vb: np.ndarray = None           # covariance of beta (HKSJ-scaled under Knapp-Hartung)
    settings: Settings = None
    fit: dict = None                # loglik, deviance, aic, bic, aicc (metafor's fitstats)
    intercept: bool = True
    references: dict = None         # factor -> its reference level (what each dummy is compared with)
    formula: str = None             # the moderators as given ("~ ablat + alloc"), None for a matrix
    measure: str = None             # the effect measure, when known (ratios are on the log scale)

    # ------------------------------------------------------------------ printing

    @property
    def terms(self) -> dict:
        """Term -> its coefficient names (``alloc`` -> ``alloc[random], alloc[systematic]``; a
        coefficient's term is its name without the ``[level]`` parts)."""
        out = {}
        for name in self.names:
            out.setdefault(re.sub(r"\[[^\]]*\]", "", name), []).append(name)
        return out

    def to_frame(self) -> pd.DataFrame:
        """The coefficient table (metafor's ``coef(summary(res))``): term, estimate, se, statistic, p, CI."""
        return self.summary_frame()

    def _plain_repr(self):
        return f"MetaRegression(k={self.k}, terms={self.names})"

    # ------------------------------------------------------------------ predictions and tests

    def _crit(self):
        level = self.settings.level
        if self.ci == "hksj":
            return stdtrit(self.df, 0.5 + level / 2)
        return ndtri(0.5 + level / 2)

    def predict(self, newmods=None):
        """Predicted average effects at new moderator values with CI and PI (metafor ``predict(newmods=)``).

        ``newmods`` is (m x moderators), without the intercept column (it is added when the model has one);
        None predicts at the studies' own values (fitted values). The PI is
        ``pred +/- crit sqrt(se^2 + tau2)``; crit is normal with Wald and t(k - p) with HKSJ.
        """
        import pandas as pd

        if newmods is None:
            X = self.X
        else:
            X = np.asarray(newmods, dtype=float)
            if X.ndim == 1:
                X = X[:, None] if self.X.shape[1] - self.intercept == 1 else X[None, :]
            if self.intercept:
                X = np.column_stack([np.ones(len(X)), X])
        if X.shape[1] != self.X.shape[1]:
            raise InputError(f"newmods has {X.shape[1] - self.intercept} moderator columns; the model has "
                             f"{self.X.shape[1] - self.intercept}")
        pred = X @ self.beta
        se = np.sqrt(np.einsum("ij,jk,ik->i", X, self.vb, X))
        crit = self._crit()
        pi_half = crit * np.sqrt(se ** 2 + self.tau2)
        return pd.DataFrame({"pred": pred, "se": se, "ci_low": pred - crit * se, "ci_high": pred + crit * se,
                             "pi_low": pred - pi_half, "pi_high": pred + pi_half})

    def coefficient_positions(self, btt) -> list:
        """0-based positions of the coefficients named by ``btt`` (see :meth:`anova`)."""
        items = [btt] if isinstance(btt, (str, int, np.integer)) or not np.iterable(btt) else list(btt)
        if not items:
            raise InputError("btt: name at least one coefficient")
        p, terms, out = len(self.names), self.terms, []
        for item in items:
            if isinstance(item, str):
                found = ([self.names.index(item)] if item in self.names else
                         [self.names.index(n) for n in terms.get(item, ())])
                if not found:
                    raise InputError(f"btt: no coefficient or term named {item!r} (coefficients: "
                                     f"{', '.join(self.names)}; terms: {', '.join(terms)})")
                out += found
            elif isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
                if not 0 <= int(item) < p:
                    raise InputError(f"btt: position {int(item)} is out of range; positions are 0-based here "
                                     f"(0 = {self.names[0]}, {p - 1} = {self.names[-1]}), so metafor's btt=2 is "
                                     f"btt=1; names are clearer: btt={self.names[-1]!r}")
                out.append(int(item))
            else:
                raise InputError(f"btt: give coefficient names, term names or 0-based positions (got {item!r})")
        return list(dict.fromkeys(out))

    def anova(self, btt=None, X=None) -> AnovaResult:
        """Wald tests (metafor ``anova(res, btt=)`` and ``anova(res, X=)``).

        ``btt``: the coefficients tested jointly, preferably by name: a coefficient (``"ablat"``,
        ``"alloc[random]"``), a term (``"alloc"``: all of its coefficients) or a list of these. Integers
        are 0-based positions (0 = the intercept), unlike metafor's 1-based ``btt``: metafor's ``btt=2:3`` is
        ``btt=[1, 2]`` here; the result names the coefficients it tested (``coefficients``) and prints them.
        ``QM = b' V^-1 b`` against chi2(m), or ``QM/m`` against F(m, k - p) under HKSJ. ``X``: rows of a
        matrix of linear combinations ``L beta``: each with its estimate, se, statistic (z, or t(k - p)) and
        p, and the joint test of all rows (``QM``, df = rank of L).
        """
        k, p = self.X.shape
        if (btt is None) == (X is None):
            raise InputError("anova: give either btt or X")
        if btt is not None:
            index = self.coefficient_positions(btt)
            b, V = self.beta[index], self.vb[np.ix_(index, index)]
            m = len(index)
            qm = float(b @ np.linalg.solve(V, b))
            tested = {"coefficients": [self.names[i] for i in index], "positions": index}
            if self.ci == "hksj":
                return AnovaResult({"qm": qm / m, "df": (m, k - p), "p": float(fdtrc(m, k - p, qm / m)),
                                    "distribution": "F", **tested})
            return AnovaResult({"qm": qm, "df": (m,), "p": float(chdtrc(m, qm)), "distribution": "chi2", **tested})
        L = _combinations(X, self.names)
        est = L @ self.beta
        V = L @ self.vb @ L.T
        se = np.sqrt(np.diag(V))
        stat = est / se
        m = int(np.linalg.matrix_rank(L))
        qm = float(est @ np.linalg.pinv(V) @ est)
        if self.ci == "hksj":
            p_each = 2 * stdtr(k - p, -np.abs(stat))
            joint = {"qm": qm / m, "df": (m, k - p), "p": float(fdtrc(m, k - p, qm / m)), "distribution": "F"}
        else:
            p_each = 2 * ndtr(-np.abs(stat))
            joint = {"qm": qm, "df": (m,), "p": float(chdtrc(m, qm)), "distribution": "chi2"}
        combos = pd.DataFrame({"estimate": est, "se": se, "statistic": stat, "p": p_each})
        return AnovaResult({"combinations": combos, **joint})

    def fitstats(self) -> dict:
        """metafor's ``fitstats``: loglik, deviance, aic, bic, aicc (REML or ML likelihood)."""
        return dict(self.fit)

    def rstandard(self):
        """Standardised residuals (metafor ``rstandard``): ``e_i / sqrt(v_i + tau2 - x_i' (X'WX)^-1 x_i)``."""
        import pandas as pd

        w = 1.0 / (self.vi + self.tau2)
        inv = np.linalg.inv(self.X.T @ (w[:, None] * self.X))
        resid = self.yi - self.X @ self.beta
        se = np.sqrt(self.vi + self.tau2 - np.einsum("ij,jk,ik->i", self.X, inv, self.X))
        return pd.DataFrame({"resid": resid, "se": se, "z": resid / se})

    def _refit(self, rows, moderators=None):
        mods = self.X[:, 1:] if self.intercept else self.X
        mods = mods if moderators is None else moderators
        fit = meta_regression(self.yi[rows], self.vi[rows], mods[rows], names=self.names[1:] if self.intercept
                              else self.names, settings=self.settings, intercept=self.intercept)
        fit.references, fit.formula, fit.measure = self.references, self.formula, self.measure
        return fit

    def dfbetas(self):
        """DFBETAS (metafor ``influence()$dfbs``): per study deleted in turn,
        ``(b - b_(-i)) / sqrt(s2w_(-i) diag((X' W_(-i) X)^-1))`` with ``W_(-i) = diag(1/(v + tau2_(-i)))``
        over all k studies (the deleted fit's tau2 and, under HKSJ, its variance factor s2w)."""
        import pandas as pd

        k = len(self.yi)
        out = []
        for i in range(k):
            keep = np.arange(k) != i
            fit = self._refit(keep)
            s2w = 1.0
            if self.ci == "hksj":
                w_del = 1.0 / (fit.vi + fit.tau2)
                s2w = float(np.sum(w_del * (fit.yi - fit.X @ fit.beta) ** 2)) / (fit.k - fit.X.shape[1])
            w = 1.0 / (self.vi + fit.tau2)
            vb_del = np.linalg.inv(self.X.T @ (w[:, None] * self.X))
            out.append((self.beta - fit.beta) / np.sqrt(s2w * np.diag(vb_del)))
        return pd.DataFrame(out, columns=self.names)

    def permutation_test(self, n_permutations=1000, exact=None, seed=2018) -> dict:
        """Permutation test of the moderators (Higgins & Thompson 2004; metafor ``permutest``): the rows
        of the moderator matrix are permuted across studies and the model refitted; each coefficient's
        p-value is the share of permuted ``|z|`` (or ``|t|``) at least the observed one, and likewise for
        ``QM``. Exact (all ``k!`` orderings) when ``exact`` or, by default, when ``k <= 7``; else
        ``n_permutations`` random orderings (seeded), the observed one counted first."""
        import itertools
        import math as _math

        k = len(self.yi)
        if exact is None:
            exact = _math.factorial(k) <= 5040
        mods = self.X[:, 1:] if self.intercept else self.X
        if exact:
            orders = itertools.permutations(range(k))
            total = _math.factorial(k)
        else:
            rng = np.random.default_rng(seed)
            orders = itertools.chain([tuple(range(k))], (rng.permutation(k) for _ in range(n_permutations - 1)))
            total = n_permutations
        rows = np.arange(k)
        stats, qms = [], []
        for order in orders:
            fit = self._refit(rows, moderators=mods[np.asarray(order)])
            stats.append(np.abs(fit.statistic))
            qms.append(fit.qm)
        stats, qms = np.asarray(stats), np.asarray(qms)
        tol = np.sqrt(np.finfo(float).eps)
        p = np.mean(stats >= np.abs(self.statistic)[None, :] - tol, axis=0)
        qm_p = float(np.mean(qms >= self.qm - tol)) if np.isfinite(self.qm) else float("nan")
        return ModeratorPermutationResult({"terms": list(self.names), "p": p.tolist(), "qm_p": qm_p, "n": total,
                                           "exact": bool(exact), "seed": None if exact else seed},
                                          estimate=self.beta.tolist(), statistic=self.statistic.tolist(),
                                          test=self.settings.test)

    def summary_frame(self):
        import pandas as pd

        return pd.DataFrame({"term": self.names, "estimate": self.beta, "se": self.se,
                             "statistic": self.statistic, "p": self.p, "ci_low": self.ci_low,
                             "ci_high": self.ci_high})

    def to_dict(self) -> dict:
        clean = json_ready
        return {"coefficients": [{k: (clean(float(v)) if k != "term" else v) for k, v in row.items()}
                                 for row in self.summary_frame().to_dict("records")],
                "tau2": clean(self.tau2), "i2": clean(self.i2), "h2": clean(self.h2), "qe": clean(self.qe),
                "qe_df": self.qe_df, "qe_p": clean(self.qe_p), "qm": clean(self.qm), "qm_df": list(self.qm_df),
                "qm_p": clean(self.qm_p), "r2": clean(self.r2), "k": self.k, "method": self.method,
                "ci": self.ci, "df": clean(self.df), "converged": self.converged,
                "level": clean(self.settings.level) if self.settings is not None else None,
                "formula": self.formula, "reference_levels": dict(self.references or {}), "measure": self.measure,
                **{name: clean(value) for name, value in (self.fit or {}).items()}}


def meta_regression(yi, vi, X=None, names=None, settings: Settings | None = None, intercept=True, *,
                    mods=None, data=None, reference=None, **options) -> MetaRegression:
    """Fit ``y = X beta`` with random effects (numpy in; see the module docstring for the formulas).

    The moderators, in any of these forms (``X`` or ``mods``, not both):

    - a formula as a metafor user writes it, ``mods="~ ablat + alloc"``, with ``data=`` the table holding
      the columns, read by formulaic: text columns and ``C(x)`` are categorical, dummy-coded against the
      first level in sorted order (R's ``factor()``) or the level given as ``C(x, Treatment("b"))``;
      ``~ 0 + ...`` or ``- 1`` drops the intercept; ``a * b``, ``a:b``, ``I(x ** 2)`` as in R;
    - column names of ``data`` (``"ablat + C(alloc)"`` or a list) as :func:`design` reads them;
    - a DataFrame or a named Series: numeric columns as they are, other columns categorical;
    - a matrix (k x m) or a vector, named by ``names`` (default ``x1, x2, ...``).

    Coefficients are named ``intercept``, the column (``ablat``), and ``column[level]`` for a level of
    a categorical moderator (``alloc[random]``; metafor writes ``allocrandom``, formulaic
    ``alloc[T.random]``); ``references`` records each factor's reference level and the print says it.
    A column of ones is prepended when ``intercept``.
    The omnibus test ``QM`` covers every coefficient but the intercept. ``settings`` (default: the
    defaults) with keyword ``options`` on top give the tau2 estimator (``method``), the CI method
    (``ci_method``: Wald or Knapp-Hartung) and the ``level``.

    Without an intercept (``intercept=False``) tau2 and QE are those of the model as written, as metafor's
    ``rma.mv`` computes them; metafor's ``rma.uni`` (since 3.5-7) estimates them from ``yi - mean(yi)``,
    which differs when the moderators do not span a constant (see docs/conventions.md). Arguments that are
    not finite numbers of matching shapes are refused with an InputError naming the argument.
    """
    settings = resolve_settings(settings, options)
    if settings.method in COUNT_METHODS:
        raise InputError(f"method: {settings.method} pools 2x2 tables of counts, and a meta-regression pools yi and "
                         "vi by inverse variance (metafor's rma.mh and rma.peto take no moderators); give an "
                         "inverse-variance method, e.g. method='REML'")
    X, names, references, formula, intercept = _moderators(X, mods, data, names, reference, intercept)
    fit = _fit(yi, vi, X, names, settings, intercept)
    fit.references, fit.formula = references, formula
    return fit


def _fit(yi, vi, X, names, settings, intercept) -> MetaRegression:
    """The fit itself, on a numeric moderator matrix (see :func:`meta_regression`)."""
    method, ci, level, maxiter = settings.method, settings.ci_method, settings.level, settings.maxiter
    y, v, X = _inputs(yi, vi, X)
    k = y.size
    names = [str(name) for name in names] if names is not None else [f"x{i + 1}" for i in range(X.shape[1])]
    if len(names) != X.shape[1]:
        raise InputError(f"names: {X.shape[1]} moderator names are needed, got {len(names)}")
    if intercept:
        X = np.column_stack([np.ones(k), X])
        names = ["intercept"] + names
    p = X.shape[1]
    if k <= p:
        raise InputError(f"{k} studies cannot support {p} coefficients")
    if np.linalg.matrix_rank(X) < p:
        raise InputError("the moderators are collinear or constant (the design matrix is not of full rank), "
                         "so their coefficients are not identifiable")
    tau2, converged, _ = estimate_tau2_mods(y, v, X, method, maxiter=maxiter)
    w, xtwx_inv, beta, r = weighted_fit_mods(y, v, X, tau2)
    vb = xtwx_inv
    df = float("nan")
    if ci == "hksj":
        rss = float(np.sum(w * r ** 2))
        vb = (0.0 if rss <= _EPS else rss / (k - p)) * vb
        df = float(k - p)
    se = np.sqrt(np.diag(vb))
    stat = beta / se
    tested = slice(1, None) if intercept else slice(None)
    b_t = beta[tested]
    m = b_t.size
    qm = float(b_t @ np.linalg.solve(vb[tested, tested], b_t)) if m else float("nan")
    if ci == "hksj":
        p_val = 2 * stdtr(df, -np.abs(stat))
        crit = stdtrit(df, 0.5 + level / 2)
        qm, qm_df = qm / m if m else qm, (m, k - p)
        qm_p = float(fdtrc(m, k - p, qm)) if m else float("nan")
    else:
        p_val = 2 * ndtr(-np.abs(stat))
        crit = ndtri(0.5 + level / 2)
        qm_df = (m,)
        qm_p = float(chdtrc(m, qm)) if m else float("nan")
    qe, i2, h2, r2 = _residual_heterogeneity(y, v, X, tau2, method, intercept, maxiter)
    fit = _fit_statistics(y, v, X, tau2, method)
    return MetaRegression(names=names, beta=beta, se=se, statistic=stat, p=p_val, ci_low=beta - crit * se,
                          ci_high=beta + crit * se, df=df, tau2=tau2, i2=i2, h2=h2, qe=qe, qe_df=k - p,
                          qe_p=float(chdtrc(k - p, qe)), qm=qm, qm_df=qm_df, qm_p=qm_p, r2=r2, k=k,
                          method=method, ci=ci, converged=converged, X=X, yi=y, vi=v, vb=vb, settings=settings,
                          fit=fit, intercept=intercept)


def _residual_heterogeneity(y, v, X, tau2, method, intercept, maxiter):
    """QE, I2, H2 and R2 of a meta-regression (metafor ``rma.uni``; R2 needs an intercept and a moderator):
    ``QE = y'P y`` at tau2 = 0; ``I2 = tau2 / (v_typical + tau2)`` with ``v_typical = (k-p) / tr P``, or from
    QE for FE; R2 against the intercept-only fit with the same estimator, for FE the adjusted R2 of the
    weighted least-squares fit (metafor's choice)."""
    k, p = X.shape
    qe, _ = q_mods(y, v, X, 0.0)
    w_fe = 1.0 / v
    tr_p = float(np.sum(w_fe) - np.trace(np.linalg.inv(X.T @ (w_fe[:, None] * X)) @ (X.T @ ((w_fe ** 2)[:, None] * X))))
    v_typical = (k - p) / tr_p
    r2 = float("nan")
    if method == "FE":
        i2 = max(0.0, 100 * (qe - (k - p)) / qe)
        h2 = qe / (k - p)
        if intercept and p > 1:
            # metafor: the adjusted R2 of the weighted least-squares fit, in percent, floored at 0
            import statsmodels.api as sm

            r2 = 0.0 if np.var(y) == 0 else max(0.0, 100 * sm.WLS(y, X, weights=w_fe).fit().rsquared_adj)
    else:
        i2 = 100 * tau2 / (v_typical + tau2)
        h2 = tau2 / v_typical + 1
        if intercept and p > 1:
            tau2_re, _, _ = estimate_tau2_mods(y, v, np.ones((k, 1)), method, maxiter=maxiter)
            r2 = 0.0 if tau2_re <= 0 else max(0.0, 100 * (tau2_re - tau2) / tau2_re)
    return qe, i2, h2, r2


def _fit_statistics(y, v, X, tau2, method):
    """metafor's ``fitstats`` of a meta-regression (its REML log-likelihood includes ``log|X'X| / 2``)."""
    k, p = X.shape
    ll = float(loglik_mods(y, v, X, tau2, method == "REML"))
    if method == "REML":
        ll += 0.5 * float(np.linalg.slogdet(X.T @ X)[1])
    sat = -0.5 * (k * math.log(2 * math.pi) + float(np.sum(np.log(v))))
    return {name: float(value) for name, value in fit_statistics(ll, k, p, method, sat).items()}


def _combinations(X, names) -> np.ndarray:
    """``anova(X=)``'s matrix of linear combinations: finite numbers, one column per coefficient."""
    try:
        L = np.atleast_2d(np.asarray(X, dtype=float))
    except (TypeError, ValueError):
        raise InputError("X: the linear combinations must be a matrix of numbers") from None
    if L.ndim != 2 or L.shape[1] != len(names) or L.shape[0] == 0:
        raise InputError(f"X: each row needs {len(names)} numbers, one per coefficient ({', '.join(names)}); "
                         f"got shape {L.shape}")
    if not np.all(np.isfinite(L)):
        raise InputError("X: the linear combinations must be finite numbers")
    return L


class LikelihoodRatioWarning(PfpsWarning):
    """A likelihood-ratio test that metafor also runs but whose statistic is not meaningful."""


def _refit_ml(fit):
    mods = fit.X[:, 1:] if fit.intercept else fit.X
    return meta_regression(fit.yi, fit.vi, mods, names=fit.names[1:] if fit.intercept else fit.names,
                           settings=fit.settings.replace(method="ML"), intercept=fit.intercept)


def likelihood_ratio_test(full, reduced, refit=False) -> dict:
    """Likelihood-ratio test of nested meta-regressions (metafor ``anova(full, reduced)``).

    ``LRT = 2 (ll_full - ll_reduced)``, set to 0 when negative (as metafor), against chi2 with the difference
    in the number of parameters (coefficients, plus tau2 unless FE). Both must be fitted to the same data
    by ML or both by REML. REML fits with different fixed effects have restricted likelihoods of different
    data transformations, so their LRT is not meaningful: metafor 3.8-1 warns and returns the statistic
    anyway, and so does this function (a :class:`LikelihoodRatioWarning`); ``refit=True`` refits both
    models by ML first (metafor ``anova(..., refit=TRUE)``), which is the meaningful test.
    """
    for argument, fit in (("full", full), ("reduced", reduced)):
        if not isinstance(fit, MetaRegression):
            raise InputError(f"{argument}: a fitted meta-regression is needed (got {type(fit).__name__})")
    if full.method != reduced.method or full.method not in ("ML", "REML"):
        raise InputError("a likelihood-ratio test needs two ML fits or two REML fits "
                         f"(got {full.method} and {reduced.method})")
    if (full.yi.shape != reduced.yi.shape or not np.allclose(full.yi, reduced.yi)
            or not np.allclose(full.vi, reduced.vi)):
        raise InputError("the two models were not fitted to the same data")
    q_full = full.X.shape[1] + 1
    q_reduced = reduced.X.shape[1] + 1
    if q_full <= q_reduced:
        raise InputError("the first model must have more parameters than the second (full, reduced)")
    if full.method == "REML" and (full.X.shape != reduced.X.shape or not np.allclose(full.X, reduced.X)):
        if refit:
            full, reduced = _refit_ml(full), _refit_ml(reduced)
        else:
            warnings.warn("REML likelihoods of models with different fixed effects are not comparable: the LRT "
                          "is returned as metafor returns it, but is not meaningful (refit=True refits both "
                          "models by ML)", LikelihoodRatioWarning, stacklevel=2)
    lrt = max(0.0, 2.0 * (full.fit["loglik"] - reduced.fit["loglik"]))
    df = q_full - q_reduced
    return LikelihoodRatioResult({"lrt": lrt, "df": df, "p": float(chdtrc(df, lrt)), "method": full.method,
                                  "loglik_full": full.fit["loglik"], "loglik_reduced": reduced.fit["loglik"],
                                  "aic_full": full.fit["aic"], "aic_reduced": reduced.fit["aic"]})


_FACTOR_SPEC = re.compile(r"^\s*C\(\s*(?P<column>[^()]+?)\s*\)\s*$")


def _moderator_specs(columns, factors):
    """``[(column, is_factor), ...]`` from the moderator spec: a column name, ``C(column)`` for a factor (as
    R and patsy write it), a list of these, or one string joining them with ``+`` (``"ablat + C(alloc)"``)."""
    if isinstance(columns, str):
        columns = [columns] if "+" not in columns else columns.split("+")
    elif not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
        raise InputError(f"moderators: give column names as text, e.g. 'ablat' or 'C(alloc)' (got {columns!r})")
    factors = {factors} if isinstance(factors, str) else set(factors or ())
    specs = []
    for spec in columns:
        match = _FACTOR_SPEC.match(spec)
        column = match.group("column") if match else spec.strip()
        specs.append((column, bool(match) or column in factors))
    unused = factors - {column for column, _ in specs}
    if unused:
        raise InputError(f"factors: {', '.join(sorted(unused))} is not among the moderators "
                         f"({', '.join(column for column, _ in specs)})")
    return specs


def _cell_number(cell):
    """A float, None for an empty cell, or the cell's text when it is not a number."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)) or cell is pd.NA:
        return None
    if isinstance(cell, (bool, np.bool_)):
        return str(cell)
    if isinstance(cell, (int, float, np.integer, np.floating)):
        return float(cell)
    text = str(cell).strip()
    if not text or text.upper() in ("NA", "NAN"):
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _numeric_moderator(table, column):
    """The column as floats; an empty or non-numeric cell is refused, naming its row and value."""
    cells = [_cell_number(cell) for cell in table[column].tolist()]
    for position, value in enumerate(cells):
        if value is None:
            raise InputError("moderator value is missing", column=column, **where_in_table(table, position))
    text = [position for position, value in enumerate(cells) if isinstance(value, str)]
    if text and len(text) == len(cells):
        raise InputError(f"the moderator is text (e.g. {cells[0]!r}); write C({column}) to use it as a "
                         "categorical moderator (factor)", column=column, file=table.attrs.get("source"))
    if text:
        position = text[0]
        raise InputError(f"moderator value {cells[position]!r} is not a number, while the column's other values "
                         f"are numbers (write C({column}) if the column is categorical)", column=column,
                         **where_in_table(table, position))
    values = np.asarray(cells, dtype=float)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise InputError(f"moderator value {values[bad[0]]} is not finite", column=column,
                         **where_in_table(table, int(bad[0])))
    return values


def _factor_moderator(table, column, reference):
    """Dummy columns of a factor against its reference level (R ``factor()``: numeric levels in numeric
    order, text levels in sorted order; the first is the default reference)."""
    cells = table[column].tolist()
    labels = []
    for position, cell in enumerate(cells):
        value = _cell_number(cell)
        if value is None:
            raise InputError("moderator value is missing", column=column, **where_in_table(table, position))
        labels.append(f"{value:g}" if isinstance(value, float) else value)
    numbers = [_cell_number(label) for label in set(labels)]
    if all(isinstance(n, float) for n in numbers):
        levels = sorted(set(labels), key=float)
    else:
        levels = sorted(set(labels))
    ref = reference.get(column) if isinstance(reference, dict) else reference
    ref = levels[0] if ref is None else str(ref)
    if ref not in levels:
        raise InputError(f"reference level '{ref}' is not a value of the column ({', '.join(levels)})",
                         column=column, file=table.attrs.get("source"))
    if len(levels) < 2:
        raise InputError(f"a categorical moderator needs at least two levels (has {levels[0]!r})",
                         column=column, file=table.attrs.get("source"))
    labels = np.asarray(labels, dtype=object)
    others = [lv for lv in levels if lv != ref]
    return np.column_stack([(labels == lv).astype(float) for lv in others]), [f"{column}[{lv}]" for lv in others], ref


def design(table, columns, reference=None, factors=()):
    """Moderator matrix from columns of a table, as R's ``model.matrix`` builds it from a formula.

    ``columns`` is a column name, ``C(column)`` for a categorical moderator (a factor, written as in R's and
    patsy's formulas), a list of these, or one string joining them with ``+`` (``"ablat + C(alloc)"``).
    ``factors`` names columns among them to treat as factors (the same as writing ``C(column)``). A factor is dummy-coded against its reference
    level (``reference``: one level, or a dict column -> level; default the first level: numeric levels in
    numeric order, text in sorted order, as R's ``factor()``). Any other column must be numeric in every
    cell: a missing, non-finite or non-numeric cell (``15%``, a typo, ``NA``) is an ``InputError`` naming its
    row, column and value, and a text column not asked for as a factor is refused with the advice to
    write ``C(column)``; nothing is turned into a factor silently.

    Returns ``(X, names, references)`` with ``references`` naming the reference level of each factor.
    """
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"table: a pandas DataFrame is needed for the moderators (got {type(table).__name__})")
    blocks, names, references = [], [], {}
    for column, is_factor in _moderator_specs(columns, factors):
        if column not in table.columns:
            raise InputError(f"moderator: no column '{column}' in the input (write a column name, or C(column) "
                             "for a categorical one)", file=table.attrs.get("source"))
        if is_factor:
            block, block_names, references[column] = _factor_moderator(table, column, reference)
        else:
            block, block_names = _numeric_moderator(table, column)[:, None], [column]
        blocks.append(block)
        names += block_names
    if not blocks:
        raise InputError("moderators: no column given")
    return np.column_stack(blocks), names, references


# --------------------------------------------------------------------------------------------------
# Moderators as a metafor user writes them: a formula (through formulaic), a DataFrame, a named Series.


def _moderators(X, mods, data, names, reference, intercept):
    """``(matrix, names, references, formula, intercept)`` from the moderators in any accepted form."""
    if X is not None and mods is not None:
        raise InputError("mods: give the moderators once, as X or as mods, not both")
    given = mods if mods is not None else X
    if given is None:
        raise InputError("mods: no moderators given (a formula such as '~ ablat + alloc' with data=, a "
                         "DataFrame, a named Series or a matrix; an empty matrix fits the intercept only)")
    if isinstance(given, str) and given.strip().startswith("~"):
        return _formula_moderators(given, _data_table(data, given), intercept)
    if isinstance(given, (str, list, tuple)) and all(isinstance(g, str) for g in np.atleast_1d(given)):
        table = _data_table(data, given)
        matrix, columns, references = design(table, given, reference=reference)
        return matrix, columns, references, None, intercept
    if isinstance(given, (pd.Series, pd.DataFrame)) and names is not None:
        given = given.to_frame() if isinstance(given, pd.Series) else given
        if len(names) != given.shape[1]:
            raise InputError(f"names: {given.shape[1]} moderator names are needed, got {len(names)}")
        given = given.set_axis([str(n) for n in names], axis=1)
    if isinstance(given, pd.Series):
        if given.name is None:
            raise InputError("mods: a Series needs a name (it names the coefficient), e.g. s.rename('ablat')")
        given = given.to_frame()
    if isinstance(given, pd.DataFrame):
        given = given.reset_index(drop=True)
        factors = [c for c in given.columns if not pd.api.types.is_numeric_dtype(given[c])
                   or pd.api.types.is_bool_dtype(given[c])]
        matrix, columns, references = design(given, [str(c) for c in given.columns], reference=reference,
                                             factors=[str(c) for c in factors])
        return matrix, columns, references, None, intercept
    return X if mods is None else mods, names, {}, None, intercept


def _data_table(data, given):
    if not isinstance(data, pd.DataFrame):
        raise InputError(f"data: the moderators {given!r} name columns, so data= must be the table holding them "
                         f"(a pandas DataFrame; got {type(data).__name__})")
    return data.reset_index(drop=True)


def _factor_variable(expression: str) -> str:
    """The column a factor expression reads: ``C(alloc, Treatment('b'))`` -> ``alloc``."""
    match = re.match(r"^\s*C\(\s*([^,()]+?)\s*(,.*)?\)\s*$", expression)
    return match.group(1).strip("`") if match else expression


def _check_formula_columns(table, formula, variables):
    """Every column the formula reads: present, no empty cell, and (unless written ``C(column)``) not a
    mixture of numbers and text, which formulaic would silently turn into a factor of many levels.
    Returns the table with text columns whose every cell is a number read as numbers (as R's read.csv
    does), so a CSV read as text keeps ``ablat`` numeric."""
    table = table.copy()
    for column in sorted(variables):
        if column not in table.columns:
            continue            # a function or constant (np, log); formulaic reports what it cannot find
        cells = [_cell_number(cell) for cell in table[column].tolist()]
        for position, value in enumerate(cells):
            if value is None:
                raise InputError("moderator value is missing", column=column, **where_in_table(table, position))
        text = [i for i, value in enumerate(cells) if isinstance(value, str)]
        if text and len(text) < len(cells) and not re.search(rf"C\(\s*`?{re.escape(column)}\b", formula):
            position = text[0]
            raise InputError(f"moderator value {cells[position]!r} is not a number, while the column's other "
                             f"values are numbers (write C({column}) if the column is categorical)",
                             column=column, **where_in_table(table, position))
        if not text and not pd.api.types.is_numeric_dtype(table[column]):
            table[column] = np.asarray(cells, dtype=float)
    return table


def _formula_moderators(formula, table, intercept):
    """The moderator matrix of a formula, read by formulaic (R's ``model.matrix`` rules: treatment
    contrasts, reduced-rank coding when there is an intercept)."""
    from formulaic import Formula, model_matrix
    from formulaic.errors import FormulaicError

    try:
        parsed = Formula(formula)
        table = _check_formula_columns(table, formula, set(parsed.required_variables))
        matrix = model_matrix(formula, table, na_action="raise")
    except FormulaicError as exc:
        reason = " ".join(str(exc).split("\n")[0].split())
        raise InputError(f"mods: the formula {formula!r} cannot be read: {reason}",
                         file=table.attrs.get("source")) from None
    spec = matrix.model_spec
    variables, references = {}, {}
    for expression, state in spec.factor_contrasts.items():
        variable = _factor_variable(str(expression))
        variables[str(expression)] = variable
        base = getattr(state.contrasts, "base", None)
        if type(state.contrasts).__name__ == "TreatmentContrasts":
            references[variable] = str(state.levels[0] if repr(base) == "UNSET" or base is None else base)
    columns = list(matrix.columns)
    has_intercept = "Intercept" in columns
    keep = [i for i, c in enumerate(columns) if c != "Intercept"]
    names = [_coefficient_name(columns[i], variables) for i in keep]
    values = np.asarray(matrix, dtype=float)[:, keep]
    # a factor coded in full (``~ 0 + alloc``) has no reference level
    references = {v: level for v, level in references.items() if f"{v}[{level}]" not in names}
    return values, names, references, formula.strip(), has_intercept and intercept


def _coefficient_name(column: str, variables: dict) -> str:
    """formulaic's ``C(alloc)[T.random]`` as ``alloc[random]`` (the column, then the level)."""
    for expression in sorted(variables, key=len, reverse=True):
        column = column.replace(expression, variables[expression])
    return column.replace("[T.", "[")


def rma(data, mods=None, measure=None, *, yi="yi", vi="vi", settings: Settings | None = None,
        reference=None, **options) -> MetaRegression:
    """A meta-regression as metafor's ``rma(yi, vi, mods = ~ ..., data = dat)`` fits it.

    ``data``: a table with ``yi`` and ``vi`` columns (e.g. from ``pm.escalc``), a table of studies that
    ``pm.escalc`` can read with ``measure``, or a fitted :class:`~pfps_meta.models.univariate.MetaResult`
    (its studies, measure and settings). ``mods``: a formula (``"~ ablat + alloc"``), column names, a
    DataFrame or a named Series (see :func:`meta_regression`); None fits the intercept only. ``settings``
    and keyword ``options`` (``method="REML"``, ``ci_method="hksj"``, ``level``) as for ``pm.pool``; a
    MetaResult's own settings are the default.
    """
    if hasattr(data, "studies") and hasattr(data, "settings"):
        settings = settings if settings is not None else data.settings
        measure = measure or data.measure
        table = data.studies.copy()
        table.attrs["source"] = getattr(data, "source", None)
    elif isinstance(data, pd.DataFrame):
        table = data
        if not {yi, vi} <= set(table.columns):
            from pfps_meta.inputs.validate import effect_table

            table = effect_table(table, measure, settings=resolve_settings(settings, dict(options)))
    else:
        raise InputError(f"data: a DataFrame of studies or a fitted result is needed (got {type(data).__name__})")
    source, measure = table.attrs.get("source"), measure or table.attrs.get("measure")   # escalc records it
    table = table.reset_index(drop=True)
    table.attrs["source"] = source
    if mods is None:
        mods = np.empty((len(table), 0))
    fit = meta_regression(table[yi].to_numpy(), table[vi].to_numpy(), mods=mods, data=table, settings=settings,
                          reference=reference, **options)
    fit.measure = measure
    return fit
