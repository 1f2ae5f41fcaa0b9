"""The fitted model: :func:`pool` and the :class:`MetaResult` it returns.

``MetaResult`` is the hub of the toolkit (metafor's design): printing, ``to_frame()``, ``to_dict()``,
plots, tables and sensitivity analyses are all functions of it. It holds numbers computed once by the
pooling core; nothing downstream recomputes statistics.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtri

from pfps_meta.models import pooling
from pfps_meta.conventions import COUNT_METHODS, Settings, canonical, named_preset, unused_count_options
from pfps_meta.formatting import render
from pfps_meta.inputs.load import LINE_COLUMN, read_csv
from pfps_meta.models.tau2 import tau2_standard_error
from pfps_meta.errors import InputError
from pfps_meta.inputs.validate import checked_effects, numeric_column, require_columns, where_in_table
from pfps_meta.formatting import json_ready

# the binary table that Mantel-Haenszel and Peto pool (pfps_meta.models.mantel_haenszel)
COUNT_COLUMNS = ("events_exp", "n_exp", "events_ctrl", "n_ctrl")

# Field names of ``to_dict()`` / ``--format json``: scripts depend on them; do not rename.
JSON_FIELDS = ("k", "estimate", "se", "statistic", "df", "p", "ci_low", "ci_high",
               "tau2", "tau2_ci_low", "tau2_ci_high", "tau", "tau_ci_low", "tau_ci_high",
               "i2", "i2_ci_low", "i2_ci_high", "h2", "h2_ci_low", "h2_ci_high",
               "q", "q_df", "q_p", "pi_low", "pi_high", "pi_df", "converged", "iterations",
               "loglik", "deviance", "aic", "bic", "aicc", "tau2_se")

STUDY_JSON_FIELDS = ("yi", "vi", "se", "ci_low", "ci_high", "weight")
# arm-level inputs as actually used (after any conversion), and how they were obtained
ARM_JSON_FIELDS = ("n_exp", "mean_exp", "sd_exp", "n_ctrl", "mean_ctrl", "sd_ctrl", "conversion")


class MetaResult:
    """A fitted meta-analysis.

    Attributes
    ----------
    studies : DataFrame
        One row per study: ``study, yi, vi, se, ci_low, ci_high, weight`` (weight in %), followed by the
        input columns (arm data etc.). Built on first access (a single fit, a leave-one-out refit or a
        preset comparison that reads only ``stats`` never pays for the pandas objects); the numbers in it
        are fixed when the result is made.
    stats : dict
        Pooled statistics (see ``JSON_FIELDS``): estimate, se, CI, p, tau2 with its Q-profile CI, tau,
        I2, H2, Q test, prediction interval, convergence.
    settings : Settings
        Every convention the fit used; refits derive theirs from it (``settings.replace(...)``).
        ``method``, ``ci_method``, ``pi_method``, ``i2_method`` and ``level`` read through to it.
    measure : the effect measure (a name in :mod:`pfps_meta.effects.measures`) or None.
    """

    def __init__(self, studies=None, stats=None, settings=None, measure=None, source=None, notes=None, *,
                 build_studies=None):
        if stats is None or settings is None or (studies is None and build_studies is None):
            raise TypeError("MetaResult needs studies (or build_studies), stats and settings")
        self._studies = studies
        self._build_studies = build_studies
        self.stats = stats
        self.settings = settings
        self.measure = measure
        self.source = source
        self.notes = [] if notes is None else notes

    @property
    def studies(self) -> pd.DataFrame:
        if self._studies is None:
            self._studies = self._build_studies()
            self._build_studies = None
        return self._studies

    @studies.setter
    def studies(self, frame):
        self._studies = frame
        self._build_studies = None

    def __getstate__(self):                     # the builder is a closure: pickle the frame it builds
        self.studies
        return dict(self.__dict__)

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __eq__(self, other):
        if not isinstance(other, MetaResult):
            return NotImplemented
        return (self.stats == other.stats and self.settings == other.settings and self.measure == other.measure
                and self.source == other.source and self.notes == other.notes
                and self.studies.equals(other.studies))

    __hash__ = None

    method = property(lambda self: self.settings.method)
    ci_method = property(lambda self: self.settings.ci_method)
    pi_method = property(lambda self: self.settings.pi_method)
    i2_method = property(lambda self: self.settings.i2_method)
    level = property(lambda self: self.settings.level)

    @property
    def smd_convention(self):
        """The SMD convention when the measure uses it, else None."""
        from pfps_meta.effects import measures

        return self.settings.smd_convention if measures.get(self.measure).uses_smd_settings else None

    def __getattr__(self, name):
        stats = self.__dict__.get("stats", {})
        if name in stats:
            return stats[name]
        raise AttributeError(name)

    # ---------------------------------------------------------------- conversions
    def to_dict(self) -> dict:
        """Every pooled statistic, the settings and the per-study rows, JSON-ready (NaN -> None)."""
        out = {name: json_ready(self.stats[name]) for name in JSON_FIELDS}
        out.update(method=self.method, ci=self.ci_method, pi=self.pi_method, i2_method=self.i2_method,
                   level=self.level, measure=self.measure, smd_convention=self.smd_convention,
                   settings=self.settings.to_dict(), notes=list(self.notes))
        arm = [c for c in ARM_JSON_FIELDS if c in self.studies.columns]
        out["studies"] = [
            {"study": row["study"], **{name: json_ready(row[name]) for name in STUDY_JSON_FIELDS},
             **{name: json_ready(row[name]) if name != "conversion" else (json_ready(row[name]) or None) for name in arm}}
            for row in self.studies.to_dict("records")
        ]
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per study plus a final pooled row (``study = "Pooled (<method>)"``)."""
        cols = ["study", "yi", "vi", "se", "ci_low", "ci_high", "weight"]
        s = self.stats
        pooled = {"study": f"Pooled ({self.method})", "yi": s["estimate"], "vi": s["se"] ** 2, "se": s["se"],
                  "ci_low": s["ci_low"], "ci_high": s["ci_high"], "weight": 100.0}
        studies = self.studies
        k = len(studies)
        data = {c: np.append(studies[c].to_numpy(dtype=float), pooled[c]) for c in cols[1:]}
        data["pi_low"] = np.append(np.full(k, np.nan), s["pi_low"])
        data["pi_high"] = np.append(np.full(k, np.nan), s["pi_high"])
        labels = pd.array(list(studies["study"]) + [pooled["study"]], dtype=studies["study"].dtype)
        return pd.DataFrame({"study": labels, **data})

    def summary_frame(self) -> pd.DataFrame:
        """The pooled statistics as a one-row DataFrame (statsmodels' name)."""
        return pd.DataFrame([{name: self.stats[name] for name in JSON_FIELDS}])

    def summary(self, digits: int = 4) -> str:
        """A summary in the spirit of metafor's ``print.rma`` (rendered by :func:`pfps_meta.present.tables.result_text`)."""
        return render(self, "text", digits=digits)

    def __str__(self):
        return self.summary()

    def __repr__(self):
        s = self.stats
        return (f"<MetaResult {self.method}/{self.ci_method} k={s['k']} estimate={s['estimate']:.4g} "
                f"[{s['ci_low']:.4g}, {s['ci_high']:.4g}] tau2={s['tau2']}>")

    def _repr_html_(self):
        return render(self, "html")


