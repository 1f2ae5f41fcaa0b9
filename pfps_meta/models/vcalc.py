"""The sampling covariance V of dependent effects: metafor's ``vcalc`` and the exact covariance of
contrasts that share an arm.

Two builders, both returning a :class:`~pfps_meta.models.blocks.BlockDiagonal` with one block per
cluster (study), never a dense k x k matrix. Both are vectorised by block size: every cluster with m
rows is computed in one (clusters x m x m) array operation, so 50,000 effects in 5,000 clusters take a
fraction of a second.

:func:`vcalc` approximates V from design information (which construct, which scale, which time point,
which groups were compared), following metafor 3.8-1's ``vcalc()`` (Viechtbauer 2010, J Stat Softw
36(3); the function's documentation, "Details" 1-5).

:func:`contrast_covariance` and :func:`contrasts_from_arms` compute effect sizes from arm-level data
(one row per arm) and the *exact* (large-sample) covariance between contrasts of one study that reuse
an arm, as in multiple-treatment trials and network meta-analysis (Gleser & Olkin 2009, "Stochastically
dependent effect sizes", ch. 19 in Cooper, Hedges & Valentine (eds.), The Handbook of Research
Synthesis and Meta-Analysis, 2nd ed., Russell Sage Foundation: multiple-treatment studies with a
common control; the binary examples on pp. 360-364, the SMD example on pp. 364-367, which metafor's
own test suite reproduces and tests/test_vcalc.py checks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..effects.sizes import hedges_correction
from ..errors import InputError
from .blocks import BlockDiagonal

#: metafor flags a block when an eigenvalue of its correlation matrix is <= .Machine$double.eps
_PD_EPS = float(np.finfo(float).eps)

__all__ = ["vcalc", "contrast_covariance", "contrasts_from_arms", "shared_arm_covariance", "Contrasts"]


# ================================================================================================
# shared helpers


def _column(data: pd.DataFrame, name, what: str) -> pd.Series:
    if not isinstance(name, str):
        raise InputError(f"argument '{what}' must be a column name, got {type(name).__name__}")
    if name not in data.columns:
        raise InputError(f"{what}: the data have no column {name!r} (columns: "
                         f"{', '.join(map(str, data.columns))})", column=name)
    return data[name]


def _no_missing(values: pd.Series, name: str, why: str = "a missing value") -> None:
    miss = pd.isna(values).to_numpy()
    if miss.any():
        row = int(np.flatnonzero(miss)[0]) + 1
        raise InputError(f"{why} (every row needs one)", row=row, column=name)


def _numeric(values: pd.Series, name: str, *, positive=False, nonnegative=False) -> np.ndarray:
    """A numeric column as floats: every value present, finite, and (optionally) > 0 or >= 0."""
    _no_missing(values, name)
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise InputError(f"'{values.iloc[row - 1]}' is not a finite number", row=row, column=name)
    if positive and (x <= 0).any():
        row = int(np.flatnonzero(x <= 0)[0]) + 1
        raise InputError(f"must be positive, got {x[row - 1]:g}", row=row, column=name)
    if nonnegative and (x < 0).any():
        row = int(np.flatnonzero(x < 0)[0]) + 1
        raise InputError(f"must not be negative, got {x[row - 1]:g}", row=row, column=name)
    return x


def _codes(values) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes by order of first appearance, and the labels they index."""
    codes, labels = pd.factorize(pd.Series(values, dtype=object), sort=False)
    return codes.astype(np.int64), np.asarray(labels, dtype=object)


def _by_size(codes: np.ndarray, n_groups: int):
    """For each block size m: the group ids of that size and their rows as an (groups x m) array.

    Rows inside a group keep their original order (a stable sort by group code)."""
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for m in np.unique(sizes):
        groups = np.flatnonzero(sizes == m)
        rows = order[starts[groups][:, None] + np.arange(m)[None, :]]
        yield int(m), groups, rows


def _assemble(n_groups, labels, pieces) -> BlockDiagonal:
    """A BlockDiagonal from (group ids, rows, stacked blocks) triples, blocks in label order."""
    index = [None] * n_groups
    blocks = [None] * n_groups
    for groups, rows, stack in pieces:
        for g, r, b in zip(groups.tolist(), rows, stack):
            index[g] = r
            blocks[g] = b
    return BlockDiagonal(tuple(index), tuple(blocks), tuple(labels.tolist()))


def _mirror(stack: np.ndarray) -> np.ndarray:
    """Exactly symmetric blocks: the lower triangle copied onto the upper one (as metafor does)."""
    low = np.tril(stack)
    return low + np.swapaxes(np.tril(stack, -1), 1, 2)


