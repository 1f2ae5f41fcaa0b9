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
             "from pfps_meta.evidence.specs import load_all, run_analysis, default_spec_paths\n"
             "from pfps_meta.analysis.reproduce import reproduce_table"),
    ("md", "## Published vs reproduced\n\n`reproduced` means equal at the precision the paper printed; "
           "`incomplete` names the trials whose post-intervention numbers are not yet in `data/`."),
    ("code", "# the data's warnings (e.g. a CI printed asymmetric) are collected and shown once, below the table\n"
             "with warnings.catch_warnings(record=True) as caught:\n    warnings.simplefilter('always', pm.InputWarning)\n"
             "    loaded = load_all(default_spec_paths())\n"
             "    results = [run_analysis(a, ev) for spec, ev in loaded for a in spec.analyses]\n"
             "evidence_of = {a.key: ev for spec, ev in loaded for a in spec.analyses}\n"
             "for message in dict.fromkeys(str(w.message) for w in caught):\n"
             "    print('note:', message.replace(str(Path.cwd()) + os.sep, ''))   # paths relative to the repository\n"
             "# shown once above; the later cells re-run the same data\n"
             "warnings.filterwarnings('ignore', category=pm.InputWarning)\n"
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
             "        r = run_analysis(hack.analysis, evidence_of[hack.analysis.key], settings={'method': method, 'ci': ci}).result\n"
             "        rows.append({'method': method, 'ci': ci, 'OR': math.exp(r.estimate),\n"
             "                     'ci_low': math.exp(r.ci_low), 'ci_high': math.exp(r.ci_high)})\n"
             "pd.DataFrame(rows).round(3)"),
    ("md", "## Which conventions reproduce the paper?\n\nThe same question, asked of four named presets "
           "(metafor, RevMan 5, RevMan Web 2025, R meta); `pfps-meta reproduce --presets` prints the same."),
    ("code", "from pfps_meta.analysis.reproduce import preset_statuses\n"
             "pd.DataFrame({name: p['status'] for name, p in preset_statuses(hack.analysis, evidence_of[hack.analysis.key]).items()},\n"
             "             index=['status'])"),
    ("code", "from pfps_meta.analysis.presets import preset_diff\n"
             "preset_diff(hack.analysis, evidence_of[hack.analysis.key], 'revman5', 'metafor').head(22)"),
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
    ("md", "What a metafor user reaches for next: BLUPs of each study's true effect, fit statistics, and a "
           "meta-regression with predictions and a Wald test (metafor's blup, fitstats, predict, anova)."),
    ("code", "from pfps_meta import diagnostics\nfrom pfps_meta.models.metareg import meta_regression\n"
             "print(diagnostics.blup(res).round(2).head())\n"
             "print({name: round(res.stats[name], 3) for name in ('loglik', 'aic', 'bic', 'tau2_se')})\n"
             "bcg_table = pm.escalc(pd.read_csv('data/examples/bcg.csv'), 'RR')\n"
             "fit = meta_regression(bcg_table['yi'], bcg_table['vi'], bcg_table['ablat'], names=['ablat'])\n"
             "print(fit.predict([[20], [40], [60]]).round(3))\nprint(fit.anova(btt=[1]))"),
    ("md", "Can I trust this method for a meta-analysis like mine? Simulate meta-analyses of the same shape "
           "(here the normand1999 arm sizes, on the SMD scale) and see how often each method's 95% CI covers the "
           "truth as heterogeneity grows."),
    ("code", "from pfps_meta.analysis.simulate import Design, simulate\n"
             "design = Design.from_arm_sizes(trials['n_exp'], trials['n_ctrl'], label='normand1999 arm sizes')\n"
             "sim = simulate(design, mu=0.5, tau2=(0, 0.1, 0.3), replicates=500, methods=('DL', 'REML'), "
             "ci_methods=('wald', 'hksj'))\n"
             "sim.coverage_table()"),
    ("md", "## Three small trials: a Bayesian analysis beside REML + HKSJ\n\n"
           "With k = 3, tau² is barely estimable: the HKSJ interval is very wide and a Wald interval too narrow. "
           "The Cochrane Scientific Committee suggests adding a Bayesian analysis with a published prior for "
           "tau. For pain or function under a non-pharmacological intervention on the SMD scale that is Rhodes "
           "2015 (Table 3): log(tau²) ~ t5(-3.02, 2.27). The posterior is computed exactly (quadrature over log "
           "tau, no MCMC). The three SMDs below are a small example: -1.10, -0.45 and -1.80 with SEs 0.40, 0.35 "
           "and 0.50."),
    ("code", "small = pd.DataFrame({'study': ['A', 'B', 'C'], 'yi': [-1.10, -0.45, -1.80], 'sei': [0.40, 0.35, 0.50]})\n"
             "hksj = pm.pool(small, method='REML', ci='hksj')\nprint(hksj)"),
    ("code", "post = pm.bayes(yi=small['yi'], vi=small['sei'] ** 2, labels=small['study'], measure='SMD',\n"
             "                tau_prior='rhodes2015', outcome='pain_function', comparison='non_pharmacological')\n"
             "print(post)"),
    ("md", "Side by side, with the posterior probability that the average effect and a new trial's effect are "
           "below an MCID of -0.5 SD:"),
    ("code", "s = post.summary\n"
             "print(f\"REML + HKSJ:   {hksj.estimate:.2f} [{hksj.ci_low:.2f}, {hksj.ci_high:.2f}], \"\n"
             "      f\"prediction [{hksj.stats['pi_low']:.2f}, {hksj.stats['pi_high']:.2f}]\")\n"
             "print(f\"Bayes, Rhodes: {s.loc['median', 'mu']:.2f} [{s.loc['lower', 'mu']:.2f}, {s.loc['upper', 'mu']:.2f}], \"\n"
             "      f\"prediction [{s.loc['lower', 'theta_new']:.2f}, {s.loc['upper', 'theta_new']:.2f}]\")\n"
             "print(f\"P(mu < -0.5) = {post.prob('mu', below=-0.5):.2f}; \"\n"
             "      f\"P(theta_new < -0.5) = {post.prob('theta_new', below=-0.5):.2f}\")\n"
             "fig = plots.tau_posterior(post)"),
    ("md", "The credible interval is narrower than HKSJ's because the prior says that heterogeneity as large as "
           "HKSJ allows is rare for such outcomes. Whether that helps depends on the prior being right: "
           "`simulate(..., methods=['REML', 'bayes:half-normal:0.5'])` scores its coverage for a design."),
    ("md", "## Several effects per study: multilevel models (metafor's `rma.mv`)\n\n"
           "The patellofemoral trials report pain on several scales and at several timepoints, and share arms. "
           "Pooling such rows as if independent is the unit-of-analysis error. A public example with the same "
           "shape: 56 studies of a modified school calendar nested in 11 districts (konstantopoulos2011). "
           "`levels=('district', 'study')` is metafor's `random = ~ 1 | district/study`."),
    ("code", "schools = pd.read_csv('data/examples/konstantopoulos2011.csv')\n"
             "three_level = pm.multilevel(schools, yi='yi', vi='vi', levels=('district', 'study'))\n"
             "print(three_level)"),
    ("md", "How the heterogeneity splits between the levels (multilevel I², as in metafor's FAQ), and "
           "profile-likelihood CIs of each variance component (metafor's `confint`):"),
    ("code", "print(three_level.i2())\nprint(three_level.confint())"),
    ("md", "Effects that share a sample are correlated. `pm.vcalc` builds V (here an assumed correlation of 0.6 "
           "between the outcomes of one study, assink2016), and cluster-robust inference (CR2 with Satterthwaite "
           "degrees of freedom, as clubSandwich computes it) guards against a wrong guess of that correlation. "
           "The output says which adjustment was used."),
    ("code", "assink = pd.read_csv('data/examples/assink2016.csv')\n"
             "V = pm.vcalc(assink, vi='vi', cluster='study', obs='esid', rho=0.6)\n"
             "fit = pm.multilevel(assink, yi='yi', V=V, levels=('study', 'esid'))\n"
             "print(fit.robust(cluster='study', adjust='CR2'))"),
    ("md", "## Hip + knee, hip, knee or nothing in one model: network meta-analysis\n\n"
           "A network compares every treatment at once and deals with multi-arm trials exactly: each trial's "
           "contrasts against its own baseline, with the covariance their shared arm implies. The public "
           "worked example is senn2013 (26 trials of glucose-lowering drugs, one with three arms); the effect "
           "is the mean difference in HbA1c against placebo."),
    ("code", "senn = pd.read_csv('data/examples/senn2013.csv')\n"
             "net = pm.network(senn, study='study', treatment='treatment', measure='MD', reference='placebo',"
             " method='REML')\nprint(net)"),
    ("md", "Every pairwise comparison (the league table), the ranking (P-scores: a ranking is not an effect) and "
           "whether direct and indirect evidence agree (node-splitting):"),
    ("code", "league = net.league_table()\nprint(net.pscores().round(3))\nnet.netsplit().head()"),
    ("md", "Does adding one component add what it does alone? The additive component model (netmeta's "
           "`netcomb`) writes each treatment as a sum of components; in the PFP network hip + knee would be "
           "hip plus knee. senn2013's treatments are single drugs, so this section stops at the standard "
           "network; `pm.component_network(net, components={...})` is the call."),
    ("md", "Bad input is refused with its location, never silently dropped:"),
    ("code", "bad = trials.copy()\nbad.loc[2, 'sd_exp'] = -1\ntry:\n    pm.pool(bad, measure='MD')\n"
             "except pm.InputError as err:\n    print(err)"),
])

