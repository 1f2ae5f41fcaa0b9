"""The numerical engine behind :mod:`pfps_meta.models.multilevel`: metafor's ``rma.mv`` likelihood,
evaluated block by block.

Model (Viechtbauer 2010, J Stat Softw 36(3); metafor ``rma.mv``)::

    y = X beta + sum_l Z_l u_l + Z_G g + e,   u_l ~ N(0, sigma2_l I),  g ~ N(0, G (x) I_outer),
    e ~ N(0, V),   so   M = V + sum_l sigma2_l Z_l Z_l' + (Z_inner G Z_inner') o (Z_outer Z_outer')

(``o`` the elementwise product). Rows are grouped into independent clusters (connected components of
V's blocks, every random factor and the struct term's outer factor); each cluster's block M_j is
Cholesky-factored, blocks of equal size as one batched stack. Nothing k x k is ever formed.

Log-likelihoods exactly as metafor's ``.ll.rma.mv`` (with ``REMLf=TRUE``)::

    ML:   -k/2 log(2 pi) - 1/2 log|M| - 1/2 r'M^-1 r
    REML: -(k-p)/2 log(2 pi) + 1/2 log|X'X| - 1/2 log|M| - 1/2 log|X'M^-1 X| - 1/2 r'M^-1 r

with r = y - X beta_hat(M). The score for a parameter t with dM/dt = D is
``-1/2 tr(K D)``, ``K = P - M^-1 r r' M^-1`` (REML, P = W - W X (X'WX)^-1 X'W) or
``K = W - W r r' W`` (ML), whose within-block parts are all that D touches (Harville 1977,
JASA 72:320-340). Variances are optimised on the log scale, correlations on the atanh scale (CAR: logit),
as metafor does.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, sparse
from scipy.sparse.csgraph import connected_components

from .. import distributions
from ..errors import ConvergenceWarning, InputError
from .blocks import BlockDiagonal

STRUCTS = ("CS", "HCS", "UN", "ID", "DIAG", "AR", "HAR", "CAR")
LOG_VAR_MIN = -40.0  # exp(-40) ~ 4e-18: reported as 0, as metafor zeroes values below 10 * machine eps
ATANH_MAX = 18.0     # tanh(18) = 1 - 5e-16: a correlation at +-1 to double precision
EPS0 = 10 * np.finfo(float).eps


# ------------------------------------------------------------------------------------------ G matrix
def n_struct_params(struct: str, q: int) -> tuple[int, int]:
    """(number of tau2, number of rho) of metafor's ``struct`` with ``q`` inner levels."""
    if struct in ("CS", "AR", "CAR"):
        return 1, 1
    if struct in ("HCS", "HAR"):
        return q, 1
    if struct == "UN":
        return q, q * (q - 1) // 2
    if struct == "ID":
        return 1, 0
    if struct == "DIAG":
        return q, 0
    raise InputError(f"struct: unknown structure '{struct}' (one of {', '.join(STRUCTS)})")


def lower_pairs(q: int):
    """Index pairs (i, j), i > j, in R's ``lower.tri`` (column-major) order: metafor's rho order for UN."""
    return [(i, j) for j in range(q) for i in range(j + 1, q)]