def pool(data, measure=None, settings: Settings | None = None, weights=None, preset=None, **options) -> MetaResult:
    """Fit a meta-analysis to a table of studies.

    Parameters
    ----------
    data : DataFrame or path
        Arm-level columns ``study, n_exp, mean_exp, sd_exp, n_ctrl, mean_ctrl, sd_ctrl`` (or what papers
        print instead: see :func:`pfps_meta.inputs.validate.effect_table`), binary
        ``study, events_exp, n_exp, events_ctrl, n_ctrl``, or effect-level ``study, yi, vi`` /
        ``study, yi, sei`` / ``study, estimate, ci_low, ci_high``. A path is read with
        :func:`pfps_meta.inputs.load.read_csv`.
    measure : a name in :mod:`pfps_meta.effects.measures` (MD, SMD, ROM, RR, OR, RD) or None for effect-level input.
    settings : Settings, optional
        Conventions to use (default: :data:`pfps_meta.conventions.DEFAULTS`); keyword ``options``
        (``method="DL"``, ``ci_method="hksj"`` or its alias ``ci="hksj"``, ``level=0.9``, ...) override it.
        Every option, its default and meaning: :data:`pfps_meta.conventions.OPTIONS`.
    weights : column name or array, optional
        User weights (metafor ``rma(weights=)``; see :func:`pfps_meta.models.pooling.pool_batch`), one per
        study, finite and > 0; they are relative (their scale does not matter). Not with MH or PETO.
    preset : str or Preset, optional
        A named bundle of conventions (:data:`pfps_meta.conventions.PRESETS`: "metafor", "revman5",
        "revman_web_2025", "r_meta") used instead of ``settings`` (give one or the other). Keyword
        ``options`` override the preset: ``pool(df, preset="revman5", method="REML")`` is RevMan 5's
        conventions with REML. On binary counts a preset may use another method (``Preset.binary_method``)
        and says so in the result's notes (``Preset.binary_note``).

    ``method="MH"`` (measure OR, RR or RD) and ``method="PETO"`` (OR) pool binary counts ``study,
    events_exp, n_exp, events_ctrl, n_ctrl`` as metafor's ``rma.mh`` / ``rma.peto`` (common-effect; see
    :mod:`pfps_meta.models.mantel_haenszel`; corrections: options ``mh_add``, ``mh_to``, ``mh_drop00``,
    ``mh_sums_*``, ``cmh_correct``). Options that do not apply to them (HKSJ, the prediction interval,
    the tau² CI) are named in the result's notes.

    Raises
    ------
    pfps_meta.InputError
        Bad input or a bad option (including an argument of the wrong type, an unknown measure), with the
        argument, or the file, line, row and column, where there is one.
    """
    settings, chosen = _settings_and_preset(settings, preset, options)
    if isinstance(data, (str, Path)):
        data = read_csv(data)
    elif not isinstance(data, pd.DataFrame):
        raise InputError(f"data: a pandas DataFrame or the path of a CSV file is needed, got {type(data).__name__}")
    check_measure(measure, data.attrs.get("source"))
    if settings.method in COUNT_METHODS:
        check_count_method(settings.method, measure, data.attrs.get("source"))
    checked = checked_effects(data, measure, settings=settings)
    settings, notes = _preset_for_counts(chosen, settings, options, checked.attrs.get("layout") == "binary")
    if settings.method in COUNT_METHODS or weights is not None:
        return _pool_table(checked.frame, measure, settings, notes, weights, private=True)
    # the checked table's DataFrame is built only if the result's studies are read
    return _fit_one(checked.yi, checked.vi, measure, settings, list(notes), None, checked.attrs,
                    lambda: checked.frame)


