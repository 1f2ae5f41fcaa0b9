"""Heterogeneity priors as data, for the Bayesian normal-normal hierarchical model (:mod:`.bayes`).

A :class:`Prior` is a distribution, the parameter it is written on (``tau`` or ``tau2``), the effect
measure it was derived for (``None`` for a generic prior such as half-normal(0.5)) and its source. The
model integrates over ``u = log(tau)``, so every prior gives the log density of ``u``:

* on tau, ``log p_u(u) = log p_tau(e^u) + u``;
* on tau², ``log(tau²) = 2u``, so ``log p_u(u) = log 2 + log p_{log tau²}(2u)``.

Families (densities on the stated parameter):

=====================  ==========  ================================================================
``half-normal:S``      tau         ``2 phi(tau / S) / S``
``half-t:DF:S``        tau         ``2 t_DF(tau / S) / S``; ``half-cauchy:S`` is ``half-t:1:S``
``exponential:RATE``   tau         ``RATE exp(-RATE tau)``
``uniform:UPPER``      tau         ``1 / UPPER`` on ``[0, UPPER]``
``inverse-gamma:A:B``  tau         ``B^A / Gamma(A) tau^(-A-1) exp(-B / tau)``
``log-normal:M:S``     tau²        ``log tau² ~ N(M, S²)`` (Turner et al. 2015, Table IV, log OR)
``log-t5:L:S``         tau²        ``(log tau² - L) / S ~ t_5`` (Rhodes et al. 2015, Table 3, SMD)
=====================  ==========  ================================================================

The published tables are in ``data/priors/`` (each row with its citation and table cell);
:func:`table_prior` returns one cell. A prior derived for the SMD or the log odds ratio describes
heterogeneity on that scale; for a raw mean difference it must be rescaled by the unit-information SD
(Röver et al. 2021, Res Synth Methods 12(4):448-474; :func:`unit_information_sd`,
:meth:`Prior.rescaled`), and :func:`check_measure` refuses it otherwise.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import special

from pfps_meta import distributions
from pfps_meta.errors import InputError

#: where the published prior tables live (one CSV per table, every row with its source)
PRIOR_TABLE_DIR = Path(__file__).resolve().parents[2] / "data" / "priors"

#: named tables: name -> (file, what it is)
TABLES = {
    "turner2015": ("turner2015_table4.csv", "Turner 2015 Table IV: log-normal on tau², log odds ratios"),
    "rhodes2015": ("rhodes2015_table3.csv", "Rhodes 2015 Table 3: log-t5 on tau², standardised mean differences"),
}

#: family -> (parameter it is on, parameter names); the order is the CLI's ``family:P1:P2`` order
FAMILIES = {
    "half-normal": ("tau", ("scale",)),
    "half-t": ("tau", ("df", "scale")),
    "half-cauchy": ("tau", ("scale",)),
    "exponential": ("tau", ("rate",)),
    "uniform": ("tau", ("upper",)),
    "inverse-gamma": ("tau", ("shape", "scale")),
    "log-normal": ("tau2", ("mean", "sd")),
    "log-t5": ("tau2", ("location", "scale")),
}

#: the unit-information SD of the scale a measure-specific prior was derived on. For the SMD it is 2:
#: var(d) is about 1/n1 + 1/n2 = 4/N for equal arms, so sqrt(N var) = 2 (Röver et al. 2021, Sec. 2).
REFERENCE_UISD = {"SMD": 2.0}

#: measures whose heterogeneity is on the same scale as the SMD (Hedges' g and its variants)
_SMD_LIKE = {"SMD", "SMDH", "SMD1", "SMCC", "SMCR"}


@dataclass(frozen=True)
class Prior:
    """A prior for the between-study heterogeneity.

    Attributes
    ----------
    family : str
        One of :data:`FAMILIES`.
    params : tuple of float
        The family's parameters, in the order of :data:`FAMILIES`.
    on : str
        ``"tau"`` or ``"tau2"``: the parameter the distribution is written on.
    measure : str or None
        The effect measure it was derived for (``"SMD"``, ``"OR"``), or None for a generic prior.
    label : str
        Its name in printouts, e.g. ``half-normal(0.5)`` or ``Rhodes 2015: pain_function, non_pharmacological``.
    source : str
        Citation and table cell, for a published prior.
    rescaled_by : float or None
        The factor a measure-specific prior was rescaled by (then it applies to a raw MD).
    """

    family: str
    params: tuple
    on: str
    measure: str | None = None
    label: str = ""
    source: str = ""
    rescaled_by: float | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise InputError(f"unknown prior family '{self.family}'; choose from {', '.join(FAMILIES)}")
        names = FAMILIES[self.family][1]
        if len(self.params) != len(names):
            raise InputError(f"prior {self.family} takes {len(names)} parameter(s) ({', '.join(names)}), "
                             f"got {len(self.params)}")
        for name, value in zip(names, self.params):
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"prior {self.family}: {name} must be a finite number, not {value!r}")
            if name != "mean" and name != "location" and value <= 0:
                raise InputError(f"prior {self.family}: {name} must be > 0, not {value:g}")
        if not self.label:
            object.__setattr__(self, "label", f"{self.family}({', '.join(f'{p:g}' for p in self.params)})")

    @property
    def spelling(self) -> str:
        """The parametric spelling that :func:`parse_prior` reads back (``log-t5:-3.02:2.27``)."""
        return ":".join([self.family] + [repr(float(p)) for p in self.params])

    # -- densities ------------------------------------------------------------------------------
    def _dist(self):
        """The distribution of tau (on="tau") or of log tau² (on="tau2"), with logpdf, cdf and ppf."""
        p = self.params
        if self.family == "half-normal":
            return _HalfNormal(scale=p[0])
        if self.family == "half-t":
            return _HalfCauchy(scale=p[1]) if p[0] == 1 else _HalfT(p[0], p[1])
        if self.family == "half-cauchy":
            return _HalfCauchy(scale=p[0])
        if self.family == "exponential":
            return _Exponential(scale=1.0 / p[0])
        if self.family == "uniform":
            return _Uniform(scale=p[0])
        if self.family == "inverse-gamma":
            return _InverseGamma(p[0], scale=p[1])
        if self.family == "log-normal":
            return _Normal(p[0], p[1])
        return _StudentT(5, loc=p[0], scale=p[1])

    def log_density_logtau(self, u):
        """Log density of ``u = log(tau)`` at ``u`` (array), ``-inf`` outside the support."""
        u = np.asarray(u, dtype=float)
        dist = self._dist()
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            if self.on == "tau2":
                return math.log(2.0) + dist.logpdf(2.0 * u)
            tau = np.exp(u)
            out = dist.logpdf(tau) + u
        return np.where(np.isnan(out), -np.inf, out)

    def log_density_tau(self, tau):
        """Log density of tau itself (for plots): ``log p_u(log tau) - log tau``."""
        tau = np.asarray(tau, dtype=float)
        with np.errstate(divide="ignore"):
            return self.log_density_logtau(np.log(tau)) - np.log(tau)

    def cdf_tau(self, tau):
        """P(tau' <= tau) under the prior."""
        tau = np.asarray(tau, dtype=float)
        if self.on == "tau2":
            with np.errstate(divide="ignore"):
                return self._dist().cdf(2.0 * np.log(tau))
        return self._dist().cdf(tau)

    def quantile_tau(self, p):
        """The prior's p-quantile of tau."""
        p = np.asarray(p, dtype=float)
        if self.on == "tau2":
            with np.errstate(over="ignore"):
                return np.exp(0.5 * self._dist().ppf(p))
        return self._dist().ppf(p)

    @property
    def upper_tau(self) -> float:
        """The end of the support (inf except for the uniform)."""
        return float(self.params[0]) if self.family == "uniform" else math.inf

    # -- rescaling ------------------------------------------------------------------------------
    def rescaled(self, factor: float, measure: str | None = "MD") -> "Prior":
        """This prior for ``factor * tau`` (e.g. an SMD prior times the unit-information SD / 2 for an
        MD analysis, Röver et al. 2021): scales multiply by ``factor``, a rate divides by it, and the
        location of log tau² moves by ``2 log(factor)``."""
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
            raise InputError(f"prior rescaling factor must be a finite number > 0, not {factor!r}")
        p = list(self.params)
        if self.family in ("half-normal", "half-cauchy", "uniform"):
            p[0] *= factor
        elif self.family in ("half-t", "inverse-gamma"):
            p[1] *= factor
        elif self.family == "exponential":
            p[0] /= factor
        else:
            p[0] += 2.0 * math.log(factor)
        label = f"{self.label} x {factor:.4g}"
        return replace(self, params=tuple(p), label=label, measure=measure,
                       rescaled_by=factor * (self.rescaled_by or 1.0))

    def to_dict(self) -> dict:
        return {"family": self.family, "params": dict(zip(FAMILIES[self.family][1], self.params)), "on": self.on,
                "derived_for": self.measure, "label": self.label, "source": self.source or None,
                "rescaled_by": self.rescaled_by}


# ------------------------------------------------------------------------------------------------
# the prior families' distributions (numpy and scipy.special; importing scipy.stats costs ~0.5 s)


class _LocationScale:
    """A continuous distribution of ``X = loc + scale * Y``, Y in standard form on ``[lower, upper]``.

    ``logpdf(x) = log f_Y((x - loc) / scale) - log(scale)`` (``-inf`` outside the support, NaN for NaN);
    ``cdf(x) = F_Y((x - loc) / scale)`` (0 below the support, 1 above it); ``ppf(q) = loc + scale *
    F_Y^-1(q)`` for ``0 < q < 1``, the ends of the support at q = 0 and 1, NaN elsewhere. These are the
    conventions (and the order of the floating-point operations) of ``scipy.stats``' frozen
    distributions, so the numbers are the same. Subclasses give ``_logpdf``, ``_cdf`` and ``_ppf`` of Y.
    """

    lower, upper = -math.inf, math.inf
    open_support = False            # True: logpdf is -inf at the ends too (the inverse gamma at 0)

    def __init__(self, loc=0.0, scale=1.0):
        self.loc, self.scale = float(loc), float(scale)

    def _standard(self, x):
        return np.asarray((np.asarray(x, dtype=float) - self.loc) / self.scale, dtype=float)

    @staticmethod
    def _shaped(out):
        return out[()] if out.ndim == 0 else out

    def logpdf(self, x):
        y = self._standard(x)
        with np.errstate(invalid="ignore"):
            inside = (self.lower < y) & (y < self.upper) if self.open_support else (
                (self.lower <= y) & (y <= self.upper))
        out = np.full(y.shape, -np.inf)
        out[np.isnan(y)] = np.nan
        if inside.any():
            out[inside] = self._logpdf(y[inside]) - np.log(np.atleast_1d(self.scale))
        return self._shaped(out)

    def cdf(self, x):
        y = self._standard(x)
        with np.errstate(invalid="ignore"):
            inside = (self.lower < y) & (y < self.upper)
            out = np.where(y >= self.upper, 1.0, 0.0)
        out[np.isnan(y)] = np.nan
        if inside.any():
            out[inside] = self._cdf(y[inside])
        return self._shaped(out)

    def ppf(self, q):
        q = np.asarray(q, dtype=float)
        with np.errstate(invalid="ignore"):
            inside = (0 < q) & (q < 1)
            out = np.full(q.shape, np.nan)
            out[q == 0] = self.lower * self.scale + self.loc
            out[q == 1] = self.upper * self.scale + self.loc
        if inside.any():
            out[inside] = self._ppf(q[inside]) * self.scale + self.loc
        return self._shaped(out)


class _Normal(_LocationScale):
    """Normal: ``log f(y) = -y²/2 - log sqrt(2 pi)``, ``F = Phi`` and ``F^-1`` from :mod:`pfps_meta.distributions`."""

    _LOG_C = np.log(np.sqrt(2 * np.pi))

    def _logpdf(self, y):
        return -y ** 2 / 2.0 - self._LOG_C

    def _cdf(self, y):
        return distributions.norm_cdf(y)

    def _ppf(self, q):
        return distributions.norm_ppf(q)


class _StudentT(_LocationScale):
    """Student's t with ``df`` degrees of freedom: ``log f(y) = log(Gamma((df+1)/2) / Gamma(df/2))
    - (log df + log pi) / 2 - (df+1)/2 log(1 + y²/df)`` (the gamma ratio as ``poch(df/2, 1/2)``);
    ``F`` and ``F^-1`` from :mod:`pfps_meta.distributions`."""

    def __init__(self, df, loc=0.0, scale=1.0):
        super().__init__(loc, scale)
        self.df = float(df)

    def _logpdf(self, y):
        df = self.df
        return (np.log(special.poch(0.5 * df, 0.5)) - 0.5 * (np.log(df) + np.log(np.pi))
                - (df + 1) / 2 * np.log1p(y * y / df))

    def _cdf(self, y):
        return distributions.t_cdf(y, self.df)

    def _ppf(self, q):
        return distributions.t_ppf(q, self.df)


class _HalfNormal(_LocationScale):
    """|Z| for a standard normal Z: ``log f(y) = log(2/pi)/2 - y²/2``, ``F = erf(y / sqrt 2)``,
    ``F^-1(q) = Phi^-1((1 + q)/2)``."""

    lower = 0.0

    def _logpdf(self, y):
        return 0.5 * np.log(2.0 / np.pi) - y * y / 2.0

    def _cdf(self, y):
        return special.erf(y / np.sqrt(2))

    def _ppf(self, q):
        return special.ndtri((1 + q) / 2.0)


class _HalfCauchy(_LocationScale):
    """|C| for a standard Cauchy C: ``f(y) = 2 / (pi (1 + y²))``, ``F = (2/pi) atan(y)``,
    ``F^-1(q) = tan(pi q / 2)``."""

    lower = 0.0

    def _logpdf(self, y):
        return np.log(2.0 / np.pi) - special.log1p(y * y)

    def _cdf(self, y):
        return 2.0 / np.pi * np.arctan(y)

    def _ppf(self, q):
        return np.tan(np.pi / 2 * q)


class _Exponential(_LocationScale):
    """Standard exponential: ``log f(y) = -y``, ``F = -expm1(-y)``, ``F^-1(q) = -log1p(-q)``."""

    lower = 0.0

    def _logpdf(self, y):
        return -y

    def _cdf(self, y):
        return -special.expm1(-y)

    def _ppf(self, q):
        return -special.log1p(-q)


class _Uniform(_LocationScale):
    """Uniform on [0, 1]: ``log f = 0``, ``F(y) = y``, ``F^-1(q) = q``."""

    lower, upper = 0.0, 1.0

    def _logpdf(self, y):
        return np.zeros_like(y)

    def _cdf(self, y):
        return y

    def _ppf(self, q):
        return q


class _InverseGamma(_LocationScale):
    """Inverse gamma with shape ``a`` on (0, inf): ``log f(y) = -(a+1) log y - log Gamma(a) - 1/y``,
    ``F(y) = Q(a, 1/y)`` (the upper regularised gamma), ``F^-1(q) = 1 / Q^-1(a, q)``."""

    lower = 0.0
    open_support = True

    def __init__(self, a, loc=0.0, scale=1.0):
        super().__init__(loc, scale)
        self.a = float(a)

    def _logpdf(self, y):
        a = self.a
        return -(a + 1) * np.log(y) - special.gammaln(a) - 1.0 / y

    def _cdf(self, y):
        return special.gammaincc(self.a, 1.0 / y)

    def _ppf(self, q):
        return 1.0 / special.gammainccinv(self.a, q)


class _HalfT:
    """|T| for Student's t with ``df`` degrees of freedom and scale ``scale``, on tau >= 0:
    ``f = 2 f_T``, ``F = 2 F_T - 1``, ``F^-1(p) = F_T^-1((1 + p)/2)``."""

    def __init__(self, df, scale):
        self.t = _StudentT(df, scale=scale)

    def logpdf(self, x):
        x = np.asarray(x, dtype=float)
        with np.errstate(invalid="ignore"):
            return np.where(x >= 0, math.log(2.0) + self.t.logpdf(x), -np.inf)

    def cdf(self, x):
        return np.clip(2.0 * self.t.cdf(x) - 1.0, 0.0, 1.0)

    def ppf(self, p):
        return self.t.ppf(0.5 + 0.5 * np.asarray(p, dtype=float))


# ------------------------------------------------------------------------------------------------
# constructors


def half_normal(scale: float) -> Prior:
    return Prior("half-normal", (float(scale),), "tau")


def half_t(df: float, scale: float) -> Prior:
    return Prior("half-t", (float(df), float(scale)), "tau")


def half_cauchy(scale: float) -> Prior:
    return Prior("half-cauchy", (float(scale),), "tau")


def exponential(rate: float) -> Prior:
    return Prior("exponential", (float(rate),), "tau")


def uniform(upper: float) -> Prior:
    return Prior("uniform", (float(upper),), "tau")


def inverse_gamma(shape: float, scale: float, measure: str | None = None, label: str = "",
                  source: str = "") -> Prior:
    return Prior("inverse-gamma", (float(shape), float(scale)), "tau", measure=measure, label=label, source=source)


def log_normal(mean: float, sd: float, measure: str | None = None) -> Prior:
    """log(tau²) ~ N(mean, sd²)."""
    return Prior("log-normal", (float(mean), float(sd)), "tau2", measure=measure)


def log_t5(location: float, scale: float, measure: str | None = None) -> Prior:
    """(log(tau²) - location) / scale ~ t with 5 degrees of freedom."""
    return Prior("log-t5", (float(location), float(scale)), "tau2", measure=measure)


@lru_cache(maxsize=None)
def _table_rows(table: str) -> tuple:
    path = PRIOR_TABLE_DIR / TABLES[table][0]
    try:
        with open(path, newline="") as handle:
            return tuple(csv.DictReader(handle))
    except OSError as exc:
        raise InputError(f"prior table {table}: cannot read {path} ({exc.strerror})") from None


def table_cells(table: str) -> list[tuple[str, str]]:
    """Every (outcome, comparison) cell of a named table."""
    _known_table(table)
    return [(r["outcome"], r["comparison"]) for r in _table_rows(table)]


def _known_table(table):
    if table not in TABLES:
        raise InputError(f"unknown prior table '{table}'; choose from {', '.join(TABLES)}")


def table_prior(table: str, outcome: str | None = None, comparison: str | None = None) -> Prior:
    """One cell of a published table: ``table_prior("rhodes2015", "pain_function", "non_pharmacological")``.

    ``outcome`` and ``comparison`` both None (or ``"any"``) give the table's marginal prior. An unknown
    outcome or comparison is an InputError listing the valid ones."""
    _known_table(table)
    rows = _table_rows(table)
    outcome = outcome or "any"
    comparison = comparison or "any"
    outcomes = list(dict.fromkeys(r["outcome"] for r in rows))
    comparisons = list(dict.fromkeys(r["comparison"] for r in rows))
    if outcome not in outcomes:
        raise InputError(f"prior {table}: unknown outcome '{outcome}'; choose from {', '.join(outcomes)}")
    if comparison not in comparisons:
        raise InputError(f"prior {table}: unknown comparison '{comparison}'; choose from {', '.join(comparisons)}")
    for r in rows:
        if r["outcome"] == outcome and r["comparison"] == comparison:
            family = "log-normal" if r["distribution"] == "log-normal" else "log-t5"
            label = f"{table} ({outcome}, {comparison}): {family}({float(r['param1']):g}, {float(r['param2']):g})"
            return Prior(family, (float(r["param1"]), float(r["param2"])), r["on"], measure=r["measure"],
                         label=label, source=f"{r['citation']}; {r['location']}; {r['verified_from']}")
    valid = [c for (o, c) in table_cells(table) if o == outcome]
    raise InputError(f"prior {table}: no cell for outcome '{outcome}' and comparison '{comparison}'; with that "
                     f"outcome choose from {', '.join(valid)}")


def parse_prior(text: str, outcome: str | None = None, comparison: str | None = None) -> Prior:
    """A prior from its CLI/spec spelling: ``half-normal:0.5``, ``half-t:3:0.5``, ``log-t5:-3.02:2.27``,
    or a table name (``rhodes2015``, ``turner2015``) with ``outcome`` and ``comparison``."""
    if isinstance(text, Prior):
        return text
    text = str(text).strip()
    if text in TABLES:
        return table_prior(text, outcome, comparison)
    family, *rest = text.split(":")
    if family in TABLES:                    # rhodes2015:OUTCOME:COMPARISON, one string (simulate's methods)
        if len(rest) != 2 or outcome or comparison:
            raise InputError(f"prior '{text}': write {family}:OUTCOME:COMPARISON, or {family} with outcome and "
                             "comparison")
        return table_prior(family, *rest)
    if family not in FAMILIES:
        raise InputError(f"unknown prior '{text}'; write one of {', '.join(f + ':...' for f in FAMILIES)} or a "
                         f"table name ({', '.join(TABLES)})")
    if outcome or comparison:
        raise InputError(f"prior '{text}': outcome and comparison name a cell of a table ({', '.join(TABLES)}), "
                         "not of a parametric prior")
    try:
        params = tuple(float(p) for p in rest)
    except ValueError:
        raise InputError(f"prior '{text}': parameters must be numbers ({family}:"
                         f"{':'.join(FAMILIES[family][1]).upper()})") from None
    return Prior(family, params, FAMILIES[family][0])


# ------------------------------------------------------------------------------------------------
# unit-information SD and the measure check


def unit_information_sd(n, vi) -> float:
    """The unit-information SD ``sqrt(sum n_i / sum 1/v_i)`` (Röver et al. 2021, Sec. 2.2; bayesmeta's
    ``uisd``): the within-study SD for which ``v_i = sigma_U² / n_i`` holds on average."""
    n = np.asarray(n, dtype=float)
    vi = np.asarray(vi, dtype=float)
    if n.shape != vi.shape or n.size == 0:
        raise InputError("unit_information_sd: n and vi must be non-empty and of the same length")
    if not (np.all(np.isfinite(n)) and np.all(n > 0) and np.all(np.isfinite(vi)) and np.all(vi > 0)):
        raise InputError("unit_information_sd: every n and vi must be a finite number > 0")
    return float(math.sqrt(n.sum() / (1.0 / vi).sum()))


def for_mean_difference(prior: Prior, n, vi, reference_uisd: float | None = None) -> Prior:
    """A prior derived for the SMD (or log OR) rescaled for a raw-MD analysis with sample sizes ``n`` and
    variances ``vi``: tau is multiplied by ``unit_information_sd(n, vi) / reference_uisd`` (Röver et al.
    2021). ``reference_uisd`` defaults to 2 for an SMD prior; for a log-OR prior it must be given."""
    reference = reference_uisd if reference_uisd is not None else REFERENCE_UISD.get(prior.measure)
    if reference is None:
        raise InputError(f"prior {prior.label} was derived for {prior.measure}: give reference_uisd, the "
                         "unit-information SD of that scale, to rescale it for a mean difference")
    return prior.rescaled(unit_information_sd(n, vi) / float(reference), measure="MD")


def check_measure(prior: Prior, measure: str | None) -> None:
    """Refuse a measure-specific prior on another measure's scale (tau has the units of the effect)."""
    if prior.measure is None or measure is None:
        return
    derived = "SMD" if prior.measure in _SMD_LIKE else prior.measure
    given = "SMD" if measure in _SMD_LIKE else measure
    if derived == given:
        return
    why = (f"prior {prior.label} was derived for {prior.measure} analyses, and tau is on the scale of the effect "
           f"measure, so it does not describe heterogeneity of {measure}")
    if given == "MD":
        why += ("; rescale it by the unit-information SD (priors.for_mean_difference; on the "
                "command line --rescale-uisd; Röver et al. 2021) or "
                "use a generic prior such as half-normal")
    raise InputError(why)


__all__ = ["Prior", "FAMILIES", "TABLES", "half_normal", "half_t", "half_cauchy", "exponential", "uniform",
           "inverse_gamma", "log_normal", "log_t5", "table_prior", "table_cells", "parse_prior",
           "unit_information_sd", "for_mean_difference", "check_measure"]
