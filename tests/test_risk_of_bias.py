"""Risk of bias (issue 21, item 5): the table in data/, its checks, the weighted summary (RevMan/robvis bar
chart), the frame of the forest plot's traffic lights, the re-fits on low risk only and excluding high
risk, and the risk-of-bias sheet of the extraction workbench."""

import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.analysis import risk_of_bias as rb
from pfps_meta.errors import InputError
from pfps_meta.evidence import extraction, specs
from tests.conftest import ROOT

CAFFEINE = ROOT / "data" / "examples" / "caffeine.csv"
HEADER = ",".join(rb.COLUMNS)


@pytest.fixture(scope="module")
def rob():
    return rb.read_risk_of_bias()


@pytest.fixture(scope="module")
def caffeine():
    return pm.pool(pd.read_csv(CAFFEINE), measure="OR", method="DL")


def _row(**values):
    row = {c: "" for c in rb.COLUMNS}
    row.update(study="X 2001", review="t", tool="RoB2", result="r", status="verified", citation="c", location="l",
               quote="q")
    row.update(values)
    return ",".join(f'"{row[c]}"' for c in rb.COLUMNS)


def _write(tmp_path, *rows):
    path = tmp_path / "rob.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def test_data_file_holds_the_practice_review_judgements_and_baldons_pedro(rob):
    caf = rb.judgements(rob, review="caffeine")
    assert len(caf) == 8
    norscafe = caf.set_index("study").loc["Norscafe 1998"]
    assert list(norscafe) == ["some concerns", "some concerns", "low", "some concerns", "high", "high"]
    pedro = rb.judgements(rob, review="pfp", tool="PEDro").set_index("study")
    assert pedro.loc["baldon2014", "pedro_total"] == 7
    assert (pedro.loc["baldon2014", list(rb.PEDRO_ITEMS[1:])] == "yes").sum() == 7
    assert pedro.drop(index="baldon2014")["pedro_total"].isna().all()      # not recovered: empty
    judged = rob[rob[[*rb.DOMAINS, "overall", "pedro_total"]].notna().any(axis=1)]
    assert judged[list(rb.SOURCE_COLUMNS)].notna().all().all()
    assert (rob.loc[rob["status"] == "not_recovered", [*rb.DOMAINS, "overall"]].isna()).all().all()


@pytest.mark.parametrize("values, column, why", [
    ({"D3": "moderate"}, "D3", "judgement 'moderate' is not one of low, some concerns, high"),
    ({"overall": "Low"}, "overall", "not one of"),
    ({"tool": "RoB1"}, "tool", "tool 'RoB1'"),
    ({"tool": "PEDro", "pedro_total": "11"}, "pedro_total", "whole number from 0 to 10"),
    ({"tool": "PEDro", "pedro_2": "maybe"}, "pedro_2", "PEDro item 'maybe'"),
    ({"D1": "low", "citation": ""}, "citation", "without its source"),
    ({"tool": "PEDro", "D1": "low"}, "D1", "RoB 2 judgement on a PEDro row"),
])
def test_bad_cell_names_file_line_and_column(tmp_path, values, column, why):
    path = _write(tmp_path, _row(), _row(**values))
    with pytest.raises(InputError) as error:
        rb.read_risk_of_bias(path)
    assert error.value.line == 3 and error.value.column == column and error.value.file == str(path)
    assert why in str(error.value)


def test_pedro_total_must_count_the_items_answered_yes(tmp_path):
    items = {f"pedro_{i}": "yes" for i in range(2, 12)}
    items["pedro_5"] = "no"
    assert rb.read_risk_of_bias(_write(tmp_path, _row(tool="PEDro", pedro_total="9", **items)))["pedro_total"][0] == 9
    with pytest.raises(InputError, match="differs from the 9 items"):
        rb.read_risk_of_bias(_write(tmp_path, _row(tool="PEDro", pedro_total="8", **items)))


def test_summary_weights_each_judgement_by_the_studys_weight(rob, caffeine):
    frame = rb.forest_frame(rob, review="caffeine", studies=caffeine.studies["study"])
    shares = rb.summary(frame, caffeine)
    weight = caffeine.studies.set_index("study")["weight"]
    high_d5 = ["Amore-Coffea 2000", "Deliciozza 2004", "Mama-Kaffa 1999", "Norscafe 1998"]
    assert shares.loc["D5", "high"] == pytest.approx(weight[high_d5].sum() / weight.sum(), rel=1e-12)
    assert shares.loc["overall", "high"] == pytest.approx(weight["Norscafe 1998"] / weight.sum(), rel=1e-12)
    assert shares.sum(axis=1).to_numpy() == pytest.approx([1.0] * 6)
    unweighted = rb.summary(frame)
    assert unweighted.loc["D5", "high"] == pytest.approx(4 / 7)
    with pytest.raises(InputError, match="no weight for study"):
        rb.summary(frame, {"Norscafe 1998": 1.0})


