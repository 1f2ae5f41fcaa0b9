"""Run the R script that ``pfps-meta export-r`` writes for every analysis of every spec in analyses/ and
analyses/examples/, and report how closely metafor 3.8-1 agrees with pfps-meta (1e-6 relative).

    python validation/run_exported_r.py                      # the table and the count
    python validation/run_exported_r.py --fixtures tests/fixtures/export_r   # also keep script + R output

Besides the analyses of the specs, it exports :data:`VARIANTS`: one-analysis specs (written to a
temporary folder) on the worked examples' data with each tau² estimator, HKSJ, the prediction-interval
and I² conventions, the SMD variances, the pooled-SD MD and Mantel-Haenszel / Peto, so that every
branch of the exporter meets R (``--no-variants`` skips them).

For each analysis: the script from :func:`pfps_meta.present.export_r.export_r` is run with ``Rscript``
and its ``PFPS_COMPARE`` lines are read (metafor's value, ours, relative difference). An analysis that
cannot be exported (no data yet, a model not translated) is listed with the reason. Exit status 1 when
any exported analysis differs by more than the tolerance or its script fails in R.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pfps_meta.errors import InputError  # noqa: E402
from pfps_meta.evidence import specs  # noqa: E402
from pfps_meta.present.export_r import export_r, our_values, parse_comparison  # noqa: E402

TOLERANCE = 1e-6

# (name, data file under data/examples, measure, [settings] lines)
VARIANTS = [(f"bcg_RR_{m}", "bcg.csv", "RR", f'method = "{m}"') for m in
            ("FE", "DL", "REML", "ML", "PM", "SJ", "HE", "EB", "HS")] + [
    ("bcg_OR_REML_hksj", "bcg.csv", "OR", 'method = "REML"\nci = "hksj"'),
    ("bcg_RD_DL_level90_piT", "bcg.csv", "RD", 'method = "DL"\nlevel = 0.9\npi = "t"'),
    ("bcg_RR_DL_i2q_pik2", "bcg.csv", "RR", 'method = "DL"\ni2 = "q"\npi = "t_k2"'),
    ("bcg_OR_MH", "bcg.csv", "OR", 'method = "MH"'), ("bcg_RR_MH", "bcg.csv", "RR", 'method = "MH"'),
    ("bcg_RD_MH", "bcg.csv", "RD", 'method = "MH"'), ("bcg_OR_PETO", "bcg.csv", "OR", 'method = "PETO"'),
    ("caffeine_OR_MH", "caffeine.csv", "OR", 'method = "MH"'),
    ("normand_SMD_UB_PM_hksj", "normand1999.csv", "SMD", 'method = "PM"\nvtype = "UB"\nci = "hksj"'),
    ("normand_SMD_AV_DL", "normand1999.csv", "SMD", 'method = "DL"\nvtype = "AV"'),
    ("normand_MD_HO_REML", "normand1999.csv", "MD", 'method = "REML"\npooled_sd = true'),
    ("normand_SMDH_SJ", "normand1999.csv", "SMDH", 'method = "SJ"'),
    ("normand_ROM_ML", "normand1999.csv", "ROM", 'method = "ML"'),
    ("normand_SMD_revman5_DL", "normand1999.csv", "SMD", 'method = "DL"\nsmd_convention = "revman5"'),
]


# (name, the [[analyses]] keys after id and label): dependent-effect models on metadat's dat.assink2016
MODEL_VARIANTS = [
    ("assink_V_mods_CR2", 'model = "multilevel"\ndata = "{examples}/assink2016.csv"\nlevels = ["study", "esid"]\n'
                          'mods = ["year", "pubstatus"]\nmethod = "REML"\nrobust = "CR2"\n'
                          'V = {{ cluster = "study", obs = "esid", rho = 0.6 }}'),
    ("assink_ML_t_mods", 'model = "multilevel"\ndata = "{examples}/assink2016.csv"\nlevels = ["study", "esid"]\n'
                         'mods = ["year"]\nmethod = "ML"\ntest = "t"'),
]


def variant_text(name: str) -> str:
    """The spec (TOML) of variant ``name`` (of :data:`VARIANTS` or :data:`MODEL_VARIANTS`), analysis id ``a``,
    reading the worked examples' data in this repository."""
    examples = (ROOT / "data" / "examples").as_posix()
    head = f'[review]\nid = "{name}"\ntitle = "{name}"\ndata_dir = "{(ROOT / "data").as_posix()}"\n'
    for vname, data, measure, settings in VARIANTS:
        if vname == name:
            return (f'{head}[settings]\n{settings}\n[[analyses]]\nid = "a"\nlabel = "{name}"\n'
                    f'measure = "{measure}"\ndata = "{examples}/{data}"\n')
    body = dict(MODEL_VARIANTS)[name].format(examples=examples)
    return f'{head}[[analyses]]\nid = "a"\nlabel = "{name}"\n{body}\n'


