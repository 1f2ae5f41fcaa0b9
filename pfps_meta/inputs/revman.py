"""Reading a RevMan 5 review file (``.rm5``): every comparison, outcome and subgroup, with the study data,
the options RevMan stored and the totals it computed.

A ``.rm5`` file is XML with the root ``COCHRANE_REVIEW``. Its analyses sit under ``ANALYSES_AND_DATA``:
``COMPARISON`` elements (attribute ``NO``, a ``NAME`` child) hold outcomes of one type each --
``DICH_OUTCOME`` (2x2 counts: ``DICH_DATA`` with ``EVENTS_1``, ``TOTAL_1``, ``EVENTS_2``, ``TOTAL_2``),
``CONT_OUTCOME`` (arm means: ``CONT_DATA`` with ``MEAN_*``, ``SD_*``, ``TOTAL_*``), ``IV_OUTCOME`` (generic
inverse variance: ``IV_DATA`` with ``EFFECT_SIZE`` and ``SE``), and ``OE_OUTCOME`` / ``IPD_OUTCOME`` /
``OTHER_OUTCOME`` (O-E and variance, individual-patient and free-text data, which we do not pool). An
outcome may hold ``*_SUBGROUP`` elements instead of data rows directly. Group ``1`` is the experimental
arm, ``2`` the control arm (``GROUP_LABEL_1``, ``GROUP_LABEL_2``). Studies are named in
``STUDIES_AND_REFERENCES`` (``STUDY`` with ``ID``, ``NAME``, ``YEAR``); data rows point at them by
``STUDY_ID``.

Options read from each outcome: ``METHOD`` (MH, IV or PETO), ``RANDOM`` (YES = random effects,
DerSimonian-Laird), ``EFFECT_MEASURE`` (OR, RR, RD, PETO_OR, MD, SMD, ...), ``CI_TOTAL`` / ``CI_STUDY``
(confidence level in percent), ``TOTALS`` (YES, SUB = subgroup totals only, NO), ``SUBGROUPS``,
``SUBGROUP_TEST``, ``SWAP_EVENTS`` and, for generic data, ``LOG_DATA``. Totals stored with an outcome or a
subgroup, in RevMan's own conventions (the field meanings follow R meta's ``read.rm5`` documentation):

- ``EFFECT_SIZE``, ``CI_START``, ``CI_END``: the pooled estimate and its CI, on the ratio scale for ratio
  measures; ``LOG_EFFECT_SIZE``, ``LOG_CI_START``, ``LOG_CI_END`` are their **base-10** logarithms;
- ``Z``: the **absolute value** of the z statistic, ``P_Z`` its two-sided p-value;
- ``CHI2``, ``DF``, ``P_CHI2``: Cochran's Q heterogeneity test; ``I2`` (percent, from Q); ``TAU2``;
- on an outcome with subgroups, ``Q``, ``P_Q``, ``I2_Q``: the test for subgroup differences.

Per-study rows store the same fields (``EFFECT_SIZE``, ``SE``, ``CI_*``, ``LOG_*``, ``WEIGHT``). A generic
inverse-variance row of a ratio measure (``LOG_DATA="YES"``) stores the ratio in ``EFFECT_SIZE`` and the
SE of its natural log in ``SE``; we read ``yi`` as the natural log of the ratio (as R meta's ``read.rm5``
and ``metacr`` take it). ``SWAP_EVENTS="YES"`` means RevMan analysed the non-events: the events read are
``TOTAL - EVENTS``. Rows with ``ESTIMABLE="NO"`` are kept here (column ``estimable``); RevMan left them out
of its totals.

:func:`read_revman` returns a :class:`RevManFile`; every refusal is an :class:`~pfps_meta.errors.InputError`
naming the file and the element. Outcomes we cannot pool are kept with a ``skip_reason`` (never a crash).
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pfps_meta.errors import InputError

#: the outcome types of RevMan 5 and what we make of them
KINDS = {"DICH": "dichotomous", "CONT": "continuous", "IV": "generic inverse variance", "OE": "O-E and variance",
         "IPD": "individual patient data", "OTHER": "other data"}
POOLED_KINDS = ("DICH", "CONT", "IV")
#: RevMan's effect-measure codes (and the names older files write as text) -> our measure names
MEASURES = {"OR": "OR", "RR": "RR", "RD": "RD", "PETO_OR": "OR", "MD": "MD", "SMD": "SMD",
            "ODDS RATIO": "OR", "PETO ODDS RATIO": "OR", "RISK RATIO": "RR", "RISK DIFFERENCE": "RD",
            "MEAN DIFFERENCE": "MD", "STD. MEAN DIFFERENCE": "SMD", "STANDARDIZED MEAN DIFFERENCE": "SMD",
            "STANDARDISED MEAN DIFFERENCE": "SMD"}
RATIO_CODES = ("OR", "RR", "PETO_OR", "HR", "RATE_RATIO", "ODDS RATIO", "PETO ODDS RATIO", "RISK RATIO",
               "HAZARD RATIO")
#: the columns of a per-study table, by outcome type (our input layouts)
LAYOUT_COLUMNS = {"DICH": ["study", "events_exp", "n_exp", "events_ctrl", "n_ctrl"],
                  "CONT": ["study", "n_exp", "mean_exp", "sd_exp", "n_ctrl", "mean_ctrl", "sd_ctrl"],
                  "IV": ["study", "yi", "sei"]}
_DATA_FIELDS = {"DICH": {"events_exp": "EVENTS_1", "n_exp": "TOTAL_1", "events_ctrl": "EVENTS_2", "n_ctrl": "TOTAL_2"},
                "CONT": {"n_exp": "TOTAL_1", "mean_exp": "MEAN_1", "sd_exp": "SD_1", "n_ctrl": "TOTAL_2",
                         "mean_ctrl": "MEAN_2", "sd_ctrl": "SD_2"},
                "IV": {}}
_LN10 = math.log(10.0)
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


@dataclass(frozen=True)
class Totals:
    """The pooled result RevMan stored for an outcome or a subgroup (``None`` fields: not stored).

    ``estimate``, ``ci_low``, ``ci_high`` are on the reporting scale (ratio for OR/RR); ``log_estimate``
    etc. on the analysis scale (natural log for ratios, as is for differences). ``z`` is RevMan's |z|;
    ``z_signed`` gives it the sign of the estimate on the analysis scale. ``i2`` is in percent."""

    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    z: float | None = None
    p: float | None = None
    q: float | None = None
    df: float | None = None
    q_p: float | None = None
    i2: float | None = None
    tau2: float | None = None
    k: int | None = None
    total_exp: float | None = None
    total_ctrl: float | None = None
    events_exp: float | None = None
    events_ctrl: float | None = None
    ratio: bool = False
    quote: str = ""              # the stored attributes, as written in the file

    def _scaled(self, value):
        return None if value is None else (math.log(value) if self.ratio else value)

    @property
    def log_estimate(self):
        return self._scaled(self.estimate)

    @property
    def log_ci(self):
        return self._scaled(self.ci_low), self._scaled(self.ci_high)

    @property
    def z_signed(self):
        est = self.log_estimate
        return None if self.z is None or est is None else math.copysign(self.z, est)

    def to_dict(self) -> dict:
        names = ("estimate", "ci_low", "ci_high", "z", "p", "q", "df", "q_p", "i2", "tau2", "k", "total_exp",
                 "total_ctrl", "events_exp", "events_ctrl")
        return {name: getattr(self, name) for name in names}


@dataclass
class Subgroup:
    """One ``*_SUBGROUP`` of an outcome: its studies (same columns as the outcome's) and its totals."""

    number: str                  # "1.2.1": comparison.outcome.subgroup
    name: str
    studies: pd.DataFrame
    totals: Totals | None

    def to_frame(self) -> pd.DataFrame:
        """The subgroup's per-study table (the columns of :meth:`Outcome.to_frame`)."""
        return self.studies.copy()


@dataclass
class Outcome:
    """One outcome of a comparison, with the options RevMan stored and its totals."""

    comparison_number: str
    comparison: str
    number: str                  # "1.2": comparison.outcome
    name: str
    kind: str                    # DICH, CONT, IV, OE, IPD, OTHER
    revman_measure: str          # as written (e.g. PETO_OR)
    measure: str | None          # ours (OR, RR, RD, MD, SMD), None when we have no such measure
    method: str                  # MH, IV or PETO
    random: bool
    level: float                 # CI_TOTAL / 100
    study_level: float           # CI_STUDY / 100
    group_labels: tuple          # (experimental, control)
    graph_labels: tuple          # (left, right) of the forest plot
    totals_flag: str             # YES, SUB or NO
    has_subgroups: bool
    subgroup_test: bool
    swap_events: bool
    log_data: bool | None
    studies: pd.DataFrame        # every study row, with a ``subgroup`` column ("" without subgroups)
    totals: Totals | None
    subgroups: list = field(default_factory=list)
    subgroup_difference: dict | None = None     # {"q", "p", "i2"} of the test for subgroup differences
    skip_reason: str | None = None

    @property
    def location(self) -> str:
        return f"comparison {self.comparison_number} ('{self.comparison}'), outcome {self.number} ('{self.name}')"

    @property
    def model(self) -> str:
        """RevMan's words for the analysis, e.g. "M-H, Fixed" or "IV, Random"."""
        method = {"MH": "M-H", "IV": "IV", "PETO": "Peto"}.get(self.method, self.method)
        return f"{method}, {'Random' if self.random else 'Fixed'}"

    def to_frame(self) -> pd.DataFrame:
        """The per-study table: our layout's columns, then ``subgroup``, ``year`` and RevMan's stored
        per-study effect (``stored_effect``, ``stored_se``, ``stored_weight``)."""
        return self.studies.copy()

    def layout_frame(self, subgroup: Subgroup | None = None) -> pd.DataFrame:
        """The studies in our input layout (what ``import_revman`` writes), of one subgroup or all."""
        table = self.studies if subgroup is None else subgroup.studies
        extra = [c for c in ("year", "subgroup") if c in table.columns and table[c].astype(str).str.len().any()]
        return table[LAYOUT_COLUMNS[self.kind] + extra].copy()


@dataclass
class RevManFile:
    """Everything :func:`read_revman` found: the review's title, its comparisons and outcomes."""

    path: Path
    title: str
    comparisons: list            # [(number, name)]
    outcomes: list               # [Outcome], in file order

    def to_frame(self) -> pd.DataFrame:
        """One row per outcome and per subgroup: options, stored totals and flags."""
        rows = []
        for o in self.outcomes:
            base = {"comparison": o.comparison_number, "comparison_name": o.comparison, "outcome": o.number,
                    "outcome_name": o.name, "type": KINDS.get(o.kind, o.kind), "method": o.method,
                    "random": o.random, "measure": o.measure or o.revman_measure, "level": o.level,
                    "totals": o.totals_flag, "subgroups": o.has_subgroups, "subgroup_test": o.subgroup_test,
                    "skip_reason": o.skip_reason}
            rows.append({**base, "subgroup": "", "subgroup_name": "", "k_data": len(o.studies),
                         **_totals_row(o.totals)})
            for s in o.subgroups:
                rows.append({**base, "subgroup": s.number, "subgroup_name": s.name, "k_data": len(s.studies),
                             **_totals_row(s.totals)})
        return pd.DataFrame(rows)

    @property
    def skipped(self) -> list:
        return [o for o in self.outcomes if o.skip_reason]


def _totals_row(totals: Totals | None) -> dict:
    empty = dict.fromkeys(("estimate", "ci_low", "ci_high", "z", "p", "q", "df", "q_p", "i2", "tau2", "k",
                           "total_exp", "total_ctrl", "events_exp", "events_ctrl"))
    return {**empty, **(totals.to_dict() if totals is not None else {})}


# ------------------------------------------------------------------------------------------------
# reading


def read_revman(path) -> RevManFile:
    """Read a RevMan 5 file: every comparison, outcome and subgroup (see the module docstring).

    Refused with an InputError naming the file: a file that is not XML, XML that is not a RevMan review
    (no ``COCHRANE_REVIEW`` root), a document type declaration (RevMan writes none; entities could
    expand without bound), and a number that cannot be read (naming the element and attribute)."""
    name = str(path)
    root = _parse(path, name)
    studies = _study_names(root)
    title = (root.findtext("COVER_SHEET/TITLE") or "").strip()
    comparisons, outcomes = [], []
    analyses = root.find("ANALYSES_AND_DATA")
    for c_index, comparison in enumerate(analyses.findall("COMPARISON") if analyses is not None else [], start=1):
        c_no = (comparison.get("NO") or str(c_index)).strip()
        c_name = (comparison.findtext("NAME") or "").strip()
        comparisons.append((c_no, c_name))
        o_index = 0
        for element in comparison:
            kind = element.tag[: -len("_OUTCOME")] if element.tag.endswith("_OUTCOME") else None
            if kind is None:
                continue
            o_index += 1
            outcomes.append(_outcome(element, kind, c_no, c_name, o_index, studies, name))
    return RevManFile(path=Path(path), title=title, comparisons=comparisons, outcomes=outcomes)


def _parse(path, name: str) -> ET.Element:
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"path must be the path of a RevMan 5 file (got {type(path).__name__})")
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", file=name) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a RevMan file", file=name) from None
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=name) from None
    if b"<!DOCTYPE" in raw[:4096].upper() or b"<!ENTITY" in raw.upper():
        raise InputError("has a document type declaration; a RevMan 5 file has none, so it is not read",
                         file=name)
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else None
        raise InputError(f"not an XML file, so not a RevMan 5 file ({exc})", file=name, line=line) from None
    if root.tag != "COCHRANE_REVIEW":
        raise InputError(f"not a RevMan 5 file: the root element is <{root.tag}>, not <COCHRANE_REVIEW>", file=name)
    return root


