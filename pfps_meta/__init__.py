"""pfps-meta: meta-analysis of trial data, built around the patellofemoral pain evidence.

The pipeline, one folder per stage, each importing only from the folders above it in this list::

    conventions, distributions, errors, formatting
                the leaves: settings, probability tails and quantiles, the error family, number formatting
    effects/    measures (the registry), sizes (yi, vi)
    inputs/     load (CSV, cells) -> layouts (the layout registry) -> validate.study_table (the one
                entrance; effect_table for pooled layouts, checked_effects when no table is needed) ;
                conversions, checks, revman (RevMan 5 files)
    models/     tau2, pooling (the batch core), univariate (MetaResult, pool), mantel_haenszel (MH, Peto),
                metareg, fast, blocks (block-diagonal V), multilevel, vcalc, robust, network, bayes
    evidence/   curated (the PFP evidence base), specs (analyses/*.toml), extraction (sheets)
    analysis/   sensitivity, diagnostics, simulate, presets, grade, reproduce, risk_of_bias
    present/    tables, plots, report, report_data / report_office (JSON, Word, Excel), export_r,
                revman_export, outputs (atomic writes)
    cli         the command line

Quick start::

    import pfps_meta as pm
    res = pm.pool(df, measure="MD", method="REML", ci_method="hksj")   # options: pm.OPTIONS
    print(res); res.to_frame(); res.to_dict()
"""

__version__ = "0.1.0"

from pfps_meta.conventions import DEFAULTS, OPTIONS, Settings  # noqa: E402
from pfps_meta.errors import ConvergenceWarning, InputError, InputWarning, PfpsWarning, SmallStudyWarning  # noqa: E402
from pfps_meta.models.pooling import BatchResult, estimate_tau2, pool_batch  # noqa: E402
from pfps_meta.models.univariate import MetaResult, pool, pool_effects  # noqa: E402
from pfps_meta.inputs.validate import effect_table  # noqa: E402
from pfps_meta.effects import measures  # noqa: E402
from pfps_meta.inputs.load import read_csv  # noqa: E402
from pfps_meta.present import tables as _renderers  # noqa: E402,F401  (registers how results print)
from pfps_meta.present import bayes_tables as _bayes_renderers  # noqa: E402,F401

# metafor's name for adding yi/vi columns to a table of studies.
escalc = effect_table
add_effect_sizes = effect_table

# Modules users reach as ``pm.<name>`` or ``from pfps_meta import <name>``: loaded on first use, so
# ``import pfps_meta`` stays light (no matplotlib, no report machinery).
_LAZY_MODULES = {
    "measures": "pfps_meta.effects.measures", "effects": "pfps_meta.effects.sizes",
    "conversions": "pfps_meta.inputs.conversions", "validate": "pfps_meta.inputs.validate",
    "metareg": "pfps_meta.models.metareg", "fast": "pfps_meta.models.fast",
    "sensitivity": "pfps_meta.analysis.sensitivity", "diagnostics": "pfps_meta.analysis.diagnostics",
    "simulate": "pfps_meta.analysis.simulate", "presets": "pfps_meta.analysis.presets",
    "grade": "pfps_meta.analysis.grade", "plots": "pfps_meta.present.plots", "tables": "pfps_meta.present.tables",
    "risk_of_bias": "pfps_meta.analysis.risk_of_bias", "export_r": "pfps_meta.present.export_r",
}


# Functions reached as ``pm.<name>``, loaded on first use likewise: name -> (module, attribute).
_LAZY_FUNCTIONS = {
    "multilevel": ("pfps_meta.models.multilevel", "multilevel"),
    "multivariate": ("pfps_meta.models.multilevel", "multivariate"),
    "vcalc": ("pfps_meta.models.vcalc", "vcalc"),
    "contrasts_from_arms": ("pfps_meta.models.vcalc", "contrasts_from_arms"),
    "cluster_robust": ("pfps_meta.models.robust", "cluster_robust"),
    "network": ("pfps_meta.models.network", "network"),
    "component_network": ("pfps_meta.models.network_components", "component_network"),
    "bayes": ("pfps_meta.models.bayes", "bayes"),
    "bayes_batch": ("pfps_meta.models.bayes", "bayes_batch"),
    "rma": ("pfps_meta.models.metareg", "rma"),
    "read_revman": ("pfps_meta.inputs.revman", "read_revman"),
    "import_revman": ("pfps_meta.present.revman_export", "import_revman"),
}


def __getattr__(name):
    import importlib

    if name in _LAZY_MODULES:
        value = importlib.import_module(_LAZY_MODULES[name])
    elif name in _LAZY_FUNCTIONS:
        module, attribute = _LAZY_FUNCTIONS[name]
        value = getattr(importlib.import_module(module), attribute)
    else:
        raise AttributeError(f"module 'pfps_meta' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY_MODULES) | set(_LAZY_FUNCTIONS))


__all__ = ["bayes", "bayes_batch", "rma", "read_revman", "import_revman", "multilevel", "multivariate", "vcalc", "contrasts_from_arms", "cluster_robust", "network",
           "component_network", "pool", "pool_batch", "pool_effects", "estimate_tau2", "effect_table", "escalc",
           "add_effect_sizes", "read_csv", "MetaResult", "BatchResult", "Settings", "DEFAULTS", "OPTIONS",
           "measures", "InputError", "InputWarning", "ConvergenceWarning", "SmallStudyWarning", "PfpsWarning",
           "__version__"]