def build_g(tau2, rho, struct: str, q: int, values=None) -> np.ndarray:
    """metafor's ``.con.E``: the q x q covariance of the inner levels (works for complex input, so a
    complex step gives its exact derivative).

    CS: tau2 on the diagonal, rho tau2 off it; HCS: sqrt(tau2_i tau2_j) rho; UN: sqrt(tau2_i tau2_j)
    rho_ij; ID/DIAG: diagonal; AR: tau2 rho^|i-j| over the ranks of the sorted inner levels; HAR: the
    same with sqrt(tau2_i tau2_j); CAR: tau2 rho^|t_i - t_j| over the inner values.
    """
    tau2 = np.asarray(tau2)
    rho = np.asarray(rho)
    dtype = np.result_type(tau2, rho, float)
    lag = np.abs(np.subtract.outer(np.arange(q), np.arange(q)))
    if struct in ("CS", "ID", "AR", "CAR"):
        s = np.full(q, np.sqrt(tau2[0]), dtype=dtype)
    else:
        s = np.sqrt(tau2.astype(dtype))
    scale = np.multiply.outer(s, s)
    if struct in ("ID", "DIAG"):
        return np.diag((s * s).astype(dtype))
    if struct in ("CS", "HCS"):
        R = np.full((q, q), rho[0], dtype=dtype)
    elif struct == "UN":
        R = np.zeros((q, q), dtype=dtype)
        for r, (i, j) in zip(rho, lower_pairs(q)):
            R[i, j] = R[j, i] = r
    elif struct in ("AR", "HAR"):
        R = rho[0] ** lag if q > 1 else np.ones((1, 1), dtype=dtype)
        R = R.astype(dtype)
    elif struct == "CAR":
        t = np.asarray(values, dtype=float)
        R = (rho[0] ** np.abs(np.subtract.outer(t, t))).astype(dtype)
    else:  # pragma: no cover - validated earlier
        raise InputError(f"struct: unknown structure '{struct}'")
    G = R * scale
    G[np.diag_indices(q)] = s * s
    return G


# ------------------------------------------------------------------------------------------ the spec
@dataclass
class RandomSpec:
    """The random part: nested intercept factors and at most one ``~ inner | outer`` term.

    ``sigma_codes[l]`` gives each row's 0-based level of factor l; ``inner_codes``/``outer_codes`` the
    same for the struct term (inner codes index the sorted inner levels)."""

    sigma_codes: list = field(default_factory=list)
    sigma_names: list = field(default_factory=list)
    sigma_levels: list = field(default_factory=list)   # labels of each factor's levels
    struct: str | None = None
    inner_codes: np.ndarray | None = None
    outer_codes: np.ndarray | None = None
    inner_levels: list = field(default_factory=list)
    outer_levels: list = field(default_factory=list)
    inner_values: np.ndarray | None = None
    inner_name: str = ""
    outer_name: str = ""

    @property
    def q(self) -> int:
        return len(self.inner_levels)

    @property
    def n_sigma(self) -> int:
        return len(self.sigma_codes)

    def layout(self):
        """Kinds of the natural parameters: sigma2..., tau2..., rho... ('var', 'cor' or 'carcor')."""
        kinds = ["var"] * self.n_sigma
        nt = nr = 0
        if self.struct is not None:
            nt, nr = n_struct_params(self.struct, self.q)
            kinds += ["var"] * nt + (["carcor"] if self.struct == "CAR" else ["cor"]) * nr
        return kinds, nt, nr


def to_theta(nat, kinds):
    out = np.empty(len(nat))
    for i, (v, kind) in enumerate(zip(nat, kinds)):
        if kind == "var":
            out[i] = math.log(v) if v > math.exp(LOG_VAR_MIN) else LOG_VAR_MIN
        elif kind == "cor":
            v = min(max(v, -1 + 1e-16), 1 - 1e-16)
            out[i] = float(np.clip(np.arctanh(v), -ATANH_MAX, ATANH_MAX))
        else:
            v = min(max(v, 1e-12), 1 - 1e-12)
            out[i] = math.log(v / (1 - v))
    return out


def from_theta(theta, kinds):
    theta = np.asarray(theta)
    out = np.empty(theta.shape, dtype=theta.dtype)
    for i, kind in enumerate(kinds):
        if kind == "var":
            out[i] = np.exp(theta[i])
        elif kind == "cor":
            out[i] = np.tanh(theta[i])
        else:
            out[i] = 1 / (1 + np.exp(-theta[i]))
    return out


def theta_bounds(kinds):
    b = []
    for kind in kinds:
        if kind == "var":
            b.append((LOG_VAR_MIN, 50.0))
        elif kind == "cor":
            b.append((-ATANH_MAX, ATANH_MAX))
        else:
            b.append((-36.0, 36.0))
    return b


# ------------------------------------------------------------------------------------------ clusters
def clusters(k: int, groupings) -> np.ndarray:
    """Connected components of rows that share a value in any of ``groupings`` (code arrays)."""
    rows, cols = [], []
    for g in groupings:
        g = np.asarray(g)
        order = np.argsort(g, kind="stable")
        same = g[order][1:] == g[order][:-1]
        rows.append(order[1:][same])
        cols.append(order[:-1][same])
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    graph = sparse.coo_matrix((np.ones(r.size), (r, c)), shape=(k, k)).tocsr()
    _, comp = connected_components(graph, directed=False)
    # number components by first appearance
    _, first, inv = np.unique(comp, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inv.ravel()]