def _pair(a: np.ndarray, b: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast an (groups x m) array against itself (or another) as rows i and columns j."""
    b = a if b is None else b
    return a[:, :, None], b[:, None, :]


# ================================================================================================
# vcalc


def _rho_part(rho, values: pd.Series, column: str, role: str):
    """One correlation component of metafor's ``rho`` as (matrix over labels, each row's code).

    ``rho`` is a scalar (the same correlation for every pair of different values) or a labelled square
    matrix (a pandas DataFrame whose index and columns are the distinct values of the column)."""
    codes, labels = _codes(values)
    if isinstance(rho, pd.DataFrame):
        mat = rho
        if mat.shape[0] != mat.shape[1]:
            raise InputError(f"rho for '{role}' must be a square matrix, got {mat.shape[0]} x {mat.shape[1]}")
        idx = pd.Index(mat.index)
        if set(map(str, idx)) != set(map(str, mat.columns)):
            raise InputError(f"rho for '{role}': row and column labels differ")
        if idx.has_duplicates:
            raise InputError(f"rho for '{role}': duplicated labels")
        m = pd.DataFrame(mat.to_numpy(), index=[str(i) for i in idx], columns=[str(c) for c in mat.columns])
        m = m.loc[:, m.index]
        try:
            arr = m.to_numpy(dtype=float)
        except (TypeError, ValueError):
            raise InputError(f"rho for '{role}' must hold numbers") from None
        if not np.all(np.isfinite(arr)):
            raise InputError(f"rho for '{role}' holds a missing value")
        if np.any(np.abs(arr) > 1):
            raise InputError(f"rho for '{role}': every correlation must be in [-1, 1], got {arr[np.abs(arr) > 1][0]:g}")
        if not np.allclose(arr, arr.T, rtol=0, atol=1e-12):
            raise InputError(f"rho for '{role}' must be symmetric")
        pos = pd.Index(m.index).get_indexer([str(v) for v in labels])
        if (pos < 0).any():
            missing = labels[pos < 0][0]
            row = int(np.flatnonzero(values.astype(str).to_numpy() == str(missing))[0]) + 1
            raise InputError(f"value '{missing}' has no row/column in the rho matrix", row=row, column=column)
        return arr[np.ix_(pos, pos)], codes
    if isinstance(rho, np.ndarray) and rho.ndim == 2:
        raise InputError(f"rho for '{role}': a matrix needs row/column labels (pass a pandas DataFrame)")
    try:
        r = float(rho)
    except (TypeError, ValueError):
        raise InputError(f"rho for '{role}' must be a number in [-1, 1] or a labelled matrix, got {rho!r}") from None
    if not np.isfinite(r) or abs(r) > 1:
        raise InputError(f"rho must be in [-1, 1], got {rho!r}")
    mat = np.full((labels.size, labels.size), r)
    np.fill_diagonal(mat, 1.0)
    return mat, codes


def vcalc(data: pd.DataFrame, vi="vi", cluster="study", obs=None, rho=None, time=None, phi=None, type=None,
          grp1=None, grp2=None, w1=None, w2=None, checkpd=True, *, time2=None, subgroup=None) -> BlockDiagonal:
    """Construct or approximate V, the sampling covariance of dependent effects (metafor ``vcalc``).

    Arguments name columns of ``data`` (metafor's ``time1`` is ``time`` here); rows of one ``cluster``
    may be correlated, rows of different clusters are independent, and rows of different ``subgroup``
    values within a cluster are independent too. With ``S = diag(sqrt(vi))``, ``V = S R S`` where, for
    rows i and j of one cluster and subgroup (metafor 3.8-1 ``vcalc``, written out)::

        R_ij = rho_ij * [ c(g1_i, g1_j; t1_i, t1_j) / sqrt(w1_i w1_j) - c(g1_i, g2_j; t1_i, t2_j) / sqrt(w1_i w2_j)
                        - c(g2_i, g1_j; t2_i, t1_j) / sqrt(w2_i w1_j) + c(g2_i, g2_j; t2_i, t2_j) / sqrt(w2_i w2_j) ]
               / (s_i s_j),
        s_i  = sqrt(1/w1_i + 1/w2_i - 2 c(g1_i, g2_i; t1_i, t2_i) / sqrt(w1_i w2_i)),
        c(a, b; s, t) = [a == b] * phi^|s - t|   (1 when s == t),
        rho_ij = 1 (same type, same obs), rho_obs[obs_i, obs_j] (same type), rho_type[type_i, type_j] (else).

    Special cases (metafor's "Details"): ``obs`` with ``rho`` gives rho between different effects for
    the same construct; ``type`` with ``rho`` the correlation between construct types (rows of one type
    and one obs value are then perfectly correlated); ``time`` with ``phi`` gives phi^|t_i - t_j| (AR(1)
    in continuous time), multiplied by rho when obs/type differ; ``grp1``/``grp2`` (the two groups each
    contrast compares) with ``w1``/``w2`` (their sizes or inverse-variance weights) give the correlation
    induced by a shared group, e.g. two treatments against one control:
    ``(1/w_c) / sqrt((1/w_1 + 1/w_c)(1/w_2 + 1/w_c))`` (0.5 with equal weights). ``time2`` with
    ``grp1 == grp2`` describes within-subject contrasts.

    ``rho``: a scalar in [-1, 1], or a labelled square matrix (a DataFrame indexed by the distinct
    ``obs`` -- or ``type`` -- values; labels are matched as text) when only one of ``obs``/``type`` is
    given; when both are given, a pair ``(within-construct, between-construct)``, each a scalar or
    labelled matrix (metafor's ``c(r1, r2)`` or ``list(R1, R2)``). metafor's ``rvars`` and ``nearpd``
    are not implemented.

    Returns a BlockDiagonal, one block per cluster in order of first appearance, rows in data order.

    Raises InputError for a missing cluster id, vi, time or weight (naming row and column), a
    non-numeric time, rho outside [-1, 1], ``rho`` without ``obs``/``type`` (metafor ignores it),
    ``phi`` without ``time``, and, when ``checkpd``, clusters whose correlation block has an eigenvalue
    <= machine epsilon (metafor warns "not positive definite in cluster ..."; here the threshold is
    scaled by m * lambda_max so that exactly singular blocks are caught despite rounding), naming them.
    """
    if not isinstance(data, pd.DataFrame):
        raise InputError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    k = len(data)
    if k == 0:
        raise InputError("data has no rows")
    v = _numeric(_column(data, vi, "vi"), vi, nonnegative=True)
    ccode, clabels, sg = _clusters_and_subgroups(data, cluster, subgroup, k)
    (m_obs, c_obs), (m_type, c_type) = _construct_correlations(data, obs, type, rho, k)
    phi = _check_phi(time, time2, phi)
    t1 = np.zeros(k) if time is None else _time_column(data, time)
    t2 = t1 if time2 is None else _time_column(data, time2)
    g1, g2, wa, wb = _compared_groups(data, grp1, grp2, w1, w2, time2, k)
    s = _contrast_scale(g1, g2, t1, t2, wa, wb, phi, grp1 or time)
    design = _VcalcDesign(g1, g2, t1, t2, wa, wb, s, sg, c_obs, m_obs, c_type, m_type, phi)
    pieces, not_pd = _vcalc_blocks(v, ccode, clabels, design, checkpd, time)
    _check_positive_definite(not_pd, clabels, cluster)
    return _assemble(clabels.size, clabels, pieces)


@dataclass(frozen=True)
class _VcalcDesign:
    """Per-row design of :func:`vcalc`: group codes ``g1``/``g2``, time points ``t1``/``t2``, weights
    ``wa``/``wb``, the contrast scale ``s``, subgroup codes ``sg``, the obs and type codes with their
    correlation matrices, and ``phi``."""

    g1: np.ndarray
    g2: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    wa: np.ndarray
    wb: np.ndarray
    s: np.ndarray
    sg: np.ndarray
    c_obs: np.ndarray
    m_obs: np.ndarray
    c_type: np.ndarray
    m_type: np.ndarray
    phi: float


def _clusters_and_subgroups(data, cluster, subgroup, k):
    """Each row's cluster code, the cluster labels (order of first appearance) and each row's
    subgroup code (all 0 without ``subgroup``)."""
    cl = _column(data, cluster, "cluster")
    _no_missing(cl, cluster, "missing cluster id")
    ccode, clabels = _codes(cl)
    sg = np.zeros(k, dtype=np.int64)
    if subgroup is not None:
        s = _column(data, subgroup, "subgroup")
        _no_missing(s, subgroup, "missing subgroup id")
        sg = _codes(s)[0]
    return ccode, clabels, sg


def _construct_correlations(data, obs, type, rho, k):
    """The ``obs`` and ``type`` correlation components of ``rho``, each as (matrix over labels, each
    row's code); a component without its column is the 1 x 1 matrix [1] with every row coded 0."""
    if (obs is not None or type is not None) and rho is None:
        raise InputError("rho must be given when obs or type is given")
    if obs is None and type is None and rho is not None:
        raise InputError("rho is given but neither obs nor type is: say which rows it correlates")
    parts = {}
    if obs is not None and type is not None:
        if isinstance(rho, (pd.DataFrame, np.ndarray)) or np.ndim(rho) == 0 or len(rho) != 2:
            raise InputError("with both obs and type, rho must be a pair (within-construct, between-construct)")
        rho_obs, rho_type = rho[0], rho[1]
    else:
        rho_obs, rho_type = (rho, None) if obs is not None else (None, rho)
    for role, col, r in (("obs", obs, rho_obs), ("type", type, rho_type)):
        if col is None:
            parts[role] = (np.ones((1, 1)), np.zeros(k, dtype=np.int64))
        else:
            values = _column(data, col, role)
            _no_missing(values, col)
            parts[role] = _rho_part(r, values, col, role)
    return parts["obs"], parts["type"]


def _check_phi(time, time2, phi):
    """``phi`` as a float in [-1, 1] (1 without ``time``), checked against the time columns given."""
    if time2 is not None and time is None:
        raise InputError("time2 needs time (metafor's time1) as well")
    if time is not None and phi is None:
        raise InputError("phi must be given when time is given")
    if time is None and phi is not None:
        raise InputError("phi is given but time is not: say when each effect was measured")
    if phi is None:
        phi = 1.0
    try:
        phi = float(phi)
    except (TypeError, ValueError):
        raise InputError(f"phi must be a number in [-1, 1], got {phi!r}") from None
    if not np.isfinite(phi) or abs(phi) > 1:
        raise InputError(f"phi must be in [-1, 1], got {phi:g}")
    return phi


def _time_column(data, col):
    """A time column as floats: no missing values, text only if every value parses as a number."""
    values = _column(data, col, "time")
    _no_missing(values, col, "missing time")
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        x = pd.to_numeric(values, errors="coerce")
        bad = np.flatnonzero(x.isna().to_numpy())
        if bad.size:
            raise InputError(f"time must be numeric, got '{values.iloc[bad[0]]}'", row=int(bad[0]) + 1, column=col)
        values = x
    return _numeric(values, col)


def _compared_groups(data, grp1, grp2, w1, w2, time2, k):
    """The two groups each contrast compares, coded jointly (defaults: group 1 vs group 2), and their
    weights ``wa``/``wb`` (defaults: 1, and ``wb`` = ``wa``)."""
    if grp2 is not None and grp1 is None:
        raise InputError("grp2 needs grp1 as well")
    if time2 is not None and grp2 is None:
        raise InputError("time2 needs grp2 as well")
    if w2 is not None and w1 is None:
        raise InputError("w2 needs w1 as well")
    if w2 is not None and grp2 is None:
        raise InputError("w2 needs grp2 as well")
    g1v = np.ones(k, dtype=object) if grp1 is None else _column(data, grp1, "grp1")
    g2v = np.full(k, 2, dtype=object) if grp2 is None else _column(data, grp2, "grp2")
    for col, values in ((grp1, g1v), (grp2, g2v)):
        if col is not None:
            _no_missing(values, col, "missing group id")
    g_all = _codes(np.concatenate([np.asarray(g1v, dtype=object), np.asarray(g2v, dtype=object)]))[0]
    g1, g2 = g_all[:k], g_all[k:]
    wa = np.ones(k) if w1 is None else _numeric(_column(data, w1, "w1"), w1, positive=True)
    wb = wa if w2 is None else _numeric(_column(data, w2, "w2"), w2, positive=True)
    return g1, g2, wa, wb


def _ar(d, phi):
    """``phi^|d|`` (1 where d == 0), or the scalar 1 when phi == 1 (no time structure)."""
    if phi == 1.0:               # no time structure: phi^|d| = 1
        return 1.0
    with np.errstate(invalid="ignore"):
        return np.where(d == 0, 1.0, phi ** np.abs(d))


def _contrast_scale(g1, g2, t1, t2, wa, wb, phi, column):
    """Each contrast's scale ``s_i = sqrt(1/w1 + 1/w2 - 2 c(g1, g2; t1, t2) / sqrt(w1 w2))``; a
    degenerate one (a group against itself at one time point) is an error at ``column``."""
    self_c = (g1 == g2) * _ar(t1 - t2, phi)
    s2 = 1.0 / wa + 1.0 / wb - 2.0 * self_c / np.sqrt(wa * wb)
    bad = np.flatnonzero(~(s2 > 1e-14 * (1.0 / wa + 1.0 / wb)))
    if bad.size:
        r = int(bad[0])
        raise InputError("the contrast compares a group with itself at the same time point (its variance "
                         "structure is degenerate)", row=r + 1, column=column)
    return np.sqrt(s2)


def _vcalc_blocks(v, ccode, clabels, design, checkpd, time):
    """The covariance blocks stacked by cluster size, as (group ids, rows, blocks) triples, and the
    (cluster, smallest eigenvalue) pairs of blocks that are not positive definite (if ``checkpd``)."""
    pieces, not_pd = [], []
    for m, groups, rows in _by_size(ccode, clabels.size):
        if m == 1:
            pieces.append((groups, rows, v[rows][:, :, None]))
            continue
        R = _correlation_block(design, rows, m)
        if not np.all(np.isfinite(R)):
            g = int(groups[np.flatnonzero(~np.isfinite(R).all(axis=(1, 2)))[0]])
            raise InputError(f"cluster '{clabels[g]}': a correlation is not a number (a negative phi needs "
                             "whole-number time differences)", column=time)
        if checkpd:
            not_pd.extend(_low_eigenvalues(R, groups, m))
        pieces.append((groups, rows, _covariance_block(v[rows], R, m)))
    return pieces, not_pd


def _shared_group_corr(ga, gb, ta, tb, rows, phi):
    """``c(a, b; s, t) = [a == b] phi^|s - t|`` between rows i and j of each cluster in ``rows``."""
    (gi, gj), (ti, tj) = _pair(ga[rows], gb[rows]), _pair(ta[rows], tb[rows])
    return (gi == gj) * _ar(ti - tj, phi)


def _correlation_block(d: _VcalcDesign, rows, m):
    """The correlation matrices R (clusters x m x m) of the clusters in ``rows``: the vcalc formula of
    the docstring, zero between subgroups, unit diagonal."""
    def c(ga, gb, ta, tb):
        return _shared_group_corr(ga, gb, ta, tb, rows, d.phi)

    g1, g2, t1, t2 = d.g1, d.g2, d.t1, d.t2
    wi1, wj1 = _pair(d.wa[rows])
    wi2, wj2 = _pair(d.wb[rows])
    num = (c(g1, g1, t1, t1) / np.sqrt(wi1 * wj1) - c(g1, g2, t1, t2) / np.sqrt(wi1 * wj2)
           - c(g2, g1, t2, t1) / np.sqrt(wi2 * wj1) + c(g2, g2, t2, t2) / np.sqrt(wi2 * wj2))
    si, sj = _pair(d.s[rows])
    oi, oj = _pair(d.c_obs[rows])
    ti_, tj_ = _pair(d.c_type[rows])
    rho_ij = np.where(ti_ == tj_, np.where(oi == oj, 1.0, d.m_obs[oi, oj]), d.m_type[ti_, tj_])
    gi, gj = _pair(d.sg[rows])
    R = rho_ij * num / (si * sj) * (gi == gj)
    eye = np.eye(m, dtype=bool)
    R[:, eye] = 1.0
    return R


def _low_eigenvalues(R, groups, m):
    """(cluster, smallest eigenvalue) for each block of R that is not numerically positive definite."""
    eig = np.linalg.eigvalsh(R)
    low = eig[:, 0]
    # metafor's test is low <= eps; scaled by m * lambda_max so that a numerically singular
    # block is flagged whichever way rounding tips its smallest eigenvalue
    hit = low <= _PD_EPS * np.maximum(1.0, m * eig[:, -1])
    return zip(groups[hit].tolist(), low[hit].tolist())


def _covariance_block(vr, R, m):
    """``V = S R S`` per cluster with ``S = diag(sqrt(vi))``, the diagonal exactly ``vi``, mirrored."""
    sv = np.sqrt(vr)
    block = sv[:, :, None] * R * sv[:, None, :]
    block[:, np.eye(m, dtype=bool)] = vr          # exactly vi (sqrt(vi)^2 can differ in the last bit)
    return _mirror(block)


def _check_positive_definite(not_pd, clabels, cluster):
    """One error naming the clusters (first 8) whose correlation block is not positive definite."""
    if not_pd:
        not_pd.sort()
        names = ", ".join(f"'{clabels[g]}'" for g, _ in not_pd[:8]) + (", ..." if len(not_pd) > 8 else "")
        raise InputError(f"the correlation matrix is not positive definite in {len(not_pd)} cluster(s): {names} "
                         f"(smallest eigenvalue {min(e for _, e in not_pd):.3g}); check rho/phi and the design "
                         "columns, or pass checkpd=False", column=cluster)


# ================================================================================================
# contrasts from arm-level data

_MEASURES = ("MD", "SMD", "RR", "OR", "RD")


@dataclass(frozen=True)
class Contrasts:
    """Contrasts computed from arm data: one row per contrast, with its V.

    Attributes
    ----------
    table : DataFrame
        ``study``, ``treat``, ``control`` (arm labels), ``yi`` (treat minus control), ``vi``.
    V : BlockDiagonal
        One block per study (order of first appearance), rows in ``table`` order; diagonal = ``vi``.
    measure : str
    """

    table: pd.DataFrame
    V: BlockDiagonal
    measure: str

    @property
    def yi(self) -> np.ndarray:
        return self.table["yi"].to_numpy(dtype=float)

    @property
    def vi(self) -> np.ndarray:
        return self.table["vi"].to_numpy(dtype=float)


def shared_arm_covariance(measure: str, *, n, sd=None, events=None, y1=None, y2=None, n_total1=None,
                          n_total2=None, n_total=None, same_role=True):
    """Covariance of two contrasts of one study that share exactly one arm, from that arm's data.

    Vectorised over arrays. ``same_role``: the shared arm is the control (or the treatment) in both
    contrasts; otherwise the sign flips (for SMD only the 1/n term flips). With n, sd, events of the
    shared arm (Gleser & Olkin 2009, multiple-treatment studies, pp. 360-367):

    - MD: ``sd^2 / n`` (the variance of the shared arm's mean);
    - log RR: ``1/events - 1/n``; log OR: ``1/events + 1/(n - events)`` (the shared arm's two cells);
    - RD: ``p (1 - p) / n`` with ``p = events / n``;
    - SMD, each contrast standardised by its own two arms' pooled SD (as escalc does):
      ``1/n + y1 y2 n / (2 N1 N2)``, N1, N2 the two contrasts' total sizes (``n_total1``, ``n_total2``);
      SMD with one SD pooled over all arms of the study (Gleser & Olkin's form, pass ``n_total`` = all
      participants of the study): ``1/n + y1 y2 / (2 N)``.

    The SMD forms follow from the delta method: ``d = Delta_mean / s`` with the means independent of
    the pooled variances, and ``Cov(s_1^2, s_2^2) = 2 sigma^4 nu_shared / (nu_1 nu_2)`` for two
    pooled variances sharing one arm's sum of squares; at large n this gives the term above, and with
    one common pooled SD it gives ``y1 y2 / (2N)``, Gleser & Olkin's covariance.
    """
    measure = str(measure).upper()
    n = np.asarray(n, dtype=float)
    sign = 1.0 if same_role else -1.0
    if measure == "MD":
        return sign * np.asarray(sd, dtype=float) ** 2 / n
    if measure in ("RR", "OR", "RD"):
        x = np.asarray(events, dtype=float)
        base = {"RR": 1.0 / x - 1.0 / n, "OR": 1.0 / x + 1.0 / (n - x), "RD": (x / n) * (1.0 - x / n) / n}[measure]
        return sign * base
    if measure == "SMD":
        y1, y2 = np.asarray(y1, dtype=float), np.asarray(y2, dtype=float)
        if n_total is not None:
            return sign / n + y1 * y2 / (2.0 * np.asarray(n_total, dtype=float))
        return sign / n + y1 * y2 * n / (2.0 * np.asarray(n_total1, dtype=float) * np.asarray(n_total2, dtype=float))
    raise InputError(f"measure must be one of {', '.join(_MEASURES)}, got {measure!r}")


class _Keys:
    """Row keys made of several columns (tuples), with pandas MultiIndex's ``duplicated()`` (True where
    the key appeared in an earlier row) and ``get_indexer`` (the row of each key asked for, -1 if
    absent; the keys are unique by then), without building a MultiIndex."""

    def __init__(self, *columns):
        self.keys = list(zip(*columns))

    def duplicated(self) -> np.ndarray:
        seen, out = set(), np.zeros(len(self.keys), dtype=bool)
        for i, k in enumerate(self.keys):
            if k in seen:
                out[i] = True
            seen.add(k)
        return out

    def get_indexer(self, *columns) -> np.ndarray:
        where = {k: i for i, k in enumerate(self.keys)}
        return np.array([where.get(k, -1) for k in zip(*columns)], dtype=np.intp)


def _arm_table(arms, measure, study, arm, n, mean, sd, events):
    if not isinstance(arms, pd.DataFrame):
        raise InputError(f"arms must be a pandas DataFrame, got {type(arms).__name__}")
    if len(arms) == 0:
        raise InputError("arms has no rows")
    st = _column(arms, study, "study")
    _no_missing(st, study, "missing study id")
    ar_ = _column(arms, arm, "arm")
    _no_missing(ar_, arm, "missing arm id")
    key = _Keys(st.astype(str).to_numpy(), ar_.astype(str).to_numpy())
    dup = key.duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup)[0]) + 1
        raise InputError(f"arm '{ar_.iloc[row - 1]}' of study '{st.iloc[row - 1]}' appears twice", row=row, column=arm)
    nn = _numeric(_column(arms, n, "n"), n, positive=True)
    out = {"n": nn}
    if measure in ("MD", "SMD"):
        out["mean"] = _numeric(_column(arms, mean, "mean"), mean)
        out["sd"] = _numeric(_column(arms, sd, "sd"), sd, positive=True)
    else:
        x = _numeric(_column(arms, events, "events"), events, nonnegative=True)
        over = np.flatnonzero(x > nn)
        if over.size:
            raise InputError(f"events ({x[over[0]]:g}) exceed the arm size ({nn[over[0]]:g})", row=int(over[0]) + 1,
                             column=events)
        out["events"] = x
    if measure == "SMD":
        small = np.flatnonzero(nn < 2)
        if small.size:
            raise InputError("an arm needs at least 2 participants for an SD", row=int(small[0]) + 1, column=n)
    return st, ar_, key, out


def contrast_covariance(arms: pd.DataFrame, measure: str, contrasts: pd.DataFrame, *, study="study", arm="arm",
                        treat="treat", control="control", n="n", mean="mean", sd="sd", events="events",
                        sd_pool="pair", correct=True, add=0.5) -> Contrasts:
    """Effect sizes of the listed contrasts and their exact covariance, from a table of arms.

    ``arms``: one row per arm (``study``, ``arm`` id, ``n``, and ``mean``/``sd`` for MD/SMD or
    ``events`` for RR/OR/RD). ``contrasts``: one row per contrast (``study``, ``treat`` arm,
    ``control`` arm); ``yi`` is treat minus control.

    MD, log RR, log OR and RD are differences of independent arm statistics ``f_a`` with variances
    ``u_a`` (MD: mean, sd^2/n; RR: log(x/n), 1/x - 1/n; OR: log(x/(n - x)), 1/x + 1/(n - x);
    RD: p = x/n, p(1-p)/n), so with L the contrast-by-arm matrix (+1 treat, -1 control) the
    covariance is exactly ``L diag(u) L'``: contrasts sharing an arm covary by ``+-u_shared``
    (Gleser & Olkin 2009, multiple-treatment studies; the common-control covariances of their
    pp. 360-364 examples). ``vi`` equals metafor's ``escalc`` (MD vtype "LS"; RR, OR, RD).
    Zero cells (binary): when any arm of a study has no events or only events, ``add`` is added to
    the events and the non-events of *every* arm of that study, so that a shared arm is the same in
    all its contrasts (for a two-arm study this is escalc's default ``add=1/2, to="only0"``).

    SMD (Hedges' g with the exact J when ``correct``):

    - ``sd_pool="pair"`` (escalc's g and vtype "LS" variance): each contrast uses its two arms' pooled
      SD with ``J(n_t + n_c - 2)``; ``Cov = L diag(1/n) L' + y_p y_q n_shared / (2 N_p N_q)``
      (see :func:`shared_arm_covariance`), whose diagonal is ``1/n_t + 1/n_c + g^2 / (2N)``;
    - ``sd_pool="all"`` (Gleser & Olkin 2009, SMD for multiple-treatment studies, pp. 364-367): one SD
      pooled over all arms of the study, ``J(N - A)`` (A arms) when ``correct``,
      ``Var = 1/n_t + 1/n_c + d^2/(2N)``, ``Cov = +-1/n_shared + d_p d_q / (2N)``, N all participants.
    """
    measure = str(measure).upper()
    if measure not in _MEASURES:
        raise InputError(f"measure must be one of {', '.join(_MEASURES)}, got {measure!r}")
    if sd_pool not in ("pair", "all"):
        raise InputError(f"sd_pool must be 'pair' or 'all', got {sd_pool!r}")
    st, ar_, key, a = _arm_table(arms, measure, study, arm, n, mean, sd, events)
    cs, t, c = _contrast_arm_rows(contrasts, key, study, treat, control)
    scode, slabels = _codes(cs.astype(str).to_numpy())
    arm_study = st.astype(str).to_numpy()
    f, u, extra = _arm_statistics(measure, a, t, c, arm_study, ar_, sd_pool, correct, add, events)
    yi, vi = _contrast_effects(f, u, t, c, extra)
    pieces = _contrast_blocks(scode, slabels.size, t, c, u, a["n"], yi, vi, extra)
    table = pd.DataFrame({"study": cs.to_numpy(), "treat": contrasts[treat].to_numpy(),
                          "control": contrasts[control].to_numpy(), "yi": yi, "vi": vi})
    return Contrasts(table, _assemble(slabels.size, slabels, pieces), measure)


def _contrast_arm_rows(contrasts, key, study, treat, control):
    """The contrasts' study column and the arm-table rows of their treat and control arms, checked:
    every arm exists, no arm is contrasted with itself, no pair of arms is contrasted twice."""
    if not isinstance(contrasts, pd.DataFrame):
        raise InputError(f"contrasts must be a pandas DataFrame, got {type(contrasts).__name__}")
    if len(contrasts) == 0:
        raise InputError("there are no contrasts")
    cs = _column(contrasts, study, "study")
    _no_missing(cs, study, "missing study id")
    pos = {}
    for role, col in (("treat", treat), ("control", control)):
        values = _column(contrasts, col, role)
        _no_missing(values, col, f"missing {role} arm")
        where = key.get_indexer(cs.astype(str).to_numpy(), values.astype(str).to_numpy())
        if (where < 0).any():
            row = int(np.flatnonzero(where < 0)[0]) + 1
            raise InputError(f"study '{cs.iloc[row - 1]}' has no arm '{values.iloc[row - 1]}' in the arms table",
                             row=row, column=col)
        pos[role] = where
    t, c = pos["treat"], pos["control"]
    same = np.flatnonzero(t == c)
    if same.size:
        raise InputError("a contrast compares an arm with itself", row=int(same[0]) + 1, column=control)
    pair = _Keys(cs.astype(str).to_numpy(), np.minimum(t, c), np.maximum(t, c))
    dup = pair.duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup)[0]) + 1
        raise InputError("the same two arms are contrasted twice (V would be singular)", row=row, column=treat)
    return cs, t, c


