"""MST (McKenna, Miklau & Sheldon 2021, "Winning the NIST Contest: A scalable and general approach
to differentially private synthetic data"): noisy one-way marginals, a maximum spanning tree of
column pairs chosen with the exponential mechanism, noisy two-way marginals of the tree.

Hand-written because smartnoise-synth's MST (through private-pgm's ``mbi``) cannot go in the product
venv (pins pandas 2.3, jax); it is the reference in benchmarks/bench_dp_synthesis.py. The selection
and the measurements are MST's; the estimation step differs (see :class:`MSTSynthesizer`): private-pgm
fits a graphical model to the noisy measurements by mirror descent, here each tree edge's table is
raked to inverse-variance-weighted node marginals, which for a tree gives a consistent distribution
with much less code. Both are post-processing: the guarantee is the same.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from models.synth.dp.base import DPSynthesizer, to_probabilities
from models.synth.transformers import _sample_rows

PAIR_SCORE_SENSITIVITY = 2.0
"""L1 change of a pair's count table, hence of its selection score, when one row is replaced."""
_RAKING_ITERATIONS = 50


def pair_counts(codes: np.ndarray, i: int, j: int, sizes: np.ndarray) -> np.ndarray:
    """Count table (sizes[i], sizes[j]) of the code pairs of columns i and j of ``codes`` (n, d)."""
    flat = codes[:, i] * sizes[j] + codes[:, j]
    return np.bincount(flat, minlength=sizes[i] * sizes[j]).reshape(sizes[i], sizes[j]).astype(float)