def variant_specs(folder: Path) -> list[Path]:
    """Write the one-analysis specs of :data:`VARIANTS` and :data:`MODEL_VARIANTS` into ``folder``."""
    (folder / "analyses").mkdir(parents=True, exist_ok=True)
    paths = []
    for name in [v[0] for v in VARIANTS] + [v[0] for v in MODEL_VARIANTS]:
        path = folder / "analyses" / f"{name}.toml"
        path.write_text(variant_text(name), encoding="utf-8")
        paths.append(path)
    return paths


def run_one(path: Path, analysis_id: str, fixtures: Path | None) -> dict:
    """One analysis: its status, the number of quantities compared and the largest relative difference."""
    spec = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else f"(variant) {path.stem}"
    row = {"spec": spec, "analysis": analysis_id}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            script, ours = export_r(path, analysis_id), our_values(path, analysis_id)
    except InputError as error:
        return {**row, "status": "not exported", "detail": str(error).split("cannot be exported to R: ")[-1]}
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "analysis.R"
        file.write_text(script, encoding="utf-8")
        done = subprocess.run(["Rscript", str(file)], capture_output=True, text=True, timeout=600)
    if fixtures is not None:
        stem = f"{path.stem}_{analysis_id}" if path.is_relative_to(ROOT) else f"variant_{path.stem}"
        (fixtures / f"{stem}.R").write_text(script, encoding="utf-8")
        (fixtures / f"{stem}.Rout").write_text(done.stdout, encoding="utf-8")
    try:
        compared = parse_comparison(done.stdout)
    except InputError:
        return {**row, "status": "R failed", "detail": done.stderr.strip().splitlines()[-1:] or ""}
    if set(compared) != set(ours):
        return {**row, "status": "R failed", "detail": "the comparison lines do not match the script's `ours`"}
    rels = {name: rel for name, (_, _, rel) in compared.items() if not math.isnan(rel)}
    unmatched = sorted(name for name, (_, _, rel) in compared.items() if math.isnan(rel))
    worst = max(rels, key=rels.get)
    status = "agrees" if rels[worst] <= TOLERANCE and not unmatched else "differs"
    detail = f"largest at {worst}" + (f"; NA in R: {', '.join(unmatched)}" if unmatched else "")
    return {**row, "status": status, "quantities": len(compared), "max_rel": rels[worst], "detail": detail}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, help="folder to keep each emitted script and its R output in")
    parser.add_argument("--no-variants", action="store_true", help="only the analyses of the specs")
    args = parser.parse_args(argv)
    if args.fixtures is not None:
        args.fixtures.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in specs.default_spec_paths(ROOT, include_models=True):
        for analysis in specs.load_spec(path).analyses:
            rows.append(run_one(path, analysis.id, args.fixtures))
    if not args.no_variants:
        with tempfile.TemporaryDirectory() as tmp:
            rows += [run_one(path, "a", args.fixtures) for path in variant_specs(Path(tmp))]
    for r in rows:
        numbers = f"{r['quantities']:3d} quantities, max rel {r['max_rel']:.2e}" if "max_rel" in r else ""
        print(f"{r['spec']:45s} {r['analysis']:16s} {r['status']:13s} {numbers:36s} {r.get('detail', '')}")
    exported = [r for r in rows if r["status"] != "not exported"]
    agree = [r for r in exported if r["status"] == "agrees"]
    worst = max((r["max_rel"] for r in exported if "max_rel" in r), default=float("nan"))
    print(f"\n{len(agree)} of {len(exported)} exported analyses agree with metafor at {TOLERANCE:g} relative "
          f"(largest relative difference {worst:.2e}); {len(rows) - len(exported)} of {len(rows)} analyses "
          "not exported (reasons above).")
    return 0 if len(agree) == len(exported) else 1


if __name__ == "__main__":
    sys.exit(main())