def _arm_statistics(measure, a, t, c, arm_study, ar_, sd_pool, correct, add, events):
    """Per-arm statistic ``f`` and variance ``u`` (MD: mean, sd^2/n; SMD: None, 1/n; binary: see
    :func:`_binary_arm_statistics`), and for SMD the ``(sd_pool, g, N)`` triple of
    :func:`_smd_contrasts` (None otherwise)."""
    nn = a["n"]
    if measure == "MD":
        return a["mean"], a["sd"] ** 2 / nn, None
    if measure == "SMD":
        return None, 1.0 / nn, _smd_contrasts(a, t, c, arm_study, sd_pool, correct)
    f, u = _binary_arm_statistics(measure, a, t, c, arm_study, ar_, add, events)
    return f, u, None


def _smd_contrasts(a, t, c, arm_study, sd_pool, correct):
    """Hedges' g of each contrast, standardised by its two arms' pooled SD (``sd_pool="pair"``, J(n_t +
    n_c - 2)) or one SD pooled over the study's arms ("all", J(N - A)); returns ``(sd_pool, g, N)``
    with N the contrast's (pair) or the study's (all) total size."""
    nn = a["n"]
    if sd_pool == "pair":
        n_t, n_c = nn[t], nn[c]
        sp = np.sqrt(((n_t - 1) * a["sd"][t] ** 2 + (n_c - 1) * a["sd"][c] ** 2) / (n_t + n_c - 2))
        j = hedges_correction(n_t + n_c - 2) if correct else 1.0
        y = j * (a["mean"][t] - a["mean"][c]) / sp
        return ("pair", y, n_t + n_c)
    ss = pd.DataFrame({"s": arm_study, "ss": (nn - 1) * a["sd"] ** 2, "n": nn, "k": 1.0}).groupby("s").sum()
    n_all = ss.loc[arm_study[t], "n"].to_numpy()
    df = n_all - ss.loc[arm_study[t], "k"].to_numpy()
    sp = np.sqrt(ss.loc[arm_study[t], "ss"].to_numpy() / df)
    j = hedges_correction(df) if correct else 1.0
    y = j * (a["mean"][t] - a["mean"][c]) / sp
    return ("all", y, n_all)


