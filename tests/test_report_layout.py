"""The bundled report reads on a phone and on a desktop (issue 18 items 4-7): a viewport tag, tables in
scroll containers, figures at full width at 420 px, forest text at >= 80% of the body text at 1280 px, a
table of contents, a three-sentence bottom line first, the PFP status before the other reviews, thin
evidence shown as such, converted values marked, the MCID named, and the Hackshaw example in its own words.

The widths are measured in headless Chromium: the page's own script (report._page) writes what it measured
into attributes of <body>, read back with --dump-dom. Chromium's window is at least 500 px wide, so the
420 px check loads the report in a 420 px iframe of a small harness page."""

import json
import os
import re
import shutil
import subprocess
import warnings

import pytest

import pfps_meta as pm
from tests.conftest import ROOT

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--allow-file-access-from-files"]

HARNESS = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>body{margin:0}
iframe{border:0;width:WIDTHpx;height:3000px}</style></head><body><iframe id="f" src="index.html"></iframe>
<script>document.getElementById('f').addEventListener('load', function () { var inner = this.contentDocument.body;
setTimeout(function () { Array.prototype.forEach.call(inner.attributes, function (a) {
document.body.setAttribute(a.name, a.value); }); }, 200); });</script></body></html>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from pfps_meta.cli import main

    out = tmp_path_factory.mktemp("layout") / "report"
    cwd = os.getcwd()
    os.chdir(ROOT)
    old = os.environ.get("PFPS_META_CACHE")
    os.environ["PFPS_META_CACHE"] = str(tmp_path_factory.getbasetemp() / "report-cache")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pm.PfpsWarning)
            assert main(["report", "--out", str(out)]) == 0
    finally:
        os.chdir(cwd)
        if old is None:
            os.environ.pop("PFPS_META_CACHE", None)
        else:
            os.environ["PFPS_META_CACHE"] = old
    return out


def _browser():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/test.sh installs Debian's chromium)")
        pytest.skip("chromium not installed")
    return browser


def measure(report_dir, width, tmp_path):
    """The attributes the page's script set on <body>, at a viewport ``width`` px wide."""
    page = report_dir / f"harness{width}.html"
    page.write_text(HARNESS.replace("WIDTH", str(width)))
    dom = subprocess.run([_browser(), *FLAGS, f"--user-data-dir={tmp_path / f'profile{width}'}",
                          "--window-size=1400,3000", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=180).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body and "data-viewport" in body.group(1), dom[:300]
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))


@pytest.mark.parametrize("width", [420, 1280])
def test_nothing_is_wider_than_the_viewport_at_420_and_1280_px(report, width, tmp_path):
    got = measure(report, width, tmp_path)
    viewport = int(got["viewport"])
    assert viewport <= width
    assert got["images-ok"] == "yes"
    assert int(got["page-width"]) <= viewport, got            # no sideways scrolling of the page
    assert int(got["widest"]) <= viewport, got                # no element outside a scroll container runs off
    if width == 420:                                         # figures at full width on a phone
        assert int(got["figure-min-width"]) >= viewport - 40, got
    else:                                                    # forest text at least 80% of the body text
        assert float(got["forest-text-ratio"]) >= 0.8, got


def test_every_table_scrolls_in_its_own_container_and_the_page_has_a_viewport(report):
    html = (report / "index.html").read_text()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    tables = html.count("<table")
    assert tables >= 19 and html.count("<div class='scroll'><table") == tables
    assert "data:image/svg+xml;base64," in html and "max-width:100%" in html


def test_bottom_line_and_contents_come_first_and_pfp_status_before_other_reviews(report):
    md = (report / "report.md").read_text()
    first = md.index("## ")
    line = re.search(r"\*\*Bottom line\.\*\* (.*)\n", md).group(1)
    assert md.index("**Bottom line.**") < md.index("**Contents**") < first
    assert len(re.findall(r"[a-z0-9)][.] (?=[A-Z0-9])", line)) == 2 and line.endswith(".")   # three sentences
    assert "not findings" in line
    pfp = md[first:md.index("## Environmental tobacco smoke")]
    assert pfp.index("### Published vs reproduced") < pfp.index("### What is known: published pooled estimates")
    html = (report / "index.html").read_text()
    assert html.index("<nav class='toc'>") < html.index("<h2 ")
    for anchor in re.findall(r'<a href="#([^"]+)"', html):
        assert f'id="{anchor}"' in html, anchor


def test_one_trial_is_not_a_finding_anywhere_in_the_report(report):
    md = (report / "report.md").read_text()
    summary = md[md.index("### Summary of pooled results"):md.index("### Summary of findings (GRADE)")]
    b1 = next(line for line in summary.splitlines() if line.startswith("| Hip + knee vs knee strengthening alone: pain"))
    assert "0.0522" not in b1 and "not shown (1 of 10 expected trials)" in b1
    grade = md[md.index("### Summary of findings (GRADE)"):md.index("**Methods.**")]
    assert "not assessed (1 of 10 expected trials)" in grade and "not assessed (1 of 8 expected trials)" in grade
    assert "Moderate" not in grade
    assert "1 of 10 expected trials (the project's reconstruction of the list); dolak2011: HIP vs QUAD at 4 weeks" in md
    assert md.count("the project's reconstruction of the review's trial list") >= 3


def test_converted_values_mcid_and_rules_are_in_the_text(report):
    md = (report / "report.md").read_text()
    assert "**Converted:** khayambashi2014† (between-group effect): from t = 3.91" in md
    assert "postintervention (t=3.91, P\\<.001)" in md                        # the source's words
    assert "mark -2 and +2 (where the axis reaches them), the minimal clinically important difference" in md
    assert "**Rule:** Risk of bias from PEDro scores" in md


def test_hackshaw_example_speaks_of_exposure_not_pain_and_counts_no_pedro(report):
    md = (report / "report.md").read_text()
    start = md.index("## Environmental tobacco smoke")
    hackshaw = md[start:md.index("\n## ", start + 5)]
    assert "pain" not in hackshaw.lower() and "PEDro" not in hackshaw
    assert "Ratios compare the exposed with the unexposed group" in hackshaw


def test_report_json_holds_the_collected_content(report):
    data = json.loads((report / "report.json").read_text())
    assert {"title", "package", "reviews", "provenance"} <= set(data)
    assert data["reviews"][0]["id"] == "nascimento2018"


def test_published_estimates_figure_uses_readable_names(report):
    svg = (report / "figures" / "published_nascimento2018.svg").read_text()
    assert "Nascimento 2018" in svg and "crd42023451065" not in svg.lower()
