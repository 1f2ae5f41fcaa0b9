"""Component network meta-analysis: the additive model (Rücker, Petropoulou & Schwarzer 2020, Biom J
62:808-821; netmeta ``netcomb``).

Each treatment is a set of components (``"hip+knee"`` = hip + knee; an inactive treatment such as no
training has none), and a treatment's effect is the sum of its components' effects. With ``C`` the
treatment-by-component matrix, a contrast ``t - b`` has the design row ``C[t] - C[b]`` and the model is
the network model of :mod:`pfps_meta.models.network` with that design (metafor: ``rma.mv(yi, V,
mods = <component columns> - 1, random = ~ comp | study, rho = 1/2)``); its own tau^2 is estimated by
the network's method. The additive model is nested in the standard one, so
``Q_additive - Q_standard`` on ``df_additive - df_standard`` degrees of freedom tests additivity
(netmeta's ``Q.diff``; common-effect Qs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import distributions
from ..errors import InputError
from ..formatting import format_number, format_p, json_ready, render, renders
from .network import NetworkResult, fit_design

__all__ = ["component_network", "ComponentResult"]


@dataclass
class ComponentResult:
    """The additive component model fitted to a network (:func:`component_network`)."""

    network: NetworkResult
    components: tuple
    matrix: pd.DataFrame          # treatments x components (0/1)
    tau2: float
    beta: np.ndarray              # component effects
    vb: np.ndarray
    Q_additive: float             # common-effect Q of the additive model
    df_additive: int
    Q_random: float

    def _quantile(self, df):
        a = (1.0 + self.network.level) / 2.0
        if self.network.ci_method == "wald":
            return float(distributions.norm_ppf(a)), None
        return float(distributions.t_ppf(a, df)), df

    def _rows(self, labels, est, cov):
        net = self.network
        df = self.df_additive
        scale = self.Q_random / df if net.ci_method == "hk" and df > 0 else 1.0
        q, tdf = self._quantile(df)
        rows = []
        for lab, e, v in zip(labels, est, np.diag(cov)):
            se = math.sqrt(max(v * scale, 0.0))
            z = e / se if se > 0 else float("nan")
            p = float(2 * (distributions.norm_sf(abs(z)) if tdf is None else distributions.t_sf(abs(z), tdf)))
            rows.append({"name": lab, "estimate": float(e), "se": se, "ci_lb": e - q * se, "ci_ub": e + q * se,
                         "pval": p if se > 0 else float("nan")})
        return pd.DataFrame(rows)

    def component_effects(self) -> pd.DataFrame:
        """Each component's effect (the difference it adds to a treatment), with SE, CI and p."""
        return self._rows(self.components, self.beta, self.vb)

    def treatment_effects(self, reference=None) -> pd.DataFrame:
        """Every treatment against ``reference`` as implied by additivity."""
        net = self.network
        ref = net.reference if reference is None else reference
        net._index(ref)
        M = self.matrix.to_numpy(dtype=float)
        L = M - M[list(net.treatments).index(ref)]
        est = L @ self.beta
        cov = L @ self.vb @ L.T
        keep = [i for i, t in enumerate(net.treatments) if t != ref]
        frame = self._rows([net.treatments[i] for i in keep], est[keep], cov[np.ix_(keep, keep)])
        frame.insert(1, "versus", ref)
        return frame.rename(columns={"name": "treatment"})

    def comparison(self) -> dict:
        """Additive against standard network model: common-effect Q difference, its df and p."""
        net = self.network
        qd = self.Q_additive - net.Q
        dfd = self.df_additive - net.df
        return {"Q_additive": self.Q_additive, "df_additive": self.df_additive, "Q_standard": net.Q,
                "df_standard": net.df, "Q_diff": qd, "df_diff": dfd,
                "pval_diff": float(distributions.chi2_sf(qd, dfd)) if dfd > 0 else float("nan")}

    def to_dict(self) -> dict:
        return json_ready({"components": list(self.components), "tau2": self.tau2,
                           "component_effects": self.component_effects().to_dict("records"),
                           "treatment_effects": self.treatment_effects().to_dict("records"),
                           "comparison": self.comparison(),
                           "matrix": {t: dict(zip(self.components, map(int, row)))
                                      for t, row in zip(self.matrix.index, self.matrix.to_numpy())}})

    def summary(self) -> str:
        return render(self, "text")

    def __str__(self) -> str:
        return self.summary()