def _binary_arm_statistics(measure, a, t, c, arm_study, ar_, add, events):
    """Per-arm log risk, log odds or risk and its variance, ``add`` added to both cells of every arm of a
    study with a zero cell; an arm in use whose statistic is undefined is an error."""
    nn = a["n"]
    x, m = a["events"].copy(), nn.copy()
    zero = (x == 0) | (x == m)
    if zero.any() and add:
        hit = np.isin(arm_study, np.unique(arm_study[zero]))
        x = x + add * hit
        m = m + 2 * add * hit
    with np.errstate(divide="ignore", invalid="ignore"):
        if measure == "RR":
            f, u = np.log(x / m), 1.0 / x - 1.0 / m
        elif measure == "OR":
            f, u = np.log(x / (m - x)), 1.0 / x + 1.0 / (m - x)
        else:
            p = x / m
            f, u = p, p * (1.0 - p) / m
    used = np.union1d(t, c)
    bad = used[~(np.isfinite(f[used]) & np.isfinite(u[used]))]
    if bad.size:
        raise InputError(f"study '{arm_study[bad[0]]}': arm '{ar_.iloc[bad[0]]}' has a zero cell and add=0, "
                         f"so its {measure} is undefined", row=int(bad[0]) + 1, column=events)
    return f, u