def _settings_and_preset(settings, preset, options):
    """The settings of a fit from ``settings`` or a named ``preset`` (not both), keyword ``options`` on top;
    and the Preset (or None)."""
    if preset is None:
        return pooling.resolve_settings(settings, options), None
    if settings is not None:
        raise InputError("preset: give settings= or preset=, not both (options given as keywords apply on top)")
    chosen = named_preset(preset)
    return pooling.resolve_settings(chosen.settings, options), chosen


def _preset_for_counts(chosen, settings, options, binary):
    """A preset's method for binary counts (unless ``method`` was given) and its note on binary data."""
    if chosen is None or not binary:
        return settings, ()
    if chosen.binary_method is not None and not any(canonical(key) == "method" for key in options):
        settings = settings.replace(method=chosen.binary_method)
    return settings, ((chosen.binary_note,) if chosen.binary_note else ())


def check_measure(measure, source=None):
    """Refuse a measure that is not registered (the one message of :func:`pool` and :func:`pool_effects`)."""
    from pfps_meta.effects import measures

    if measure is not None and (not isinstance(measure, str) or measure not in measures.MEASURES):
        raise InputError(f"measure must be one of {', '.join(measures.MEASURES)} (got '{measure}')", file=source)


def check_count_method(method, measure, source=None):
    """Refuse a method that is not a count method, and a measure the count method cannot pool (MH: OR, RR,
    RD; Peto: OR), saying why."""
    if method not in COUNT_METHODS:
        raise InputError(f"method: {method!r} is not a method for 2x2 tables of counts (one of "
                         f"{', '.join(COUNT_METHODS)})", file=source)
    info = COUNT_METHODS[method]
    if measure is None:
        raise InputError(f"method {method}: a measure is needed ({', '.join(info.measures)}); {info.label} pools "
                         "2x2 tables of counts", file=source)
    if measure not in info.measures:
        why = ("Peto's method estimates an odds ratio only" if method == "PETO"
               else "Mantel-Haenszel pools ratios and differences of risks and odds only")
        raise InputError(f"method {method} cannot pool measure {measure}: {why} (use {', '.join(info.measures)}, "
                         "or an inverse-variance method such as FE or REML)", file=source)