def _component_matrix(net: NetworkResult, components, sep, inactive) -> pd.DataFrame:
    trts = list(net.treatments)
    inactive = set() if inactive is None else ({inactive} if isinstance(inactive, str) else set(inactive))
    for t in inactive:
        if t not in trts:
            raise InputError(f"inactive treatment '{t}' is not in the network (treatments: {', '.join(trts)})")
    if components is not None:
        if not isinstance(components, Mapping):
            raise InputError("components must map a treatment to its list of components")
        for t in components:
            if str(t) not in trts:
                raise InputError(f"components names treatment '{t}', which is not in the network "
                                 f"(treatments: {', '.join(trts)})")
        parts = {}
        for t in trts:
            if t in inactive:
                parts[t] = []
            elif t in components:
                c = components[t]
                parts[t] = [str(c)] if isinstance(c, str) else [str(x) for x in c]
            else:
                parts[t] = [t]          # a single-component treatment
    else:
        if sep is None:
            raise InputError("give components (treatment -> components) or sep (e.g. '+')")
        parts = {t: [] if t in inactive else [p.strip() for p in t.split(sep) if p.strip()] for t in trts}
    names = list(dict.fromkeys(c for t in trts for c in parts[t]))
    if not names:
        raise InputError("no components: every treatment is inactive")
    M = pd.DataFrame(0, index=trts, columns=names)
    for t in trts:
        for c in parts[t]:
            M.loc[t, c] = 1
    return M


def component_network(net: NetworkResult, components=None, inactive=None, sep=None, tau2=None) -> ComponentResult:
    """Fit the additive component model to the network ``net`` (same contrasts, V, method, CI method).

    ``components``: treatment -> list of components (treatments not named are their own single
    component); or ``sep`` (e.g. ``"+"``) splits treatment names. ``inactive``: treatment(s) with no
    active component (e.g. ``"none"``, placebo). Raises InputError when a named treatment or the
    inactive one is not in the network, or when the components are not identifiable from the network
    (the design has fewer independent columns than components). ``tau2``: a fixed tau^2 instead of
    estimating the additive model's own.
    """
    if not isinstance(net, NetworkResult):
        raise InputError(f"net must be a NetworkResult from network(), got {type(net).__name__}")
    M = _component_matrix(net, components, sep, inactive)
    Mv = M.to_numpy(dtype=float)
    pos = {t: q for q, t in enumerate(net.treatments)}
    con = net.contrasts
    Xc = Mv[[pos[t] for t in con["treat"]]] - Mv[[pos[t] for t in con["base"]]]
    rank = np.linalg.matrix_rank(Xc)
    if rank < Xc.shape[1]:
        raise InputError(f"the {Xc.shape[1]} components ({', '.join(M.columns)}) are not identifiable from this "
                         f"network (the design has rank {rank}); merge components or mark an inactive treatment")
    if tau2 is not None and not (isinstance(tau2, (int, float)) and np.isfinite(tau2) and tau2 >= 0):
        raise InputError(f"tau2 must be a finite number >= 0, got {tau2!r}")
    f = fit_design(net, Xc, tau2)
    return ComponentResult(net, tuple(M.columns), M, f["tau2"], f["beta"], f["vb"], f["Q_common"], f["df"],
                           f["Q_random"])


@renders("text", "ComponentResult")
def _component_text(res: ComponentResult, digits: int = 4) -> str:
    net = res.network
    lines = [f"Additive component network meta-analysis ({net.measure}, {net.method}; tau^2 = "
             f"{format_number(res.tau2, digits)}): {len(res.components)} components, {len(net.treatments)} treatments"]
    lines.append("Component effects:")
    for r in res.component_effects().to_dict("records"):
        lines.append(f"  {r['name']:<16} {format_number(r['estimate'], digits):>9}  se {format_number(r['se'], digits)}"
                     f"  [{format_number(r['ci_lb'], digits)}; {format_number(r['ci_ub'], digits)}]  "
                     f"p {format_p(r['pval'], bare=True)}")
    lines.append(f"Treatments against {net.reference}, implied by additivity:")
    for r in res.treatment_effects().to_dict("records"):
        lines.append(f"  {r['treatment']:<16} {format_number(r['estimate'], digits):>9}  se {format_number(r['se'], digits)}"
                     f"  [{format_number(r['ci_lb'], digits)}; {format_number(r['ci_ub'], digits)}]")
    c = res.comparison()
    lines.append(f"Additive vs standard model: Q_diff = {format_number(c['Q_diff'], 2)} on {c['df_diff']} df, "
                 f"p = {format_p(c['pval_diff'], bare=True)}")
    return "\n".join(lines)
