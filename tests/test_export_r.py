"""The R script of `export_r` (issue 21, item 4): the rma / rma.mv call carries the analysis' settings, the
data reach R exactly, and metafor 3.8-1's output of the emitted scripts (committed under
tests/fixtures/export_r/ by validation/run_exported_r.py --fixtures) agrees with our numbers at 1e-6."""

import math
import re
import shutil

import pytest

from pfps_meta.errors import InputError
from pfps_meta.present import export_r as ex
from tests.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.filterwarnings("ignore::pfps_meta.errors.PfpsWarning")  # hackshaw1998 CI notes
FIXTURE_DIR = FIXTURES / "export_r"
SPECS = {"hackshaw1997": "analyses/examples/hackshaw1997.toml", "normand1999": "analyses/examples/normand1999.toml",
         "konstantopoulos2011": "analyses/examples/konstantopoulos2011.toml",
         "senn2013": "analyses/examples/senn2013.toml"}


def _spec(tmp_path, settings: str, measure="SMD", data="normand1999.csv"):
    """A one-analysis spec on a copy of a worked example's data (test-only input)."""
    shutil.copy(ROOT / "data" / "examples" / data, tmp_path / data)
    (tmp_path / "analyses").mkdir(exist_ok=True)
    spec = tmp_path / "analyses" / "t.toml"
    spec.write_text(f'[review]\nid = "t"\ntitle = "t"\ndata_dir = ".."\n[settings]\n{settings}\n'
                    f'[[analyses]]\nid = "a"\nlabel = "a"\nmeasure = "{measure}"\ndata = "../{data}"\n')
    return spec


def _rma_call(script):
    return next(line for line in script.splitlines() if line.startswith("res <- rma"))


@pytest.mark.parametrize("settings, expected", [
    ('method = "PM"\nci = "hksj"\nlevel = 0.9\nvtype = "UB"',
     ['method = "PM"', 'test = "knha"', "level = 90.0", 'vtype = "UB"']),
    ('method = "DL"\nci = "wald"', ['method = "DL"', 'test = "z"', "level = 95.0", 'vtype = "LS"']),
    ('method = "FE"\nlevel = 0.99\nvtype = "AV"', ['method = "FE"', 'test = "z"', "level = 99.0", 'vtype = "AV"']),
])
def test_rma_call_carries_method_test_level_and_vtype(tmp_path, settings, expected):
    script = ex.export_r(_spec(tmp_path, settings), "a")
    text = _rma_call(script) + next(line for line in script.splitlines() if "escalc(" in line)
    for piece in expected:
        assert piece in text, piece
    assert "threshold = 1e-12" in _rma_call(script)


def test_md_with_pooled_sd_is_escalc_vtype_ho(tmp_path):
    script = ex.export_r(_spec(tmp_path, "pooled_sd = true", measure="MD"), "a")
    assert 'escalc(measure = "MD"' in script and 'vtype = "HO"' in script


def test_revman5_smd_carries_our_yi_vi_and_says_why(tmp_path):
    script = ex.export_r(_spec(tmp_path, 'smd_convention = "revman5"'), "a")
    assert "escalc(" not in script
    assert "RevMan 5's SMD" in script and "yi and vi are pfps-meta's" in script


def test_binary_tables_go_through_escalc(tmp_path):
    script = ex.export_r(_spec(tmp_path, 'method = "REML"', measure="RR", data="bcg.csv"), "a")
    assert 'escalc(measure = "RR", ai = events_exp, n1i = n_exp, ci = events_ctrl, n2i = n_ctrl' in script


def test_hksj_prediction_interval_t_k2_is_computed_by_hand(tmp_path):
    script = ex.export_r(_spec(tmp_path, 'ci = "hksj"\npi = "t_k2"'), "a")
    assert "qt(res$level / 2, k - 2, lower.tail = FALSE)" in script and "predict(res)" not in script


def _column(script, name):
    match = re.search(rf"^  {name} = c\((.*)\)", script, flags=re.M)
    return [float(v) for v in match.group(1).split(", ")]