def _float_column(table, name):
    """A float copy of the column ``name`` of a table :func:`pool` made. Through pandas' column-array
    accessor where it has one: a Series, which ``table[name]`` builds (with a deep copy of the table's
    attrs), costs more in pandas 3 than the whole fit of a small meta-analysis; the same values."""
    getter = getattr(table, "_get_column_array", None)
    if getter is not None and table.columns.is_unique:
        values = getter(table.columns.get_loc(name))
        if isinstance(values, np.ndarray):
            return values.astype(float, copy=True)
    return table[name].to_numpy(dtype=float, copy=True)


def _effect_columns(table):
    """yi and vi of a table, refusing a missing column and an empty, non-numeric or out-of-range cell
    (naming its file, line, row and column)."""
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"table: a pandas DataFrame with columns study, yi, vi is needed, got {type(table).__name__}")
    require_columns(table, ("study", "yi", "vi"), "pooling (effect sizes yi and their sampling variances vi)")
    if len(table) == 0:
        raise InputError("table: no study to pool", file=table.attrs.get("source"))
    return numeric_column(table, "yi"), numeric_column(table, "vi", above=0)


def _weights_column(table, weights):
    """User weights as floats, one per row of ``table``: a column name or an array of the table's length;
    each weight must be finite and > 0, else the row (and file, line) is named."""
    source = table.attrs.get("source")
    if isinstance(weights, str):
        if weights not in table.columns:
            raise InputError(f"weights: no column '{weights}'", file=source)
        return numeric_column(table, weights, above=0)
    values = pooling.as_float_array(weights, "weights")
    if values.shape != (len(table),):
        raise InputError(f"weights: {len(table)} values are needed (one per study), got shape {values.shape}",
                         file=source)
    bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
    if bad.size:
        raise InputError(f"weights: user weights must be finite and > 0 (got {values[bad[0]]:g} for study "
                         f"'{table['study'].iloc[bad[0]]}')", **where_in_table(table, int(bad[0])))
    return values


def pool_effects(table: pd.DataFrame, *, measure=None, settings: Settings | None = None, notes=(), weights=None,
                 preset=None, **options) -> MetaResult:
    """Pool a table that already has ``study, yi, vi`` columns (see :func:`pool`, also for ``preset``:
    keyword options override it). With ``method="MH"`` or ``"PETO"`` the table must also hold the counts
    ``events_exp, n_exp, events_ctrl, n_ctrl`` (as :func:`pfps_meta.effect_table` leaves them): these
    methods pool counts, and the study effects are recomputed from them as metafor does."""
    settings, chosen = _settings_and_preset(settings, preset, options)
    if chosen is not None and isinstance(table, pd.DataFrame):
        binary = all(column in table.columns for column in COUNT_COLUMNS)
        settings, preset_notes = _preset_for_counts(chosen, settings, options, binary)
        notes = list(notes) + [n for n in preset_notes if n not in notes]
    return _pool_table(table, measure, settings, notes, weights, private=False)


def _pool_table(table, measure, settings, notes, weights, private):
    """:func:`pool_effects` after its settings are resolved; ``private`` when ``table`` was made by
    :func:`pool` and nobody else holds it (the result then keeps it without a copy; its yi and vi were
    checked there)."""
    if settings.method in COUNT_METHODS:
        return _pool_counts_table(table, measure, settings, notes, weights)
    if private:
        yi, vi = _float_column(table, "yi"), _float_column(table, "vi")
    else:
        yi, vi = _effect_columns(table)
    check_measure(measure, table.attrs.get("source"))
    if isinstance(notes, str) or not all(isinstance(note, str) for note in notes):
        raise InputError("notes: a list of text notes is needed")
    if weights is not None:
        weights = _weights_column(table, weights)
    return _fit_one(yi, vi, measure, settings, notes, weights, table.attrs,
                    table if private else table.copy(deep=False))


