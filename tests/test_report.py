"""Plots, tables, the report (deterministic, escaped, atomic) and a real-browser check (the notebooks:
tests/test_notebooks.py)."""

import os
import shutil
import subprocess
import warnings

import matplotlib
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.present import plots
from pfps_meta.cli import main
from pfps_meta.present.tables import to_html, to_markdown
from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def quiet_input_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pm.InputWarning)
        yield


@pytest.mark.parametrize("k", [2, 9, 40])
def test_forest_plot_sizes(k, tmp_path):
    frame = pd.DataFrame({"study": [f"Trial {i}" for i in range(k)],
                          "yi": [(-1) ** i * 0.1 * i for i in range(k)],
                          "vi": [0.05 + 0.01 * i for i in range(k)]})
    res = pm.pool(frame, method="DL")
    fig = plots.forest(res, title=f"k = {k}", favours=("Favours hip", "Favours knee"), mcid=0.5)
    assert isinstance(fig, matplotlib.figure.Figure)
    width, height = fig.get_size_inches()
    assert height > 0.2 * k          # one row per study
    png, svg = plots.save(fig, tmp_path / "forest")
    assert png.stat().st_size > 5000 and svg.read_text().startswith("<?xml")
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "Total (random effects)" in texts and "Heterogeneity" in texts and "Trial 0" in texts


def test_forest_plot_arm_columns_and_funnel():
    res = pm.pool(ROOT / "data" / "examples" / "normand1999.csv", measure="MD")
    fig = plots.forest(res)
    texts = [t.get_text() for t in fig.texts]
    assert "Experimental" in texts and "Control" in texts and "155" in texts
    funnel = plots.funnel(res)
    assert "too few studies" in " ".join(t.get_text() for t in funnel.axes[0].texts)


def test_tables_escape_text():
    frame = pd.DataFrame({"study": ["<script>alert(1)</script>", "a|b"]})
    assert "<script>" not in to_html(frame) and "&lt;script&gt;" in to_html(frame)
    assert "a\\|b" in to_markdown(frame)


def run_report(tmp_path, out):
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert main(["report", "--out", str(out)]) == 0
    finally:
        os.chdir(cwd)


def test_report_is_complete_and_deterministic(tmp_path):
    first = tmp_path / "r1"
    run_report(tmp_path, first)
    snapshot = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    run_report(tmp_path, first)
    html = (first / "index.html").read_text()
    for part in ("Published vs reproduced", "Summary of pooled results", "Summary of findings (GRADE)",
                 "Leave-one-out", "Egger", "Presets that reproduce it", "Methods.", "Data completeness",
                 "Provenance", "SHA-256", "DerSimonian-Laird", "reproduced", "incomplete",
                 "data:image/svg+xml;base64,"):
        assert part in html, part
    assert (first / "report.md").read_text().count("![Forest plot") >= 1
    again = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    assert again.keys() == snapshot.keys()
    for path, content in snapshot.items():
        assert again[path] == content, path
    assert not list(first.rglob(".tmp-*"))


def test_report_escapes_text_from_data(tmp_path):
    data = tmp_path / "evil.csv"
    data.write_text('study,yi,vi\n"<img src=x onerror=alert(1)>",0.1,0.04\nB,0.3,0.05\n')
    spec = tmp_path / "analyses" / "evil.toml"
    spec.parent.mkdir()
    spec.write_text(f'[review]\nid = "evil"\ntitle = "<b>bold</b>"\n[[analyses]]\nid = "a"\n'
                    f'label = "<script>x()</script>"\ndata = "{data}"\n')
    assert main(["report", "--out", str(tmp_path / "out"), str(spec)]) == 0
    html = (tmp_path / "out" / "index.html").read_text()
    assert "<script>x()" not in html and "&lt;script&gt;x()" in html
    assert "<b>bold</b>" not in html


