"""The report's sections for dependent-effect (multilevel) and network analyses.

``pfps-meta report`` calls :func:`model_section` for each :class:`~pfps_meta.evidence.specs.ModelAnalysisResult`:
what model was used and why (in words), which rows entered, what is missing (per trial and arm), and, when
the model could be fitted, its summary as metafor or netmeta print it, the cluster-robust result, and
the figures (a forest plot grouped by trial; a network graph, every treatment against the reference and a
league table). Nothing here recomputes a statistic: it shows the fitted objects.
"""

from __future__ import annotations

import pandas as pd

from pfps_meta.formatting import format_number


def model_section(doc, ar) -> None:
    """One analysis: heading, decision, availability, then the fitted model (or why it was not fitted)."""
    a = ar.analysis
    doc.heading(3, a.label)
    doc.para(ar.decision, bold_prefix="Model.")
    if ar.fit is None:
        doc.para(f"Not fitted: {ar.reason}.", css="warning", bold_prefix="Status:")
    else:
        doc.para(f"{ar.n_effects} effects from {ar.n_clusters} clusters entered the model.", css="note")
    _availability(doc, ar)
    if ar.fit is None:
        return
    if ar.model == "network":
        _network(doc, ar)
    else:
        _multilevel(doc, ar)
    for note in ar.notes:
        doc.para(note, css="note", bold_prefix="Note:")


def _availability(doc, ar):
    table = ar.availability
    if not len(table):
        return
    gaps = table[table["missing"] != ""]
    listed = " (arms of the trials in the project's reconstruction of the review's trial list)" if getattr(
        ar.analysis, "trials", None) else ""
    doc.para(f"{len(table) - len(gaps)} of {len(table)} arms{listed} have n, mean and SD"
             + (f"; {len(gaps)} lack something (what each lacks, below; pfps-meta template "
                f"{_shown_path(ar.analysis.source)} writes the sheet to fill):" if len(gaps) else "."),
             bold_prefix="Arm data:")
    if len(gaps):
        columns = [c for c in ("trial", "arm", "role", "node", "inner", "missing", "status") if c in gaps.columns]
        shown = gaps[columns].fillna("-").rename(columns={c: c.capitalize() for c in columns})
        doc.table(shown.reset_index(drop=True), "table availability")


def _shown_path(path):
    """A spec's path as a user in the project folder types it."""
    from pathlib import Path

    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _multilevel(doc, ar):
    from pfps_meta.present import plots

    fit = ar.fit
    doc.preformatted(str(fit))
    if ar.robust is not None:
        doc.preformatted(str(ar.robust))
    i2 = fit.i2() if fit.struct is None else None
    if i2:
        shares = [f"{name}: {format_number(value, 1)}%" for name, value in i2.items()
                  if name not in ("total", "typical_v")]
        doc.para(f"I² (share of the total variance, metafor's multilevel I²): {'; '.join(shares)}; total "
                 f"{format_number(i2['total'], 1)}%.", css="note")
    fig = plots.forest_multilevel(fit, measure=ar.analysis.measure, robust=ar.robust)
    doc.figure(fig, f"multilevel_{ar.analysis.review}_{ar.analysis.id}", f"Forest plot: {ar.analysis.label}")


def _network(doc, ar):
    from pfps_meta.present import network_plots

    net = ar.fit
    doc.preformatted(str(net))
    key = f"{ar.analysis.review}_{ar.analysis.id}"
    doc.figure(network_plots.network_graph(net), f"network_{key}_graph", f"Network graph: {ar.analysis.label}")
    doc.figure(network_plots.forest_vs_reference(net), f"network_{key}_forest",
               f"Every treatment against the reference: {ar.analysis.label}")
    doc.figure(network_plots.league_figure(net), f"network_{key}_league",
               f"League table of every pairwise comparison: {ar.analysis.label}")
    split = net.netsplit()
    if isinstance(split, pd.DataFrame) and len(split):
        split = split[split["indirect"].notna()]
        shown = split[[c for c in ("comparison", "k", "direct", "indirect", "difference", "pval")
                       if c in split.columns]].round(4)
        doc.para("Direct against indirect evidence for each comparison with both (node-splitting; "
                 "a small p-value flags disagreement):", bold_prefix="Consistency.")
        doc.table(shown, "table netsplit")
    if ar.components is not None:
        doc.preformatted(str(ar.components))


