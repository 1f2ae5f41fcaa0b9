"""The report leads with the patellofemoral review (issue 9), and is safe with hostile labels and atomic
as a whole (issue 10)."""

import os
import re
import xml.dom.minidom
from pathlib import Path

import pytest

from pfps_meta.present import report as report_module
from pfps_meta.cli import main
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    from tests.test_report import run_report

    out = tmp_path_factory.mktemp("rep") / "out"
    run_report(None, out)
    return out


def test_pfp_review_comes_first_with_what_is_known(full_report):
    md = (full_report / "report.md").read_text()
    assert md.index("## Hip and knee strengthening") < md.index("## Environmental tobacco smoke")
    # the PFP status (published vs reproduced) comes before the other reviews' estimates (issue 18 item 5)
    known = md.index("### What is known: published pooled estimates")
    assert md.index("### Published vs reproduced") < known
    for text in ("Rogan et al. J Strength Cond Res 2019", "CRD42023451065", "Manojlović", "Ji et al. 2023",
                 "search.pedro.org.au/search-results/record-detail/51308", "-1.29 (-1.98 to -0.59)"):
        assert text in md, text
    assert (full_report / "figures" / "published_nascimento2018.svg").stat().st_size > 5000


def test_missing_trials_get_an_extraction_todo_and_dolak_its_scenarios(full_report):
    md = (full_report / "report.md").read_text()
    b1 = md[md.index("### Hip + knee vs knee strengthening alone: pain"):]
    assert "Extraction to-do:" in b1 and "ferber2015" in b1 and "HIP: mean, sd" in b1
    assert "Arm-size scenarios:" in b1
    for row in ("14/13", "13/13", "17/16", "-1.70 \\[-3.42, 0.02\\]", "-1.70 \\[-3.25, -0.15\\]"):
        assert row in b1, row
    assert "inferred" in b1


def _spec(tmp_path, label, study):
    data = tmp_path / "evil.csv"
    data.write_text(f'study,yi,vi\n"{study}",0.1,0.04\nB,0.3,0.05\nC,0.2,0.06\n')
    spec = tmp_path / "analyses" / "evil.toml"
    spec.parent.mkdir(exist_ok=True)
    spec.write_text(f'[review]\nid = "evil"\ntitle = "## heading from data"\n[[analyses]]\nid = "a"\n'
                    f"label = '''{label}'''\ndata = \"{data}\"\n")
    return spec


def test_hostile_labels_stay_inert_everywhere(tmp_path):
    label = "<script>alert(1)</script> [x](javascript:alert(1)) $\\badcommand A^B $x^$"
    spec = _spec(tmp_path, label, "Lee $\\badcommand \x1b[31mred")
    out = tmp_path / "out"
    assert main(["report", "--out", str(out), str(spec)]) == 0
    md = (out / "report.md").read_text()
    # every markup character from data is backslash-escaped (CommonMark then shows it literally)
    assert not re.search(r"(?<!\\)<script", md) and not re.search(r"(?<!\\)\]\(javascript", md)
    assert "\\<script\\>" in md and "\x1b" not in md
    assert "\n## heading from data" not in md and "## \\#\\# heading from data" in md
    html_text = (out / "index.html").read_text()
    assert "<script>alert" not in html_text and "\x1b" not in html_text
    for svg in (out / "figures").glob("*.svg"):
        xml.dom.minidom.parse(str(svg))            # well-formed despite the control character
    assert any((out / "figures").glob("*.svg"))


def test_unsafe_ids_are_refused(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text('[review]\nid = "../../x"\n[[analyses]]\nid = "a"\ndata = "x.csv"\n')
    assert main(["report", "--out", str(tmp_path / "out"), str(spec)]) == 2
    assert "[review] id must be" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not list(tmp_path.parent.glob("x_*"))


def test_report_keeps_other_files_and_follows_the_umask(tmp_path):
    spec = _spec(tmp_path, "fine", "A")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".gitkeep").write_text("")
    old = os.umask(0o027)
    try:
        assert main(["report", "--out", str(out), str(spec)]) == 0
    finally:
        os.umask(old)
    assert (out / ".gitkeep").exists() and (out / "index.html").exists()
    assert (out / "index.html").stat().st_mode & 0o777 == 0o640
    assert not list(tmp_path.glob(".out.build-*"))


def test_a_failed_or_interrupted_report_leaves_the_old_one_intact(tmp_path, monkeypatch):
    spec = _spec(tmp_path, "first", "A")
    out = tmp_path / "out"
    assert main(["report", "--out", str(out), str(spec)]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    spec.write_text(spec.read_text().replace("first", "second"))

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_module, "_sensitivity_section", stop)     # dies after figures were written
    assert main(["report", "--out", str(out), str(spec)]) == 130
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not list(tmp_path.glob(".out.build-*"))


def test_out_that_is_a_file_is_one_line(tmp_path, capsys):
    spec = _spec(tmp_path, "x", "A")
    target = tmp_path / "afile"
    target.write_text("keep me")
    assert main(["report", "--out", str(target), str(spec)]) == 2
    assert "names a file" in capsys.readouterr().err and target.read_text() == "keep me"


def test_warnings_print_once_per_run(tmp_path, capsys):
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert main(["reproduce", "--presets", str(Path("analyses") / "examples" / "hackshaw1997.toml")]) == 0
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err.splitlines()
    cardenas = [line for line in err if "Cardenas 1997" in line]
    assert len(cardenas) == 1


