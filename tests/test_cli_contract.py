"""The command line's contract with its user (issue 18, items 3 and 7): the text output shows everything
the JSON output holds (or says why not), each warning is printed once with a path relative to the
working directory, every flag's help gives its default and choices, ``--preset`` works where a model is
fitted (and is refused with the reason where the presets do not apply), and progress reaches its end."""

import argparse
import json
import os
import re
import warnings

import pytest

import pfps_meta as pm

from pfps_meta import conventions
from pfps_meta.analysis.presets import PRESETS
from pfps_meta.cli import build_parser, main
from tests.conftest import ROOT

EXAMPLES = ROOT / "data" / "examples"
BCG = str(EXAMPLES / "bcg.csv")
HACKSHAW = str(ROOT / "analyses" / "examples" / "hackshaw1997.toml")


def _run(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err


def _text_and_json(capsys, argv):
    text, _ = _run(capsys, argv)
    doc = json.loads(_run(capsys, list(argv) + ["--format", "json"])[0])
    return text, doc


def _empty(value):
    return value is None or value == [] or value == {}


def _check_keys(text, doc, markers):
    """Every key of ``doc`` holding something has a marker, and the marker is in the text."""
    unmapped = sorted(k for k, v in doc.items() if k not in markers and not _empty(v))
    assert not unmapped, f"JSON keys with no text marker in this test (add one): {unmapped}"
    lowered = " ".join(text.lower().split())
    absent = {k: markers[k] for k, v in doc.items() if not _empty(v) and markers.get(k)
              and markers[k].lower() not in lowered}
    assert not absent, f"in the JSON but not in the text: {absent}"


# ------------------------------------------------------------------ item 3: nothing asked for is dropped

POOL_MARKERS = {
    "k": "k = 13", "estimate": "estimate", "se": " se ", "statistic": "zval", "df": "df", "p": "pval",
    "ci_low": "ci.lb", "ci_high": "ci.ub", "tau2": "tau^2", "tau2_ci_low": "tau^2", "tau2_ci_high": "tau^2",
    "tau": "tau (square root", "tau_ci_low": "tau", "tau_ci_high": "tau", "i2": "I^2", "i2_ci_low": "I^2",
    "i2_ci_high": "I^2", "h2": "H^2", "h2_ci_low": "H^2", "h2_ci_high": "H^2", "q": "Test for heterogeneity",
    "q_df": "Q(df = 12)", "q_p": "Test for heterogeneity", "pi_low": "prediction interval",
    "pi_high": "prediction interval", "pi_df": "prediction interval", "converged": "converged in",
    "iterations": "iterations", "loglik": "logLik", "deviance": "deviance", "aic": "AIC", "bic": "BIC",
    "aicc": "AICc", "tau2_se": "SE of tau^2", "method": "REML", "ci": "Wald", "pi": "prediction interval (t",
    "i2_method": "from Q", "level": "95%", "measure": "log RR", "smd_convention": "SMD",
    "settings": "tau^2 estimator", "notes": "Note: --pooled-sd", "studies": "Studies:", "preset": "preset r_meta",
}


def test_pool_text_shows_every_json_key_with_preset_fit_statistics_and_a_note_for_an_unused_flag(capsys):
    text, doc = _text_and_json(capsys, ["pool", BCG, "--measure", "RR", "--preset", "r_meta", "--pooled-sd"])
    assert doc["preset"] == "r_meta" and doc["settings"]["i2_method"] == "q" and doc["settings"]["pi_method"] == "t"
    _check_keys(text, doc, POOL_MARKERS)
    assert "--pooled-sd true: not used with measure RR" in text
    text, _ = _run(capsys, ["pool", EXAMPLES / "normand1999.csv", "--measure", "MD", "--vtype", "UB"])
    assert "Note: --vtype UB: not used with measure MD (it sets the SMD's sampling variance" in text


SENSITIVITY_MARKERS = {
    "k": "k = 13", "method": "REML", "ci": "wald", "measure": "log RR", "estimate": "pooled",
    "ci_low": "pooled", "ci_high": "pooled", "leave_one_out": "leave-one-out", "cumulative": "cumulative",
    "influence": "influence", "egger": "egger", "begg": "begg", "trimfill": "trim-and-fill",
    "subgroups": "subgroup", "meta_regression": "moderator", "predictive_probability": "predictive probability",
    "permutation": "permutation", "bootstrap_tau2": "bootstrap", "warnings": "warning",
    "notes": "8,192",                   # the note on --permutations (format_sensitivity may say it itself)
    "preset": "preset", "cumulative_order": "ordered by year", "level": "95%", "scale": "log RR scale",
}


def test_sensitivity_text_of_the_readme_example_shows_every_analysis_it_asked_for(capsys):
    argv = ["sensitivity", BCG, "--measure", "RR", "--order", "year", "--subgroup", "alloc", "--moderator",
            "ablat", "--mcid", "-0.2", "--permutations", "1000", "--bootstrap", "20"]
    text, doc = _text_and_json(capsys, argv)
    for key in ("cumulative", "subgroups", "meta_regression", "permutation", "bootstrap_tau2"):
        assert not _empty(doc.get(key)), key
    _check_keys(text, doc, SENSITIVITY_MARKERS)
    # 1,000 random permutations asked for; k = 13 gives 2^13 = 8,192 sign flips, all enumerated
    assert doc["permutation"]["exact"] is True and doc["permutation"]["n"] == 8192
    assert "8,192" in text and "1,000" in text
    assert any(note.startswith("--permutations 1,000") for note in doc["notes"])


def test_sensitivity_says_which_requested_analyses_one_trial_cannot_give(capsys):
    spec = str(ROOT / "analyses" / "nascimento2018.toml")
    text, doc = _text_and_json(capsys, ["sensitivity", spec, "--analysis", "B2", "--mcid", "-2",
                                        "--permutations", "100", "--preset", "revman5"])
    assert doc["k"] == 1 and doc["method"] == "DL" and doc["preset"] == "revman5"
    for flag in ("--mcid -2.0", "--permutations 100"):
        assert f"{flag}: not run (k = 1" in text
        assert any(note.startswith(f"{flag}: not run") for note in doc["notes"])


def test_sensitivity_direction_without_mcid_is_refused(capsys):
    assert main(["sensitivity", BCG, "--measure", "RR", "--direction", "above"]) == 2
    assert "--direction above goes with --mcid" in capsys.readouterr().err


SIMULATE_MARKERS = {"design": "Simulation: k = 5", "setup": "meta-analyses per cell", "results": "Coverage",
                    "notes": "Note:"}


def test_simulate_text_says_where_it_ran_what_it_wrote_and_that_replicates_were_rounded_up(capsys, tmp_path):
    stem = tmp_path / "coverage"
    text, doc = _text_and_json(capsys, ["simulate", "--replicates", "300", "--tau2", "0.1", "--plot", stem])
    _check_keys(text, doc, SIMULATE_MARKERS)
    assert doc["setup"]["replicates"] == 500                    # two blocks of 250
    assert "--replicates 300 rounded up to 500" in text
    assert "ran in this process (no --scheduler)" in text
    assert f"coverage plot written: {stem}.png and {stem}.svg" in text
    assert (tmp_path / "coverage.png").exists() and (tmp_path / "coverage.svg").exists()
    text, _ = _run(capsys, ["simulate", "--replicates", "250", "--tau2", "0.1", "--preset", "revman5"])
    assert text.startswith("Conventions: preset revman5 (RevMan 5: DerSimonian-Laird")
    assert "DL + Wald" in text and "REML" not in text


MULTILEVEL_MARKERS = {"file": "Data:", "V": "sampling covariance V", "model": "Model Results",
                      "robust": "Cluster-robust inference"}


def test_multilevel_text_shows_model_and_robust_parts(capsys):
    text, doc = _text_and_json(capsys, ["multilevel", EXAMPLES / "konstantopoulos2011.csv", "--levels",
                                        "district,study", "--robust", "CR2"])
    _check_keys(text, doc, MULTILEVEL_MARKERS)


NETWORK_MARKERS = {
    "file": "Data:", "model": "Network meta-analysis", "measure": "(MD)", "method": "(REML)",
    "ci_method": "Wald z", "level": "95%", "treatments": "10 treatments", "reference": "against placebo",
    "studies": "26 studies", "contrasts": "27 contrasts", "tau2": "tau^2 =", "tau": "tau =", "I2": "I^2 =",
    "Q": "Tests of heterogeneity", "versus_reference": "against placebo", "league": "League table",
    "pscores": "P-scores", "small_values": "lower values are better", "ranking_warning": "A ranking is not an effect",
    "netsplit": "netsplit", "components": "component",
}


def test_network_text_shows_node_splitting_and_points_to_the_league_table(capsys):
    text, doc = _text_and_json(capsys, ["network", EXAMPLES / "senn2013.csv", "--measure", "MD", "--reference",
                                        "placebo"])
    _check_keys(text, doc, NETWORK_MARKERS)
    # netmeta netsplit(): the one direct trial of acarbose vs metformin and its back-calculated indirect part
    row = next(r for r in doc["netsplit"] if r["comparison"] == "acarbose:metformin")
    assert f"{row['direct']:.4f}" in text and f"{row['indirect']:.4f}" in text


SPEC_RUN_MARKERS = {
    "analysis": "three_level_cr2", "label": "CR2 cluster-robust inference by district", "model": "model: multilevel",
    "decision": "a three-level model", "fitted": "Model Results", "reason": "not fitted", "n_effects": "effects: 56",
    "n_clusters": "clusters: 11", "k_expected": "clusters:", "missing": "missing", "fit": "Variance Components",
    "robust": "Cluster-robust inference", "components": "component", "availability": "with n, mean and SD",
    "effects": "Effects: the 56 rows", "notes": "Note", "settings": "Settings (from the spec): model multilevel",
}


def test_multilevel_spec_run_text_shows_every_json_key(capsys):
    text, doc = _text_and_json(capsys, ["multilevel", ROOT / "analyses" / "examples" / "konstantopoulos2011.toml",
                                        "--analysis", "three_level_cr2"])
    _check_keys(text, doc, SPEC_RUN_MARKERS)


def test_network_spec_run_text_shows_node_splitting_and_settings(capsys):
    text, doc = _text_and_json(capsys, ["network", ROOT / "analyses" / "examples" / "senn2013.toml",
                                        "--analysis", "network_reml"])
    markers = {**SPEC_RUN_MARKERS, "analysis": "network_reml", "label": "HbA1c", "model": "model: network",
               "decision": "26 of 26 trials", "fitted": "Network meta-analysis (MD)", "n_effects": "effects: 27",
               "n_clusters": "clusters: 26", "k_expected": "26 expected", "fit": "netsplit",
               "effects": "Effects: the 53 rows", "settings": "Settings (from the spec): model network"}
    _check_keys(text, doc, markers)


BAYES_MARKERS = {
    "file": "Data:", "model": "normal-normal hierarchical model", "k": "k = 9", "measure": "measure MD",
    "level": "95% intervals", "tau_prior": "tau prior", "mu_prior": "mu prior", "mu": "Posterior summary",
    "tau": "Posterior summary", "theta_new": "theta_new", "log_marginal_likelihood": "marginal likelihood",
    "bayes_factor_tau0": "Bayes factor for tau = 0", "bayes_factor_mu0": "Bayes factor for mu = 0",
    "studies": "Shrinkage", "method": "Method:", "notes": "Note", "probabilities": "P(mu < -2)",
}


def test_bayes_text_shows_every_json_key(capsys):
    text, doc = _text_and_json(capsys, ["bayes", EXAMPLES / "normand1999.csv", "--measure", "MD", "--mcid", "2"])
    _check_keys(text, doc, BAYES_MARKERS)


def test_reproduce_text_has_a_line_for_every_row_and_every_preset(capsys):
    argv = ["reproduce", HACKSHAW, "--presets", "--preset", "revman5"]
    text, rows = _text_and_json(capsys, argv)
    assert "Conventions: preset revman5" in text
    for row in rows:
        assert row["preset"] == "revman5"
        line = next(line for line in text.splitlines() if line.startswith(row["analysis"]) and row["status"] in line)
        assert str(row["k_available"]) in line
        statuses = next(line for line in text.splitlines() if line.startswith(row["analysis"]) and "metafor:" in line)
        assert all(f"{name}: {p['status']}" in statuses for name, p in row["presets"].items())
        assert set(row["reproduced_by"]) <= set(row["presets"])


def test_diff_text_has_a_line_for_every_quantity(capsys):
    text, rows = _text_and_json(capsys, ["diff", HACKSHAW, "main"])
    lines = [line.strip() for line in text.splitlines()]
    assert all(any(line.startswith(row["quantity"]) for line in lines) for row in rows)


# ------------------------------------------------------------------ item 7: warnings once, relative paths

def test_each_warning_is_printed_once_with_a_path_relative_to_the_working_directory(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    for _ in range(2):                                  # a second run in the same process prints them again
        _, err = _run(capsys, ["reproduce", HACKSHAW, HACKSHAW])     # the same file read twice
        lines = [line for line in err.splitlines() if line.startswith("pfps-meta: warning:")]
        assert len(lines) == 2 and len(set(lines)) == 2, err
        assert all("data/examples/hackshaw1998.csv, line" in line for line in lines)
        assert str(ROOT) not in err


def test_the_warning_hook_lives_only_while_main_runs(capsys):
    before = warnings.showwarning
    import pfps_meta.cli  # noqa: F401  (importing installs nothing)

    assert warnings.showwarning is before
    _run(capsys, ["pool", BCG, "--measure", "RR"])
    assert warnings.showwarning is before


# ------------------------------------------------------------------ item 7: help gives defaults and choices

def _subparsers():
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _word(text, word):
    return re.search(r"(?<![\w-])" + re.escape(str(word)) + r"(?![\w-])", text) is not None


def _stated_default(action):
    """The default a flag's help must state: the Option row's for conventions flags, else argparse's."""
    if action.dest in conventions.OPTION_BY_NAME and action.default is argparse.SUPPRESS:
        value = conventions.OPTION_BY_NAME[action.dest].default
        return "none" if value is None else str(value).lower() if isinstance(value, bool) else value
    if isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction)) or action.default in (
            None, argparse.SUPPRESS, []):
        return None
    return action.default