def test_inline_data_round_trips_exactly():
    import pandas as pd

    script = ex.export_r(ROOT / SPECS["normand1999"], "los_smd")
    raw = pd.read_csv(ROOT / "data" / "examples" / "normand1999.csv")
    for column in ("n_exp", "mean_exp", "sd_exp", "n_ctrl", "mean_ctrl", "sd_ctrl"):
        assert _column(script, column) == raw[column].astype(float).tolist()
    # values computed by us (here: from a CI) are written at full precision
    script = ex.export_r(ROOT / SPECS["hackshaw1997"], "main")
    ours = ex.our_values(ROOT / SPECS["hackshaw1997"], "main")
    assert "yi and vi are pfps-meta's" in script
    from pfps_meta.evidence import specs
    spec, evidence = specs.load_all([ROOT / SPECS["hackshaw1997"]])[0]
    studies = specs.run_analysis(spec.analyses[0], evidence).result.studies
    assert _column(script, "yi") == studies["yi"].tolist() and _column(script, "vi") == studies["vi"].tolist()
    assert ours["estimate"] == specs.run_analysis(spec.analyses[0], evidence).result.stats["estimate"]


@pytest.mark.parametrize("value", [0.1, 1 / 3, -2.5e-300, 1e300, 123456789.123456789, 5e-324])
def test_r_number_is_the_shortest_exact_decimal(value):
    assert float(ex.r_number(value)) == value
    assert ex.r_number(float("nan")) == "NA" and ex.r_number(float("-inf")) == "-Inf"


def test_r_string_escapes_quotes_and_backslashes():
    assert ex.r_string('Lee "A" \\ 1') == '"Lee \\"A\\" \\\\ 1"'


def test_multilevel_with_vcalc_and_moderators(tmp_path):
    (tmp_path / "analyses").mkdir()
    spec = tmp_path / "analyses" / "v.toml"
    spec.write_text(_validation_module().variant_text("assink_V_mods_CR2"))
    script = ex.export_r(spec, "a")
    assert "V <- vcalc(vi, cluster = study, obs = esid, rho = 0.6, data = dat)" in script
    assert "rma.mv(yi, V, mods = ~ year + pubstatus, random = ~ 1 | study/esid" in script
    assert "robust_df_3" in script and "rel.tol = 1e-12" in script


def test_multilevel_and_cr2_calls():
    script = ex.export_r(ROOT / SPECS["konstantopoulos2011"], "three_level_cr2")
    assert 'rma.mv(yi, vi, random = ~ 1 | district/study, data = dat, method = "REML", test = "z"' in script
    assert "robust(res, cluster = dat$district, clubSandwich = TRUE)" in script


def test_network_is_the_contrast_model_of_senn2013():
    script = ex.export_r(ROOT / SPECS["senn2013"], "network_reml")
    assert "random = ~ treat | study, rho = 1/2" in script and "mods = X, intercept = FALSE" in script
    assert '"placebo"' not in script.split("treatments <- ")[1].splitlines()[0].split("#")[0]


def test_analysis_without_data_is_refused_with_the_reason():
    with pytest.raises(InputError, match="cannot be exported to R: no trial has the data"):
        ex.export_r(ROOT / "analyses" / "nascimento2018.toml", "A1")
    with pytest.raises(InputError, match="no analysis 'nope'"):
        ex.export_r(ROOT / SPECS["normand1999"], "nope")


def test_parse_comparison_refuses_output_without_comparison():
    with pytest.raises(InputError, match="no PFPS_COMPARE"):
        ex.parse_comparison("Error in rma(...): something\n")
    with pytest.raises(InputError, match="without PFPS_MAX_REL_DIFF"):
        ex.parse_comparison("PFPS_COMPARE estimate 1 1 0\nError in if (is.na(m)): argument is of length zero\n")


