"""Input of a network meta-analysis: arm rows or contrast rows -> each study's contrasts against its
own baseline arm with their exact covariance (one V block per study), and the connectivity check.

Arm rows go through :func:`pfps_meta.models.vcalc.contrasts_from_arms` (exact covariance of contrasts
sharing an arm; Gleser & Olkin 2009). Contrast rows follow netmeta's layout (all pairs of a multi-arm
study, which must come from one set of arms: ``y_ab = theta_a - theta_b`` and ``v_ab = s_a + s_b``,
Rücker 2012), or the contrasts against one baseline with the shared arm's variance (metafor's
``?dat.senn2013`` ``calc.v``), or an explicit V.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError
from .blocks import BlockDiagonal
from .vcalc import contrasts_from_arms

__all__ = ["NetworkContrasts", "from_arm_rows", "from_contrast_rows", "check_connected"]


# ================================================================================================
# input: arm rows or contrast rows -> study-by-study contrasts with exact V


def _col(data, name, what):
    if not isinstance(name, str) or name not in data.columns:
        raise InputError(f"{what}: the data have no column {name!r} (columns: "
                         f"{', '.join(map(str, data.columns))})", column=str(name))
    s = data[name]
    miss = pd.isna(s).to_numpy()
    if miss.any():
        raise InputError("a missing value (every row needs one)", row=int(np.flatnonzero(miss)[0]) + 1, column=name)
    return s


def _num(data, name, what, positive=False):
    s = _col(data, name, what)
    x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(x)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise InputError(f"'{s.iloc[r]}' is not a finite number", row=r + 1, column=name)
    if positive and (x <= 0).any():
        r = int(np.flatnonzero(x <= 0)[0])
        raise InputError(f"must be positive, got {x[r]:g}", row=r + 1, column=name)
    return x


@dataclass(frozen=True)
class NetworkContrasts:
    study: np.ndarray      # per contrast (str)
    treat: np.ndarray      # per contrast (str)
    base: np.ndarray       # per contrast (str)
    y: np.ndarray
    V: BlockDiagonal       # one block per study, rows contiguous, in study order
    arms_n: dict           # treatment -> participants (when arm data were given)


def from_arm_rows(data, study, treatment, measure, n, mean, sd, events, options):
    st = _col(data, study, "study").astype(str)
    tr = _col(data, treatment, "treatment").astype(str)
    counts = st.value_counts()
    single = counts.index[counts.to_numpy() < 2]
    if len(single):
        row = int(np.flatnonzero(st.to_numpy() == single[0])[0]) + 1
        raise InputError(f"study '{single[0]}' has a single arm, so it compares nothing", row=row, column=study)
    arms = pd.DataFrame({"study": st.to_numpy(), "arm": tr.to_numpy()})
    cols = {"n": n}
    if measure in ("MD", "SMD"):
        cols.update(mean=mean, sd=sd)
    else:
        cols["events"] = events
    for key, name in cols.items():
        arms[key] = _col(data, name, key).to_numpy()
    # rows of a study kept together, in order of the study's first appearance
    order = np.argsort(pd.factorize(arms["study"])[0], kind="stable")
    arms = arms.iloc[order].reset_index(drop=True)
    con = contrasts_from_arms(arms, measure, study="study", arm="arm", **options)
    t = con.table
    nsum = pd.to_numeric(arms["n"], errors="coerce").groupby(arms["arm"]).sum().to_dict()
    return NetworkContrasts(t["study"].astype(str).to_numpy(), t["treat"].astype(str).to_numpy(),
                      t["control"].astype(str).to_numpy(), t["yi"].to_numpy(dtype=float), con.V, nsum)


def from_contrast_rows(data, study, treat1, treat2, yi, sei, var_shared, V):
    st = _col(data, study, "study").astype(str).to_numpy()
    t1 = _col(data, treat1, "treat1").astype(str).to_numpy()
    t2 = _col(data, treat2, "treat2").astype(str).to_numpy()
    y = _num(data, yi, "yi")
    same = np.flatnonzero(t1 == t2)
    if same.size:
        raise InputError("a contrast compares a treatment with itself", row=int(same[0]) + 1, column=treat2)
    codes, labels = pd.factorize(pd.Series(st), sort=False)
    if V is not None:
        if isinstance(V, BlockDiagonal):
            Vb = V
        else:
            Vb = BlockDiagonal.from_dense(np.asarray(V, dtype=float), groups=st)
        Vb = Vb.regroup(st)
        out_s, out_t, out_b, out_y, blocks = [], [], [], [], []
        for j, lab in enumerate(labels):
            idx = np.flatnonzero(codes == j)
            for i in idx:
                out_s.append(lab); out_t.append(t1[i]); out_b.append(t2[i]); out_y.append(y[i])
            pos = {int(r): q for q, r in enumerate(Vb.index[list(Vb.labels).index(lab)])}
            B = Vb.blocks[list(Vb.labels).index(lab)]
            perm = [pos[int(i)] for i in idx]
            blocks.append(np.asarray(B)[np.ix_(perm, perm)])
        return _assemble(out_s, out_t, out_b, out_y, blocks, labels, data_rows=None)
    se = _num(data, sei, "sei", positive=True)
    shared = None if var_shared is None else pd.to_numeric(data[_col(data, var_shared, "var_shared").name],
                                                           errors="coerce").to_numpy(dtype=float)
    out_s, out_t, out_b, out_y, blocks = [], [], [], [], []
    for j, lab in enumerate(labels):
        idx = np.flatnonzero(codes == j)
        trts = list(dict.fromkeys(np.concatenate([t1[idx], t2[idx]]).tolist()))
        a = len(trts)
        m = idx.size
        if a == 2:
            if m != 1:
                raise InputError(f"study '{lab}' lists {m} contrasts of the same two treatments", row=int(idx[1]) + 1,
                                 column=treat1)
            out_s.append(lab); out_t.append(t1[idx[0]]); out_b.append(t2[idx[0]]); out_y.append(y[idx[0]])
            blocks.append(np.array([[se[idx[0]] ** 2]]))
            continue
        if m == a * (a - 1) // 2:
            ys, bl, base, others = _reduce_all_pairs(lab, idx, t1, t2, y, se, trts, treat1, yi, sei)
        elif m == a - 1 and shared is not None:
            bases = set(t2[idx].tolist())
            if len(bases) != 1:
                raise InputError(f"study '{lab}': with var_shared, every contrast must share one baseline (treat2)",
                                 row=int(idx[0]) + 1, column=treat2)
            s = shared[idx]
            if not np.all(np.isfinite(s)) or not np.allclose(s, s[0], rtol=1e-8, atol=0):
                raise InputError(f"study '{lab}': var_shared must be one number for all its contrasts",
                                 row=int(idx[0]) + 1, column=var_shared)
            bl = np.full((m, m), s[0])
            np.fill_diagonal(bl, se[idx] ** 2)
            if np.linalg.eigvalsh(bl)[0] <= 0:
                raise InputError(f"study '{lab}': the contrast variances and var_shared cannot come from one set of "
                                 "arms (their covariance is not positive definite)", row=int(idx[0]) + 1, column=sei)
            ys, base, others = y[idx], t2[idx[0]], list(t1[idx])
        else:
            raise InputError(f"study '{lab}' has {a} treatments but {m} contrasts: give all {a * (a - 1) // 2} pairs "
                             f"(as netmeta takes them), or the {a - 1} contrasts against one baseline with var_shared, "
                             "or V", row=int(idx[0]) + 1, column=study)
        for q, t in enumerate(others):
            out_s.append(lab); out_t.append(t); out_b.append(base); out_y.append(ys[q])
        blocks.append(bl)
    return _assemble(out_s, out_t, out_b, out_y, blocks, labels, data_rows=None)


def _reduce_all_pairs(lab, idx, t1, t2, y, se, trts, treat1, yi, sei):
    """A multi-arm study given as all its pairs (netmeta's layout): arm effects and arm variances by
    least squares (``y_ab = theta_a - theta_b``, ``v_ab = s_a + s_b``); both must fit exactly (to netmeta's
    tolerance 0.001), else the contrasts cannot come from one set of arms."""
    a = len(trts)
    pos = {t: q for q, t in enumerate(trts)}
    D = np.zeros((idx.size, a))
    S = np.zeros((idx.size, a))
    for r, i in enumerate(idx):
        D[r, pos[t1[i]]] += 1; D[r, pos[t2[i]]] -= 1
        S[r, pos[t1[i]]] = 1; S[r, pos[t2[i]]] = 1
    theta = np.linalg.lstsq(D, y[idx], rcond=None)[0]
    dev = np.abs(D @ theta - y[idx])
    if dev.max() > 1e-3:
        r = int(idx[int(np.argmax(dev))])
        raise InputError(f"study '{lab}': its effects are inconsistent (a - b + b - c != a - c by {dev.max():.3g})",
                         row=r + 1, column=yi)
    s = np.linalg.lstsq(S, se[idx] ** 2, rcond=None)[0]
    dev = np.abs(S @ s - se[idx] ** 2)
    if dev.max() > 1e-3 * max(1.0, float(np.max(se[idx] ** 2))) or (s < 0).any():
        r = int(idx[int(np.argmax(dev))])
        raise InputError(f"study '{lab}': the contrast variances cannot come from one set of arms (v_ab = s_a + s_b "
                         f"fails by {dev.max():.3g}, or an arm variance is negative)", row=r + 1, column=sei)
    base = trts[0]
    others = trts[1:]
    ys = np.array([theta[pos[t]] - theta[0] for t in others])
    bl = np.full((a - 1, a - 1), s[0])
    bl[np.diag_indices(a - 1)] = s[1:] + s[0]
    return ys, bl, base, others


def _assemble(out_s, out_t, out_b, out_y, blocks, labels, data_rows):
    out_s = np.asarray(out_s, dtype=object).astype(str)
    index, start = [], 0
    for b in blocks:
        index.append(np.arange(start, start + b.shape[0]))
        start += b.shape[0]
    V = BlockDiagonal(tuple(index), tuple(np.asarray(b, dtype=float) for b in blocks), tuple(str(l) for l in labels))
    return NetworkContrasts(out_s, np.asarray(out_t, dtype=str), np.asarray(out_b, dtype=str),
                      np.asarray(out_y, dtype=float), V, {})


def connected_parts(edges, nodes) -> list:
    """The connected sub-networks of ``nodes`` linked by ``edges`` (pairs), largest first, each sorted."""
    parent = {t: t for t in nodes}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    groups = {}
    for t in nodes:
        groups.setdefault(find(t), []).append(t)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g))


def check_connected(con: NetworkContrasts, treatments):
    parts = connected_parts(zip(con.treat, con.base), treatments)
    if len(parts) > 1:
        text = "; ".join("{" + ", ".join(g) + "}" for g in parts)
        raise InputError(f"the network is disconnected: {len(parts)} sub-networks ({text}); fit them separately or "
                         "add a trial that links them")