def _contrast_effects(f, u, t, c, extra):
    """Each contrast's ``yi`` (``f_t - f_c``, or the SMD) and ``vi`` (``u_t + u_c``, plus ``g^2 / (2N)``
    for SMD)."""
    if extra is None:
        yi = f[t] - f[c]
        vi = u[t] + u[c]
    else:
        yi = extra[1]
        nt = extra[2]
        vi = u[t] + u[c] + yi ** 2 / (2.0 * nt)
    return yi, vi


def _contrast_blocks(scode, n_studies, t, c, u, nn, yi, vi, extra):
    """The per-study covariance blocks stacked by size, as (group ids, rows, blocks) triples: ``L diag(u)
    L'`` plus the SMD term of :func:`shared_arm_covariance`, the diagonal exactly ``vi``."""
    pieces = []
    for size, groups, rows in _by_size(scode, n_studies):
        ti, tj = _pair(t[rows])
        ci, cj = _pair(c[rows])
        ut, uc = u[t[rows]][:, :, None], u[c[rows]][:, :, None]
        B = (ti == tj) * ut - (ti == cj) * ut - (ci == tj) * uc + (ci == cj) * uc
        if extra is not None:
            yi_, yj_ = _pair(yi[rows])
            if extra[0] == "pair":
                shared = ((ti == tj) | (ti == cj)) * nn[t[rows]][:, :, None] + ((ci == tj) | (ci == cj)) * nn[c[rows]][:, :, None]
                Ni, Nj = _pair(extra[2][rows])
                B = B + yi_ * yj_ * shared / (2.0 * Ni * Nj)
            else:
                B = B + yi_ * yj_ / (2.0 * extra[2][rows][:, :, None])
        eye = np.eye(size, dtype=bool)
        B[:, eye] = vi[rows]
        pieces.append((groups, rows, _mirror(B)))
    return pieces