from_paper = notebook([
    ("md", "# From a trial paper to the pooled estimate\n\n"
           "Trial papers rarely print what a meta-analysis needs (n, mean and SD per arm at follow-up). They "
           "print medians with quartiles, confidence intervals, standard errors. This notebook takes one trial "
           "of Nascimento 2018's hip + knee vs knee comparison (B1, pain) from what its paper prints to the "
           "reproduce table, recording every step.\n\n"
           "**The numbers typed below are illustrative, made up for this notebook: they are not Ferber 2015's "
           "results**, which are not in `data/` yet. With the paper at hand, type what it prints instead."),
    ("code", "import os, tempfile\nfrom pathlib import Path\nif Path.cwd().name == 'notebooks':\n    os.chdir('..')\n"
             "import warnings\nimport pandas as pd\nimport pfps_meta as pm\n"
             "from pfps_meta import conversions\n"
             "from pfps_meta.evidence.specs import load_all, run_analysis\n"
             "from pfps_meta.evidence.extraction import template, to_csv_text\n"
             "from pfps_meta.analysis.reproduce import reproduce_table\n"
             "SPEC = 'analyses/nascimento2018.toml'\n"
             "def reproduce_row(extraction=None):\n"
             "    with warnings.catch_warnings():\n"
             "        warnings.simplefilter('ignore', pm.InputWarning)\n"
             "        [(spec, evidence)] = load_all([SPEC], extraction=extraction)\n"
             "        results = [run_analysis(a, evidence) for a in spec.analyses]\n"
             "    table = reproduce_table(results)\n"
             "    return table[table['analysis'] == 'nascimento2018/B1'][['analysis', 'published_estimate', "
             "'published_ci_low', 'published_ci_high', 'reproduced_estimate', 'reproduced_ci_low', "
             "'reproduced_ci_high', 'k_available', 'k_expected', 'status']]\n"
             "reproduce_row()"),
    ("md", "## 1. The extraction sheet\n\n`pfps-meta template analyses/nascimento2018.toml --out sheet.csv` writes one "
           "row per trial x arm x outcome x timepoint the analyses expect, with what is already known filled in. "
           "Here are Ferber 2015's pain rows: the arm sizes are known (111 and 88), the mean and SD are not."),
    ("code", "[(spec, evidence)] = load_all([SPEC])\nsheet = template(spec, evidence)\n"
             "ferber = (sheet['trial_id'] == 'ferber2015') & (sheet['outcome'] == 'pain')\n"
             "sheet.loc[ferber, ['trial_id', 'arm', 'scale', 'scale_min', 'scale_max', 'n', 'mean', 'sd', "
             "'median', 'q1', 'q3', 'ci_low', 'ci_high', 'analyses']]"),
    ("md", "## 2. Type what the paper prints\n\nSuppose (illustration only) the hip arm is printed as a median "
           "with its interquartile range, and the knee arm as a mean with a 95% CI. Each goes into its own columns, "
           "with where it was printed and the quoted text."),
    ("code", "hip = ferber & (sheet['arm'] == 'HIP')\nknee = ferber & (sheet['arm'] == 'KNEE')\n"
             "sheet.loc[hip, ['median', 'q1', 'q3']] = ['2.0', '1.0', '3.5']\n"
             "sheet.loc[knee, ['mean', 'ci_low', 'ci_high']] = ['3.1', '2.6', '3.6']\n"
             "sheet.loc[hip | knee, 'source_location'] = 'ILLUSTRATION (notebook 03), not the paper'\n"
             "sheet.loc[hip | knee, 'quote'] = 'illustrative numbers typed for notebook 03; not from Ferber 2015'\n"
             "sheet.loc[ferber, ['arm', 'n', 'mean', 'median', 'q1', 'q3', 'ci_low', 'ci_high']]"),
    ("md", "## 3. The conversions, one rule each\n\nThe median and quartiles become a mean (Luo et al. 2018) and "
           "an SD (Wan et al. 2014), as R meta does by default; the CI of a mean becomes an SD with the t "
           "distribution on n - 1 degrees of freedom (Cochrane Handbook 6.5.2.2). Each result says how it was "
           "obtained."),
    ("code", "from_quartiles = conversions.mean_sd_from_quartiles(111, 2.0, 1.0, 3.5)\n"
             "from_ci = conversions.sd_from_ci(2.6, 3.6, 88)\n"
             "print(f'hip:  mean {float(from_quartiles.mean):.3f}, SD {float(from_quartiles.sd):.3f}  ({from_quartiles.rule})')\n"
             "print(f'knee: SD {float(from_ci.value):.3f}  ({from_ci.rule})')"),
    ("md", "## 4. The checks\n\nThe same sheet is checked like `data/outcomes.csv`. A typing slip is caught with "
           "its file, row and column: here an SD larger than any sample on a 0-10 scale could have."),
    ("code", "folder = Path(tempfile.mkdtemp())\n"
             "slip = sheet.copy()\nslip.loc[knee, ['mean', 'ci_low', 'ci_high', 'sd']] = ['3.1', '', '', '7.5']\n"
             "(folder / 'slip.csv').write_text(to_csv_text(slip))\n"
             "try:\n    reproduce_row(folder / 'slip.csv')\nexcept pm.InputError as err:\n    print(err)"),
    ("md", "## 5. The updated reproduce row\n\nWith the filled sheet, B1 gains Ferber 2015 (k goes from 1 to 2). "
           "It stays `incomplete` until every expected trial has data; then it becomes `reproduced` or `differs`."),
    ("code", "(folder / 'sheet.csv').write_text(to_csv_text(sheet))\nreproduce_row(folder / 'sheet.csv')"),
    ("md", "Every converted number keeps its rule all the way to the pooled result:"),
    ("code", "[(spec, evidence)] = load_all([SPEC], extraction=folder / 'sheet.csv')\n"
             "b1 = run_analysis(next(a for a in spec.analyses if a.id == 'B1'), evidence)\n"
             "b1.result.studies[['study', 'n_exp', 'mean_exp', 'sd_exp', 'n_ctrl', 'mean_ctrl', 'sd_ctrl', 'status', "
             "'conversion']]"),
])

nbf.write(reproduce, HERE / "01_reproduce_nascimento2018.ipynb")
nbf.write(pool_own, HERE / "02_pool_your_own_trials.ipynb")
nbf.write(from_paper, HERE / "03_from_trial_paper_to_pooled_estimate.ipynb")
print("wrote 3 notebooks")
