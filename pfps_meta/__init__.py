"""pfps-meta: meta-analysis of trial data, built around the patellofemoral pain evidence.

The pipeline, one module per stage::

    load.read_csv -> validate.effect_table -> effects (yi, vi) -> pooling.pool_batch -> model.MetaResult
        -> sensitivity / plots / tables / report

Quick start::

    import pfps_meta as pm
    res = pm.pool(df, measure="MD", method="REML", ci_method="hksj")   # options: pm.OPTIONS
    print(res); res.to_frame(); res.to_dict()
"""

__version__ = "0.1.0"

from .conventions import DEFAULTS, OPTIONS, Settings  # noqa: E402
from .errors import ConvergenceWarning, InputError, InputWarning, PfpsWarning, SmallStudyWarning  # noqa: E402
from .pooling import BatchResult, estimate_tau2, pool_batch  # noqa: E402
from .model import MetaResult, pool, pool_effects  # noqa: E402
from .validate import effect_table  # noqa: E402
from . import measures  # noqa: E402
from .load import read_csv  # noqa: E402

# metafor's name for adding yi/vi columns to a table of studies.
escalc = effect_table
add_effect_sizes = effect_table

__all__ = ["pool", "pool_batch", "pool_effects", "estimate_tau2", "effect_table", "escalc",
           "add_effect_sizes", "read_csv", "MetaResult", "BatchResult", "Settings", "DEFAULTS", "OPTIONS",
           "measures", "InputError", "InputWarning", "ConvergenceWarning", "SmallStudyWarning", "PfpsWarning",
           "__version__"]