def test_missing_judgements_are_their_own_share(rob):
    frame = rb.forest_frame(rob, review="caffeine", studies=["Norscafe 1998", "not assessed 2020"])
    shares = rb.summary(frame, [3.0, 1.0])
    assert shares.loc["overall", "high"] == pytest.approx(0.75) and shares.loc["D1", "missing"] == pytest.approx(0.25)


def test_forest_frame_has_the_columns_the_forest_plot_reads(rob):
    frame = rb.forest_frame(rob, review="caffeine")
    assert list(frame.columns) == ["study", "D1", "D2", "D3", "D4", "D5", "overall"]
    values = set(frame[["D1", "D2", "D3", "D4", "D5", "overall"]].stack())
    assert values <= set(rb.JUDGEMENTS)
    with pytest.raises(InputError, match="RoB 2 domains"):
        rb.forest_frame(rob, tool="PEDro")


def test_published_overall_milder_than_a_domain_is_listed(rob):
    listed = rb.inconsistent_overall(rob)
    assert "Mama-Kaffa 1999" in set(listed["study"]) and "Norscafe 1998" not in set(listed["study"])
    assert "Oohlahlazza 1998" not in set(listed["study"])


def test_low_risk_only_refits_the_low_studies_with_the_same_settings(rob, caffeine):
    refit = rb.refit_low_risk_only(caffeine, rob, review="caffeine")
    assert refit.excluded == ["Norscafe 1998"] and refit.unassessed == []
    data = pd.read_csv(CAFFEINE)
    direct = pm.pool(data[data["study"] != "Norscafe 1998"], measure="OR", method="DL")
    assert refit.result.stats["estimate"] == pytest.approx(direct.stats["estimate"], rel=1e-12)
    assert refit.result.stats["ci_high"] == pytest.approx(direct.stats["ci_high"], rel=1e-12)
    assert refit.result.settings == caffeine.settings


def test_unassessed_studies_leave_low_only_but_stay_when_excluding_high(rob, caffeine):
    table = caffeine.studies[["study", "yi", "vi"]].copy()
    table.loc[0, "study"] = "Unassessed 1990"
    res = pm.pool_effects(table, measure="OR", settings=caffeine.settings)
    low = rb.refit_low_risk_only(res, rob, review="caffeine")
    no_high = rb.refit_excluding_high(res, rob, review="caffeine")
    assert low.unassessed == ["Unassessed 1990"] and "Unassessed 1990" in low.excluded
    assert "Unassessed 1990" in no_high.kept and no_high.excluded == ["Norscafe 1998"]
    assert no_high.result.stats["k"] == 6 and low.result.stats["k"] == 5


def test_judgement_weights_give_grade_the_share_of_high_risk_weight(rob, caffeine):
    got = rb.judgement_weights(caffeine, rob, review="caffeine")
    weight = caffeine.studies.set_index("study")["weight"]
    assert got["high"] == pytest.approx(weight["Norscafe 1998"] / weight.sum(), rel=1e-12)
    assert got["low"] + got["high"] + got["some concerns"] + got["missing"] == pytest.approx(1.0)
    assert got["studies"]["weight"].sum() == pytest.approx(1.0)


def test_summary_bar_draws_the_weighted_shares(rob, caffeine):
    import matplotlib
    matplotlib.use("Agg")
    from pfps_meta.present import rob_plots

    frame = rb.forest_frame(rob, review="caffeine", studies=caffeine.studies["study"])
    fig = rob_plots.summary_bar(frame, caffeine)
    ax = fig.axes[0]
    assert len(ax.containers) == 4                 # low, some concerns, high, no information
    high = ax.containers[2]
    overall_bar = high.patches[0]                   # the overall row is drawn at the bottom
    assert overall_bar.get_width() == pytest.approx(100 * rb.summary(frame, caffeine).loc["overall", "high"])
    assert "weight" in ax.get_xlabel()