def _unescape(text: str) -> str:
    """RevMan's XML-name escapes in study ids (``_x002d_`` is '-')."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def _study_names(root) -> dict:
    """STUDY_ID -> (name, year) for every study the file lists."""
    out = {}
    for study in root.iter("STUDY"):
        sid = study.get("ID")
        if sid:
            out[sid] = ((study.get("NAME") or "").strip() or _unescape(sid.removeprefix("STD-")),
                        (study.get("YEAR") or "").strip())
    return out


class _Attributes:
    """Reads one element's attributes as numbers, text or flags; a bad number names file and element."""

    def __init__(self, element, where: str, name: str):
        self.element, self.where, self.name = element, where, name

    def text(self, key, default=""):
        value = self.element.get(key)
        return default if value is None else value.strip()

    def flag(self, key, default=False):
        value = self.text(key).upper()
        return default if not value else value == "YES"

    def number(self, key):
        text = self.text(key)
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"{self.where}: {key} = '{text}' is not a number", file=self.name) from None
        if not math.isfinite(value):
            raise InputError(f"{self.where}: {key} = '{text}' is not a finite number", file=self.name)
        return value


def _outcome(element, kind: str, c_no: str, c_name: str, o_index: int, studies: dict, name: str) -> Outcome:
    """One ``*_OUTCOME`` element read into an :class:`Outcome` (data rows, subgroups, totals, options)."""
    o_no = f"{c_no}.{(element.get('NO') or str(o_index)).strip()}"
    o_name = (element.findtext("NAME") or "").strip()
    where = f"comparison {c_no}, outcome {o_no} ('{o_name}')"
    a = _Attributes(element, where, name)
    revman_measure = a.text("EFFECT_MEASURE") or (element.findtext("EFFECT_MEASURE") or "").strip()
    measure = MEASURES.get(revman_measure.upper())
    ratio = revman_measure.upper() in RATIO_CODES
    method = a.text("METHOD").upper() or ("PETO" if revman_measure.upper() == "PETO_OR" else "IV")
    level, study_level = _level(a, "CI_TOTAL"), _level(a, "CI_STUDY")
    totals_flag = a.text("TOTALS", "YES").upper()
    swap = a.flag("SWAP_EVENTS")
    log_data = a.flag("LOG_DATA") if a.text("LOG_DATA") else None
    outcome = Outcome(
        comparison_number=c_no, comparison=c_name, number=o_no, name=o_name, kind=kind,
        revman_measure=revman_measure, measure=measure, method=method, random=a.flag("RANDOM"), level=level,
        study_level=study_level, group_labels=((element.findtext("GROUP_LABEL_1") or "").strip(),
                                               (element.findtext("GROUP_LABEL_2") or "").strip()),
        graph_labels=((element.findtext("GRAPH_LABEL_1") or "").strip(),
                      (element.findtext("GRAPH_LABEL_2") or "").strip()),
        totals_flag=totals_flag, has_subgroups=a.flag("SUBGROUPS"), subgroup_test=a.flag("SUBGROUP_TEST"),
        swap_events=swap, log_data=log_data, studies=pd.DataFrame(), totals=None)
    outcome.skip_reason = _skip_reason(outcome)
    if kind not in POOLED_KINDS:
        return outcome
    frames = []
    rows = element.findall(f"{kind}_DATA")
    if rows:
        frames.append(_data_rows(rows, kind, ratio, swap, "", studies, where, name))
    for s_index, sub in enumerate(element.findall(f"{kind}_SUBGROUP"), start=1):
        s_no = f"{o_no}.{(sub.get('NO') or str(s_index)).strip()}"
        s_name = (sub.findtext("NAME") or "").strip()
        s_where = f"{where}, subgroup {s_no} ('{s_name}')"
        table = _data_rows(sub.findall(f"{kind}_DATA"), kind, ratio, swap, s_name, studies, s_where, name)
        frames.append(table)
        stored = _totals(_Attributes(sub, s_where, name), ratio, totals_flag in ("YES", "SUB"))
        outcome.subgroups.append(Subgroup(number=s_no, name=s_name, studies=table, totals=stored))
    outcome.studies = pd.concat(frames, ignore_index=True) if frames else _data_rows([], kind, ratio, swap, "",
                                                                                       studies, where, name)
    outcome.totals = _totals(a, ratio, totals_flag == "YES")
    if outcome.subgroups and a.text("Q"):
        outcome.subgroup_difference = {"q": a.number("Q"), "p": a.number("P_Q"), "i2": a.number("I2_Q")}
    return outcome