def test_a_killed_report_leaves_one_whole_report(tmp_path):
    """SIGKILL mid-run: --out holds the whole old report or the whole new one, never a mix."""
    import signal
    import subprocess
    import sys
    import time

    spec = _spec(tmp_path, "old label", "A")
    out = tmp_path / "out"
    assert main(["report", "--out", str(out), str(spec)]) == 0
    old = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    spec.write_text(spec.read_text().replace("old label", "new label"))
    for delay in (0.3, 0.9, 1.6):
        proc = subprocess.Popen([sys.executable, "-m", "pfps_meta.cli", "report", "--out", str(out), str(spec)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        md = now[Path("report.md")].decode()
        if "new label" in md:
            assert all(b"old label" not in content for content in now.values())
        else:
            assert now == old
    assert main(["report", "--out", str(out), str(spec)]) == 0
    assert not list(tmp_path.glob(".out.build-*"))          # what the killed runs left is cleaned up


def test_published_sources_are_links_and_nothing_else_is(full_report):
    html = (full_report / "index.html").read_text()
    assert '<a href="http://search.pedro.org.au/search-results/record-detail/58898">search.pedro.org.au</a>' in html
    from pfps_meta.present.tables import html_links

    assert "<a" not in html_links("javascript:alert(1)") and "<a" not in html_links('https://x.org/"onmouseover=1')


def test_report_shows_the_multilevel_and_network_models_and_the_honest_pfp_status(tmp_path):
    from pfps_meta.cli import main

    out = tmp_path / "report"
    assert main(["report", "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    # the worked examples, with the figures metafor and clubSandwich give
    assert "## Modified school calendars and achievement: a three-level meta-analysis" in md
    assert "intrcpt    0.1847  0.0846" in md and "9.86" in md
    assert "## Glucose-lowering drugs added to other therapy: a network meta-analysis of HbA1c" in md
    assert "metformin        -1.1284   0.1494" in md and "A ranking is not an effect" in md
    # the PFP network and dependent-effect analyses say they are not fitted, and what each arm lacks
    assert "Not fitted: no trial has n, mean and SD for two or more arms." in md
    assert "| fukuda2010 | CG | no\\_training |" in md
    assert "pfps-meta template analyses/pfp\\_network.toml" in md
    # the Bayesian block of the normand1999 example: the quadrature's tau median 0.8039 [0.5304, 1.2426]
    assert "#### Bayesian random-effects analysis beside the frequentist one" in md
    assert "0.804 \\[0.530, 1.243\\]" in md
    for stem in ("multilevel_konstantopoulos2011_three_level", "network_senn2013_network_reml_graph",
                 "network_senn2013_network_reml_league"):
        assert (out / "figures" / f"{stem}.svg").exists()


def test_a_bayesian_analysis_that_cannot_be_computed_says_so_in_the_report(tmp_path, monkeypatch):
    """B2 has one trial with data; with Rhodes' heavy-tailed prior and a flat prior on mu its posterior of
    tau does not integrate: the report says so where the Bayesian block would stand, and is written."""
    import shutil

    from pfps_meta.cli import main

    work = tmp_path / "repo"
    for folder in ("data", "analyses"):
        shutil.copytree(ROOT / folder, work / folder)
    (work / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    spec = work / "analyses" / "nascimento2018.toml"
    text = spec.read_text()
    anchor = 'published = "nascimento2018_B2"\n'
    assert text.count(anchor) == 1
    spec.write_text(text.replace(anchor, anchor + 'bayes = { tau_prior = "rhodes2015", outcome = "pain_function", '
                                 'comparison = "non_pharmacological" }\n'))
    monkeypatch.chdir(work)
    assert main(["report", "--out", str(tmp_path / "out"), str(spec)]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "#### Bayesian random-effects analysis beside the frequentist one" in md
    assert "**Status:** Not computed: " in md and "does not integrate" in md


@pytest.fixture(autouse=True)
def _private_report_cache(tmp_path_factory, monkeypatch):
    """The report's simulation cache in a folder of this test session, never the user's."""
    monkeypatch.setenv("PFPS_META_CACHE", str(tmp_path_factory.getbasetemp() / "report-cache"))


def test_caffeine_worked_example_shows_risk_of_bias_summary_refits_and_mh_leave_one_out(full_report):
    """The RoB 2 worked example (the Cochrane practice review's fictitious caffeine studies): the weighted
    summary bar chart, the low-risk-only and excluding-high re-fits (Norscafe 1998 is the one study at high
    risk: 1.17 [0.71, 1.91] without it, as its leave-one-out row), and the MH leave-one-out."""
    html = (full_report / "index.html").read_text()
    body = html
    start = body.index("Headache, caffeinated vs decaffeinated coffee (OR, Mantel-Haenszel)</h3>")
    section = body[start:body.index("Environmental tobacco smoke", start)]
    assert "Risk-of-bias summary (RoB 2, by weight)" in section
    assert (full_report / "figures" / "rob_caffeine_headache.svg").is_file()
    assert "Low risk of bias only" in section and "Excluding high risk of bias" in section
    assert section.count("1.17 [0.71, 1.91]") == 3          # two re-fits and the leave-one-out row
    assert "Leave-one-out:" in section and "not run: leave-one-out" not in section