def _fit_one(yi, vi, measure, settings, notes, weights, attrs, table):
    """The MetaResult of checked ``yi``, ``vi`` (and user ``weights`` or None): ``attrs`` of the table
    they come from (its source and notes), ``table`` that table for the study rows, or a function that
    returns it (called only when the studies are first read)."""
    source = attrs.get("source")
    try:
        stats, shares = pooling.pool_one(yi, vi, settings, weights=weights)
    except InputError as exc:
        raise InputError(exc.reason, file=source) from None
    stats["k"] = int(stats["k"])
    stats["iterations"] = int(stats["iterations"])
    stats["converged"] = bool(stats["converged"])
    z = ndtri(0.5 + settings.level / 2)
    build = study_frame_builder(table, yi, vi, z, shares)
    all_notes = list(notes) + list(attrs.get("notes", []))
    if stats["k"] == 2 and settings.pi_method == "t_k2" and settings.prediction_interval:
        all_notes.append("t(k-2) prediction interval is undefined for k = 2 (metafor silently uses df = 1)")
    if stats["k"] >= 2 and settings.ci_method == "hksj" and not math.isfinite(stats["se"]):
        all_notes.append("HKSJ is undefined here: every study has the same effect, so the residual variance "
                         "factor is 0 (metafor reports se = 0); se, CI, p and the prediction interval are "
                         "null. Use the Wald CI (ci_method='wald') for these data.")
    if stats["k"] >= 1 and not all(math.isfinite(stats[name]) for name in ("estimate",)):
        raise InputError("the pooled estimate is not a finite number (numerical overflow in the inputs?)",
                         file=source)
    stats["tau2_se"] = (tau2_standard_error(vi, stats["tau2"], settings.method)
                        if settings.method in ("ML", "REML") and stats["k"] >= 2 else None)
    if stats["k"] == 1 and settings.ci_method == "hksj":
        all_notes.append("HKSJ needs k >= 2: a single study gets the Wald (z) CI and p-value, as in metafor")
    unused = unused_count_options(settings, measure)
    if unused:
        all_notes.append(unused)
    return MetaResult(stats=stats, settings=settings, measure=measure, source=source,
                      notes=all_notes, build_studies=build)


def _pool_counts_table(table, measure, settings, notes, weights):
    """Mantel-Haenszel or Peto (:mod:`pfps_meta.models.mantel_haenszel`) on a table of counts."""
    from pfps_meta.models.mantel_haenszel import pool_counts

    if not isinstance(table, pd.DataFrame):
        raise InputError(f"table: a pandas DataFrame with columns study, {', '.join(COUNT_COLUMNS)} is needed, "
                         f"got {type(table).__name__}")
    source = table.attrs.get("source")
    check_measure(measure, source)
    check_count_method(settings.method, measure, source)
    if weights is not None:
        raise InputError(f"weights: user weights do not apply to method {settings.method} (its weights come "
                         "from the 2x2 tables); use an inverse-variance method such as FE for user weights",
                         file=source)
    if isinstance(notes, str) or not all(isinstance(note, str) for note in notes):
        raise InputError("notes: a list of text notes is needed")
    missing = [column for column in COUNT_COLUMNS if column not in table.columns]
    if missing:
        raise InputError(f"method {settings.method} needs the counts of each 2x2 table (columns "
                         f"{', '.join(COUNT_COLUMNS)}); missing: {', '.join(missing)}. Effect-level data (yi, vi "
                         "or an estimate with its CI) can only be pooled by inverse variance (FE, DL, REML, ...)",
                         file=source)
    return pool_counts(table, measure, settings, notes)


def study_frame_builder(table, yi, vi, z, weights):
    """A function that builds :attr:`MetaResult.studies` when it is first read: the computed columns
    ``study, yi, vi, se, ci_low, ci_high, weight`` (study CIs ``yi +- z sqrt(vi)``), then the input
    columns. ``table`` must be one nobody edits afterwards (:func:`pool_effects` passes a copy-on-write
    view of the caller's table, so their later edits do not reach the result)."""

    def build():
        frame = table() if callable(table) else table
        se = np.sqrt(vi)
        front = pd.DataFrame({"study": frame["study"].astype(str).to_numpy(), "yi": np.array(yi), "vi": np.array(vi),
                              "se": se, "ci_low": yi - z * se, "ci_high": yi + z * se, "weight": weights})
        rest = frame.drop(columns=[c for c in ("study", "yi", "vi", LINE_COLUMN) if c in frame.columns])
        # input columns that share a name with a computed one (e.g. a CI given as input) keep a suffix
        rest = rest.rename(columns={c: f"{c}_input" for c in rest.columns if c in front.columns})
        return pd.concat([front, rest.reset_index(drop=True)], axis=1)

    return build
