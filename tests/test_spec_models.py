"""Spec analyses with model = "multilevel" / "network": the worked examples against metafor and
clubSandwich (committed fixtures), the PFP network and dependent-effect specs, and bad spec input."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.errors import InputError
from pfps_meta.evidence.specs import (ModelAnalysisResult, default_spec_paths, dependent_covariance, load_all,
                                      load_spec, run_analysis)
from pfps_meta.evidence import extraction
from pfps_meta.models.vcalc import contrast_covariance

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
ML = json.loads((FIX / "multilevel" / "konstantopoulos2011.json").read_text())["reml"]
CR = json.loads((FIX / "robust" / "konstantopoulos2011_three_level.json").read_text())["CR2"]
SENN = json.loads((FIX / "network" / "senn2013.json").read_text())["reml"]
SYNTHETIC_SHEET = FIX / "synthetic" / "extraction_pfp_dependent.csv"   # SYNTHETIC numbers, not data


def rel(a, b):
    return abs(a - b) / abs(b)


def run(path, analysis_id, extraction_sheet=None):
    spec, evidence = load_all([ROOT / path], extraction=extraction_sheet)[0]
    return run_analysis(next(a for a in spec.analyses if a.id == analysis_id), evidence)


def test_konstantopoulos2011_three_level_reml_spec():
    r = run("analyses/examples/konstantopoulos2011.toml", "three_level")
    assert isinstance(r, ModelAnalysisResult) and r.fit is not None
    assert rel(r.fit.estimate[0], ML["beta"]) < 1e-6 and rel(r.fit.se[0], ML["se"]) < 1e-6
    assert abs(r.fit.estimate[0] - 0.184713) < 1e-6 and abs(r.fit.se[0] - 0.084556) < 1e-6
    for ours, ref in zip(r.fit.sigma2, ML["sigma2"]):
        assert rel(ours, ref) < 1e-5
    assert (r.n_effects, r.n_clusters) == (56, 11)
    assert "three-level model (district / study)" in r.decision
    json.dumps(r.to_dict(), allow_nan=False)


def test_konstantopoulos2011_three_level_cr2_by_district_spec():
    r = run("analyses/examples/konstantopoulos2011.toml", "three_level_cr2")
    assert rel(r.robust.se[0], CR["se"]) < 1e-6 and rel(r.robust.df[0], CR["df"]) < 1e-6
    assert abs(r.robust.se[0] - 0.084458) < 1e-6 and abs(r.robust.df[0] - 9.8632) < 1e-4
    assert "CR2 cluster-robust inference by district" in str(r)


def test_senn2013_network_reml_spec():
    r = run("analyses/examples/senn2013.toml", "network_reml")
    frame = r.fit.to_frame()
    est = r.fit.relative_effect("metformin", "placebo")
    for name in SENN["beta"]:
        e = r.fit.relative_effect(name, "placebo")
        assert rel(e["estimate"], SENN["beta"][name]) < 1e-6 and rel(e["se"], SENN["se"][name]) < 1e-6
    assert round(est["estimate"], 4) == -1.1284 and round(est["se"], 4) == 0.1494
    assert rel(r.fit.tau2, SENN["tau2"]) < 1e-5
    assert len(frame) and r.n_clusters == 26
    json.dumps(r.to_dict(), allow_nan=False)


def test_pfp_network_spec_runs_and_lists_missing_arms():
    for analysis_id in ("pain", "activity"):
        r = run("analyses/pfp_network.toml", analysis_id)
        assert r.fit is None and "no trial has n, mean and SD" in r.reason
        av = r.availability
        assert {"trial", "arm", "role", "node", "n", "mean", "sd", "missing"} <= set(av.columns)
        assert set(av["node"]) == {"hip + knee", "hip", "knee", "no training/placebo"}
        fukuda = av[(av["trial"] == "fukuda2010")].set_index("arm")
        assert fukuda.loc["KHE", "missing"] == "mean, SD" and fukuda.loc["CG", "missing"] == "n, mean, SD"
        assert "not fitted" in str(r) and "fukuda2010 CG: n, mean, SD" in str(r)
        json.dumps(r.to_dict(), allow_nan=False)


def test_pfp_network_template_lists_every_arm_of_the_network():
    spec, evidence = load_all([ROOT / "analyses/pfp_network.toml"])[0]
    sheet = extraction.template(spec, evidence)
    o = evidence.outcomes
    want = o[o["outcome"].isin(["pain", "activity"]) & (o["timepoint"] == "post")]
    got = set(zip(sheet["trial_id"], sheet["arm"], sheet["outcome"], sheet["scale"]))
    assert set(zip(want["trial_id"], want["arm"], want["outcome"], want["scale"])) <= got


def test_pfp_network_fits_from_filled_sheet_when_connected(tmp_path):
    """SYNTHETIC numbers for three trials' pain arms: a connected network (hip + knee, knee, none)."""
    spec, evidence = load_all([ROOT / "analyses/pfp_network.toml"])[0]
    sheet = extraction.template(spec, evidence)
    sheet = sheet[(sheet["outcome"] == "pain") & sheet["trial_id"].isin(["fukuda2010", "song2009", "baldon2014"])].copy()
    values = {"KHE": (23, 2.5, 1.9), "KE": (22, 3.6, 2.0), "CG": (25, 5.9, 1.8), "LPHA": (27, 21, 15),
              "LP": (27, 33, 17), "CONTROL": (25, 52, 18), "FST": (16, 2.2, 1.7), "ST": (15, 3.9, 2.1)}
    for i, row in sheet.iterrows():
        n, m, s = values[row["arm"]]
        sheet.loc[i, ["n", "mean", "sd", "status", "quote", "source_location"]] = \
            [str(n), str(m), str(s), "verified", "SYNTHETIC", "SYNTHETIC"]
        sheet.loc[i, ["scale_min", "scale_max"]] = ["0", "100" if row["trial_id"] == "song2009" else "10"]
    path = tmp_path / "sheet.csv"
    path.write_text("# SYNTHETIC\n" + extraction.to_csv_text(sheet))
    r = run("analyses/pfp_network.toml", "pain", extraction_sheet=path)
    assert r.fit is not None and r.n_clusters == 3
    assert set(r.fit.treatments) == {"hip + knee", "knee", "no training/placebo"}