def _level(a: _Attributes, key: str) -> float:
    """A stored confidence level (percent) as a fraction; 95% when the file gives none."""
    percent = a.number(key)
    if percent is None:
        return 0.95
    if not 0 < percent < 100:
        raise InputError(f"{a.where}: {key} = {a.text(key)} is not a confidence level in percent "
                         "(strictly between 0 and 100)", file=a.name)
    return percent / 100.0


def _skip_reason(o: Outcome) -> str | None:
    """Why an outcome cannot be pooled here (None when it can)."""
    if o.kind not in POOLED_KINDS:
        return f"{KINDS.get(o.kind, o.kind)} outcomes ({o.kind}_OUTCOME) cannot be pooled by pfps-meta"
    if o.measure is None:
        return f"effect measure '{o.revman_measure or '(none)'}' is not one pfps-meta pools"
    if o.kind == "DICH" and o.measure not in ("OR", "RR", "RD"):
        return f"effect measure '{o.revman_measure}' is not a dichotomous measure"
    if o.kind == "CONT" and o.measure not in ("MD", "SMD"):
        return f"effect measure '{o.revman_measure}' is not a continuous measure"
    if o.method not in ("MH", "IV", "PETO"):
        return f"method '{o.method}' is not one RevMan 5 defines (MH, IV, PETO)"
    return None


