"""How a :class:`~pfps_meta.models.bayes.BayesResult` prints: text like R bayesmeta's print/summary, and HTML."""

from __future__ import annotations

import html

from pfps_meta.formatting import format_number, renders

_ROWS = (("median", "median"), ("mean", "mean"), ("sd", "sd"), ("lower", "{pct} lower"), ("upper", "{pct} upper"),
         ("shortest_lower", "shortest lower"), ("shortest_upper", "shortest upper"))


def _bf(value):
    """A Bayes factor at 4 significant digits (they span many orders of magnitude)."""
    return "NA" if value is None else f"{value:.4g}"


def _pct(level):
    return f"{100 * level:g}%"


@renders("text", "BayesResult")
def bayes_text(res, digits: int = 4) -> str:
    pct = _pct(res.level)
    lines = ["Bayesian random-effects meta-analysis (normal-normal hierarchical model)", "",
             f"k = {res.k} studies" + (f", measure {res.measure}" if res.measure else ""),
             f"tau prior: {res.prior.label} on {'tau' if res.prior.on == 'tau' else 'tau²'}"
             + (f" (derived for {res.prior.measure})" if res.prior.measure else ""),
             f"mu prior:  {res.mu_prior.label}", "",
             f"Posterior summary ({pct} intervals: central, then shortest):",
             f"{'':>16}{'tau':>12}{'mu':>12}{'theta_new':>12}"]
    for key, label in _ROWS:
        values = "".join(f"{format_number(res.summary.loc[key, c], digits):>12}" for c in ("tau", "mu", "theta_new"))
        lines.append(f"{label.format(pct=pct):>16}{values}")
    lines.append("")
    bf = _bf(res.bayes_factor_tau0)
    lines.append(f"Bayes factor for tau = 0 (vs the prior): {bf}"
                 + (f"; for mu = 0: {_bf(res.bayes_factor_mu0)}" if res.bayes_factor_mu0 is not None
                    else ""))
    if res.log_marginal_likelihood is not None:
        lines.append(f"log marginal likelihood: {format_number(res.log_marginal_likelihood, digits)}")
    else:
        lines.append("marginal likelihood: not defined under the flat (improper) prior for mu")
    lines += ["", "Shrinkage estimates (posterior of each study's effect):",
              f"{'study':<24}{'yi':>10}{'median':>10}{pct + ' lower':>12}{pct + ' upper':>12}"]
    for row in res.studies.itertuples():
        lines.append(f"{str(row.study)[:23]:<24}{format_number(row.yi, digits):>10}{format_number(row.median, digits):>10}"
                     f"{format_number(row.lower, digits):>12}{format_number(row.upper, digits):>12}")
    lines += ["", f"Method: {res.method}."]
    lines += [f"Note: {note}" for note in res.notes]
    return "\n".join(lines)


@renders("html", "BayesResult")
def bayes_html(res, digits: int = 4) -> str:
    pct = _pct(res.level)
    head = "".join(f"<th>{c}</th>" for c in ("", "tau", "mu", "theta_new"))
    body = "".join(
        "<tr><th>" + html.escape(label.format(pct=pct)) + "</th>"
        + "".join(f"<td>{format_number(res.summary.loc[key, c], digits)}</td>" for c in ("tau", "mu", "theta_new"))
        + "</tr>" for key, label in _ROWS)
    return (f"<div class='pfps-bayes'><p><b>Bayesian random-effects meta-analysis</b>, k = {res.k}; tau prior "
            f"{html.escape(res.prior.label)}; mu prior {html.escape(res.mu_prior.label)}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p>Bayes factor for tau = 0: {_bf(res.bayes_factor_tau0)}. "
            f"{html.escape(res.method)}.</p></div>")