def test_pfp_dependent_timepoints_without_data_lists_what_is_missing():
    r = run("analyses/pfp_dependent.toml", "timepoints")
    assert r.fit is None and r.n_effects == 0
    assert {"trial", "arm", "inner", "missing"} <= set(r.availability.columns)
    assert set(r.availability["inner"]) == {"post", "followup"}


def test_synthetic_sheet_multilevel_timepoints_equals_direct_multilevel_call():
    """SYNTHETIC extraction sheet: two timepoints per trial -> three-level model, same as pm.multilevel."""
    r = run("analyses/pfp_dependent.toml", "timepoints", extraction_sheet=SYNTHETIC_SHEET)
    assert r.fit is not None and (r.n_effects, r.n_clusters) == (6, 3)
    assert r.decision.startswith("3 trials give 6 effects: several timepoints per trial; a three-level model "
                                 "(trial / timepoint) with V from rho = 0.6 (assumed")
    rows = r.effects
    # V built by hand: within a trial, the same arms at two timepoints covary by rho sd1 sd2 / n
    blocks = []
    for trial, g in rows.groupby("trial", sort=False):
        a, b = g.iloc[0], g.iloc[1]
        c = 0.6 * (a["sd_exp"] * b["sd_exp"] / min(a["n_exp"], b["n_exp"])
                   + a["sd_ctrl"] * b["sd_ctrl"] / min(a["n_ctrl"], b["n_ctrl"]))
        blocks.append(np.array([[a["vi"], c], [c, b["vi"]]]))
    V = np.zeros((6, 6))
    for j, block in enumerate(blocks):
        V[2 * j:2 * j + 2, 2 * j:2 * j + 2] = block
    direct = pm.multilevel(rows[["trial", "timepoint", "yi", "vi"]].reset_index(drop=True), V=V,
                           levels=("trial", "timepoint"))
    assert rel(r.fit.estimate[0], direct.estimate[0]) < 1e-10 and rel(r.fit.se[0], direct.se[0]) < 1e-10
    assert np.allclose(r.fit.sigma2, direct.sigma2, rtol=1e-8, atol=1e-12)
    cr2 = direct.robust(cluster=rows["trial"].to_numpy(), adjust="CR2")
    assert rel(r.robust.se[0], cr2.se[0]) < 1e-10


@pytest.mark.parametrize("measure", ["MD", "SMD"])
def test_gleser_olkin2009_shared_arm_covariance_equals_contrast_covariance(measure):
    """Two arms against one control (one trial): dependent_covariance with r = 1 is contrast_covariance."""
    arms = pd.DataFrame({"study": "t", "arm": ["A", "B", "C"], "n": [23.0, 22.0, 25.0],
                         "mean": [2.5, 3.6, 5.9], "sd": [1.9, 2.0, 1.8]})
    con = contrast_covariance(arms, measure, pd.DataFrame({"study": ["t", "t"], "treat": ["A", "B"],
                                                            "control": ["C", "C"]}))
    ref = con.V.to_dense()
    by = arms.set_index("arm")
    rows = []
    for q, (t, yi, vi) in enumerate(zip(["A", "B"], con.yi, con.vi)):
        rows.append({"sign": 1.0, "exp": t, "ctrl": "C", "n_exp": by.loc[t, "n"], "n_ctrl": by.loc["C", "n"],
                     "sd_exp": by.loc[t, "sd"], "sd_ctrl": by.loc["C", "sd"], "yi": yi, "vi": vi, "r": [1.0, 1.0]})
    ours = dependent_covariance(rows, measure)
    assert np.allclose(ours, ref, rtol=1e-12, atol=0)


