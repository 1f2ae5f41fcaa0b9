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


# ------------------------------------------------------------------------------------------------
# issue 15, item 5: the Python API on bad frames, dtypes, NaN and inf; output targets; typing slips

import io                                                   # noqa: E402
import os                                                   # noqa: E402
import stat                                                 # noqa: E402

import numpy as np                                          # noqa: E402
import pandas as pd                                         # noqa: E402

import pfps_meta as pm                                      # noqa: E402
from pfps_meta.errors import InputError                     # noqa: E402
from pfps_meta.inputs import conversions as cv              # noqa: E402

CELL_POISON = {"nan": np.nan, "inf": np.inf, "none": None, "pd.NA": pd.NA, "text": "abc", "bool": True,
               "complex": 1j, "object": object(), "list": [1, 2], "huge": 1e308}


def _frame(layout):
    text, measure = GOOD[layout]
    return pd.read_csv(io.StringIO(text)), measure


def _frame_cases():
    for layout in GOOD:
        for column in pd.read_csv(io.StringIO(GOOD[layout][0])).columns[1:]:
            for name, value in CELL_POISON.items():
                yield pytest.param(layout, ("cell", column, value), id=f"{layout}-{column}={name}")
            for dtype in ("object-str", "bool", "category", "datetime"):
                yield pytest.param(layout, ("dtype", column, dtype), id=f"{layout}-{column}-as-{dtype}")
        for shape in ("empty", "no-rows", "duplicate-columns", "multiindex-columns", "int-columns", "list",
                      "dict", "ndarray", "none", "series", "string-not-a-file"):
            yield pytest.param(layout, ("frame", shape, None), id=f"{layout}-frame-{shape}")


def _poisoned(layout, change):
    df, measure = _frame(layout)
    kind, what, value = change
    if kind == "cell":
        df = df.astype({what: object})
        df.at[1, what] = value
    elif kind == "dtype":
        converted = {"object-str": df[what].astype(str), "bool": df[what].astype(bool),
                     "category": df[what].astype("category"),
                     "datetime": pd.to_datetime(df[what].astype("int64") if df[what].dtype.kind == "i" else 0),
                     "timedelta": pd.to_timedelta(df[what], unit="s")}[value]
        df[what] = converted
    else:
        df = {"empty": pd.DataFrame(), "no-rows": df.iloc[0:0], "duplicate-columns": pd.concat([df, df.iloc[:, 1:2]], axis=1),
              "multiindex-columns": df.set_axis(pd.MultiIndex.from_arrays([df.columns, df.columns]), axis=1),
              "int-columns": df.set_axis(range(df.shape[1]), axis=1), "list": df.values.tolist(),
              "dict": df.to_dict("list"), "ndarray": df.to_numpy(), "none": None, "series": df.iloc[:, 1],
              "string-not-a-file": "study,yi,vi"}[what]
    return df, measure


def _finite_result(res):
    stats = res.to_dict()
    for key in ("estimate", "se", "ci_low", "ci_high"):
        assert stats[key] is not None and np.isfinite(stats[key]), (key, stats[key])
    assert np.all(np.isfinite(res.studies["yi"])) and np.all(res.studies["vi"] > 0)


@pytest.mark.parametrize("layout, change", list(_frame_cases()))
def test_api_pool_and_escalc_on_a_bad_frame(layout, change):
    """pm.pool and pm.escalc: an InputError or a finite result; never AttributeError, TypeError or NaN."""
    df, measure = _poisoned(layout, change)
    try:
        _finite_result(pm.pool(df, measure=measure))
    except InputError:
        pass
    if measure is not None:
        try:
            table = pm.escalc(df, measure)
        except InputError:
            return
        assert np.all(np.isfinite(table["yi"].astype(float))) and np.all(table["vi"].astype(float) > 0)