@dataclass
class _Group:
    """All clusters of one size m, stacked."""

    rows: np.ndarray        # (nb, m) row positions
    cluster: np.ndarray     # (nb,) cluster numbers
    y: np.ndarray           # (nb, m)
    X: np.ndarray           # (nb, m, p)
    V: np.ndarray           # (nb, m, m)
    S: list                 # per sigma level, (nb, m, m) 0/1
    O: np.ndarray | None    # (nb, m, m) same outer level
    E: np.ndarray | None    # (nb, m, q) one-hot inner level
    ic: np.ndarray | None   # (nb, m) inner codes


def _row_sum(a, b):
    """``sum_{c,i} a[c, i, :] (x) b[c, i, ...]``: what ``np.tensordot(a, b, axes=([0, 1], [0, 1]))`` computes,
    by the same transpose, reshape and single ``np.dot`` (so the same numbers), without its argument
    checks (this runs in every likelihood evaluation)."""
    n = a.shape[0] * a.shape[1]
    out = np.dot(a.transpose(2, 0, 1).reshape(a.shape[2], n), b.reshape(n, -1))
    return out.reshape(a.shape[2:] + b.shape[2:])


class Engine:
    """Block-wise (restricted) log-likelihood, its score, and the fitted quantities at given
    variance components. Build once per data set; every evaluation reuses the stacks."""

    def __init__(self, y, X, V, spec: RandomSpec, method: str = "REML", v_labels=None):
        """``V`` a :class:`BlockDiagonal` or the (k,) vector of independent sampling variances;
        ``v_labels`` an optional label per row used to name clusters in messages."""
        self.y = np.asarray(y, dtype=float)
        self.X = np.asarray(X, dtype=float)
        self.k, self.p = self.X.shape
        self.spec = spec
        self.method = method
        self.reml = method == "REML"
        self.kinds, self.nt, self.nr = spec.layout()
        groupings = list(spec.sigma_codes)
        if spec.struct is not None:
            groupings.append(spec.outer_codes)
        diag_only = not isinstance(V, BlockDiagonal)   # V given as the vector of sampling variances
        if not diag_only:
            vcode = np.empty(self.k, dtype=np.int64)
            for j, idx in enumerate(V.index):
                vcode[idx] = j
            groupings.append(vcode)
        self.cluster_of = clusters(self.k, groupings)
        self.n_clusters = int(self.cluster_of.max()) + 1 if self.k else 0
        order = np.lexsort((np.arange(self.k), self.cluster_of))
        sizes = np.bincount(self.cluster_of, minlength=self.n_clusters)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        pos = np.empty(self.k, dtype=np.int64)
        pos[order] = np.arange(self.k) - starts[self.cluster_of[order]]
        self.pos = pos
        # each cluster's label for messages: its first row's label in ``v_labels`` (per row), or the
        # first row's V block label
        first_row = order[starts[:-1]]
        if v_labels is not None:
            self.cluster_names = [v_labels[r] for r in first_row]
        elif not diag_only:
            self.cluster_names = [V.labels[vcode[r]] for r in first_row]
        else:
            self.cluster_names = [str(c + 1) for c in range(self.n_clusters)]
        self.groups = []
        slot = np.empty(self.n_clusters, dtype=np.int64)
        gid = np.empty(self.n_clusters, dtype=np.int64)
        for m in np.unique(sizes):
            cl = np.flatnonzero(sizes == m)
            gid[cl] = len(self.groups)
            slot[cl] = np.arange(cl.size)
            rows = order[(starts[cl][:, None] + np.arange(m)[None, :])]
            self.groups.append(self._stack(rows, cl, int(m)))
        # V into the stacks
        if diag_only:
            vi = np.asarray(V, dtype=float)
            for g in self.groups:
                ii = np.arange(g.V.shape[1])
                g.V[:, ii, ii] = vi[g.rows]
        else:
            for idx, block in zip(V.index, V.blocks):
                idx = np.asarray(idx)
                c = self.cluster_of[idx[0]]
                g = self.groups[gid[c]]
                pj = pos[idx]
                g.V[slot[c]][np.ix_(pj, pj)] = block
        if not diag_only:
            self._check_v()

    def _stack(self, rows, cl, m):
        spec = self.spec
        S = [(c[rows][:, :, None] == c[rows][:, None, :]).astype(float) for c in spec.sigma_codes]
        O = E = ic = None
        if spec.struct is not None:
            oc = spec.outer_codes[rows]
            O = (oc[:, :, None] == oc[:, None, :]).astype(float)
            ic = spec.inner_codes[rows]
            E = np.zeros(rows.shape + (spec.q,))
            np.put_along_axis(E, ic[:, :, None], 1.0, axis=2)
        return _Group(rows=rows, cluster=cl, y=self.y[rows], X=self.X[rows],
                      V=np.zeros((rows.shape[0], m, m)), S=S, O=O, E=E, ic=ic)

    def _check_v(self):
        for g in self.groups:
            try:
                np.linalg.cholesky(g.V)
            except np.linalg.LinAlgError:
                bad = np.flatnonzero(np.linalg.eigvalsh(g.V)[:, 0] <= 0)
                c = g.cluster[bad[0]] if bad.size else g.cluster[0]
                raise InputError(f"V: the block of cluster '{self.cluster_names[c]}' is not positive "
                                 "definite") from None

    # -------------------------------------------------------------------------------- evaluation
    def split(self, nat):
        nat = np.asarray(nat)
        L = self.spec.n_sigma
        return nat[:L], nat[L:L + self.nt], nat[L + self.nt:L + self.nt + self.nr]

    def g_matrix(self, nat):
        if self.spec.struct is None:
            return None
        _, tau2, rho = self.split(nat)
        return build_g(tau2, rho if rho.size else np.zeros(1), self.spec.struct, self.spec.q,
                       self.spec.inner_values)

    def marginal(self, g: _Group, nat, G=None):
        sigma2, _, _ = self.split(nat)
        M = g.V.copy()
        for s2, S in zip(sigma2, g.S):
            if s2 != 0:
                M += s2 * S
        if G is not None:
            M += G[g.ic[:, :, None], g.ic[:, None, :]] * g.O
        return M

    def evaluate(self, nat, score=False, keep=False):
        """Everything at the variance components ``nat`` (natural scale). Returns None when some M_j is
        not positive definite."""
        G = self.g_matrix(nat)
        parts = []
        logdet = 0.0
        XtWX = np.zeros((self.p, self.p))
        XtWy = np.zeros(self.p)
        ytWy = 0.0
        for g in self.groups:
            M = self.marginal(g, nat, G)
            try:
                L = np.linalg.cholesky(M)
            except np.linalg.LinAlgError:
                return None
            logdet += 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum()
            W = np.linalg.inv(M)
            W = 0.5 * (W + np.swapaxes(W, 1, 2))
            WX = W @ g.X
            Wy = (W @ g.y[:, :, None])[:, :, 0]
            XtWX += _row_sum(g.X, WX)
            XtWy += _row_sum(g.X, Wy)
            ytWy += float(np.sum(g.y * Wy))
            parts.append((W, WX, Wy))
        try:
            cX = np.linalg.cholesky(XtWX)
        except np.linalg.LinAlgError:
            return None
        vb = np.linalg.inv(XtWX)
        vb = (vb + vb.T) / 2
        beta = vb @ XtWy
        rss = ytWy - 2 * beta @ XtWy + beta @ XtWX @ beta
        ll_ml = -0.5 * self.k * math.log(2 * math.pi) - 0.5 * logdet - 0.5 * rss
        logdet_xwx = 2.0 * np.log(np.diag(cX)).sum()
        logdet_xx = self._logdet_xx()
        ll_reml = (-0.5 * (self.k - self.p) * math.log(2 * math.pi) + 0.5 * logdet_xx
                   - 0.5 * logdet - 0.5 * logdet_xwx - 0.5 * rss)
        out = {"beta": beta, "vb": vb, "rss": rss, "ll_ML": ll_ml, "ll_REML": ll_reml,
               "ll": ll_reml if self.reml else ll_ml, "G": G}
        if keep:
            out["parts"] = parts
        if score:
            out["score"] = self._score(nat, parts, beta, vb, G)
        return out

    def _logdet_xx(self) -> float:
        """log|X'X| (REML's constant term), computed once per engine."""
        if getattr(self, "_xx", None) is None:
            self._xx = np.linalg.slogdet(self.X.T @ self.X)[1]
        return self._xx

    def _score(self, nat, parts, beta, vb, G):
        """d ll / d nat (natural scale) for sigma2 and, for the struct term, the q x q matrix A with
        d ll / d t = sum(dG/dt o A)."""
        sig = np.zeros(self.spec.n_sigma)
        A = np.zeros((self.spec.q, self.spec.q)) if G is not None else None
        for g, (W, WX, Wy) in zip(self.groups, parts):
            u = Wy - WX @ beta
            K = W - u[:, :, None] * u[:, None, :]
            if self.reml:
                K = K - (WX @ vb) @ np.swapaxes(WX, 1, 2)
            for l, S in enumerate(g.S):
                sig[l] += -0.5 * float(np.sum(K * S))
            if A is not None:
                KO = K * g.O
                A += -0.5 * np.tensordot(g.E, KO @ g.E, axes=([0, 1], [0, 1]))
        return sig, A

    def loglik_and_grad(self, theta_free, free, nat_fixed):
        """-ll and its gradient in the free transformed parameters."""
        theta = to_theta(nat_fixed, self.kinds)
        theta[free] = theta_free
        nat = from_theta(theta, self.kinds)
        nat[~free] = nat_fixed[~free]
        res = self.evaluate(nat, score=True)
        if res is None:
            return None, None
        sig, A = res["score"]
        L = self.spec.n_sigma
        grad = np.zeros(len(nat))
        grad[:L] = sig * nat[:L]                      # d/d log sigma2
        if A is not None:
            h = 1e-20
            for r in range(L, len(nat)):
                if not free[r]:
                    continue
                tc = theta.astype(complex)
                tc[r] += 1j * h
                nc = from_theta(tc, self.kinds)
                nc[~free] = nat_fixed[~free]
                _, tau2, rho = self.split(nc)
                dG = build_g(tau2, rho if rho.size else np.zeros(1, dtype=complex), self.spec.struct,
                             self.spec.q, self.spec.inner_values).imag / h
                grad[r] = float(np.sum(dG * A))
        return -res["ll"], -grad[free]


