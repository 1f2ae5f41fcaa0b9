"""Block-diagonal matrices: one dense block per cluster, never a dense k x k matrix.

The sampling covariance ``V`` of dependent effects (built by :mod:`pfps_meta.models.vcalc`) and the
marginal covariance of a multilevel model are block-diagonal once the rows are grouped by the
outermost cluster. A :class:`BlockDiagonal` keeps, for each block, the row positions it covers (into
the data in its original order) and the dense block itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class BlockDiagonal:
    """A symmetric block-diagonal ``n x n`` matrix.

    Attributes
    ----------
    index : tuple of int arrays
        ``index[j]`` holds the row positions (0-based, into the original row order) of block ``j``.
        Every position 0..n-1 appears in exactly one block.
    blocks : tuple of 2-D float arrays
        ``blocks[j]`` is the ``len(index[j]) x len(index[j])`` dense block.
    labels : tuple
        A label per block (the cluster's id), used in messages.
    """

    index: tuple
    blocks: tuple
    labels: tuple

    def __post_init__(self):
        if not (len(self.index) == len(self.blocks) == len(self.labels)):
            raise InputError("V: index, blocks and labels must have one entry per block")
        seen = np.concatenate([np.asarray(i, dtype=np.int64) for i in self.index]) if self.index else \
            np.zeros(0, dtype=np.int64)
        if np.unique(seen).size != seen.size or (seen.size and (seen.min() != 0 or seen.max() != seen.size - 1)):
            raise InputError("V: every row must belong to exactly one block")
        by_size = {}
        for j, (idx, block) in enumerate(zip(self.index, self.blocks)):
            b = np.asarray(block)
            if b.shape != (len(idx), len(idx)):
                raise InputError(f"V: block '{self.labels[j]}' is {b.shape}, expected {len(idx)} x {len(idx)}")
            by_size.setdefault(len(idx), []).append(j)
        # one vectorised check per block size (200,000 blocks take well under a second)
        for members in by_size.values():
            stack = np.stack([np.asarray(self.blocks[j], dtype=float) for j in members])
            finite = np.isfinite(stack).all(axis=(1, 2))
            if not finite.all():
                raise InputError(f"V: block '{self.labels[members[int(np.argmin(finite))]]}' holds a missing or "
                                 "infinite value")
            symmetric = np.isclose(stack, stack.swapaxes(1, 2), rtol=1e-10, atol=1e-14).all(axis=(1, 2))
            if not symmetric.all():
                raise InputError(f"V: block '{self.labels[members[int(np.argmin(symmetric))]]}' is not symmetric")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dense(cls, V, groups=None) -> "BlockDiagonal":
        """Split a dense symmetric matrix into blocks: by ``groups`` (one label per row), or by the
        connected components of its non-zero pattern when ``groups`` is None. Non-zero entries between
        two groups are an error (they would be lost)."""
        V = np.asarray(V, dtype=float)
        if V.ndim != 2 or V.shape[0] != V.shape[1]:
            raise InputError(f"V: expected a square matrix, got shape {V.shape}")
        n = V.shape[0]
        if groups is None:
            groups = _components(V != 0)
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise InputError(f"V: {n} rows but {groups.shape[0]} group labels")
        labels, codes = _stable_codes(groups)
        index = tuple(np.flatnonzero(codes == j) for j in range(len(labels)))
        outside = V.copy()
        for idx in index:
            outside[np.ix_(idx, idx)] = 0.0
        if np.any(outside != 0):
            i, j = np.argwhere(outside != 0)[0]
            raise InputError(f"V: rows {i + 1} and {j + 1} are correlated but belong to different clusters "
                             f"('{groups[i]}' and '{groups[j]}')")
        return cls(index, tuple(V[np.ix_(idx, idx)] for idx in index), tuple(labels))

    @classmethod
    def from_diagonal(cls, vi, groups=None) -> "BlockDiagonal":
        """Independent sampling errors: ``diag(vi)``, one block per group (or per row)."""
        vi = np.asarray(vi, dtype=float)
        groups = np.arange(vi.size) if groups is None else np.asarray(groups)
        labels, codes = _stable_codes(groups)
        index = tuple(np.flatnonzero(codes == j) for j in range(len(labels)))
        return cls(index, tuple(np.diag(vi[idx]) for idx in index), tuple(labels))

    # ------------------------------------------------------------------ views
    @property
    def n(self) -> int:
        return int(sum(len(i) for i in self.index))

    def diagonal(self) -> np.ndarray:
        out = np.empty(self.n)
        for idx, block in zip(self.index, self.blocks):
            out[idx] = np.diag(block)
        return out

    def to_dense(self) -> np.ndarray:
        """The full matrix (for small n, display and tests only)."""
        out = np.zeros((self.n, self.n))
        for idx, block in zip(self.index, self.blocks):
            out[np.ix_(idx, idx)] = block
        return out

    def regroup(self, groups) -> "BlockDiagonal":
        """The same matrix with blocks merged so that every block lies inside one group of ``groups``
        (each row's label) and every group is one block: used to align V with a model's clusters."""
        groups = np.asarray(groups)
        labels, codes = _stable_codes(groups)
        for idx, label in zip(self.index, self.labels):
            if np.unique(codes[idx]).size > 1:
                raise InputError(f"V: block '{label}' spans several clusters "
                                 f"({', '.join(map(str, labels[np.unique(codes[idx])][:3]))}); "
                                 "correlated effects must share a cluster")
        index, blocks = [], []
        dense_rows = {}
        for idx, block in zip(self.index, self.blocks):
            dense_rows.setdefault(int(codes[idx[0]]), []).append((idx, block))
        for j in range(len(labels)):
            parts = dense_rows.get(j, [])
            idx = np.concatenate([p[0] for p in parts])
            order = np.argsort(idx, kind="stable")
            size = idx.size
            merged = np.zeros((size, size))
            start = 0
            for p_idx, p_block in parts:
                m = len(p_idx)
                merged[start:start + m, start:start + m] = p_block
                start += m
            index.append(idx[order])
            blocks.append(merged[np.ix_(order, order)])
        return BlockDiagonal(tuple(index), tuple(blocks), tuple(labels))


def _stable_codes(groups):
    """Labels in order of first appearance, and each row's code into them."""
    _, first, codes = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    labels = np.asarray(groups)[np.sort(first)]
    return labels, rank[codes.ravel()]


def _components(pattern) -> np.ndarray:
    """Connected components of a symmetric boolean pattern (rows linked by a non-zero entry)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(csr_matrix(pattern), directed=False)
    return labels