def test_shared_control_spec_uses_exact_covariance(tmp_path):
    """SYNTHETIC: fukuda2010 KHE and KE vs CG (one control), song2009 LPHA and LP vs CONTROL."""
    spec, evidence = load_all([ROOT / "analyses/pfp_dependent.toml"])[0]
    sheet = extraction.template(spec, evidence)
    sheet = sheet[sheet["analyses"].str.contains("shared_control") & (sheet["trial_id"] != "khayambashi2012")].copy()
    values = {"KHE": (23, 2.5, 1.9), "KE": (22, 3.6, 2.0), "CG": (25, 5.9, 1.8), "LPHA": (27, 21, 15),
              "LP": (27, 33, 17), "CONTROL": (25, 52, 18)}
    for i, row in sheet.iterrows():
        n, m, s = values[row["arm"]]
        sheet.loc[i, ["n", "mean", "sd", "status", "quote", "source_location"]] = \
            [str(n), str(m), str(s), "verified", "SYNTHETIC", "SYNTHETIC"]
    path = tmp_path / "sheet.csv"
    path.write_text("# SYNTHETIC\n" + extraction.to_csv_text(sheet))
    r = run("analyses/pfp_dependent.toml", "shared_control", extraction_sheet=path)
    assert (r.n_effects, r.n_clusters) == (4, 2) and r.fit is not None
    arms = pd.DataFrame({"study": "fukuda2010", "arm": ["KHE", "KE", "CG"], "n": [23.0, 22.0, 25.0],
                         "mean": [2.5, 3.6, 5.9], "sd": [1.9, 2.0, 1.8]})
    ref = contrast_covariance(arms, "MD", pd.DataFrame({"study": ["fukuda2010"] * 2, "treat": ["KHE", "KE"],
                                                         "control": ["CG", "CG"]})).V.to_dense()
    rows = r.effects
    fuk = rows[rows["trial"] == "fukuda2010"]
    assert np.allclose(fuk["vi"], np.diag(ref), rtol=1e-12)
    # the fit equals a direct multilevel call with contrast_covariance's V for each trial (song2009 on 0-10)
    song = pd.DataFrame({"study": "song2009", "arm": ["LPHA", "LP", "CONTROL"], "n": [27.0, 27.0, 25.0],
                         "mean": [2.1, 3.3, 5.2], "sd": [1.5, 1.7, 1.8]})
    ref2 = contrast_covariance(song, "MD", pd.DataFrame({"study": ["song2009"] * 2, "treat": ["LPHA", "LP"],
                                                         "control": ["CONTROL"] * 2})).V.to_dense()
    V = np.zeros((4, 4))
    V[:2, :2], V[2:, 2:] = ref, ref2
    direct = pm.multilevel(rows[["trial", "arm", "yi", "vi"]].reset_index(drop=True), V=V, levels=("trial", "arm"))
    assert rel(r.fit.estimate[0], direct.estimate[0]) < 1e-10 and rel(r.fit.se[0], direct.se[0]) < 1e-10


def test_pairwise_shared_arm_message_names_the_exact_option(tmp_path):
    text = (ROOT / "analyses/pfp_dependent.toml").read_text()
    text = text.replace('model = "multilevel"\ninner = "arm"\n', "")
    text = text.replace('data_dir = "../data"', f'data_dir = "{ROOT / "data"}"')
    spec_path = tmp_path / "pairwise.toml"
    spec_path.write_text(text.split("[[analyses]]")[0] + "[[analyses]]" + text.split("[[analyses]]")[2])
    spec, evidence = load_all([spec_path])[0]
    with pytest.raises(InputError, match=r"split_shared_arms = true.*model = \"multilevel\", inner = \"arm\""):
        run_analysis(spec.analyses[0], evidence)


def test_default_spec_paths_keep_the_reproduce_table_pairwise():
    names = {p.name for p in default_spec_paths(ROOT)}
    assert "nascimento2018.toml" in names and "pfp_network.toml" not in names
    assert "pfp_network.toml" in {p.name for p in default_spec_paths(ROOT, include_models=True)}


# ------------------------------------------------------------------------------------------------ bad input

NETWORK = '''[review]
id = "bad"
data_dir = "{data}"

[[analyses]]
id = "net"
model = "network"
outcome = "pain"
measure = "MD"
target_range = [0, 10]
favourable = "lower"
nodes = {{ hip_knee = "hip + knee", knee = "knee" }}
reference = "knee"
'''