def test_rob_sheet_lists_each_trial_and_result_and_reads_back(tmp_path, rob):
    spec = specs.load_spec(ROOT / "analyses" / "nascimento2018.toml")
    raw = pd.read_csv(ROOT / "data" / "risk_of_bias.csv", dtype=str, keep_default_na=False)
    sheet = extraction.rob_template(spec, raw)
    assert list(sheet.columns) == list(extraction.ROB_COLUMNS)
    baldon = sheet[(sheet["study"] == "baldon2014") & (sheet["tool"] == "PEDro")].iloc[0]
    assert baldon["pedro_total"] == "7" and baldon["status"] == "verified"
    assert {"pain, post", "activity, post", "pain, 4wk"} <= set(sheet.loc[sheet["tool"] == "RoB2", "result"])
    path = tmp_path / "sheet.csv"
    sheet.to_csv(path, index=False)
    assert len(rb.read_risk_of_bias(path)) == len(sheet)


def test_caffeine_mantel_haenszel_refit_excluding_high_pools_the_remaining_2x2_tables():
    """A Mantel-Haenszel fit is re-fitted from its counts (it has no yi/vi pooling): the same as
    pm.pool(method="MH") on the studies kept."""
    import pfps_meta as pm
    from pfps_meta.analysis.risk_of_bias import read_risk_of_bias, refit_excluding_high

    fit = pm.pool(ROOT / "data" / "examples" / "caffeine.csv", measure="OR", method="MH")
    refit = refit_excluding_high(fit, read_risk_of_bias(), review="caffeine")
    assert refit.excluded == ["Norscafe 1998"] and refit.result.settings.method == "MH"
    table = pd.read_csv(ROOT / "data" / "examples" / "caffeine.csv")
    direct = pm.pool(table[table["study"].isin(refit.kept)], measure="OR", method="MH")
    assert refit.result.estimate == pytest.approx(direct.estimate, rel=1e-12)
    assert refit.result.notes[0].startswith("risk-of-bias sensitivity analysis: excluding high")


@pytest.mark.parametrize("cell, read", [("Low", "low"), (" some  concerns ", "some concerns"), ("unclear", "some concerns"),
                                        ("", None), (None, None), (float("nan"), None), ("HIGH", "high")])
def test_one_reading_of_a_judgement_cell_serves_grade_and_the_forest_plot(cell, read):
    from pfps_meta.analysis import grade
    from pfps_meta.evidence.extraction import rob_judgement

    assert rob_judgement(cell) == read
    if read is not None:          # GRADE reads the cell as the forest plot does
        assert grade.risk_of_bias_domain([cell], [1.0]) == grade.risk_of_bias_domain([read], [1.0])


def test_refit_prints_its_rule_and_left_out_studies_and_gives_a_frame_strict_json_and_html(rob, caffeine):
    import json

    refit = rb.refit_low_risk_only(caffeine, rob, review="caffeine")
    text = str(refit)
    assert text.startswith("Risk-of-bias sensitivity analysis: low risk of bias only")
    assert "k = 6 of 7 studies kept; left out: Norscafe 1998" in text and "Random-effects model (k = 6" in text
    frame = refit.to_frame()
    assert list(frame.columns) == ["study", "kept", "assessed"]
    assert frame.set_index("study").loc["Norscafe 1998", "kept"] == False  # noqa: E712
    json.dumps(refit.to_dict(), allow_nan=False)
    assert "Norscafe 1998" in refit._repr_html_() and repr(refit) == text


@pytest.mark.parametrize("call, argument", [
    (lambda fit, rob: rb.refit_low_risk_only(fit, pd.DataFrame({"study": ["A"]})), "rob: missing column"),
    (lambda fit, rob: rb.refit_excluding_high(fit, None), "rob: a risk-of-bias table"),
    (lambda fit, rob: rb.refit_low_risk_only("not a fit", rob), "result: a fitted result"),
    (lambda fit, rob: rb.summary(pd.DataFrame({"study": ["A"]})), "judgements: missing column"),
    (lambda fit, rob: rb.summary(rb.forest_frame(rob, review="caffeine"), weights="heavy"), "weights: numbers"),
    (lambda fit, rob: rb.inconsistent_overall(pd.DataFrame({"study": ["A"]})), "rob: missing column"),
])
def test_bad_arguments_are_refused_naming_the_argument(rob, caffeine, call, argument):
    with pytest.raises(InputError, match=argument):
        call(caffeine, rob)


def test_summary_bar_refuses_weights_that_are_not_numbers_naming_weights(rob):
    from pfps_meta.present import rob_plots

    frame = rb.forest_frame(rob, review="caffeine")
    for bad in ("heavy", [1, 2], {"Norscafe 1998": 1.0}):
        with pytest.raises(InputError, match="^weights: "):
            rob_plots.summary_bar(frame, weights=bad)
