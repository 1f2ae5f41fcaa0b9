"""Writes the notebooks in this folder (without outputs). Run: python notebooks/make_notebooks.py"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent


def notebook(cells):
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbf.v4.new_markdown_cell(c[1]) if c[0] == "md" else nbf.v4.new_code_cell(c[1]) for c in cells]
    return nb


reproduce = notebook([
    ("md", "# Reproducing Nascimento et al. 2018 (and a complete worked example)\n\n"
           "The student's path: load the analysis definitions, see published and reproduced estimates side by "
           "side, and see exactly which trials still lack data. Run from the repository root or from "
           "`notebooks/`."),
    ("code", "import os\nfrom pathlib import Path\nif Path.cwd().name == 'notebooks':\n    os.chdir('..')\n"
             "import warnings\nimport pandas as pd\nimport pfps_meta as pm\n"
             "from pfps_meta.analyses import load_all, run_analysis, default_spec_paths\n"
             "from pfps_meta.reproduce import reproduce_table"),
    ("md", "## Published vs reproduced\n\n`reproduced` means equal at the precision the paper printed; "
           "`incomplete` names the trials whose post-intervention numbers are not yet in `data/`."),
    ("code", "with warnings.catch_warnings():\n    warnings.simplefilter('ignore', pm.InputWarning)\n"
             "    results = [run_analysis(a, ev) for spec, ev in load_all(default_spec_paths()) for a in spec.analyses]\n"
             "table = reproduce_table(results)\n"
             "table[['analysis', 'measure', 'published_estimate', 'published_ci_low', 'published_ci_high',\n"
             "       'reproduced_estimate', 'reproduced_ci_low', 'reproduced_ci_high', 'k_available', 'k_expected', 'status']]"),
    ("md", "## What is missing for Nascimento 2018\n\nEvery trial the analyses expect, and why it cannot be pooled yet."),
    ("code", "missing = [(r.analysis.key, m['trial'], m['reason']) for r in results for m in r.studies.missing]\n"
             "pd.DataFrame(missing, columns=['analysis', 'trial', 'reason'])"),
    ("md", "## The complete worked reproduction: Hackshaw et al. 1997\n\n37 studies of passive smoking and lung "
           "cancer; the paper reports an excess risk of 24% (95% CI 13% to 36%)."),
    ("code", "hack = next(r for r in results if r.analysis.key == 'hackshaw1997/main')\nprint(hack.result)"),
    ("code", "from pfps_meta import plots\nfig = plots.forest(hack.result, title=hack.analysis.label, "
             "favours=('Lower risk', 'Higher risk'))"),
    ("md", "## The same data under other conventions\n\nREML instead of DerSimonian-Laird moves the upper CI "
           "bound: conventions matter when reproducing a paper."),
    ("code", "import math\nrows = []\nfor method in ['DL', 'REML', 'PM']:\n    for ci in ['wald', 'hksj']:\n"
             "        r = run_analysis(hack.analysis, None, settings={'method': method, 'ci': ci}).result\n"
             "        rows.append({'method': method, 'ci': ci, 'OR': math.exp(r.estimate),\n"
             "                     'ci_low': math.exp(r.ci_low), 'ci_high': math.exp(r.ci_high)})\n"
             "pd.DataFrame(rows).round(3)"),
    ("md", "## Which conventions reproduce the paper?\n\nThe same question, asked of four named presets "
           "(metafor, RevMan 5, RevMan Web 2025, R meta); `pfps-meta reproduce --presets` prints the same."),
    ("code", "from pfps_meta.reproduce import preset_statuses\n"
             "pd.DataFrame({name: p['status'] for name, p in preset_statuses(hack.analysis, None).items()}, index=['status'])"),
    ("code", "from pfps_meta.presets import preset_diff\n"
             "preset_diff(hack.analysis, None, 'revman5', 'metafor').head(22)"),
])

pool_own = notebook([
    ("md", "# Pool your own trials: from a CSV to a forest plot\n\nThe researcher's path. The example file is "
           "`data/examples/normand1999.csv` (length of hospital stay, specialist vs routine stroke care); use "
           "any CSV with the columns `study, n_exp, mean_exp, sd_exp, n_ctrl, mean_ctrl, sd_ctrl`."),
    ("code", "import os\nfrom pathlib import Path\nif Path.cwd().name == 'notebooks':\n    os.chdir('..')\n"
             "import pandas as pd\nimport pfps_meta as pm\nfrom pfps_meta import plots"),
    ("code", "trials = pd.read_csv('data/examples/normand1999.csv')\ntrials.head()"),
    ("md", "Effect sizes first (metafor's `escalc`): yi is experimental minus control."),
    ("code", "pm.escalc(trials, 'MD')[['study', 'yi', 'vi']]"),
    ("md", "Pool with REML and the Hartung-Knapp-Sidik-Jonkman CI; the result prints like metafor's."),
    ("code", "res = pm.pool(trials, measure='MD', method='REML', ci='hksj')\nprint(res)"),
    ("code", "res.to_frame()"),
    ("md", "A RevMan-style forest plot, saved as PNG and SVG."),
    ("code", "fig = plots.forest(res, title='Length of stay (days)', favours=('Favours specialist care', "
             "'Favours routine care'), xlabel='Mean difference (days)')\n"
             "written = plots.save(fig, Path('reports') / 'figures' / 'notebook_normand1999_forest')\n[str(p) for p in written]"),
    ("md", "How robust is it? Leave-one-out, influence, and small-study tests (with a warning: k = 9 < 10)."),
    ("code", "from pfps_meta import sensitivity\nsensitivity.leave_one_out(res)[['study', 'estimate', 'ci_low', 'ci_high', 'tau2', 'i2']]"),
    ("code", "import warnings\nwith warnings.catch_warnings(record=True) as caught:\n"
             "    warnings.simplefilter('always')\n    egger = sensitivity.egger(res)\n"
             "print(egger['classic'])\nprint(egger['mixed'])\nprint([str(w.message) for w in caught])"),
    ("md", "Subgroups are drawn with their own diamonds and the test for subgroup differences:"),
    ("code", "bcg = pm.pool('data/examples/bcg.csv', measure='RR')\n"
             "fig = plots.forest(bcg, subgroups='alloc', title='BCG vaccine by allocation', "
             "favours=('Favours vaccine', 'Favours control'))"),
    ("md", "Bad input is refused with its location, never silently dropped:"),
    ("code", "bad = trials.copy()\nbad.loc[2, 'sd_exp'] = -1\ntry:\n    pm.pool(bad, measure='MD')\n"
             "except pm.InputError as err:\n    print(err)"),
])

nbf.write(reproduce, HERE / "01_reproduce_nascimento2018.ipynb")
nbf.write(pool_own, HERE / "02_pool_your_own_trials.ipynb")
print("wrote 2 notebooks")
