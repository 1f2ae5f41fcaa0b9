"""Sensitivity analyses as functions of a fitted :class:`~pfps_meta.model.MetaResult`.

Built on the batch core: leave-one-out is one ``pool_batch`` call on a (k x k) array whose row i has
study i set to NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .pooling import pool_batch


def leave_one_out(result) -> pd.DataFrame:
    """The pooled result with each study omitted in turn (metafor ``leave1out``), same settings as ``result``.

    Columns: study (the one omitted), k, estimate, se, ci_low, ci_high, p, tau2, i2, h2, q, q_p,
    pi_low, pi_high, converged.
    """
    yi = result.studies["yi"].to_numpy(dtype=float)
    vi = result.studies["vi"].to_numpy(dtype=float)
    k = len(yi)
    omitted = np.eye(k, dtype=bool)
    batch = pool_batch(np.where(omitted, np.nan, yi), np.where(omitted, np.nan, vi), method=result.method,
                       ci=result.ci, pi=result.pi, i2=result.i2_method, level=result.level, tau2_ci=False)
    frame = batch.summary_frame()
    columns = ["k", "estimate", "se", "ci_low", "ci_high", "p", "tau2", "i2", "h2", "q", "q_p", "pi_low",
               "pi_high", "converged"]
    out = frame[columns].copy()
    out.insert(0, "study", result.studies["study"].to_numpy())
    return out
