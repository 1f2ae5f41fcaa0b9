"""The README's Python block runs as written, from the repository root, and prints what it promises."""

import contextlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_block_runs_and_shows_the_documented_figures(monkeypatch):
    matplotlib.use("Agg")
    text = (ROOT / "README.md").read_text()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(ROOT)
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    out = shown.getvalue()
    assert "Random-effects model (k = 9" in out                         # normand1999
    assert "intrcpt    0.1847  0.0846" in out                            # konstantopoulos2011, rma.mv
    assert "CR2" in out and "9.86" in out                                # clubSandwich CR2 by district
    assert "metformin        -1.1284   0.1494" in out                    # senn2013, REML
    assert os.getcwd() == str(ROOT)


def readme_commands():
    """Every ``pfps-meta ...`` command of the README's indented examples (continuation lines joined, a
    trailing ``# comment`` removed), in the README's order."""
    commands, current = [], None
    for line in (ROOT / "README.md").read_text().splitlines():
        if current is None and not line.startswith("    pfps-meta "):
            continue
        current = line.strip() if current is None else f"{current} {line.strip()}"
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        commands.append(current.split("  #")[0].split(" # ")[0].strip())
        current = None
    return commands


@pytest.fixture(scope="module")
def readme_workdir(tmp_path_factory):
    """A copy of what the README's commands read (data/, analyses/, tests/fixtures/), so files the examples
    write (sheet.csv, reports/, figures) land outside the repository."""
    work = tmp_path_factory.mktemp("readme")
    for folder in ("data", "analyses", "tests/fixtures"):
        shutil.copytree(ROOT / folder, work / folder)
    return work


def test_readme_lists_shell_examples():
    commands = readme_commands()
    assert len(commands) >= 15 and commands[0].startswith("pfps-meta ")


@pytest.mark.parametrize("command", readme_commands())
def test_readme_shell_example_runs_as_written(command, readme_workdir):
    """Each example exits 0 and shows something; a ``--format json`` one prints strict JSON. They run in
    the README's order in one folder (the template example writes the sheet the next one reads)."""
    argv = shlex.split(command)[1:]
    result = subprocess.run([sys.executable, "-m", "pfps_meta.cli", *argv], cwd=readme_workdir,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr
    shown = result.stdout + result.stderr
    assert shown.strip(), command
    if "--format json" in command:
        json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{command}: {name} in JSON"))