def _totals(a: _Attributes, ratio: bool, stored: bool) -> Totals | None:
    """The stored totals of an outcome or subgroup, or None when the file holds none."""
    if not stored:
        return None
    est, lo, hi = (_on_reporting_scale(a, key, ratio) for key in ("EFFECT_SIZE", "CI_START", "CI_END"))
    if est is None:
        return None
    for key, bound in (("CI_START", lo), ("CI_END", hi)):
        if bound is None:
            raise InputError(f"{a.where}: a stored total has EFFECT_SIZE but no {key} (nor LOG_{key})", file=a.name)
    keys = ("EFFECT_SIZE", "CI_START", "CI_END", "LOG_EFFECT_SIZE", "LOG_CI_START", "LOG_CI_END", "Z", "P_Z",
            "CHI2", "DF", "P_CHI2", "I2", "TAU2", "STUDIES", "TOTAL_1", "TOTAL_2", "EVENTS_1", "EVENTS_2")
    quote = " ".join(f'{k}="{a.text(k)}"' for k in keys if a.text(k))
    z = a.number("Z")
    if z is not None and z < 0:
        raise InputError(f"{a.where}: Z = {a.text('Z')} is negative; RevMan stores |z|", file=a.name)
    k = a.number("STUDIES")
    return Totals(estimate=est, ci_low=lo, ci_high=hi, z=z, p=a.number("P_Z"), q=a.number("CHI2"),
                  df=a.number("DF"), q_p=a.number("P_CHI2"), i2=a.number("I2"), tau2=a.number("TAU2"),
                  k=None if k is None else int(k), total_exp=a.number("TOTAL_1"), total_ctrl=a.number("TOTAL_2"),
                  events_exp=a.number("EVENTS_1"), events_ctrl=a.number("EVENTS_2"), ratio=ratio, quote=quote)