def contrasts_from_arms(arms: pd.DataFrame, measure: str, study="study", arm="arm", baseline=None,
                        **options) -> Contrasts:
    """Every arm against its study's baseline arm (multi-arm trials; the network meta-analysis layout).

    ``baseline``: None (the first arm listed for each study), one arm label used in every study (each
    study must have it), or a mapping study -> arm label. Contrasts are listed study by study, in arm
    order, each ``arm - baseline``. Other ``options`` (n, mean, sd, events, sd_pool, correct, add) go to
    :func:`contrast_covariance`, which computes yi, vi and the exact V.
    """
    measure = str(measure).upper()
    if measure not in _MEASURES:
        raise InputError(f"measure must be one of {', '.join(_MEASURES)}, got {measure!r}")
    cols = {name: options.get(name, name) for name in ("n", "mean", "sd", "events")}
    st, ar_, _, _ = _arm_table(arms, measure, study, arm, cols["n"], cols["mean"], cols["sd"], cols["events"])
    scode, slabels = _codes(st.astype(str).to_numpy())
    arm_text = ar_.astype(str).to_numpy()
    count = np.bincount(scode, minlength=slabels.size)
    if (count < 2).any():
        g = int(np.flatnonzero(count < 2)[0])
        raise InputError(f"study '{slabels[g]}' has a single arm, so no contrast", column=arm)
    if baseline is None:
        first = np.full(slabels.size, -1)
        first[scode[::-1]] = np.arange(len(arms))[::-1]
        is_base = np.zeros(len(arms), dtype=bool)
        is_base[first] = True
    else:
        if isinstance(baseline, (Mapping, pd.Series)):
            lookup = {str(k): str(v) for k, v in dict(baseline).items()}
            missing = [lab for lab in slabels if lab not in lookup]
            if missing:
                raise InputError(f"study '{missing[0]}': no baseline arm given for it", column=arm)
            want = np.array([lookup[lab] for lab in slabels], dtype=object)[scode]
        else:
            want = np.full(len(arms), str(baseline), dtype=object)
        is_base = arm_text == want
        found = np.bincount(scode[is_base], minlength=slabels.size)
        if (found == 0).any():
            g = int(np.flatnonzero(found == 0)[0])
            raise InputError(f"study '{slabels[g]}' has no baseline arm '{want[scode == g][0]}'", column=arm)
    base_row = np.empty(slabels.size, dtype=np.int64)
    base_row[scode[is_base]] = np.flatnonzero(is_base)
    order = np.argsort(scode, kind="stable")
    order = order[~is_base[order]]
    contrasts = pd.DataFrame({study: st.to_numpy()[order], "treat": ar_.to_numpy()[order],
                              "control": ar_.to_numpy()[base_row[scode[order]]]})
    return contrast_covariance(arms, measure, contrasts, study=study, arm=arm, **options)