# ------------------------------------------------------------------------------------------ fitting
@dataclass
class FitState:
    nat: np.ndarray
    ll: float
    converged: bool
    message: str
    n_evaluations: int


def start_values(engine: Engine) -> np.ndarray:
    """metafor's default start: total = max(0.001 * n_var, var(y - X b_FE) - 1/mean(1/diag V)), split
    equally over the variance components; correlations at 0.5."""
    res = engine.evaluate(np.zeros(len(engine.kinds)) + np.array(
        [0.0 if k == "var" else (0.5 if k == "carcor" else 0.0) for k in engine.kinds]))
    vi = np.concatenate([np.diagonal(g.V, axis1=1, axis2=2).ravel() for g in engine.groups])
    n_var = sum(1 for k in engine.kinds if k == "var")
    beta = res["beta"] if res is not None else np.zeros(engine.p)
    total = max(0.001 * max(n_var, 1), float(np.var(engine.y - engine.X @ beta, ddof=1)) - 1 / np.mean(1 / vi))
    n_terms = engine.spec.n_sigma + (1 if engine.spec.struct else 0)
    return np.array([total / n_terms if k == "var" else 0.5 for k in engine.kinds])


def maximise(engine: Engine, start, free=None, fixed=None, polish=True, maxfun=5000) -> FitState:
    """Maximise the (restricted) log-likelihood over the free parameters by L-BFGS-B with the analytic
    score, then Newton steps on a finite-difference Hessian of the score."""
    nat0 = np.array(start, dtype=float)
    free = np.ones(len(nat0), dtype=bool) if free is None else np.asarray(free, dtype=bool)
    if fixed is not None:
        nat0 = np.where(free, nat0, fixed)
    n_eval = [0]
    best = {"f": np.inf}

    def fun(th):
        n_eval[0] += 1
        f, g = engine.loglik_and_grad(th, free, nat0)
        if f is None:
            return (best["f"] + 1e6 if np.isfinite(best["f"]) else 1e12), np.zeros(th.size)
        best["f"] = min(best["f"], f)
        return f, g

    th0 = to_theta(nat0, engine.kinds)[free]
    bounds = [b for b, fr in zip(theta_bounds(engine.kinds), free) if fr]
    if th0.size == 0:
        res = engine.evaluate(nat0)
        return FitState(nat0, res["ll"] if res else -np.inf, res is not None, "nothing to estimate", 1)
    # TNC rather than L-BFGS-B: same bounded quasi-Newton idea, but its C code calls no BLAS, whose
    # thread pool (scipy's own OpenBLAS) otherwise contends with numpy's and slows each step to ms
    opt = optimize.minimize(fun, th0, jac=True, method="TNC", bounds=bounds,
                            options={"maxfun": maxfun, "ftol": 1e-13, "xtol": 1e-9, "gtol": 1e-9})
    th = np.clip(opt.x, [b[0] for b in bounds], [b[1] for b in bounds])
    f, g = fun(th)
    last_step = np.inf
    if polish:
        th, f, g, last_step = _newton_polish(fun, th, f, g, bounds)
    interior = np.array([(lo + 1e-6 < t < hi - 1e-6) for t, (lo, hi) in zip(th, bounds)])
    gnorm = float(np.max(np.abs(g[interior]))) if interior.any() else 0.0
    # a parameter at a bound must point outward (or be flat)
    at_low = np.array([t <= lo + 1e-6 for t, (lo, hi) in zip(th, bounds)])
    at_high = np.array([t >= hi - 1e-6 for t, (lo, hi) in zip(th, bounds)])
    outward_ok = np.all(g[at_low] >= -1e-6) and np.all(g[at_high] <= 1e-6)
    converged = bool(np.isfinite(f) and f < 1e11 and (gnorm < 1e-5 or last_step < 1e-6) and outward_ok)
    theta = to_theta(nat0, engine.kinds)
    theta[free] = th
    nat = from_theta(theta, engine.kinds)
    nat[~free] = nat0[~free]
    for i, kind in enumerate(engine.kinds):
        if kind == "var" and free[i] and nat[i] <= max(EPS0, math.exp(LOG_VAR_MIN + 1e-6)) * 1.0001:
            nat[i] = 0.0
    msg = f"{opt.message}; max |score| {gnorm:.2e} after {n_eval[0]} evaluations"
    if np.isfinite(last_step):
        msg += f"; last Newton step {last_step:.1e}"
    return FitState(nat, -float(f), converged, msg, n_eval[0])