def test_report_renders_in_headless_chromium(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/test.sh installs Debian's chromium)")
        pytest.skip("chromium not installed")
    out = tmp_path / "report"
    run_report(tmp_path, out)
    profile = tmp_path / "profile"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]
    url = (out / "index.html").resolve().as_uri()
    dom = subprocess.run([browser, *flags, "--virtual-time-budget=5000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'data-images-ok="yes"' in dom, dom[:500]
    assert 'data-tables="' in dom and 'data-tables="0"' not in dom
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,2000", url],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000


def test_forest_plot_subgroups_quality_and_common_effect():
    res = pm.pool(ROOT / "data" / "examples" / "bcg.csv", measure="RR")
    fig = plots.forest(res, subgroups="alloc", quality={"Aronson 1948": 6}, show_common=True)
    texts = " ".join(t.get_text() for t in fig.texts)
    for part in ("alternate", "random", "systematic", "Subtotal (95% CI)", "Test for subgroup differences",
                 "Total (common effect)", "PEDro"):
        assert part in texts, part
    assert texts.count("Subtotal") == 3
    assert "?" in texts           # unknown quality scores are marked, not invented


def test_contour_funnel_and_baujat():
    from pfps_meta.analysis import sensitivity

    res = pm.pool(ROOT / "data" / "examples" / "hackshaw1998.csv", measure="OR", method="DL")
    fig = plots.funnel(res, contours=True, filled=sensitivity.trimfill(res))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "p < 0.01" in labels and "p > 0.10" in labels and any(l.startswith("filled") for l in labels)
    fig = plots.baujat(res)
    # labels: at most one per study (the figure code may leave out labels that would overlap)
    assert 1 <= len(fig.axes[0].texts) <= 37


@pytest.fixture(autouse=True)
def _private_report_cache(tmp_path_factory, monkeypatch):
    """The report's simulation cache in a folder of this test session, never the user's."""
    monkeypatch.setenv("PFPS_META_CACHE", str(tmp_path_factory.getbasetemp() / "report-cache"))


def test_reproduce_marks_converted_values_with_rule_and_quote_and_names_the_reconstruction():
    from pfps_meta.analysis.reproduce import RECONSTRUCTION, format_table, reproduce_rows
    from pfps_meta.evidence.specs import load_all, run_analysis

    loaded = load_all([ROOT / "analyses" / "nascimento2018.toml", ROOT / "analyses" / "examples" / "hackshaw1997.toml"])
    results, evidences = [], []
    for spec, evidence in loaded:
        for analysis in spec.analyses:
            results.append(run_analysis(analysis, evidence))
            evidences.append(evidence)
    rows = {row["analysis"]: row for row in reproduce_rows(results, evidences)}
    b2 = rows["nascimento2018/B2"]["converted"]
    assert [item["study"] for item in b2] == ["khayambashi2014"]
    assert b2[0]["rule"].startswith("from t = 3.91: g = -J(34) t sqrt(1/18 + 1/18)")
    assert "postintervention (t=3.91, P<.001)" in b2[0]["quote"] and "Table 3" in b2[0]["location"]
    assert rows["nascimento2018/B1"]["converted"] == [] and rows["nascimento2018/B1"]["trial_list"] == RECONSTRUCTION
    hackshaw = rows["hackshaw1997/main"]
    assert hackshaw["trial_list"] is None and hackshaw["converted"][0]["study"] == "all 37 studies"
    text = format_table(list(rows.values()))
    assert f"trials expected in {RECONSTRUCTION}" in text
    assert "nascimento2018/B2, khayambashi2014, between-group effect: from t = 3.91" in text
    assert 'source: "the WOMAC scores were lower' in text


def test_reproduce_text_shows_both_intervals_at_the_papers_printed_precision_when_it_printed_more_than_two():
    """A risk difference published as 0.012 (0.004 to 0.020) is not shown as 0.01 [0.00, 0.02]; a mean
    difference published to one or two decimals stays at two."""
    from pfps_meta.analysis.reproduce import format_table

    base = {"analysis": "r/rd", "measure": "RD", "k_available": 3, "k_expected": 3, "status": "reproduced",
            "missing_trials": [], "converted": [], "trial_list": None}
    rd = dict(base, published_estimate=0.012, published_ci_low=0.004, published_ci_high=0.02,
              reproduced_estimate=0.01234, reproduced_ci_low=0.00391, reproduced_ci_high=0.02049)
    md = dict(base, analysis="r/md", measure="MD", published_estimate=-1.5, published_ci_low=-2.3,
              published_ci_high=-0.8, reproduced_estimate=-1.504, reproduced_ci_low=-2.296, reproduced_ci_high=-0.8)
    lines = format_table([rd, md]).splitlines()
    assert "0.012 [0.004, 0.020]" in lines[2] and "0.012 [0.004, 0.020]" in lines[2].split("0.012 [0.004, 0.020]", 1)[1]
    assert "-1.50 [-2.30, -0.80]" in lines[3] and "-1.50 [-2.30, -0.80]" in lines[3].split("-1.50 [-2.30, -0.80]", 1)[1]
    from pfps_meta.analysis.reproduce import interval_text

    with pytest.raises(pm.InputError, match="prefix: 'published' or 'reproduced', not 'pub'"):
        interval_text(rd, "pub")


def test_report_of_no_spec_is_refused_in_one_line_before_anything_is_written(tmp_path):
    from pfps_meta.errors import InputError
    from pfps_meta.present.report import build_report

    with pytest.raises(InputError, match="spec_paths: no analysis spec given"):
        build_report([], out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
