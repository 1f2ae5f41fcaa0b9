"""Argument checks and design pieces for :mod:`pfps_meta.models.multilevel`: every bad argument ends
in one :class:`~pfps_meta.errors.InputError` naming the argument, row and column."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .blocks import BlockDiagonal

METHODS = ("REML", "ML")
TESTS = ("z", "t")


def check_level(level):
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise InputError(f"level: expected a number between 0 and 1, got {level!r}") from None
    if not 0 < level < 1:     # metafor reads 95 as 95%; here, as in pm.pool, a level is a fraction
        raise InputError(f"level: must lie strictly between 0 and 1 (got {level:g}; 0.95 means 95%)")
    return level


def check_common(data, method, test, level):
    import pandas as pd

    if not isinstance(data, pd.DataFrame):
        raise InputError(f"data: expected a pandas DataFrame, got {type(data).__name__}")
    if len(data) == 0:
        raise InputError("data: no rows")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise InputError(f"method: unknown method {method!r} (one of {', '.join(METHODS)})")
    if test not in TESTS:
        raise InputError(f"test: unknown test {test!r} (one of {', '.join(TESTS)})")
    return method.upper(), check_level(level)


def numeric_column(data, col, what):
    import pandas as pd

    if not isinstance(col, str) or col not in data.columns:
        raise InputError(f"{what}: column {col!r} not found (columns: {', '.join(map(str, data.columns))})")
    values = pd.to_numeric(data[col], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise InputError(f"{what} is missing, not a number or infinite ({data[col].iloc[row - 1]!r})",
                         row=row, column=col, file=data.attrs.get("source"))
    return values


def grouping_column(data, col, what):
    """Labels of a grouping column: refuses missing values, naming row and column."""
    if not isinstance(col, str) or col not in data.columns:
        raise InputError(f"{what}: column {col!r} not found (columns: {', '.join(map(str, data.columns))})")
    values = data[col]
    missing = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0]) + 1
        raise InputError(f"{what}: the cluster id is missing", row=row, column=col,
                         file=data.attrs.get("source"))
    return values.to_numpy()


def sorted_levels(values):
    """Sorted unique levels (numeric order when every value is a number), as R's factor()."""
    uniq = list(dict.fromkeys(values.tolist()))
    try:
        return sorted(uniq, key=float)
    except (TypeError, ValueError):
        return sorted(uniq, key=str)


def level_codes(values, levels):
    lookup = {v: i for i, v in enumerate(levels)}
    return np.array([lookup[v] for v in values.tolist()], dtype=np.int64)


def v_matrix(V, vi, k, data):
    """V as the engine takes it: a BlockDiagonal, or the vector vi when the errors are independent."""
    if V is None:
        if vi is None:
            raise InputError("vi: give the sampling variances (vi) or their covariance matrix (V)")
        if np.any(vi <= 0):
            row = int(np.flatnonzero(vi <= 0)[0]) + 1
            raise InputError("vi: a sampling variance must be positive", row=row)
        return np.asarray(vi, dtype=float)
    if isinstance(V, BlockDiagonal):
        if V.n != k:
            raise InputError(f"V: covers {V.n} rows but data has {k}")
        return V
    arr = np.asarray(V, dtype=float)
    if arr.ndim == 1:
        if arr.size != k:
            raise InputError(f"V: {arr.size} variances for {k} rows")
        return v_matrix(None, arr, k, data)
    if arr.shape != (k, k):
        raise InputError(f"V: expected a {k} x {k} matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        i, j = np.argwhere(~np.isfinite(arr))[0]
        raise InputError(f"V: entry ({i + 1}, {j + 1}) is missing or infinite")
    if not np.allclose(arr, arr.T, rtol=1e-10, atol=1e-14):
        raise InputError("V: the matrix is not symmetric")
    return BlockDiagonal.from_dense(arr)


def design_matrix(data, mods, intercept):
    """X and coefficient names: metafor's ``intrcpt`` first; text moderators dummy-coded (the first
    text moderator fully coded when there is no intercept, as R's ``~ f - 1``)."""
    k = len(data)
    if mods is None or (isinstance(mods, (list, tuple)) and len(mods) == 0):
        if not intercept:
            raise InputError("mods: a model without intercept needs at least one moderator")
        return np.ones((k, 1)), ["intrcpt"]
    if isinstance(mods, tuple) and len(mods) == 2 and not isinstance(mods[0], str):
        X = np.asarray(mods[0], dtype=float)
        names = [str(n) for n in mods[1]]
        if X.ndim == 1:
            X = X[:, None]
        if X.shape[0] != k or X.shape[1] != len(names):
            raise InputError(f"mods: expected a {k}-row array with {len(names)} named columns, got {X.shape}")
        if not np.all(np.isfinite(X)):
            row = int(np.flatnonzero(~np.all(np.isfinite(X), axis=1))[0]) + 1
            raise InputError("mods: a moderator value is missing or infinite", row=row)
    else:
        from .metareg import design

        X, names, refs = design(data, mods)
        names = list(names)
        if not intercept and refs:
            # R's ``~ f - 1``: the first factor gets a column for its reference level too
            first = next(c for c in refs if any(n.startswith(f"{c}[") for n in names))
            own = [i for i, n in enumerate(names) if n.startswith(f"{first}[")]
            ref_col = 1.0 - X[:, own].sum(axis=1)
            at = own[0]
            X = np.column_stack([X[:, :at], ref_col, X[:, at:]])
            names = names[:at] + [f"{first}[{refs[first]}]"] + names[at:]
    if intercept:
        X = np.column_stack([np.ones(k), X])
        names = ["intrcpt"] + names
    return X, names


def check_identified(X, names, n_vc, k):
    p = X.shape[1]
    if np.linalg.matrix_rank(X) < p:
        raise InputError(f"mods: the moderators are linearly dependent ({', '.join(names)}); "
                         "drop a redundant one")
    if k <= p:
        raise InputError(f"data: {k} effects for {p} coefficients; the model is not identified")
    if n_vc > k - p:
        raise InputError(f"data: {n_vc} variance components but only {k - p} residual degrees of "
                         "freedom; more parameters than the data identify")


def sigma_spec(data, levels, spec, labels):
    """Nested intercepts ``~ 1 | a/b/c``: level j's clusters are the combinations of a..(j-th)."""
    if isinstance(levels, str):
        levels = (levels,)
    levels = tuple(levels)
    if len(set(levels)) != len(levels):
        raise InputError(f"levels: a column is named twice ({', '.join(levels)})")
    cols = [grouping_column(data, c, "levels") for c in levels]
    combo = None
    for j, c in enumerate(cols):
        key = np.array([str(v) for v in c], dtype=object)
        combo = key if combo is None else np.array([f"{a}/{b}" for a, b in zip(combo, key)], dtype=object)
        name = "/".join(levels[:j + 1])
        uniq = list(dict.fromkeys(combo.tolist()))
        # metafor orders the levels as R's sort of the factor's labels
        try:
            order = sorted(uniq, key=lambda s: tuple(float(x) for x in s.split("/")))
        except ValueError:
            order = sorted(uniq)
        if len(order) < 2:
            raise InputError(f"levels: '{name}' has a single cluster; its variance is not identified",
                             column=levels[j])
        spec.sigma_codes.append(level_codes(combo, order))
        spec.sigma_names.append(name)
        spec.sigma_levels.append(order)
        labels[name] = combo
    return spec