def test_every_flag_help_gives_its_default_and_its_choices():
    problems = []
    for name, sub in _subparsers().items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            text = " ".join(formatter._expand_help(action).split()) if action.help else ""
            flag = f"{name} {'/'.join(action.option_strings) or action.dest}"
            for choice in action.choices or ():
                if not _word(text, choice):
                    problems.append(f"{flag}: choice {choice} not in help")
            default = _stated_default(action)
            values = default if isinstance(default, list) else [default] if default is not None else []
            if values and ("default" not in text or not all(_word(text, v) for v in values)):
                problems.append(f"{flag}: default {default} not in help")
            if action.default is argparse.SUPPRESS and action.dest in conventions.OPTION_BY_NAME \
                    and text.count("(default:") != 1:
                problems.append(f"{flag}: the default is stated {text.count('(default:')} times")
    assert not problems, problems


def test_diff_presets_help_lists_every_preset_and_bad_names_are_one_line(capsys):
    help_text = " ".join(_subparsers()["diff"].format_help().split())
    assert all(name in help_text for name in PRESETS)
    assert main(["diff", HACKSHAW, "main", "--presets", "revman4", "metafor"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "revman4" in err and "revman5" in err


# ------------------------------------------------------------------ item 7: --preset where a model is fitted

def test_pool_preset_revman5_gives_dersimonian_laird_and_flags_on_top(capsys):
    """On arm means (normand1999) RevMan 5 is DerSimonian-Laird with I² from Q and no prediction interval;
    a flag given on top wins."""
    normand = str(EXAMPLES / "normand1999.csv")
    doc = json.loads(_run(capsys, ["pool", normand, "--measure", "MD", "--preset", "revman5", "--format", "json"])[0])
    assert doc["method"] == "DL" and doc["i2_method"] == "q" and doc["pi_low"] is None
    ref = json.loads(_run(capsys, ["pool", normand, "--measure", "MD", "--method", "DL", "--i2", "q",
                                   "--no-prediction-interval", "--format", "json"])[0])
    assert doc["estimate"] == ref["estimate"] and doc["tau2"] == ref["tau2"] and doc["i2"] == ref["i2"]
    doc = json.loads(_run(capsys, ["pool", normand, "--measure", "MD", "--preset", "revman5", "--method", "PM",
                                   "--format", "json"])[0])
    assert doc["method"] == "PM" and doc["i2_method"] == "q"


def test_pool_preset_revman5_on_counts_is_its_random_effects_mantel_haenszel_as_in_the_api(capsys):
    """RevMan 5 pools 2x2 counts by Mantel-Haenszel: the CLI's --preset goes through pool(preset=), so
    it gives what pm.pool(df, preset="revman5") gives, and says so."""
    doc = json.loads(_run(capsys, ["pool", BCG, "--measure", "RR", "--preset", "revman5", "--format", "json"])[0])
    api = pm.pool(BCG, measure="RR", preset="revman5")
    assert doc["method"] == "MH_DL" and doc["estimate"] == api.estimate and doc["tau2"] == api.stats["tau2"]
    assert any("Mantel-Haenszel" in note for note in doc["notes"])


def test_reproduce_preset_metafor_moves_the_worked_example_off_its_target(capsys):
    rows = json.loads(_run(capsys, ["reproduce", HACKSHAW, "--preset", "metafor", "--format", "json"])[0])
    assert rows[0]["method"] == "REML" and rows[0]["status"] == "differs"


@pytest.mark.parametrize("argv", [
    ["multilevel", EXAMPLES / "konstantopoulos2011.csv", "--levels", "district,study"],
    ["network", EXAMPLES / "senn2013.csv", "--measure", "MD"],
    ["bayes", EXAMPLES / "normand1999.csv", "--measure", "MD"],
], ids=lambda a: a[0])
def test_preset_is_refused_with_the_reason_where_presets_do_not_apply(capsys, argv):
    assert main([str(a) for a in argv] + ["--preset", "revman5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "describe univariate pooling" in err


# ------------------------------------------------------------------ item 7: progress

def test_progress_is_silent_without_a_terminal_and_reaches_the_end_when_asked(capsys):
    _, err = _run(capsys, ["reproduce", HACKSHAW, str(ROOT / "analyses" / "examples" / "normand1999.toml")])
    assert "reproduce:" not in err
    _, err = _run(capsys, ["reproduce", HACKSHAW, str(ROOT / "analyses" / "examples" / "normand1999.toml"),
                           "--presets", "--progress"])
    assert err.rstrip().split("\r")[-1].startswith("reproduce: [####################] 4/4 done")


def test_simulate_progress_reaches_the_last_task_group(capsys):
    # 2 cells x 10 blocks of 250 = 20 tasks, 8 to a group: 3 groups
    _, err = _run(capsys, ["simulate", "--replicates", "2500", "--tau2", "0,0.1", "--methods", "DL",
                           "--ci-methods", "wald", "--progress", "--format", "json"])
    assert err.rstrip().split("\r")[-1].startswith("simulating: [") and "3/3 task groups" in err
    _, err = _run(capsys, ["simulate", "--replicates", "250", "--tau2", "0", "--methods", "DL", "--format", "json"])
    assert "simulating" not in err


def test_sensitivity_progress_names_the_slow_steps(capsys):
    _, err = _run(capsys, ["sensitivity", BCG, "--measure", "RR", "--bootstrap", "10", "--progress",
                           "--format", "json"])
    assert "bootstrap 10" in err and err.rstrip().split("\r")[-1].startswith("sensitivity: [####################] 2/2")


def test_no_progress_or_warning_text_reaches_standard_output(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    out, _ = _run(capsys, ["reproduce", HACKSHAW, "--presets", "--progress", "--format", "json"])
    json.loads(out)
    assert os.linesep + "pfps-meta:" not in out


# ------------------------------------------------------------------ item 7: Ctrl-C while the CLI is imported

def test_ctrl_c_during_the_cli_import_is_one_line_and_exit_130(capsys, monkeypatch):
    import sys

    import pfps_meta_entry

    class Interrupting:              # a finder that is "pressed Ctrl-C" while pfps_meta.cli is imported
        def find_spec(self, name, path=None, target=None):
            if name == "pfps_meta.cli":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "pfps_meta.cli")
    monkeypatch.setattr(sys, "meta_path", [Interrupting()] + sys.meta_path)
    assert pfps_meta_entry.main() == 130
    err = capsys.readouterr().err
    assert err == "pfps-meta: interrupted\n"


def test_the_entry_module_runs_the_command_line(capsys, monkeypatch):
    import sys

    import pfps_meta_entry

    monkeypatch.setattr(sys, "argv", ["pfps-meta", "pool", BCG, "--measure", "RR", "--format", "json"])
    assert pfps_meta_entry.main() == 0
    assert json.loads(capsys.readouterr().out)["k"] == 13
