"""Bad input: one line naming file, line, row and column and the reason; exit 2; no traceback."""

import subprocess
import sys

import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.cli import main

HEADER = "study,n_exp,mean_exp,sd_exp,n_ctrl,mean_ctrl,sd_ctrl\n"
GOOD = "A,20,3.1,1.2,21,4.0,1.5\nB,15,2.5,1.1,14,3.9,1.3\n"

CASES = {
    "missing_column": ("study,n_exp,mean_exp,sd_exp,n_ctrl,mean_ctrl\nA,20,3.1,1.2,21,4.0\n",
                       None, "missing column 'sd_ctrl'"),
    "non_numeric": (HEADER + GOOD + "C,12,abc,1.0,12,3.0,1.0\n", ("line 4 (row 3)", "'mean_exp'"),
                    "'abc' is not a number"),
    "negative_sd": (HEADER + GOOD + "C,12,2.0,-1.0,12,3.0,1.0\n", ("line 4 (row 3)", "'sd_exp'"),
                    "must be greater than 0"),
    "zero_sd": (HEADER + "A,12,2.0,1.0,12,3.0,0\n" + GOOD.split("\n")[1] + "\n", ("line 2", "'sd_ctrl'"),
                "must be greater than 0"),
    "n_below_2": (HEADER + GOOD + "C,1,2.0,1.0,12,3.0,1.0\n", ("line 4", "'n_exp'"), "below the allowed minimum 2"),
    "fractional_n": (HEADER + GOOD + "C,12.5,2.0,1.0,12,3.0,1.0\n", ("line 4", "'n_exp'"), "not a whole number"),
    "duplicate_study": (HEADER + GOOD + "A,12,2.0,1.0,12,3.0,1.0\n", ("line 4", "'study'"),
                        "study 'A' appears twice (first in row 1)"),
    "empty_file": ("", None, "file is empty"),
    "header_only": (HEADER, None, "no data rows"),
    "ragged_row": (HEADER + GOOD + "C,12,2.0\n", ("line 4",), "row has 3 fields but the header has 7"),
    "missing_value": (HEADER + GOOD + "C,12,,1.0,12,3.0,1.0\n", ("line 4", "'mean_exp'"), "neither mean_exp nor median_exp is given"),
    "vi_not_positive": ("study,yi,vi\nA,0.5,0.1\nB,0.2,0\n", ("line 3", "'vi'"), "must be greater than 0"),
    "ci_reversed": ("study,estimate,ci_low,ci_high\nA,0.5,0.9,0.1\n", ("line 2", "'ci_low'"), "must be below"),
    "unknown_layout": ("study,effect,variance\nA,1,2\n", None, "cannot tell the input layout"),
    "quote_error": (HEADER + 'A,20,3.1,1.2,21,4.0,"1.5\n', None, "malformed CSV"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_reports_one_line_and_exits_2(name, tmp_path, capsys):
    text, where, reason = CASES[name]
    path = tmp_path / f"{name}.csv"
    path.write_text(text)
    status = main(["pool", str(path), "--measure", "MD"] if "yi" not in text and "estimate" not in text
                  and "effect" not in text else ["pool", str(path)])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"pfps-meta: error: {path}")
    assert reason in lines[0]
    for part in where or ():
        assert part in lines[0]
    assert path.read_text() == text        # input never modified


def test_api_raises_input_error_with_location(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + GOOD + "C,12,2.0,-1.0,12,3.0,1.0\n")
    with pytest.raises(pm.InputError) as info:
        pm.pool(path, measure="MD")
    err = info.value
    assert (err.file, err.line, err.row, err.column) == (str(path), 4, 3, "sd_exp")
    assert err.to_dict()["reason"].startswith("-1 must be greater than 0")


def test_dataframe_input_reports_row_position():
    frame = pd.DataFrame({"study": ["a", "b"], "yi": [0.1, 0.2], "vi": [0.1, -0.2]})
    with pytest.raises(pm.InputError, match=r"row 2, column 'vi'"):
        pm.pool(frame)


def test_arm_data_without_measure_is_refused(tmp_path):
    path = tmp_path / "arms.csv"
    path.write_text(HEADER + GOOD)
    with pytest.raises(pm.InputError, match="needs a measure"):
        pm.pool(path)


def test_missing_file_and_no_traceback_from_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pfps_meta.cli", "pool", str(tmp_path / "nope.csv")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"pfps-meta: error: {tmp_path / 'nope.csv'}: file not found"