KONST = '''[review]
id = "bad"

[[analyses]]
id = "ml"
model = "multilevel"
data = "{data}"
levels = ["district", "study"]
'''

DEPENDENT = '''[review]
id = "bad"
data_dir = "{data}"

[[analyses]]
id = "dep"
model = "multilevel"
inner = "timepoint"
outcome = "pain"
measure = "MD"
target_range = [0, 10]
favourable = "lower"
rho = 0.6
rho_assumption = "assumed"
trials = [ {{ trial = "fukuda2010", exp = "KHE", ctrl = "KE" }} ]
'''


def write(tmp_path, text):
    path = tmp_path / "spec.toml"
    path.write_text(text.format(data=ROOT / "data", konst=ROOT / "data/examples/konstantopoulos2011.csv"))
    return path


@pytest.mark.parametrize("template, old, new, message", [
    (DEPENDENT, 'inner = "timepoint"', 'inner = "visit"', r"'dep'\): inner must be one of timepoint, scale, arm"),
    (DEPENDENT, "rho = 0.6", "rho = 1.5", r"'dep'\): rho must be a number in \[-1, 1\]"),
    (NETWORK, 'reference = "knee"', 'reference = "hip"', r"'net'\): reference 'hip' is not among the nodes"),
])
def test_bad_spec_input_at_load(tmp_path, template, old, new, message):
    path = write(tmp_path, template.replace(old, new))
    with pytest.raises(InputError, match=message) as err:
        load_spec(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_bad_spec_node_role_matching_no_arm(tmp_path):
    path = write(tmp_path, NETWORK.replace('knee = "knee" }}', 'knee = "knee", sham = "knee" }}'))
    spec, evidence = load_all([path])[0]
    with pytest.raises(InputError, match=r"analysis 'bad/net': nodes: role\(s\) sham match no arm") as err:
        run_analysis(spec.analyses[0], evidence)
    assert str(path) in str(err.value)


def test_bad_spec_level_column_missing_in_data_file(tmp_path):
    path = write(tmp_path, KONST.replace("{data}", "{konst}").replace('"study"]', '"school_id"]'))
    spec = load_spec(path)
    with pytest.raises(InputError, match=r"analysis 'bad/ml': levels\[1\] = 'school_id' is not a column") as err:
        run_analysis(spec.analyses[0])
    assert str(path) in str(err.value)


def test_an_evidence_base_analysis_run_without_its_evidence_is_refused_naming_the_argument():
    from pfps_meta.errors import InputError
    from pfps_meta.evidence.specs import load_all, run_analysis

    for path in ("analyses/nascimento2018.toml", "analyses/pfp_network.toml", "analyses/pfp_dependent.toml"):
        [(spec, _)] = load_all([ROOT / path])
        with pytest.raises(InputError, match="^evidence: analysis"):
            run_analysis(spec.analyses[0], None)


@pytest.mark.parametrize("model, setting", [("multilevel", 'pi = "t"'), ("multilevel", "tau2_ci = false"),
                                            ("network", 'i2_method = "q"'), ("multilevel", "prediction_interval = false")])
def test_a_pairwise_pooling_setting_on_a_model_analysis_is_refused_there_and_noted_from_the_files_settings(
        tmp_path, model, setting):
    """A model analysis takes its estimator, tests and intervals from its own keys, so a pairwise setting
    away from its default changes nothing there: given in the entry it is refused, naming the key as
    written; from the file's [settings] (meant for its pairwise analyses) the result says it is not applied."""
    data = {"multilevel": ('data = "{}"\nlevels = ["district", "school"]\n'
                           .format((ROOT / "data" / "examples" / "konstantopoulos2011.csv").as_posix())),
            "network": ('data = "{}"\nmeasure = "MD"\nreference = "placebo"\n'
                        .format((ROOT / "data" / "examples" / "senn2013.csv").as_posix()))}[model]
    spec = tmp_path / "t.toml"
    head = '[review]\nid = "t"\ntitle = "t"\n'
    entry = f'[[analyses]]\nid = "a"\nmodel = "{model}"\n' + data
    spec.write_text(head + entry + f"{setting}\n", encoding="utf-8")
    key = setting.split(" =")[0]
    with pytest.raises(InputError, match=rf"\('a'\): {key} = .* is not applied to a {model} model"):
        load_spec(spec)
    spec.write_text(head + f"[settings]\n{setting}\n" + entry, encoding="utf-8")
    analysis = load_spec(spec).analyses[0]
    result = run_analysis(analysis)
    option = {"pi": "pi_method"}.get(key, key)
    assert any(n.startswith(f"not applied to this {model} model: {option} = ") for n in result.notes), result.notes
    assert f"note: not applied to this {model} model: {option}" in str(result)
    spec.write_text(head + entry, encoding="utf-8")
    assert not any("not applied" in n for n in run_analysis(load_spec(spec).analyses[0]).notes)
