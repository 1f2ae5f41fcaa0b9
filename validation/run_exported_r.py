"""Run the R script that ``pfps-meta export-r`` writes for every analysis of every spec in analyses/ and
analyses/examples/, and report how closely metafor 3.8-1 agrees with pfps-meta (1e-6 relative).

    python validation/run_exported_r.py                      # the table and the count
    python validation/run_exported_r.py --fixtures tests/fixtures/export_r   # also keep script + R output

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
from pfps_meta.present.export_r import export_r, parse_comparison  # noqa: E402

TOLERANCE = 1e-6


def run_one(path: Path, analysis_id: str, fixtures: Path | None) -> dict:
    """One analysis: its status, the number of quantities compared and the largest relative difference."""
    row = {"spec": path.relative_to(ROOT).as_posix(), "analysis": analysis_id}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            script = export_r(path, analysis_id)
    except InputError as error:
        return {**row, "status": "not exported", "detail": str(error).split("cannot be exported to R: ")[-1]}
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "analysis.R"
        file.write_text(script, encoding="utf-8")
        done = subprocess.run(["Rscript", str(file)], capture_output=True, text=True, timeout=600)
    if fixtures is not None:
        stem = f"{path.stem}_{analysis_id}"
        (fixtures / f"{stem}.R").write_text(script, encoding="utf-8")
        (fixtures / f"{stem}.Rout").write_text(done.stdout, encoding="utf-8")
    try:
        compared = parse_comparison(done.stdout)
    except InputError:
        return {**row, "status": "R failed", "detail": done.stderr.strip().splitlines()[-1:] or ""}
    rels = {name: rel for name, (_, _, rel) in compared.items() if not math.isnan(rel)}
    unmatched = sorted(name for name, (_, _, rel) in compared.items() if math.isnan(rel))
    worst = max(rels, key=rels.get)
    status = "agrees" if rels[worst] <= TOLERANCE and not unmatched else "differs"
    detail = f"largest at {worst}" + (f"; NA in R: {', '.join(unmatched)}" if unmatched else "")
    return {**row, "status": status, "quantities": len(compared), "max_rel": rels[worst], "detail": detail}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, help="folder to keep each emitted script and its R output in")
    args = parser.parse_args(argv)
    if args.fixtures is not None:
        args.fixtures.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in specs.default_spec_paths(ROOT, include_models=True):
        for analysis in specs.load_spec(path).analyses:
            rows.append(run_one(path, analysis.id, args.fixtures))
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