def bayes_section(doc, ar) -> None:
    """The Bayesian analysis of a pairwise analysis with a ``bayes = { ... }`` table: its estimate and
    posterior predictive interval beside the frequentist estimate, CI and prediction interval, the prior
    named with its source, and a small plot of the prior and posterior of tau. Nothing is shown without
    the table."""
    from pfps_meta.effects import measures
    from pfps_meta.evidence.specs import bayes_result
    from pfps_meta.present import plots

    from pfps_meta.errors import InputError

    a = ar.analysis
    try:
        res = bayes_result(ar)
    except InputError as exc:       # e.g. one trial and a heavy-tailed prior: say so where the number would be
        doc.heading(4, "Bayesian random-effects analysis beside the frequentist one")
        doc.para(f"Not computed: {exc.reason}.", css="warning", bold_prefix="Status:")
        return
    if res is None:
        return
    show = measures.get(a.measure).to_reporting
    st = ar.result.stats
    s = res.summary
    pct = f"{100 * res.level:g}%"

    def interval(lo, hi):
        return f"[{show(lo):.2f}, {show(hi):.2f}]" if lo is not None and hi is not None else "not reported"

    ci_name = "HKSJ" if a.settings.ci_method == "hksj" else "Wald"
    frequentist_pi = interval(st.get("pi_low"), st.get("pi_high")) if st.get("pi_low") is not None else "not reported"
    doc.heading(4, "Bayesian random-effects analysis beside the frequentist one")
    doc.para(f"prior for tau {res.prior.label}" + (f" (derived for {res.prior.measure})" if res.prior.measure else "")
             + f"; flat prior for mu" * (not res.mu_prior.proper)
             + (f"; prior for mu {res.mu_prior.label}" if res.mu_prior.proper else "") + "."
             + (f" Source: {res.prior.source}." if res.prior.source else ""), bold_prefix="Prior:", css="note")
    doc.table(pd.DataFrame([
        {"Analysis": f"{a.settings.method} + {ci_name} (frequentist)", "Estimate": f"{show(st['estimate']):.2f}",
         "Interval for the average effect": interval(st["ci_low"], st["ci_high"]),
         "Interval for a new trial": frequentist_pi, "tau": format_number(st.get("tau"), 3)},
        {"Analysis": "Bayesian (posterior median, central credible intervals)",
         "Estimate": f"{show(s.loc['median', 'mu']):.2f}",
         "Interval for the average effect": interval(s.loc["lower", "mu"], s.loc["upper", "mu"]),
         "Interval for a new trial": interval(s.loc["lower", "theta_new"], s.loc["upper", "theta_new"]),
         "tau": f"{s.loc['median', 'tau']:.3f} [{s.loc['lower', 'tau']:.3f}, {s.loc['upper', 'tau']:.3f}]"},
    ]), "table bayes")
    words = (f"The Bayesian {pct} credible interval for the average effect is "
             f"{interval(s.loc['lower', 'mu'], s.loc['upper', 'mu'])}, and a new trial's effect lies in "
             f"{interval(s.loc['lower', 'theta_new'], s.loc['upper', 'theta_new'])} with posterior probability "
             f"{res.level:g}.")
    if a.mcid is not None:
        threshold = -abs(a.mcid) if a.favourable != "higher" else abs(a.mcid)
        side = "below" if threshold < 0 else "above"
        p_mu = res.prob("mu", **{side: threshold})
        p_new = res.prob("theta_new", **{side: threshold})
        words += (f" P(average effect {'<' if side == 'below' else '>'} {threshold:g}, the MCID) = {p_mu:.2f}; for "
                  f"a new trial {p_new:.2f}.")
    doc.para(words)
    fig = plots.tau_posterior(res)
    doc.figure(fig, f"tau_posterior_{a.review}_{a.id}", f"Prior and posterior of tau: {a.label}")