BATCH_YI = np.array([[0.1, 0.3, 0.2], [0.5, -0.1, 0.4]])
BATCH_VI = np.array([[0.04, 0.05, 0.06], [0.02, 0.03, 0.05]])
BATCH_BAD = {"nan-one": (np.nan, None), "inf": (np.inf, None), "vi-inf": (None, np.inf), "vi-zero": (None, 0.0),
             "vi-negative": (None, -0.1), "vi-nan": (None, np.nan), "text": ("abc", None), "none-cell": (None, "none"),
             "bool": (True, None), "complex": (1j, None)}
BATCH_SHAPES = {"none": (None, None), "str": ("abc", "def"), "3d": (np.zeros((2, 2, 2)), np.ones((2, 2, 2))),
                "mismatch": (BATCH_YI, BATCH_VI[:, :2]), "scalar": (0.1, 0.04), "dict": ({"a": 1}, {"a": 1}),
                "object": (BATCH_YI.astype(object), BATCH_VI), "list-ragged": ([[0.1, 0.2], [0.3]], [[0.1, 0.1], [0.1]]),
                "frame": (pd.DataFrame(BATCH_YI), pd.DataFrame(BATCH_VI)), "bool-array": (BATCH_YI > 0, BATCH_VI),
                "all-nan-row": (np.vstack([BATCH_YI[:1], np.full((1, 3), np.nan)]), BATCH_VI)}


def _batch_cases():
    for name, (y, v) in BATCH_BAD.items():
        yi, vi = BATCH_YI.astype(object), BATCH_VI.astype(object)
        if y is not None:
            yi[0, 1] = y
        if v is not None:
            vi[0, 1] = None if v == "none" else v
        yield pytest.param(yi, vi, {}, id=f"cell-{name}")
    for name, (yi, vi) in BATCH_SHAPES.items():
        yield pytest.param(yi, vi, {}, id=f"shape-{name}")
    for option, value in (("method", "XX"), ("method", 3), ("level", 95), ("level", np.nan), ("ci_method", None),
                          ("maxiter", -1), ("maxiter", "many")):
        yield pytest.param(BATCH_YI, BATCH_VI, {option: value}, id=f"option-{option}={value}")


@pytest.mark.parametrize("yi, vi, options", list(_batch_cases()))
def test_api_pool_batch_on_bad_arrays(yi, vi, options):
    """pm.pool_batch: an InputError, or finite estimates for every row with a study (k >= 1)."""
    try:
        res = pm.pool_batch(yi, vi, **options)
    except InputError:
        return
    k = np.asarray(res.k)
    for field in ("estimate", "se", "ci_low", "ci_high"):
        values = np.asarray(getattr(res, field), dtype=float)
        assert np.all(np.isfinite(values[k >= 1])), (field, values)


CONVERSION_GOOD = {
    "sd_from_se": (0.3, 20), "sd_from_ci": (3.2, 4.8, 20), "se_from_ci": (-1.0, 2.92), "se_from_p": (3.8, 0.008),
    "se_from_t": (3.8, 2.78), "mean_sd_from_quartiles": (40, 3.0, 2.0, 4.5), "mean_sd_from_range": (40, 3.0, 0.5, 7.0),
    "mean_sd_from_five_numbers": (40, 3.0, 2.0, 4.5, 0.5, 7.0), "sd_change": (2.38, 2.21, 0.68),
    "correlation_from_sds": (2.38, 2.21, 1.8), "combine_arms": (17, 3.0, 1.0, 12, 5.0, 2.0),
    "hedges_g_from_t": (2.1, 20, 22), "hedges_g_from_f": (4.4, 20, 22, 1)}
ARGUMENT_POISON = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "negative": -1.0, "zero": 0.0, "one": 1.0,
                   "ninety-five": 95.0, "text": "3", "none": None, "bool": True, "complex": 1j, "pd.NA": pd.NA,
                   "length-3": [1.0, 2.0, 3.0], "array-with-nan": np.array([1.0, np.nan]), "empty": [], "huge": 1e308}


