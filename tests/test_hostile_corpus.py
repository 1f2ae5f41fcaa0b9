"""A generated corpus of malformed or odd inputs over every command, column and layout (issue 10).

Every case must end in exit 0 with a valid result (strict JSON where JSON is asked for) or exit 2 with
exactly one line on stderr, ``pfps-meta: error: ...``: never a traceback, never exit 1. The cases are
built from a few good inputs by replacing one cell, dropping or duplicating one column, or breaking
one key of a spec; the ids say which.
"""

import itertools
import json

import pytest

from pfps_meta.cli import main
from tests.conftest import ROOT

GOOD = {
    "arm": ("study,n_exp,mean_exp,sd_exp,n_ctrl,mean_ctrl,sd_ctrl\n"
            "A,20,3.1,1.2,21,4.0,1.3\nB,15,2.8,1.0,14,3.9,1.5\nC,30,3.5,1.4,29,4.1,1.1\n", "MD"),
    "arm_printed": ("study,n_exp,median_exp,q1_exp,q3_exp,min_exp,max_exp,n_ctrl,mean_ctrl,se_ctrl,ci_low_ctrl,ci_high_ctrl\n"
                    "A,20,3.0,2.0,4.5,0.5,7.0,21,4.0,0.3,,\nB,15,2.5,1.5,3.5,,,14,3.9,,3.1,4.7\n"
                    "C,30,3.2,2.2,4.4,1.0,8.0,29,4.1,0.25,,\n", "MD"),
    "binary": ("study,events_exp,n_exp,events_ctrl,n_ctrl\nA,4,123,11,139\nB,6,306,29,303\nC,3,231,11,220\n", "RR"),
    "yi_vi": ("study,yi,vi\nA,0.1,0.04\nB,0.3,0.05\nC,0.2,0.06\n", None),
    "yi_sei": ("study,yi,sei\nA,0.1,0.2\nB,0.3,0.22\nC,0.2,0.25\n", None),
    "estimate_ci": ("study,estimate,ci_low,ci_high\nA,1.2,0.9,1.6\nB,1.4,1.0,1.9\nC,1.1,0.8,1.5\n", "OR"),
}
BAD_VALUES = ["", "abc", "-1", "0", "1e308", "-1e308", "1e160", "nan", "inf", "2.5", "1" * 40, "0x10", "1,5"]


def _cell_cases():
    for layout, (text, measure) in GOOD.items():
        header, *rows = text.strip().split("\n")
        columns = header.split(",")
        for column, value in itertools.product(range(1, len(columns)), BAD_VALUES):
            cells = rows[1].split(",")
            cells[column] = value
            body = "\n".join([header, rows[0], ",".join(cells), rows[2]]) + "\n"
            yield pytest.param(body, measure, id=f"{layout}-{columns[column]}={value[:8] or 'empty'}")


def _structure_cases():
    for layout, (text, measure) in GOOD.items():
        header, *rows = text.strip().split("\n")
        columns = header.split(",")
        for drop in range(len(columns)):
            keep = [i for i in range(len(columns)) if i != drop]
            body = "\n".join(",".join(line.split(",")[i] for i in keep) for line in [header, *rows]) + "\n"
            yield pytest.param(body, measure, id=f"{layout}-drop-{columns[drop]}")
        yield pytest.param(header + "," + columns[1] + "\n" + "\n".join(r + ",1" for r in rows) + "\n", measure,
                           id=f"{layout}-duplicate-column")
        yield pytest.param(header + "\n" + rows[0] + "\n", measure, id=f"{layout}-one-study")
        yield pytest.param(header + "\n" + rows[0] + "\n" + rows[0] + "\n", measure, id=f"{layout}-repeated-study")
        yield pytest.param(header + "\n" + rows[0] + ",extra\n", measure, id=f"{layout}-ragged-row")
        yield pytest.param(header + "\n", measure, id=f"{layout}-no-rows")
        yield pytest.param(header + "\n" + '"A,1\n', measure, id=f"{layout}-open-quote")
        for wrong in ("SMD", "RR", "ROM", "RD", "XYZ"):
            if wrong != measure:
                yield pytest.param(text, wrong, id=f"{layout}-measure-{wrong}")


