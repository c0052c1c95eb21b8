"""A sum tree over NumPy arrays, updated and searched for a whole batch at once.

Proportional prioritised replay (Schaul et al. 2016, "Prioritized Experience
Replay", section 3.3) draws leaf ``i`` with probability ``p_i / sum(p)``. The tree
stores leaves at ``[size, 2 size)`` and every internal node ``k`` holds
``tree[2k] + tree[2k + 1]``; the root is node 1. Updates and searches walk the
tree level by level for the whole batch, so a batch costs ``log2(size)`` vector
operations, never a Python loop over its elements.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Sums of ``n`` non-negative leaf values (float64)."""

    def __init__(self, n: int) -> None:
        self.n = int(n)
        self.depth = max(1, int(np.ceil(np.log2(max(self.n, 2)))))
        self.size = 1 << self.depth  # leaves, a power of two >= n
        self.tree = np.zeros(2 * self.size, np.float64)  # [2 size]: node 1 is the root, leaves from `size`

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def leaves(self) -> np.ndarray:
        """The leaf values, a view ``[n]``."""
        return self.tree[self.size : self.size + self.n]

    def get(self, idx: np.ndarray) -> np.ndarray:
        return self.tree[idx + self.size]

    def set(self, idx: np.ndarray, values: np.ndarray | float) -> None:
        """Set leaves ``idx`` to ``values`` and recompute their ancestors from their children.

        Every node is always exactly the float sum of its two children, so the tree
        is a pure function of its leaves (rebuilding it gives the same bits).
        Repeated indices are fine: the last value wins and ancestors are recomputed.
        """
        t = self.tree
        i = np.asarray(idx, np.int64) + self.size
        t[i] = values
        for _ in range(self.depth):
            i >>= 1
            t[i] = t[2 * i] + t[2 * i + 1]

    def rebuild(self, leaves: np.ndarray) -> None:
        """Set all leaves from ``leaves`` [n] and recompute every internal node."""
        t = self.tree
        t[:] = 0.0
        t[self.size : self.size + self.n] = leaves
        lo = self.size
        while lo > 1:
            t[lo // 2 : lo] = t[lo : 2 * lo : 2] + t[lo + 1 : 2 * lo : 2]
            lo //= 2

    def find(self, u: np.ndarray) -> np.ndarray:
        """Leaf indices at prefix sums ``u`` [B] (``0 <= u < total``): the leaf ``i`` with
        ``sum(leaves[:i]) <= u < sum(leaves[:i + 1])``. Only leaves above zero are returned
        (the search never enters a subtree whose sum is zero), as long as ``total > 0``.
        """
        t = self.tree
        u = np.array(u, np.float64)
        i = np.ones(u.shape, np.int64)
        for _ in range(self.depth):
            left = 2 * i
            left_sum = t[left]
            right = (u >= left_sum) & (t[left + 1] > 0.0)
            u -= np.where(right, left_sum, 0.0)
            i = left + right
        return i - self.size