def _conversion_cases():
    for name, args in CONVERSION_GOOD.items():
        for position in range(len(args)):
            for label, value in ARGUMENT_POISON.items():
                yield pytest.param(name, position, value, id=f"{name}-arg{position}={label}")
    for name, keyword, value in (("sd_from_ci", "level", 95), ("sd_from_ci", "level", "0.95"), ("sd_from_ci", "dist", 3),
                                 ("se_from_ci", "level", 0), ("se_from_ci", "df", np.nan), ("se_from_p", "df", -1),
                                 ("mean_sd_from_quartiles", "mean_method", None),
                                 ("mean_sd_from_five_numbers", "sd_method", "SHI")):
        yield pytest.param(name, keyword, value, id=f"{name}-{keyword}={value}")


@pytest.mark.parametrize("name, position, value", list(_conversion_cases()))
def test_api_conversions_on_bad_arguments(name, position, value):
    """conversions.*: an InputError, or finite numbers with every SD, SE and variance above 0."""
    args, kwargs = list(CONVERSION_GOOD[name]), {}
    if isinstance(position, int):
        args[position] = value
    else:
        kwargs[position] = value
    try:
        result = getattr(cv, name)(*args, **kwargs)
    except InputError:
        return
    if isinstance(result, cv.MeanSD):
        values = {"sd": result.sd} if result.mean is None else {"mean": result.mean, "sd": result.sd}
    elif isinstance(result, cv.Converted):
        values = {"value": result.value}
    else:
        values = dict(zip(("n", "mean", "sd") if len(result) == 4 else ("g", "vi"), result[:-1]))
    for key, got in values.items():
        got = np.asarray(got, dtype=float)
        assert np.all(np.isfinite(got)), (key, got)
        if key in ("sd", "vi", "n") or (key == "value" and name != "correlation_from_sds"):
            assert np.all(got > 0), (key, got)


# --- --out and --plot targets: the contract, and the target as it was

TARGETS = ["device", "pipe", "folder", "symlink-to-input", "symlink-to-pipe", "input-file", "dangling-symlink"]


def _target(root, kind, inputs):
    path = root / "target"
    if kind == "device":
        if os.geteuid() != 0:
            pytest.skip("only root can make a device node")
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    elif kind == "pipe":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "symlink-to-input":
        path.symlink_to(inputs[0])
    elif kind == "symlink-to-pipe":
        os.mkfifo(root / "fifo")
        path.symlink_to(root / "fifo")
    elif kind == "input-file":
        return inputs[-1]
    elif kind == "dangling-symlink":
        path.symlink_to(root / "missing" / "x")
    return path


def _state(root):
    out = {}
    for p in sorted(root.rglob("*")):
        info = os.lstat(p)
        out[p] = (stat.S_IFMT(info.st_mode), p.read_bytes() if stat.S_ISREG(info.st_mode) else os.readlink(p)
                  if stat.S_ISLNK(info.st_mode) else None)
    return out


def _target_cases():
    for command in ("template", "report", "simulate"):
        for kind in TARGETS:
            if command == "report" and kind in ("folder", "dangling-symlink"):
                continue                            # a good folder: the report is written (tests/test_outputs.py)
            yield pytest.param(command, kind, id=f"{command}-{kind}")