def _validation_module():
    """validation/run_exported_r.py, whose variant specs the variant fixtures were made from."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_exported_r", ROOT / "validation" / "run_exported_r.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fixture_spec(fixture, tmp_path):
    if fixture.startswith("variant_"):
        (tmp_path / "analyses").mkdir(exist_ok=True)
        path = tmp_path / "analyses" / f"{fixture}.toml"
        path.write_text(_validation_module().variant_text(fixture[len("variant_"):]))
        return path, "a"
    review, analysis_id = next((r, fixture[len(r) + 1:]) for r in SPECS if fixture.startswith(r + "_"))
    return ROOT / SPECS[review], analysis_id


@pytest.mark.parametrize("fixture", sorted(p.stem for p in FIXTURE_DIR.glob("*.Rout")))
def test_metafor_output_of_emitted_script_matches_our_numbers(fixture, tmp_path):
    """metafor 3.8-1's numbers, printed by the emitted script (validation/run_exported_r.py --fixtures),
    against ours as computed now, at 1e-6 relative."""
    compared = ex.parse_comparison((FIXTURE_DIR / f"{fixture}.Rout").read_text())
    ours = ex.our_values(*_fixture_spec(fixture, tmp_path))
    assert set(compared) == set(ours)
    for name, (metafor, _, _) in compared.items():
        assert not math.isnan(metafor), name
        scale = max(abs(metafor), abs(ours[name]))
        assert scale == 0 or abs(metafor - ours[name]) / scale <= 1e-6, (name, metafor, ours[name])


def test_fixtures_cover_every_model_family():
    names = {p.stem for p in FIXTURE_DIR.glob("*.Rout")}
    for family in ("senn2013_network_reml", "konstantopoulos2011_three_level_cr2", "variant_bcg_OR_MH",
                   "variant_assink_V_mods_CR2", "variant_assink_ML_t_mods",
                   "variant_bcg_OR_PETO", "variant_bcg_RR_PM", "normand1999_los_smd"):
        assert family in names


def test_mantel_haenszel_and_peto_calls(tmp_path):
    script = ex.export_r(_spec(tmp_path, 'method = "MH"', measure="OR", data="bcg.csv"), "a")
    assert ('rma.mh(measure = "OR", ai = events_exp, n1i = n_exp, ci = events_ctrl, n2i = n_ctrl, data = dat, '
            'add = c(0.5, 0.0), to = c("only0", "none"), drop00 = c(TRUE, FALSE), level = 95.0, correct = TRUE)') in script
    (tmp_path / "analyses" / "t.toml").unlink()
    (tmp_path / "analyses").rmdir()
    script = ex.export_r(_spec(tmp_path, 'method = "PETO"\nmh_add = 0.25\nmh_to = "all"', measure="OR",
                               data="bcg.csv"), "a")
    assert "rma.peto(ai = events_exp" in script and 'add = c(0.25, 0.0), to = c("all", "none")' in script
    assert "correct =" not in script


def test_revman5_random_effects_mantel_haenszel_is_refused_not_a_key_error(tmp_path):
    with pytest.raises(InputError, match="method MH_DL has no metafor function"):
        ex.export_r(_spec(tmp_path, 'method = "MH_DL"', measure="OR", data="bcg.csv"), "a")


@pytest.mark.parametrize("call, message", [
    (lambda: ex.export_r(None, "a"), "spec_path must be the path of an analysis spec"),
    (lambda: ex.parse_comparison(None), "output must be the text R printed"),
    (lambda: ex.r_number("x"), "value: 'x' is not a number"),
])
def test_bad_arguments_are_refused_naming_the_argument(call, message):
    with pytest.raises(InputError, match=message):
        call()

def test_a_line_break_in_a_label_stays_inside_the_comment(tmp_path):
    spec = _spec(tmp_path, 'method = "DL"')
    spec.write_text(spec.read_text().replace('label = "a"', 'label = """x\nq(status = 3)"""'))
    script = ex.export_r(spec, "a")
    assert not any(line.startswith("q(status = 3)") for line in script.splitlines())
    assert "(x q(status = 3))" in script.splitlines()[0]


def test_the_model_analysis_result_that_export_r_reads_has_a_frame_html_and_json():
    import json

    from pfps_meta.evidence import specs

    spec, evidence = specs.load_all([ROOT / SPECS["konstantopoulos2011"]])[0]
    run = specs.run_model_analysis(spec.analyses[0], evidence)
    assert run.to_frame().equals(run.fit.to_frame())
    assert run._repr_html_().startswith("<pre>" + spec.analyses[0].key) and repr(run) == str(run)
    json.dumps(run.to_dict(), allow_nan=False)


@pytest.mark.parametrize("where", ["entry", "settings"])
def test_hksj_on_a_multilevel_analysis_is_refused_not_silently_wald(tmp_path, where):
    body = ('[[analyses]]\nid = "a"\nlabel = "a"\nmodel = "multilevel"\n'
            f'data = "{(ROOT / "data" / "examples" / "assink2016.csv").as_posix()}"\nlevels = ["study", "esid"]\n')
    spec = tmp_path / "t.toml"
    settings = '[settings]\nci = "hksj"\n' if where == "settings" else ""
    spec.write_text(f'[review]\nid = "t"\ntitle = "t"\n{settings}' + body + ('ci = "hksj"\n' if where == "entry" else ""))
    with pytest.raises(InputError, match=r'ci = "hksj" \(here or in \[settings\]\) is not applied to a multilevel '
                                         r'model; give test = "t"'):
        ex.export_r(spec, "a")
