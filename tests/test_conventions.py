"""One home for conventions (issue 8): Settings, the measure and tau2 estimator registries, and the four
wrong results their absence caused. Reference values: validation/make_conventions_fixtures.R (metafor)."""

import ast
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta import conventions
from pfps_meta.effects import measures
from pfps_meta.analysis import sensitivity
from pfps_meta.models import tau2
from pfps_meta.evidence.specs import load_spec
from pfps_meta.cli import build_parser, main
from pfps_meta.analysis.presets import PRESETS
from tests.conftest import FIXTURES, ROOT

NORMAND = ROOT / "data" / "examples" / "normand1999.csv"
BCG = ROOT / "data" / "examples" / "bcg.csv"


@pytest.fixture(scope="module")
def reference():
    return json.loads((FIXTURES / "metafor_conventions.json").read_text())


# ------------------------------------------------------------------------------- one home for defaults

def test_api_cli_and_toml_defaults_all_come_from_settings(tmp_path, capsys):
    assert pm.pool(NORMAND, measure="MD").settings == conventions.DEFAULTS
    # the CLI sets no defaults of its own: an option not given is absent from the parsed arguments
    args = build_parser().parse_args(["pool", str(NORMAND), "--measure", "MD"])
    assert not any(hasattr(args, option.name) for option in conventions.OPTIONS)
    assert main(["pool", str(NORMAND), "--measure", "MD", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"] == conventions.DEFAULTS.to_dict()
    spec = tmp_path / "minimal.toml"
    spec.write_text(f'[review]\nid = "x"\n[[analyses]]\nid = "a"\nmeasure = "MD"\ndata = "{NORMAND}"\n')
    loaded = load_spec(spec)
    assert loaded.settings == conventions.DEFAULTS and loaded.analyses[0].settings == conventions.DEFAULTS
    # the help text states each default as conventions has it
    help_text = build_parser()._subparsers._group_actions[0].choices["pool"].format_help()
    assert "(default: REML)" in help_text and "(default: 0.95)" in help_text


def test_aliases_and_names_are_one_set():
    a = pm.pool(NORMAND, measure="MD", ci="hksj", i2="q", pi="t")
    b = pm.pool(NORMAND, measure="MD", ci_method="hksj", i2_method="q", pi_method="t")
    assert a.settings == b.settings and a.to_dict() == b.to_dict()
    with pytest.raises(pm.InputError, match="given twice"):
        conventions.Settings.from_mapping({"ci": "hksj", "ci_method": "wald"})
    with pytest.raises(pm.InputError, match="unknown setting"):
        pm.pool(NORMAND, measure="MD", methd="DL")


@pytest.mark.parametrize("options, message", [
    ({"level": -0.5}, "strictly between 0 and 1"), ({"level": 95}, "strictly between 0 and 1"),
    ({"method": "XX"}, "not one of"), ({"pooled_sd": "yes"}, "true or false"),
    ({"smd_convention": "revman5", "vtype": "UB"}, "RevMan 5 has its own variance"),
])
def test_bad_settings_are_input_errors(options, message):
    with pytest.raises(pm.InputError, match=message):
        conventions.Settings(**options)


def test_bad_setting_in_a_spec_names_file_and_entry(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(f'[review]\nid = "x"\n[[analyses]]\nid = "a"\nmeasure = "MD"\nlevel = 1.5\ndata = "{NORMAND}"\n')
    with pytest.raises(pm.InputError) as err:
        load_spec(spec)
    assert "bad.toml" in err.value.message and "[[analyses]] entry 1" in err.value.message


def test_presets_are_settings_values():
    for preset in PRESETS.values():
        assert isinstance(preset.settings, conventions.Settings)
    assert PRESETS["revman5"].settings.prediction_interval is False
    res = pm.pool(NORMAND, measure="MD", settings=PRESETS["revman5"].settings)
    assert res.stats["pi_low"] is None or np.isnan(res.stats["pi_low"])
    assert "No prediction interval" in str(res)


# ------------------------------------------------------------------------------- the four wrong results

@pytest.mark.filterwarnings("ignore::pfps_meta.InputWarning")
def test_bug1_cli_options_override_a_specs_settings(capsys):
    spec = str(ROOT / "analyses" / "examples" / "hackshaw1997.toml")
    assert main(["sensitivity", spec, "--analysis", "main", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "DL"            # the spec's own
    assert main(["sensitivity", spec, "--analysis", "main", "--method", "REML", "--ci", "hksj",
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "REML" and out["ci"] == "hksj"
    direct = pm.pool(ROOT / "data" / "examples" / "hackshaw1998.csv", measure="OR", method="REML", ci="hksj")
    assert out["estimate"] == pytest.approx(direct.stats["estimate"], rel=1e-12)


@pytest.mark.parametrize("case", range(4))
def test_bug2_common_tau2_subgroups_use_the_results_level_and_ci_method(reference, case):
    ref = reference["subgroups"][case]
    table = pd.read_csv(BCG)
    res = pm.pool(table, measure="RR", method=ref["method"], ci="hksj" if ref["test"] == "knha" else "wald",
                  level=ref["level"])
    out = sensitivity.subgroups(res, "alloc", tau2="common")
    groups = out["groups"].set_index("group").loc[ref["groups"]]
    for ours, theirs in (("estimate", "estimate"), ("se", "se"), ("ci_low", "ci_low"), ("ci_high", "ci_high")):
        np.testing.assert_allclose(groups[ours].to_numpy(), ref[theirs], rtol=1e-6)
    assert out["test"]["q"] == pytest.approx(ref["qm"], rel=1e-6)
    assert out["test"]["p"] == pytest.approx(ref["qm_p"], rel=1e-6)
    assert groups["tau2"].iloc[0] == pytest.approx(ref["tau2"], rel=1e-6)


def test_bug3_input_ci_level_is_its_own_setting(reference):
    ref = reference["input_level"]
    table = pd.DataFrame({"study": [f"s{i}" for i in range(len(ref["yi"]))], "estimate": ref["yi"],
                          "ci_low": ref["ci_low"], "ci_high": ref["ci_high"]})
    res = pm.pool(table, method="DL", input_level=0.90, level=0.95)
    np.testing.assert_allclose(res.studies["vi"], ref["vi"], rtol=1e-10)
    assert res.stats["ci_low"] == pytest.approx(ref["ci_low_pooled"], rel=1e-6)
    # asking for a 90% pooled CI no longer changes what the input's 95% CIs mean
    at95 = pm.pool(table, method="DL")
    at90 = pm.pool(table, method="DL", level=0.90)
    np.testing.assert_array_equal(at95.studies["vi"], at90.studies["vi"])
    assert at90.stats["ci_high"] - at90.stats["ci_low"] < at95.stats["ci_high"] - at95.stats["ci_low"]


def test_bug4_single_level_subgroup_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "one_group.csv"
    path.write_text("study,yi,vi,g\nA,0.1,0.04,x\nB,0.3,0.05,x\nC,0.5,0.06,x\n")
    assert main(["sensitivity", str(path), "--subgroup", "g"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at least two subgroups" in err[0] and "one_group.csv" in err[0]


def test_r_meta_preset_uses_the_unbiased_smd_variance():
    # R meta 8.2-1 defaults on normand1999 (issue 8): per-study SEs of Hedges' g
    meta_se = [0.11431, 0.25403, 0.21517, 0.40788, 0.45409, 0.19213, 0.24556, 0.12193, 0.19049]
    res = pm.pool(NORMAND, measure="SMD", settings=PRESETS["r_meta"].settings)
    np.testing.assert_allclose(res.studies["se"], meta_se, atol=5e-6)
    default = pm.pool(NORMAND, measure="SMD")
    assert default.studies["se"].iloc[3] == pytest.approx(0.40077, abs=5e-6)


# ------------------------------------------------------------------------------- registries

@pytest.mark.parametrize("case", range(6))
def test_escalc_measures_match_metafor(reference, case):
    ref = reference["escalc"][case]
    if ref["dataset"] == "normand1999":
        table = pd.read_csv(NORMAND)
    elif ref["dataset"] == "bcg":
        table = pd.read_csv(BCG)
    else:
        table = pd.DataFrame({"study": ["a", "b", "c"], **{k: ref[k] for k in
                                                              ("events_exp", "n_exp", "events_ctrl", "n_ctrl")}})
    out = pm.escalc(table, ref["measure"], vtype=ref["vtype"])
    np.testing.assert_allclose(out["yi"], ref["yi"], rtol=1e-10)
    np.testing.assert_allclose(out["vi"], ref["vi"], rtol=1e-10)


def test_every_renderer_reads_the_measure_registry():
    rom = measures.get("ROM")
    assert rom.ratio and rom.null == 1.0 and rom.to_reporting(0.0) == 1.0
    assert not measures.get("RD").ratio and measures.get("RD").layout == "binary"
    res = pm.pool(NORMAND, measure="ROM")
    assert "Back-transformed (ROM, exp)" in str(res)
    source = "\n".join(p.read_text() for p in (ROOT / "pfps_meta").glob("*.py") if p.name != "measures.py")
    assert '("RR", "OR")' not in source and "RATIO" not in source


def test_tau2_registry_names_every_implementation():
    assert set(tau2.IMPLEMENTATIONS) == set(conventions.TAU2_ESTIMATORS)
    for name, info in conventions.TAU2_ESTIMATORS.items():
        assert info.label and info.methods_text


# The package's folders, bottom to top: a module imports (at module level or inside a function) only
# from its own folder or from folders below it, so the pipeline reads top to bottom.
LAYERS = ("leaves", "effects", "inputs", "models", "evidence", "analysis", "present", "cli")
LEAVES = {"conventions", "distributions", "errors", "formatting"}


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "pfps_meta":
        return -1
    if parts[1] in LEAVES or parts[1] == "__init__":
        return 0
    return LAYERS.index(parts[1])


def _package_modules():
    package = ROOT / "pfps_meta"
    for path in package.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        yield name, path


def _imports(path, name, module_level_only=False):
    """(imported module, imported names, lineno) of every pfps_meta import in one file."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("pfps_meta"):
                yield module, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pfps_meta"):
                    yield alias.name, [], node.lineno


def test_folders_import_only_downwards_and_no_private_names_cross_modules():
    modules = dict(_package_modules())
    problems = []
    for name, path in modules.items():
        if name == "pfps_meta":
            continue
        for target, names, line in _imports(path, name):
            full = [f"{target}.{n}" if f"{target}.{n}" in modules else target for n in names] or [target]
            for dest in full:
                if _layer(dest) > _layer(name):
                    problems.append(f"{path.name}:{line} ({name}) imports upward from {dest}")
            if target != name and target in modules:
                private = [n for n in names if n.startswith("_") and n != "__version__"]
                if private:
                    problems.append(f"{path.name}:{line} imports private {private} from {target}")
    assert not problems, "\n".join(problems)


def test_no_import_cycle_among_modules():
    modules = dict(_package_modules())
    graph = {}
    for name, path in modules.items():
        deps = set()
        for target, names, _ in _imports(path, name, module_level_only=True):
            for n in names or [None]:
                dest = f"{target}.{n}" if n and f"{target}.{n}" in modules else target
                if dest in modules and dest != name and dest != "pfps_meta":
                    deps.add(dest)
        graph[name] = deps
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "active", f"import cycle: {' -> '.join(trail + [node])}"
        state[node] = "active"
        for nxt in graph.get(node, ()):
            visit(nxt, trail + [node])
        state[node] = "done"

    for module in graph:
        visit(module, [])
    assert "pfps_meta.present.report" not in graph["pfps_meta.present.plots"]
    assert graph["pfps_meta.conventions"] <= {"pfps_meta.errors"} and graph["pfps_meta.errors"] == set()
    assert graph["pfps_meta.formatting"] == set()


def test_importing_plots_keeps_the_users_backend():
    for module in ("pfps_meta.present.plots", "pfps_meta.present.network_plots"):
        code = (f"import matplotlib; matplotlib.use('svg'); import {module}; "
                "print(matplotlib.get_backend())")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "svg", module


def test_refit_non_convergence_is_counted_not_silenced():
    with pytest.warns(pm.ConvergenceWarning):
        res = pm.pool(NORMAND, measure="MD", method="REML", maxiter=1)
    with pytest.warns(pm.ConvergenceWarning, match="refits did not converge"):
        sensitivity.permutation_test(res, exact=True)


# The compiled kernel is one numba function on purpose: splitting it adds call overhead to the
# simulation's inner loop (it is held to pool_batch at 1e-10 in tests/test_fast.py).
LONG_FUNCTION_EXEMPT = {("pfps_meta/models/fast.py", "_tau2_kernel")}


def test_no_function_runs_over_80_lines():
    long = []
    for path in sorted((ROOT / "pfps_meta").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80 and (rel, node.name) not in LONG_FUNCTION_EXEMPT:
                    long.append(f"{rel}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "\n".join(long)