@pytest.mark.parametrize("command, kind", list(_target_cases()))
def test_output_targets(tmp_path, capsys, command, kind):
    project = tmp_path / "proj"
    (project / "analyses").mkdir(parents=True)
    (project / "data").mkdir()
    for table in ("trials.csv", "outcomes.csv", "effects.csv", "published.csv"):
        (project / "data" / table).write_bytes((ROOT / "data" / table).read_bytes())
    spec = project / "analyses" / "nascimento2018.toml"
    spec.write_bytes((ROOT / "analyses" / "nascimento2018.toml").read_bytes())
    design = project / "data" / "arms.csv"
    design.write_text("n_exp,n_ctrl\n20,21\n15,14\n30,29\n")
    small = project / "analyses" / "small.toml"
    data = project / "data" / "yi_vi.csv"
    data.write_text(GOOD["yi_vi"][0])
    small.write_text(f'[review]\nid = "r"\n[[analyses]]\nid = "a"\ndata = "{data}"\n')
    inputs = {"template": [project / "data" / "outcomes.csv", spec], "report": [data, small],
              "simulate": [design, design]}[command]
    target = _target(project, kind, inputs)
    before = _state(project)
    argv = {"template": ["template", str(spec), "--out", str(target)],
            "report": ["report", str(small), "--out", str(target)],
            "simulate": ["simulate", "--design", str(design), "--replicates", "10", "--plot", str(target)]}[command]
    code = main(argv)
    _check(capsys, code, False)
    if not (command == "simulate" and kind in ("dangling-symlink", "symlink-to-input")):
        assert code == 2                            # the target itself would be destroyed: refused
    if code == 2:
        assert _state(project) == before
    for p, (mode, _) in before.items():             # whatever happened, nothing changed its type
        if p.exists() or p.is_symlink():
            assert stat.S_IFMT(os.lstat(p).st_mode) == mode, p


# --- typing slips in CSV cells (the parser is being changed elsewhere: only the contract is asserted)

SLIPS = {"unicode-minus": "\u22120.5", "comma-decimal": '"0,5"', "n.r.": "n.r.", "NR": "NR", "percent": "12%",
         "plus-minus": "0.3 \u00b1 0.1", "ascii-plus-minus": "0.3 +/- 0.1", "mean-(sd)": "3.1 (1.2)",
         "en-dash-range": "1.2\u20131.6", "em-dash": "\u2014", "nbsp": "3\u00a01", "asterisk": "3.1*",
         "less-than": "<0.001", "n/a": "n/a", "thousands": '"1,234.5"', "half": "\u00bd"}
# numbers spelled unusually but unambiguously: read silently or refused, either is within the contract
SPELLINGS = {"padded": " 3.1 ", "trailing-dot": "3.", "leading-plus": "+3.1", "full-width": "\uff13",
             "arabic-digits": "\u0663"}


def _slip_cases():
    for layout, columns in (("arm", ("n_exp", "mean_exp", "sd_ctrl")), ("binary", ("events_exp", "n_ctrl")),
                            ("yi_vi", ("yi", "vi")), ("estimate_ci", ("estimate", "ci_high"))):
        text, measure = GOOD[layout]
        header, *rows = text.strip().split("\n")
        for column in (header.split(",").index(name) for name in columns):
            for name, value in {**SLIPS, **SPELLINGS}.items():
                cells = rows[1].split(",")
                cells[column] = value
                body = "\n".join([header, rows[0], ",".join(cells), rows[2]]) + "\n"
                yield pytest.param(body, measure, name in SLIPS, id=f"{layout}-{header.split(',')[column]}={name}")


@pytest.mark.parametrize("body, measure, is_slip", list(_slip_cases()))
def test_typing_slips_in_cells(tmp_path, capsys, body, measure, is_slip):
    """No traceback; exit 0 with a message on stderr (the slip was read, and said so; an unusual spelling
    of a number may be read silently), or exit 2 with one line."""
    path = tmp_path / "in.csv"
    path.write_text(body, encoding="utf-8")
    code = main(["pool", str(path), "--format", "json"] + (["--measure", measure] if measure else []))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if code == 0:
        json.loads(captured.out, parse_constant=lambda name: pytest.fail(f"non-strict JSON: {name}"))
        assert captured.err.strip() or not is_slip, "a typing slip was read without a word"
    else:
        assert code == 2, captured.err
        lines = captured.err.strip().splitlines()
        assert lines and lines[-1].startswith("pfps-meta: error:") and \
            sum(line.startswith("pfps-meta: error:") for line in lines) == 1, captured.err
