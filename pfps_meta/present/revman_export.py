"""``import_revman``: a RevMan 5 file turned into our CSVs, a ``published.csv`` of RevMan's stored totals
and one analysis spec, so that ``pfps-meta reproduce OUT_DIR/<review>.toml`` re-runs every outcome and
compares it with the totals the file stores.

It lives in ``present/`` because it writes files (atomically, through :mod:`pfps_meta.present.outputs`);
the reading is :func:`pfps_meta.inputs.revman.read_revman`.

What is written, in ``out_dir``:

- one CSV per outcome and one per subgroup, in our layouts: binary ``study, events_exp, n_exp,
  events_ctrl, n_ctrl``; continuous ``study, n_exp, mean_exp, sd_exp, n_ctrl, mean_ctrl, sd_ctrl``;
  generic inverse variance ``study, yi, sei`` (``yi`` a natural log for ratio measures), each with
  ``year`` and ``subgroup`` where the file gives them. Rows RevMan marked not estimable
  (``ESTIMABLE="NO"``: it left them out of its totals) are left out too, and listed;
- ``published.csv``: one row per stored total (same columns as ``data/published.csv``; ``source_url``
  is the RevMan file, ``location`` the comparison / outcome / subgroup, ``quote`` the stored attributes),
  the estimate and CI rounded to ``decimals`` places (at least 4 significant digits), the precision the
  reproduce table compares at;
- ``<review>.toml``: one analysis per outcome and subgroup with the settings RevMan used: ``method``
  FE (IV, fixed), DL (IV, random: DerSimonian-Laird, RevMan 5's only random-effects estimator), MH or
  PETO (fixed), MH_DL (M-H, random: tau² from Q about the MH estimate, as RevMan 5); Wald z CI; I² from
  Q; no prediction interval; the stored CI level; ``smd_convention = "revman5"`` (RevMan 5's Hedges' g)
  for SMD. An outcome needing a method this pfps-meta lacks is skipped with the reason.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pfps_meta.conventions import Settings
from pfps_meta.errors import InputError
from pfps_meta.inputs.revman import LAYOUT_COLUMNS, Outcome, RevManFile, Subgroup, read_revman
from pfps_meta.inputs.validate import effect_table
from pfps_meta.present.outputs import atomic_write_text, check_target

PUBLISHED_COLUMNS = ["id", "review", "citation", "comparison", "outcome", "measure", "estimate", "ci_low", "ci_high",
                     "k", "participants", "model", "scale_note", "source_url", "location", "quote", "status"]


@dataclass
class ImportResult:
    """What :func:`import_revman` wrote and what it skipped (``str()`` lists both)."""

    source: Path
    out_dir: Path
    spec: Path | None
    published: Path | None
    written: list = field(default_factory=list)      # [(path, what)]
    analyses: list = field(default_factory=list)     # [(analysis id, location, has a stored total)]
    skipped: list = field(default_factory=list)      # [(location, reason)]
    notes: list = field(default_factory=list)
    revman: RevManFile | None = None

    def __str__(self) -> str:
        lines = [f"RevMan file {self.source}: {len(self.analyses)} analyses written to {self.out_dir}"]
        for path, what in self.written:
            lines.append(f"  wrote {path.name}: {what}")
        if self.spec is not None:
            lines.append(f"  check them with: pfps-meta reproduce {self.spec}")
        if self.skipped:
            lines.append(f"skipped ({len(self.skipped)}):")
            lines += [f"  {where}: {why}" for where, why in self.skipped]
        if self.notes:
            lines.append("notes:")
            lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"source": str(self.source), "out_dir": str(self.out_dir),
                "spec": None if self.spec is None else str(self.spec),
                "written": [{"path": str(p), "what": w} for p, w in self.written],
                "analyses": [{"id": i, "location": loc, "stored_total": t} for i, loc, t in self.analyses],
                "skipped": [{"location": loc, "reason": why} for loc, why in self.skipped], "notes": list(self.notes)}


def _method_available(method: str) -> bool:
    try:
        Settings.from_mapping({"method": method})
    except InputError:
        return False
    return True


def analysis_settings(outcome: Outcome) -> tuple[dict | None, str]:
    """(the spec settings that re-run ``outcome`` as RevMan 5 did, a note); None settings with the
    reason in the note when this pfps-meta cannot run it."""
    note = ""
    if outcome.random and outcome.method == "MH" and _method_available("MH_DL"):
        method = "MH_DL"                # RevMan 5's M-H random effects: tau² from Q about the MH estimate
    elif outcome.random:
        method = "DL"
        if outcome.method != "IV":
            note = (f"RevMan's {outcome.model} takes tau² from Q about the {outcome.method} estimate; re-run with "
                    "DerSimonian-Laird on inverse-variance weights (last digits may differ)")
    elif outcome.method in ("MH", "PETO"):
        method = outcome.method
        if not _method_available(method):
            return None, (f"needs method = \"{method}\" ({'Mantel-Haenszel' if method == 'MH' else 'Peto'}), "
                          "which this pfps-meta does not have")
    else:
        method = "FE"
    settings = {"method": method, "ci": "wald", "i2": "q", "prediction_interval": False, "level": outcome.level}
    if outcome.measure == "SMD":
        settings["smd_convention"] = "revman5"
    return settings, note


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-")
    return (slug or "revman")[:40]


def _fixed(value: float, decimals: int) -> str:
    """``value`` at ``decimals`` places, more where needed to keep 4 significant digits."""
    places = decimals
    if value != 0:
        places = max(decimals, 3 - math.floor(math.log10(abs(value))))
    return f"{value:.{places}f}"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def _csv_text(frame: pd.DataFrame) -> str:
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if values.dtype.kind == "f" and values.dropna().map(float.is_integer).all():
            out[column] = values.astype("Int64")
    return out.to_csv(index=False, lineterminator="\n")


def _table(outcome: Outcome, subgroup: Subgroup | None, notes: list) -> pd.DataFrame:
    """The rows to write for an outcome or subgroup: our layout, estimable rows only, unique study labels."""
    source = outcome.studies if subgroup is None else subgroup.studies
    dropped = source.loc[~source["estimable"].astype(bool), "study"].tolist()
    if dropped:
        notes.append(f"{outcome.number}{'' if subgroup is None else ' ' + subgroup.name}: not estimable in RevMan, "
                     f"left out as RevMan did: {', '.join(dropped)}")
    table = source[source["estimable"].astype(bool)]
    labels = table["study"].astype(str)
    if labels.duplicated().any() and "subgroup" in table:      # one study in two subgroups
        labels = labels.where(~labels.duplicated(keep=False), labels + " [" + table["subgroup"].astype(str) + "]")
    table = table.assign(study=labels)
    extra = [c for c in ("year", "subgroup") if c in table and table[c].astype(str).str.len().any()]
    return table[LAYOUT_COLUMNS[outcome.kind] + extra].reset_index(drop=True)


def _published_row(review: str, pid: str, outcome: Outcome, subgroup: Subgroup | None, totals, source: str,
                   decimals: int) -> dict:
    where = f"comparison {outcome.comparison_number} / outcome {outcome.number}"
    if subgroup is not None:
        where += f" / subgroup {subgroup.number}"
    participants = None
    if totals.total_exp is not None and totals.total_ctrl is not None:
        participants = int(totals.total_exp + totals.total_ctrl)
    return {"id": pid, "review": review, "citation": f"RevMan 5 file {Path(source).name}",
            "comparison": outcome.comparison,
            "outcome": outcome.name + ("" if subgroup is None else f" ({subgroup.name})"),
            "measure": outcome.measure, "estimate": _fixed(totals.estimate, decimals),
            "ci_low": _fixed(totals.ci_low, decimals), "ci_high": _fixed(totals.ci_high, decimals),
            "k": totals.k, "participants": participants, "model": outcome.model,
            "scale_note": "ratio scale" if totals.ratio else "", "source_url": source, "location": where,
            "quote": totals.quote, "status": "stored total (RevMan file)"}


def _entry(aid: str, outcome: Outcome, subgroup: Subgroup | None, data: str, settings: dict, pid, note: str) -> str:
    label = f"{outcome.number} {outcome.name}" + ("" if subgroup is None else f": {subgroup.number} {subgroup.name}")
    keys = {"id": aid, "label": label, "comparison": outcome.comparison, "outcome": outcome.name,
            "measure": outcome.measure, "data": data}
    if pid is not None:
        keys["published"] = pid
    keys.update(settings)
    keys["notes"] = f"RevMan 5: {outcome.model}, {outcome.revman_measure}" + (f"; {note}" if note else "")
    return "[[analyses]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in keys.items())


def _check_table(table: pd.DataFrame, outcome: Outcome, settings: dict) -> str | None:
    """Why the table cannot be pooled (our checks, e.g. a missing SD), or None."""
    if table.empty:
        return "no study rows"
    options = {k: settings[k] for k in ("smd_convention",) if k in settings}
    try:
        effect_table(table, outcome.measure, **options)
    except InputError as exc:
        return f"its data are refused: {exc.reason}"
    return None


def import_revman(path, out_dir, *, decimals: int = 4, review_id: str | None = None) -> ImportResult:
    """Read the RevMan 5 file ``path`` and write our CSVs, ``published.csv`` and ``<review>.toml`` into
    ``out_dir`` (created if needed; see the module docstring). Outcomes that cannot be pooled are
    skipped and listed with why. Returns an :class:`ImportResult`."""
    if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 12:
        raise InputError(f"decimals must be a whole number from 0 to 12 (got {decimals!r})")
    if review_id is not None and not isinstance(review_id, str):
        raise InputError(f"review_id must be text or None (got {type(review_id).__name__})")
    revman = read_revman(path)
    out = check_target(out_dir, what="--out", folder=True, inputs=(path,))
    curated = [name for name in ("trials.csv", "outcomes.csv", "effects.csv") if (out / name).exists()]
    if curated:
        raise InputError(f"--out holds an evidence base ({curated[0]}); its published.csv would be replaced: choose a "
                         "folder of its own, nothing was written", file=str(out_dir))
    review = _slug(review_id or Path(path).stem)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", review) or ".." in review:
        raise InputError(f"review id '{review}' must be letters, digits, '_', '.' or '-'")
    result = ImportResult(source=Path(path), out_dir=out, spec=None, published=None, revman=revman)
    entries, rows, files = [], [], []
    for outcome in revman.outcomes:
        _import_outcome(outcome, review, str(path), decimals, result, entries, rows, files)
    for target, text, what in files:
        result.written.append((atomic_write_text(out / target, text, what="--out", inputs=(path,)), what))
    if rows:
        table = _csv_text(pd.DataFrame(rows, columns=PUBLISHED_COLUMNS))
        result.published = atomic_write_text(out / "published.csv", table, what="--out", inputs=(path,))
        result.written.append((result.published, f"{len(rows)} stored totals"))
    if entries:
        head = (f"# Written by pfps-meta import-revman from {Path(path).name}: one analysis per RevMan outcome and\n"
                "# subgroup, with the settings RevMan stored; published = the totals stored in the file.\n"
                f"[review]\nid = {_toml(review)}\ntitle = {_toml(revman.title or Path(path).stem)}\n"
                f"citation = {_toml('RevMan 5 file ' + Path(path).name)}\ndata_dir = \".\"\n\n")
        result.spec = atomic_write_text(out / f"{review}.toml", head + "\n".join(entries), what="--out", inputs=(path,))
        result.written.append((result.spec, f"analysis spec, {len(entries)} analyses"))
    return result


def _import_outcome(outcome: Outcome, review: str, source: str, decimals: int, result: ImportResult,
                    entries: list, rows: list, files: list) -> None:
    """Queue the CSVs, published rows and spec entries of one outcome and its subgroups (or skip it)."""
    if outcome.skip_reason:
        result.skipped.append((outcome.location, outcome.skip_reason))
        return
    settings, note = analysis_settings(outcome)
    if settings is None:
        result.skipped.append((outcome.location, note))
        return
    if not math.isclose(outcome.study_level, outcome.level):
        result.notes.append(f"{outcome.location}: RevMan drew the studies' CIs at {100 * outcome.study_level:g}% "
                            f"(CI_STUDY); pfps-meta has one level, so every interval is at the totals' "
                            f"{100 * outcome.level:g}% (CI_TOTAL)")
    if outcome.subgroup_difference is not None:
        d = outcome.subgroup_difference
        result.notes.append(f"{outcome.location}: the file's test for subgroup differences (Q = {d['q']}, p = {d['p']}) "
                            "is not in the spec (one analysis per subgroup; reproduce compares their totals)")
    parts = [(None, outcome.totals)] + [(s, s.totals) for s in outcome.subgroups]
    used = {i for i, _, _ in result.analyses}
    for subgroup, totals in parts:
        aid = "o" + re.sub(r"[^A-Za-z0-9]+", "_", outcome.number if subgroup is None else subgroup.number)[:60]
        aid = next(f"{aid}{suffix}" for suffix in ("", *(f"_{n}" for n in range(2, len(used) + 3)))
                   if f"{aid}{suffix}" not in used)
        used.add(aid)
        where = outcome.location + ("" if subgroup is None else f", subgroup {subgroup.number} ('{subgroup.name}')")
        table = _table(outcome, subgroup, result.notes)
        why = _check_table(table, outcome, settings)
        if why:
            result.skipped.append((where, why))
            continue
        pid = None
        if totals is not None:
            pid = f"{review}_{aid}"
            rows.append(_published_row(review, pid, outcome, subgroup, totals, source, decimals))
        files.append((f"{aid}.csv", _csv_text(table), f"{where}: {len(table)} studies"))
        entries.append(_entry(aid, outcome, subgroup, f"{aid}.csv", settings, pid, note))
        result.analyses.append((aid, where, totals is not None))
        if totals is None:
            result.notes.append(f"{where}: the file stores no totals (reproduce shows no_target)")
