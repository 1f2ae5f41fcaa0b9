"""The README's Python block runs as written, from the repository root, and prints what it promises."""

import contextlib
import io
import os
import warnings
from pathlib import Path

import matplotlib

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