def _check(capsys, code, json_out):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if code == 0:
        if json_out:
            json.loads(captured.out, parse_constant=lambda name: pytest.fail(f"non-strict JSON: {name}"))
        return
    assert code == 2, captured.err
    lines = captured.err.strip().splitlines()
    errors = [line for line in lines if line.startswith("pfps-meta: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], captured.err


@pytest.mark.parametrize("body, measure", list(_cell_cases()) + list(_structure_cases()))
def test_pool_on_a_bad_csv(tmp_path, capsys, body, measure):
    path = tmp_path / "in.csv"
    path.write_text(body)
    args = ["pool", str(path), "--format", "json"] + (["--measure", measure] if measure else [])
    _check(capsys, main(args), True)


SENS_OPTIONS = [["--order", "nope"], ["--subgroup", "study"], ["--moderator", "study"], ["--permutations", "-5"],
                ["--bootstrap", "-1"], ["--mcid", "nan"], ["--level", "1.5"], ["--level", "0"], ["--method", "XX"],
                ["--permutations", "64"], ["--bootstrap", "50"], ["--mcid", "-0.1"], ["--ci-method", "hksj"],
                ["--pi-method", "t_k2"], ["--input-level", "-1"], ["--vtype", "UB"]]


@pytest.mark.parametrize("layout", list(GOOD))
@pytest.mark.parametrize("options", SENS_OPTIONS, ids=lambda o: "_".join(o))
def test_sensitivity_options(tmp_path, capsys, layout, options):
    text, measure = GOOD[layout]
    path = tmp_path / "in.csv"
    path.write_text(text)
    args = ["sensitivity", str(path), "--format", "json", *options] + (["--measure", measure] if measure else [])
    _check(capsys, main(args), True)


SPEC_OK = ('[review]\nid = "r"\n[settings]\nmethod = "DL"\n[[analyses]]\nid = "a"\nlabel = "A"\nmeasure = "MD"\n'
           'data = "{data}"\n')
SPEC_BREAKS = {
    "not-toml": "[review\n", "no-review-id": '[review]\ntitle = "x"\n[[analyses]]\nid = "a"\n',
    "review-not-table": 'review = 3\n', "id-number": '[review]\nid = 5\n[[analyses]]\nid = "a"\n',
    "id-path": '[review]\nid = "../x"\n[[analyses]]\nid = "a"\ndata = "{data}"\n',
    "analysis-id-path": '[review]\nid = "r"\n[[analyses]]\nid = "a/../../b"\ndata = "{data}"\n',
    "no-analyses": '[review]\nid = "r"\n', "analyses-not-array": '[review]\nid = "r"\nanalyses = 3\n',
    "unknown-key": SPEC_OK.replace('label = "A"', 'colour = "red"'),
    "bad-method": SPEC_OK.replace('"DL"', '"XX"'), "level-text": SPEC_OK.replace('method = "DL"', 'level = "high"'),
    "level-negative": SPEC_OK.replace('method = "DL"', 'level = -0.5'),
    "unknown-setting": SPEC_OK.replace('method = "DL"', 'metod = "DL"'),
    "label-number": SPEC_OK.replace('label = "A"', "label = 7"),
    "both-data-and-trials": SPEC_OK + 'trials = [{ trial = "x", exp = "a", ctrl = "b" }]\n',
    "empty-trials": SPEC_OK.replace('data = "{data}"', "trials = []"),
    "trials-not-tables": SPEC_OK.replace('data = "{data}"', "trials = [1, 2]"),
    "missing-data-file": SPEC_OK.replace("{data}", "nope.csv"),
    "data-outside": SPEC_OK.replace("{data}", "../../../../../../etc/passwd"),
    "target-range-reversed": SPEC_OK + "target_range = [10, 0]\n",
    "target-range-zero": SPEC_OK + "target_range = [5, 5]\n",
    "target-range-text": SPEC_OK + 'target_range = ["a", "b"]\n',
    "mcid-text": SPEC_OK + 'mcid = "two"\n', "published-missing": SPEC_OK + 'published = "nope"\n',
    "design-bad": SPEC_OK + 'design = "cohort"\n', "impute-bad": SPEC_OK + 'impute_sd = "guess"\n',
    "duplicate-id": SPEC_OK + '[[analyses]]\nid = "a"\nmeasure = "MD"\ndata = "{data}"\n',
    "non-utf8": None, "directory": "DIR", "ok": SPEC_OK,
}


@pytest.mark.parametrize("command", ["reproduce", "report", "template", "sensitivity", "diff"])
@pytest.mark.parametrize("name", list(SPEC_BREAKS))
def test_commands_on_a_bad_spec(tmp_path, capsys, command, name):
    project = tmp_path / "proj"
    (project / "analyses").mkdir(parents=True)
    (project / "data").mkdir()
    for table in ("trials.csv", "outcomes.csv", "effects.csv", "published.csv"):
        (project / "data" / table).write_bytes((ROOT / "data" / table).read_bytes())
    data = project / "data" / "arm.csv"
    data.write_text(GOOD["arm"][0])
    spec = project / "analyses" / "s.toml"
    text = SPEC_BREAKS[name]
    if text is None:
        spec.write_bytes(b'[review]\nid = "\xff\xfe"\n')
    elif text == "DIR":
        spec.mkdir()
    else:
        spec.write_text(text.replace("{data}", str(data) if name != "data-outside" else "{data}")
                        .replace("../../../../../../etc/passwd", "../../../../../../etc/passwd"))
    args = {"reproduce": ["reproduce", str(spec), "--format", "json"],
            "report": ["report", str(spec), "--out", str(tmp_path / "out")],
            "template": ["template", str(spec)],
            "sensitivity": ["sensitivity", str(spec), "--analysis", "a", "--format", "json"],
            "diff": ["diff", str(spec), "a", "--format", "json"]}[command]
    code = main(args)
    _check(capsys, code, command != "report" and command != "template")
    if name == "ok" and command in ("reproduce", "report", "sensitivity", "diff"):
        assert code == 0
    if name in ("id-path", "analysis-id-path"):
        assert not list(tmp_path.rglob("x_*")) and not list(tmp_path.rglob("b_*"))


@pytest.mark.parametrize("target", ["file", "inside-file", "readonly"])
def test_report_out_paths(tmp_path, capsys, target):
    import os

    spec = tmp_path / "s.toml"
    data = tmp_path / "d.csv"
    data.write_text(GOOD["yi_vi"][0])
    spec.write_text(f'[review]\nid = "r"\n[[analyses]]\nid = "a"\ndata = "{data}"\n')
    out = tmp_path / "out"
    if target == "file":
        out.write_text("x")
    elif target == "inside-file":
        (tmp_path / "f").write_text("x")
        out = tmp_path / "f" / "out"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        os.chmod(locked, 0o500)
        out = locked / "out"
    code = main(["report", str(spec), "--out", str(out)])
    if target == "readonly" and os.geteuid() == 0:
        assert code in (0, 2)              # root may write anywhere
    else:
        assert code == 2
    _check(capsys, code, False)