def rake(table: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Iterative proportional fitting of a positive table (r, c) to row and column margins (each
    summing to 1); returns a table summing to 1. Hand-written: a few lines of numpy, no library needed."""
    out = table / table.sum()
    for _ in range(_RAKING_ITERATIONS):
        out *= (rows / out.sum(axis=1))[:, None]
        out *= (cols / out.sum(axis=0))[None, :]
    return out


class MSTSynthesizer(DPSynthesizer):
    """Marginal-based synthesizer with an (epsilon, delta)-DP guarantee (replace-one neighbours).

    Budget split (rho of zCDP, after the domain estimate's share when there is one; recorded in
    ``privacy_``), in thirds as in MST:

    1. all one-way marginals (histograms of codes), Gaussian, L2 sensitivity sqrt(2 d);
    2. d - 1 rounds of Kruskal's algorithm, each picking one pair among those that join two trees
       with the exponential mechanism (epsilon = sqrt(8 rho_round)); score = L1 distance between
       the pair's count table and the independent estimate from step 1 (sensitivity 2);
    3. the count tables of the d - 1 chosen pairs, Gaussian, L2 sensitivity sqrt(2 (d - 1)).

    Estimation (post-processing): each column's distribution is the inverse-variance-weighted mean
    of its one-way measurement and the margins of its measured pairs, projected onto the simplex of
    n rows; each pair table (projected too) is raked to its two columns' distributions, so all tables
    agree and define a
    tree-shaped distribution P(x) = prod P(x_i, x_j) / prod P(x_k)^(degree - 1).

    Sample: ancestral sampling from a root (the rarest conditioned stratum, its code fixed; further
    conditions by rejection), numeric values uniform inside their bin. Conditions are exact.

    Attributes
    ----------
    tree_ : list of (i, j) column-index pairs; node_probabilities_ : list of ndarray per column;
    pair_probabilities_ : dict (i, j) -> ndarray (sizes[i], sizes[j]).
    """

    mechanism = "mst"

    def _marginal_share(self, n_columns: int) -> float:
        return 1 / 3 if n_columns > 1 else 1.0

    def _fit(self, codes: np.ndarray, rng: np.random.Generator) -> None:
        n, d = codes.shape
        sizes = self.encoder_.sizes_
        third = self._marginal_share(d) * self.rho_left
        sigma1 = self.accountant_.gaussian("one-way marginals (histogram per column)", np.sqrt(2 * d), third)
        one = [np.bincount(codes[:, j], minlength=sizes[j]) + rng.normal(0.0, sigma1, sizes[j]) for j in range(d)]
        self.tree_ = self._select(codes, [to_probabilities(y, n) for y in one], third, rng) if d > 1 else []
        measured, sigma2 = {}, np.inf
        if self.tree_:
            sigma2 = self.accountant_.gaussian("two-way marginals of the tree", np.sqrt(2 * len(self.tree_)),
                                               self.rho_left)
            measured = {(i, j): pair_counts(codes, i, j, sizes) + rng.normal(0.0, sigma2, (sizes[i], sizes[j]))
                        for i, j in self.tree_}
        self.node_probabilities_ = []
        for k in range(d):
            estimates = [(one[k], sigma1**2)]
            estimates += [(t.sum(axis=1 if i == k else 0), sizes[j if i == k else i] * sigma2**2)
                          for (i, j), t in measured.items() if k in (i, j)]
            weights = np.array([1 / v for _, v in estimates])
            combined = sum(w * e for w, (e, _) in zip(weights, estimates, strict=True)) / weights.sum()
            self.node_probabilities_.append(to_probabilities(combined, n))
        self.pair_probabilities_ = {
            (i, j): rake(to_probabilities(t, n), self.node_probabilities_[i], self.node_probabilities_[j])
            for (i, j), t in measured.items()
        }
        self._report(f"fitted on {n} rows x {d} columns, tree of {len(self.tree_)} pairs", stage="fit", elapsed_s=0.0)

    def _select(self, codes: np.ndarray, marginals: list[np.ndarray], rho: float,
                rng: np.random.Generator) -> list[tuple[int, int]]:
        """d - 1 pairs forming a spanning tree, each chosen by the exponential mechanism (Gumbel-max)."""
        n, d = codes.shape
        sizes = self.encoder_.sizes_
        pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
        scores = np.array([np.abs(pair_counts(codes, i, j, sizes) - n * np.outer(marginals[i], marginals[j])).sum()
                           for i, j in pairs])
        component = list(range(d))

        def find(k: int) -> int:
            while component[k] != k:
                k = component[k]
            return k

        tree = []
        for round_ in range(d - 1):
            epsilon = self.accountant_.exponential(f"pair selection round {round_ + 1}", PAIR_SCORE_SENSITIVITY,
                                                   rho / (d - 1))
            open_ = np.array([find(i) != find(j) for i, j in pairs])
            gumbel = rng.gumbel(size=len(pairs))
            utility = np.where(open_, epsilon * scores / (2 * PAIR_SCORE_SENSITIVITY) + gumbel, -np.inf)
            i, j = pairs[int(np.argmax(utility))]
            component[find(i)] = find(j)
            tree.append((i, j))
        return tree

    def _sample_codes(self, n: int, conditions: dict[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        d = len(self.node_probabilities_)
        root = min(conditions, key=lambda j: self.node_probabilities_[j][conditions[j]]) if conditions else 0
        order = self._edges_from(root)
        others = {j: c for j, c in conditions.items() if j != root}

        def generate(k: int) -> np.ndarray:
            codes = np.empty((k, d), dtype=np.int64)
            if root in conditions:
                codes[:, root] = conditions[root]
            else:
                codes[:, root] = _sample_rows(np.tile(self.node_probabilities_[root], (k, 1)), rng)
            for parent, child in order:
                table = self.pair_probabilities_.get((parent, child))
                table = self.pair_probabilities_[(child, parent)].T if table is None else table
                given = table[codes[:, parent]]
                codes[:, child] = _sample_rows(given / given.sum(axis=1, keepdims=True), rng)
            return np.hstack([codes, rng.random((k, d))])

        def accept(rows: np.ndarray) -> np.ndarray:
            return np.all([rows[:, j] == c for j, c in others.items()], axis=0) if others else np.ones(len(rows), bool)

        rows = self._rejection_sample(n, generate, accept, lambda: self._describe_conditions(conditions))
        return rows[:, :d].astype(np.int64), rows[:, d:]

    def _edges_from(self, root: int) -> list[tuple[int, int]]:
        """(parent, child) pairs of the tree in breadth-first order from ``root``."""
        neighbours: dict[int, list[int]] = {}
        for i, j in self.tree_:
            neighbours.setdefault(i, []).append(j)
            neighbours.setdefault(j, []).append(i)
        seen, queue, order = {root}, deque([root]), []
        while queue:
            parent = queue.popleft()
            for child in neighbours.get(parent, []):
                if child not in seen:
                    seen.add(child)
                    order.append((parent, child))
                    queue.append(child)
        return order