def _newton_polish(fun, th, f, g, bounds, steps=8):
    """Newton steps on the interior parameters with a central-difference Hessian of the analytic score.
    Returns the point, its value and score, and the size of the last Newton step (inf if none was
    computed): a step below 1e-6 on the transformed scale means the optimum is pinned even when the
    score of a large problem cannot fall below rounding."""
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    last = np.inf
    for _ in range(steps):
        act = (th > lo + 1e-6) & (th < hi - 1e-6)
        if not act.any() or np.max(np.abs(g[act])) < 1e-12:
            last = 0.0 if act.any() else last
            break
        idx = np.flatnonzero(act)
        H = np.empty((idx.size, idx.size))
        h = 1e-5
        for a, i in enumerate(idx):
            tp = th.copy()
            tp[i] += h
            tm = th.copy()
            tm[i] -= h
            H[:, a] = (fun(tp)[1][idx] - fun(tm)[1][idx]) / (2 * h)
        H = (H + H.T) / 2
        try:
            if np.linalg.eigvalsh(H).min() <= 0:
                break
            step = np.linalg.solve(H, g[idx])
        except np.linalg.LinAlgError:
            break
        last = float(np.max(np.abs(step)))
        t2 = th.copy()
        t2[idx] = np.clip(th[idx] - step, lo[idx], hi[idx])
        f2, g2 = fun(t2)
        if not f2 <= f + 1e-13 * max(1.0, abs(f)):
            break
        th, f, g = t2, f2, g2
        if last < 1e-10:
            break
    return th, f, g, last