def _on_reporting_scale(a: _Attributes, key: str, ratio: bool):
    """A stored estimate or bound on the reporting scale. For a ratio measure the file may give the
    value, its base-10 logarithm (``LOG_<key>``) or both; both must agree (to 1e-6, relative)."""
    value = a.number(key)
    if not ratio:
        return value
    log10 = a.number("LOG_" + key)
    if value is not None and value <= 0:
        raise InputError(f"{a.where}: {key} = {a.text(key)} is not a positive ratio", file=a.name)
    if log10 is None:
        return value
    from_log = 10.0 ** log10
    if value is not None and not math.isclose(value, from_log, rel_tol=1e-6):
        raise InputError(f"{a.where}: LOG_{key} = {a.text('LOG_' + key)} is not the base-10 logarithm of "
                         f"{key} = {a.text(key)}", file=a.name)
    return value if value is not None else from_log


def _data_rows(rows, kind: str, ratio: bool, swap: bool, subgroup: str, studies: dict, where: str,
               name: str) -> pd.DataFrame:
    """The ``*_DATA`` rows of an outcome or subgroup as a table in our layout (plus subgroup, year and
    RevMan's stored per-study effect, SE and weight)."""
    records = []
    for position, row in enumerate(rows, start=1):
        sid = row.get("STUDY_ID") or ""
        study, year = studies.get(sid, (_unescape(sid.removeprefix("STD-")), ""))
        a = _Attributes(row, f"{where}, data row {position} (study '{study}')", name)
        record = {"study": study}
        for column, key in _DATA_FIELDS[kind].items():
            record[column] = a.number(key)
        if kind == "DICH" and swap:         # RevMan analysed the non-events
            for events, total in (("events_exp", "n_exp"), ("events_ctrl", "n_ctrl")):
                if record[events] is not None and record[total] is not None:
                    record[events] = record[total] - record[events]
        if kind == "IV":
            record["yi"] = _generic_effect(a, ratio)
            record["sei"] = a.number("SE")
        record.update(subgroup=subgroup, year=year, stored_effect=a.number("EFFECT_SIZE"),
                      stored_se=a.number("SE"), stored_weight=a.number("WEIGHT"),
                      estimable=a.flag("ESTIMABLE", default=True))
        records.append(record)
    columns = LAYOUT_COLUMNS[kind] + ["subgroup", "year", "stored_effect", "stored_se", "stored_weight", "estimable"]
    table = pd.DataFrame.from_records(records, columns=columns)
    for column in LAYOUT_COLUMNS[kind][1:]:
        table[column] = table[column].astype(float)
    return table


def _generic_effect(a: _Attributes, ratio: bool):
    """A generic inverse-variance row's effect on the analysis scale: for a ratio measure the natural log
    of ``EFFECT_SIZE`` (stored as a ratio), or ``LOG_EFFECT_SIZE`` (base 10) times ln 10."""
    value = _on_reporting_scale(a, "EFFECT_SIZE", ratio)
    if value is None or not ratio:
        return value
    return float(np.log(value))
