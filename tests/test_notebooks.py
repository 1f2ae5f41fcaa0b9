"""The notebooks run, and what their key cells show is what the command line says about the same data.

Each notebook is executed once per test session (in a copy of data/ and analyses/), and its outputs are
then read as a reader would: the printed text and the plain-text form of each table.
"""

import contextlib
import io
import json
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from pfps_meta.cli import main
from tests.conftest import ROOT

NOTEBOOKS = ("01_reproduce_nascimento2018.ipynb", "02_pool_your_own_trials.ipynb",
             "03_from_trial_paper_to_pooled_estimate.ipynb")

# What each notebook must show (published or metafor/clubSandwich figures, to the digits printed)
NOTEBOOK_SHOWS = {
    "02_pool_your_own_trials.ipynb": (
        # konstantopoulos2011, rma.mv(yi, vi, random = ~ 1 | district/study): 0.184713 (SE 0.084556)
        "intrcpt    0.1847  0.0846", "sigma^2.1  0.0651", "sigma^2.2  0.0327",
        # assink2016 with vcalc(rho = 0.6), clubSandwich CR2: SE 0.096972, df 14.533
        "CR2", "0.3678    0.0970", "14.53",
        # senn2013 against placebo: common effect metformin -1.1140 (SE 0.0596); REML -1.1284 (SE 0.1494)
        "metformin        -1.1140   0.0596", "metformin        -1.1284   0.1494", "A ranking is not an effect",
        # three small trials: REML + HKSJ (metafor, test="knha") -1.0535 [-2.7054, 0.5984]; Bayesian with the
        # Rhodes 2015 prior, mu median -1.0024 (tests/fixtures/bayes/three_trials_rhodes.json, R quadrature)
        "-2.7054     0.5984", "rhodes2015 (pain_function, non_pharmacological)", "median      0.2524     -1.0024",
        "Bayes, Rhodes: -1.00 [-1.79, -0.32]",
    ),
}


def _execute(name, root):
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(root / "notebooks")}}).execute()
    return nb


@pytest.fixture(scope="session")
def executed(tmp_path_factory):
    """name -> the executed notebook (run from a copy of the repository's data/ and analyses/)."""
    root = tmp_path_factory.mktemp("notebook_repo")
    for folder in ("data", "analyses"):
        shutil.copytree(ROOT / folder, root / folder)
    (root / "notebooks").mkdir()
    return {name: _execute(name, root) for name in NOTEBOOKS}


def _outputs(nb):
    """One list per code cell: (output type, text shown) for each of its outputs."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            cells.append([(o.output_type, str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")))
                          for o in cell.outputs])
    return cells


def _shown(nb):
    return "\n".join(text for cell in _outputs(nb) for _, text in cell)


def _cli_json(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(list(argv)) == 0
    return json.loads(out.getvalue())


def _last_column(table_text, header):
    """The values of the last column of a printed DataFrame whose header line ends with ``header``
    (pandas prints a wide frame in blocks; the block with that header is read)."""
    lines = table_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() and line.split()[-1] == header)
    values = []
    for line in lines[start + 1:]:
        parts = line.split()
        if not parts or not parts[0].isdigit():
            break
        values.append(parts[-1])
    return values


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_without_errors_and_shows_its_figures(executed, name):
    outputs = [o for cell in _outputs(executed[name]) for o in cell]
    assert not [text for kind, text in outputs if kind == "error"]
    for expected in NOTEBOOK_SHOWS.get(name, ()):
        assert expected in _shown(executed[name]), f"{name} does not show {expected!r}"


def test_notebook01_reproduce_table_matches_the_command_line(executed):
    cells = _outputs(executed["01_reproduce_nascimento2018.ipynb"])
    table = next(text for cell in cells for kind, text in cell if kind == "execute_result" and "status" in text)
    cli = _cli_json("reproduce", "--format", "json")
    assert _last_column(table, "status") == [row["status"] for row in cli]


def test_notebook01_preset_cell_agrees_with_reproduce_presets(executed):
    """The "which preset reproduces it?" cell once said no_target for all four presets, while
    ``pfps-meta reproduce --presets`` said revman5: reproduced."""
    cells = _outputs(executed["01_reproduce_nascimento2018.ipynb"])
    shown = next(text for cell in cells for kind, text in cell if text.lstrip().startswith("metafor")
                 and "status" in text)
    header, status = shown.splitlines()[:2]
    from_notebook = dict(zip(header.split(), status.split()[1:]))
    cli = next(row for row in _cli_json("reproduce", "--presets", "--format", "json")
               if row["analysis"] == "hackshaw1997/main")
    assert from_notebook == {name: p["status"] for name, p in cli["presets"].items()}
    assert from_notebook["revman5"] == "reproduced"


def test_notebook01_shows_each_data_warning_once_with_a_relative_path(executed):
    nb = executed["01_reproduce_nascimento2018.ipynb"]
    outputs = [o for cell in _outputs(nb) for o in cell]
    assert not [text for kind, text in outputs if kind == "stream" and "Warning" in text]
    shown = _shown(nb)
    assert shown.count("note: data/examples/hackshaw1998.csv, line 5 (row 4) ('Cardenas 1997')") == 1
    assert shown.count("note: data/examples/hackshaw1998.csv, line 13 (row 12) ('Wu 1985')") == 1
    assert "note: /" not in shown