def fit(engine: Engine, starts=None) -> FitState:
    """Maximise from metafor's default start; when that ends on a boundary (a variance at 0, a
    correlation at +-1) or does not converge, also from two other starts, keeping the best."""
    s0 = start_values(engine)
    cands = [s0] if starts is None else list(starts)
    kinds = np.array(engine.kinds)
    best = None
    i = 0
    while i < len(cands):
        st = maximise(engine, cands[i])
        if best is None or st.ll > best.ll + 1e-10 or (not best.converged and st.converged
                                                        and st.ll > best.ll - 1e-8):
            best = st
        if i == 0 and starts is None:
            on_edge = np.any((kinds == "var") & (st.nat == 0)) or np.any(
                (kinds == "cor") & (np.abs(st.nat) > 1 - 1e-8))
            if on_edge or not st.converged:
                cands.append(np.where(kinds == "var", s0 * 10, 0.0))
                cands.append(np.where(kinds == "var", s0 / 10, 0.8))
        i += 1
    return best


def profile_ll(engine: Engine, state: FitState, comp: int, value: float) -> float:
    """The (restricted) log-likelihood maximised over every other component with component ``comp``
    fixed at ``value`` (natural scale), as metafor's ``profile.rma.mv``."""
    free = np.ones(len(state.nat), dtype=bool)
    free[comp] = False
    fixed = state.nat.copy()
    fixed[comp] = value
    start = state.nat.copy()
    start[comp] = value
    for i, kind in enumerate(engine.kinds):
        if kind == "var" and i != comp and start[i] <= 0:
            start[i] = 1e-4 * (np.var(engine.y) + 1e-12)
    if free.sum() == 0:
        res = engine.evaluate(fixed)
        return -np.inf if res is None else res["ll"]
    # a profile point far out (a correlation at -1, a variance near 0 leaving another unidentified)
    # can make the optimiser crawl; 600 evaluations settle whether the drop exceeds the critical value
    st = maximise(engine, start, free=free, fixed=fixed, maxfun=600)
    return st.ll


def profile_ci(engine: Engine, state: FitState, comp: int, level: float, struct: str | None):
    """metafor's ``confint.rma.mv``: the values where the profile drops by qchisq(level, 1) / 2.
    Search ranges as metafor: variances [0, max(10, 100 x estimate)]; correlations [-1, 1]
    (AR/HAR/CAR: [min(0, estimate), 1]). Returns (lb, ub, lb_at_limit, ub_at_limit)."""
    crit = distributions.chi2_ppf(level, 1) / 2
    est = float(state.nat[comp])
    kind = engine.kinds[comp]
    if kind == "var":
        lo, hi = 0.0, max(10.0, est * 100)
    else:
        lo = min(0.0, est) if struct in ("AR", "HAR", "CAR") else -1.0
        hi = 1.0

    cache = {}

    def drop(v):
        if v not in cache:
            ll = profile_ll(engine, state, comp, v)
            cache[v] = (state.ll - ll) - crit if np.isfinite(ll) else np.inf
        return cache[v]

    def bound(limit):
        if limit == est:
            return limit, True
        # metafor's retries: move the search limit towards the estimate until the profile can be fitted
        for t in range(10):
            lim = limit + (est - limit) * t / 10
            d = drop(lim)
            if np.isfinite(d) and d < 1e10:
                break
        else:
            return np.nan, False
        if d <= 0:
            return lim, True
        return optimize.brentq(drop, min(lim, est), max(lim, est), xtol=1e-10, rtol=1e-10,
                               maxiter=200), False

    lb, lb_lim = bound(lo)
    ub, ub_lim = bound(hi)
    return lb, ub, lb_lim, ub_lim


def warn_if_not_converged(state: FitState, what: str):
    if not state.converged:
        warnings.warn(f"{what}: the optimiser did not converge ({state.message}); estimates are its last "
                      "state", ConvergenceWarning, stacklevel=3)
