"""Exact k-nearest-neighbour imputation with scikit-learn's semantics, fast, plus donor mode.

``FastKNNImputer`` imputes as ``sklearn.impute.KNNImputer`` (same ``n_neighbors``, ``weights``,
``missing_values=np.nan``) does, but is built for 10^4-10^5 rows:

* distance: scikit-learn's nan-Euclidean, ``sqrt(n_features / n_common * sum over commonly
  observed coordinates of (x - y)^2)``, NaN when two rows share no observed coordinate;
* donors for a missing cell (row i, column j) are the ``n_neighbors`` fit rows closest to row i
  *among those that observe column j* (fewer when fewer observe it); donors at NaN distance get
  weight 0; a cell whose potential donors are all at NaN distance gets the column's observed
  mean (as scikit-learn);
* ``weights="distance"`` uses 1/distance, and donors at distance 0 share all the weight;
* columns with no observed value in the fit data are, as scikit-learn does by default, dropped
  (``empty_features="drop"``) or set to 0 (``"zero"``, its ``keep_empty_features=True``); the
  default here is ``"raise"``: a ValueError naming them.

**Ties** (where the donors differ from scikit-learn's, besides rounding: last paragraph). When
several potential donors are at the same distance as the k-th nearest one, only some of them can be
donors. Here the donors are the first ``n_neighbors`` potential donors in the order (distance,
fit-row index): among tied donors the lower fit-row index wins, on every machine. scikit-learn takes
whichever tied donors ``np.argpartition`` (introselect, or x86-simd-sort on AVX-512 CPUs) happens to
leave in front; that order depends on every other distance of the row and, on non-integer data, on
the rounding noise of its ``|x|^2 + |y|^2 - 2 x.y`` BLAS expansion, which changes with the BLAS
thread count and with which rows are computed together (on the zero-inflated benchmark table, 221
of 18.4 million distances differ between 1 and 2 OpenBLAS threads). Reproducing it would mean
recomputing scikit-learn's full distance matrix with its chunking, i.e. paying its cost. So,
rounding aside, the two agree in every cell whose k-th and (k+1)-th nearest potential donors are at
different distances, and differ only where the k-th place is tied *and* the tied donors hold
different values in column j (on the zero-inflated table of benchmarks/results/knn.md: 1,938 of
52,327 cells).

Why it is fast without an n x n matrix (scikit-learn ranks every potential donor for every
missing cell with ``np.argpartition``): query rows go through in blocks, spread over threads.
For a block, two float32 matrix products against the whole fit set give for every pair a
*guaranteed lower bound* of the squared distance (the float32 rounding error is bounded a priori
and subtracted inside the product); the few dozen smallest bounds per row are kept (chunk minima,
then ``torch.topk``). Exact float64 distances are computed for these candidates only, and each
missing cell takes the ``n_neighbors`` first candidates in (distance, index) order that observe its
column. That is provably the answer when the k-th donor is strictly closer than the bound of every
non-candidate. The other cells are decided again on a wider set: a crowd of tied or near-tied donors
larger than the candidate list (the usual case on zero-inflated data) widens, for that row only, to
every fit row whose bound does not exceed the k-th candidate's distance; too few candidates observing
the column widens to every fit row observing it. Memory is O(block_size x n_fit_rows).

Exact distances are summed coordinate by coordinate instead of scikit-learn's expansion, which
loses digits when a distance is small against the norms (pairs sharing one or two coordinates,
duplicate rows: it returns e.g. 1.1149070e-4 for an exact 1.1149073e-4, or 1e-8 for an exact 0).
Apart from ties, outputs agree to 1e-9 except where such rounding changes scikit-learn's result:
donor order between near-equal distances, and with ``weights="distance"`` the 1/distance weights of
zero or tiny distances (duplicated records: scikit-learn turns an exact 0 into a tiny positive
distance, so its zero-distance donors no longer share the weight equally; 835 more of the 52,327
cells on that table). On integer-valued data both are exact and agree bit for bit in every cell
without a tie at the k-th place. Computation is in float64 whatever the input dtype; summation order
is fixed, so results do not depend on the machine, the thread count or the block size.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits

from models.missingness._validation import (
    all_missing_columns,
    as_float_matrix,
    raise_for_columns,
)

_U32 = 2.0**-24  # float32 unit roundoff
_SLACK = 1e-5  # relative safety margin when comparing an exact distance with a float32 bound


@dataclass(frozen=True)
class _Donors:
    """Donors of every imputed cell: m cells, k donor slots each."""

    rows: np.ndarray  # (m,) row in the query matrix
    cols: np.ndarray  # (m,) column
    index: np.ndarray  # (m, k) fit-row index of each donor, -1 for an empty slot
    distance: np.ndarray  # (m, k) nan-Euclidean distance, NaN for an empty slot

    @classmethod
    def empty(cls, k: int) -> _Donors:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty((0, k), np.int64), np.empty((0, k)))


def _sq_dist(q: np.ndarray, fit_t: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact squared Euclidean distance over commonly observed coordinates and their count.

    q: (b, F) query rows with NaN; fit_t: (F, n_fit) fit rows, coordinates first; cand: (b, m)
    fit-row index per query row. Returns (d2, n_common), both (b, m). Summed coordinate by
    coordinate in column order, so the result for a pair does not depend on which other pairs are
    computed with it.
    """
    d2 = np.zeros(cand.shape)
    n_common = np.zeros(cand.shape, dtype=np.int64)
    for j in range(q.shape[1]):
        diff = fit_t[j][cand]
        diff -= q[:, j, None]
        ok = diff == diff  # not NaN
        diff *= diff
        d2 += np.where(ok, diff, 0.0)
        n_common += ok
    return d2, n_common


def _nan_euclidean(d2: np.ndarray, n_common: np.ndarray, n_features: int) -> np.ndarray:
    """scikit-learn's scaling (same operation order): sqrt(d2 / n_common * n_features)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = d2 / n_common * n_features
    dist[n_common == 0] = np.nan
    return np.sqrt(dist)


def _donor_weights(distance: np.ndarray, weights: str) -> np.ndarray:
    """Weights of donors (m, k) as scikit-learn's KNNImputer sets them; NaN distance -> 0."""
    if weights == "uniform":
        return np.isfinite(distance).astype(np.float64)
    with np.errstate(divide="ignore"):
        w = 1.0 / distance
    inf_mask = np.isinf(w)
    inf_row = inf_mask.any(axis=1)
    w[inf_row] = inf_mask[inf_row]
    w[np.isnan(w)] = 0.0
    return w


def _n_threads(n_jobs: int | None) -> int:
    """Worker threads for n_jobs: None or -1 -> all cores."""
    return (os.cpu_count() or 1) if n_jobs is None or n_jobs < 0 else max(1, n_jobs)


@contextmanager
def _single_threaded_libraries() -> Iterator[None]:
    """torch and the BLAS on one thread each, while blocks run in our own worker threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(old)


class FastKNNImputer(BaseEstimator):
    """k-NN imputation as ``sklearn.impute.KNNImputer``, blocked and exact; ties at the k-th donor go to
    the lower fit-row index (see the module doc: the one difference from scikit-learn).

    A scikit-learn estimator (``get_params``/``set_params``/``clone`` work).

    Parameters
    ----------
    n_neighbors : int, default 5
        Donors per missing cell; must not exceed the number of fit rows.
    weights : {"uniform", "distance"}, default "uniform"
        Donor weighting, as scikit-learn's.
    block_size : int or None, default None
        Query rows per block. Each worker thread holds two float32 (block_size, n_fit_rows)
        buffers, 8 * block_size * n_fit_rows bytes. None: about 16M numbers per buffer
        (335 rows against 50,000 fit rows).
    n_jobs : int or None, default None
        Worker threads during ``transform``, each handling whole blocks with single-threaded
        BLAS/torch (None or -1: all cores). CUDA runs one worker.
    empty_features : {"raise", "drop", "zero"}, default "raise"
        What to do with columns that have no observed value in the fit data: raise a ValueError
        naming them, or do as scikit-learn (``"drop"``: its default, column removed from the
        output; ``"zero"``: its ``keep_empty_features=True``).
    device : str or None, default None
        torch device for the candidate search; None: CUDA when available, else CPU.
    verbose : bool, default False
        Print progress to stderr.

    Attributes
    ----------
    n_features_in_ : int
    feature_names_in_ : list of str, only when fitted on a DataFrame
    statistics_ : ndarray (n_features,)
        Observed mean of each fit column (NaN for empty columns), the fallback value.
    n_widened_ : int
        Cells of the last ``transform`` whose donors needed the wider search (module doc): a crowd
        of tied or near-tied donors at the k-th place, or too few candidates observing the column.
    """

    def __init__(
        self,
        n_neighbors: int = 5,
        weights: Literal["uniform", "distance"] = "uniform",
        block_size: int | None = None,
        n_jobs: int | None = None,
        *,
        empty_features: Literal["raise", "drop", "zero"] = "raise",
        device: str | None = None,
        verbose: bool = False,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.block_size = block_size
        self.n_jobs = n_jobs
        self.empty_features = empty_features
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------------ fit / transform
    def fit(self, X: np.ndarray | pd.DataFrame, y: object = None) -> FastKNNImputer:
        """Store the fit data X (n_fit_rows, n_features); NaN marks missing cells."""
        self._check_params()
        values, labels = as_float_matrix(X, "X")
        if values.shape[0] < self.n_neighbors:
            raise ValueError(f"n_neighbors={self.n_neighbors} exceeds the {values.shape[0]} row(s) "
                             "of the fit data; lower n_neighbors or provide more rows")
        empty = all_missing_columns(values)
        if self.empty_features == "raise":
            raise_for_columns(labels, empty, "X: column(s) {columns} have no observed value, so they "
                              "cannot be imputed; drop them or pass empty_features='drop'/'zero'")
        self.fit_X_ = values
        self.fit_mask_ = np.isnan(values)
        self.valid_ = ~self.fit_mask_.all(axis=0)
        self.statistics_ = np.full(values.shape[1], np.nan)
        self.statistics_[self.valid_] = np.nanmean(values[:, self.valid_], axis=0)
        self.n_features_in_ = values.shape[1]
        self.labels_ = labels
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = list(X.columns)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self

    def transform(self, X: np.ndarray | pd.DataFrame) -> np.ndarray | pd.DataFrame:
        """Impute the missing cells of X (n_rows, n_features); returns the same type as X.

        Output columns are all input columns, except empty fit columns with
        ``empty_features="drop"``. Never returns NaN in a kept column.
        """
        values = self._check_transform_input(X)
        donors = self._donors(values)
        out = values.copy()
        out[donors.rows, donors.cols] = self._fill_values(donors)
        return self._format_output(out, X)

    def fit_transform(self, X: np.ndarray | pd.DataFrame, y: object = None) -> np.ndarray | pd.DataFrame:
        """``fit(X).transform(X)``."""
        return self.fit(X).transform(X)

    # ------------------------------------------------------------------ helpers
    def _check_params(self) -> None:
        if isinstance(self.n_neighbors, bool) or not isinstance(self.n_neighbors, int | np.integer) \
                or self.n_neighbors < 1:
            raise ValueError(f"n_neighbors must be a positive integer, got {self.n_neighbors!r}")
        if self.weights not in ("uniform", "distance"):
            raise ValueError(f"weights must be 'uniform' or 'distance', got {self.weights!r}")
        if self.empty_features not in ("raise", "drop", "zero"):
            raise ValueError(f"empty_features must be 'raise', 'drop' or 'zero', got {self.empty_features!r}")
        if self.block_size is not None and (not isinstance(self.block_size, int) or self.block_size < 1):
            raise ValueError(f"block_size must be a positive integer or None, got {self.block_size!r}")

    def _check_transform_input(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        if not hasattr(self, "fit_X_"):
            raise ValueError(f"{type(self).__name__} is not fitted; call fit first")
        values, _ = as_float_matrix(X, "X")
        if values.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {values.shape[1]} columns; the imputer was fitted on {self.n_features_in_}")
        names = getattr(self, "feature_names_in_", None)
        if names is not None and isinstance(X, pd.DataFrame) and list(X.columns) != names:
            raise ValueError("X's columns differ from those seen in fit (names or order)")
        return values

    def _format_output(self, out: np.ndarray, X: np.ndarray | pd.DataFrame) -> np.ndarray | pd.DataFrame:
        keep = np.ones(out.shape[1], dtype=bool)
        if self.empty_features == "zero":
            out[:, ~self.valid_] = 0.0
        elif self.empty_features == "drop":
            keep = self.valid_
        if isinstance(X, pd.DataFrame):
            return pd.DataFrame(out[:, keep], index=X.index, columns=X.columns[keep])
        return out[:, keep]

    def _fill_values(self, donors: _Donors) -> np.ndarray:
        """Weighted donor mean per cell; the column's observed mean where no donor has a distance."""
        w = _donor_weights(donors.distance, self.weights)
        vals = self.fit_X_[np.maximum(donors.index, 0), donors.cols[:, None]]
        vals = np.where(w > 0, vals, 0.0)
        total = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            filled = (vals * w).sum(axis=1) / total
        no_donor = total == 0
        filled[no_donor] = self.statistics_[donors.cols[no_donor]]
        return filled

    def _candidate_count(self) -> int:
        n = self.fit_X_.shape[0]
        k = self.n_neighbors
        observed_share = (~self.fit_mask_[:, self.valid_]).mean(axis=0).min() if self.valid_.any() else 1.0
        wanted = max(4 * k, math.ceil(2 * (k + 1) / max(observed_share, 1e-3))) + 16
        return min(n, wanted, max(256, 4 * k + 16))

    def _donors(self, query: np.ndarray) -> _Donors:
        """Find the donors of every missing cell of ``query`` in a kept column."""
        cells = np.isnan(query) & self.valid_
        rows_needed = np.flatnonzero(cells.any(axis=1))
        n_fit = self.fit_X_.shape[0]
        device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        block = self.block_size or int(np.clip(2**24 // max(n_fit, 1), 16, 4096))
        n_workers = 1 if device.type != "cpu" else _n_threads(self.n_jobs)
        search = _CandidateSearch(self.fit_X_, self.fit_mask_, query[rows_needed], device,
                                  min(block, max(rows_needed.size, 1)))
        n_cand = self._candidate_count()
        fit_t = np.ascontiguousarray(self.fit_X_.T)
        starts = range(0, rows_needed.size, block)
        done = [0]
        t0 = time.perf_counter()

        def decide(rows: np.ndarray, cand: np.ndarray, bound: np.ndarray, r_loc: np.ndarray, c: np.ndarray
                   ) -> tuple[_Donors, np.ndarray, np.ndarray]:
            """Donors of cells (rows[r_loc], c) among candidate fit rows ``cand`` (padded with n_fit)."""
            padded = cand >= n_fit
            cand = np.where(padded, 0, cand)
            d2, n_common = _sq_dist(query[rows], fit_t, cand)
            n_common[padded] = 0
            dist = _nan_euclidean(d2, n_common, self.n_features_in_)
            with np.errstate(invalid="ignore", divide="ignore"):
                sq_scaled = d2 / n_common / search.scale**2
            return _select(cand, dist, sq_scaled, bound, r_loc, c, self.fit_mask_, self.n_neighbors)

        def settle(rows: np.ndarray, cand: np.ndarray, bound: np.ndarray, r_loc: np.ndarray, c: np.ndarray
                   ) -> _Donors:
            """Donors of cells that a widened candidate set provably decides."""
            part, ok, _ = decide(rows, cand, bound, r_loc, c)
            if not ok.all():
                raise RuntimeError("FastKNNImputer: a widened search left cells undecided (a bug)")
            return _Donors(rows[r_loc], c, part.index, part.distance)

        def run_block(start: int) -> tuple[_Donors, int]:
            local = np.arange(start, min(start + block, rows_needed.size))
            rows = rows_needed[local]
            r_loc, c = np.nonzero(cells[rows])
            part, ok, kth_sq = decide(rows, *search.candidates(local, n_cand), r_loc, c)
            parts = [_Donors(rows[r_loc[ok]], c[ok], part.index[ok], part.distance[ok])]
            few = np.flatnonzero(~ok & np.isinf(kth_sq))  # too few candidates observe the column:
            for col in np.unique(c[few]):  # rank every potential donor of the column
                pool = np.flatnonzero(~self.fit_mask_[:, col])
                pool = np.r_[pool, np.full(max(0, self.n_neighbors - pool.size), n_fit)]
                at, step = few[c[few] == col], max(1, 2**21 // pool.size)
                for s in range(0, at.size, step):
                    sel = at[s:s + step]
                    parts.append(settle(rows[r_loc[sel]], np.broadcast_to(pool, (sel.size, pool.size)),
                                        np.full(sel.size, np.inf), np.arange(sel.size), c[sel]))
            crowd = np.flatnonzero(~ok & np.isfinite(kth_sq))  # more tied or near-tied donors than
            if crowd.size:  # candidates: widen to every fit row whose bound is within the k-th distance
                redo_rows, r_redo = np.unique(r_loc[crowd], return_inverse=True)
                threshold = np.zeros(redo_rows.size)
                np.maximum.at(threshold, r_redo, kth_sq[crowd])
                for group, cand, bound in search.within(redo_rows, threshold * (1 + 2 * _SLACK),
                                                        self.n_neighbors + 1):
                    in_group = np.isin(r_redo, group)
                    parts.append(settle(rows[redo_rows[group]], cand, bound,
                                        np.searchsorted(group, r_redo[in_group]), c[crowd][in_group]))
            done[0] += 1
            if self.verbose and (done[0] % 20 == 0 or done[0] == len(starts)):
                print(f"FastKNNImputer: {done[0]}/{len(starts)} blocks of {block} rows, "
                      f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
            return _concat(parts), int((~ok).sum())

        with _single_threaded_libraries(), torch.no_grad(), ThreadPoolExecutor(n_workers) as pool:
            results = list(pool.map(run_block, starts))
        self.n_widened_ = sum(r[1] for r in results)
        if self.verbose:
            print(f"FastKNNImputer: {self.n_widened_} cell(s) needed the wider search", file=sys.stderr)
        return _concat([_Donors.empty(self.n_neighbors), *(r[0] for r in results)])


def _concat(parts: list[_Donors]) -> _Donors:
    return _Donors(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("rows", "cols", "index", "distance")))


def _select(cand: np.ndarray, dist: np.ndarray, sq_scaled: np.ndarray, bound: np.ndarray,
            r_loc: np.ndarray, c: np.ndarray, fit_mask: np.ndarray, k: int
            ) -> tuple[_Donors, np.ndarray, np.ndarray]:
    """Choose each cell's k donors among its row's candidates; flag the cells proven decided.

    cand, dist, sq_scaled: (b, n_cand) candidate fit rows, their exact distances and their exact
    d2/n_common in the search's scaled units; bound: (b,) lower bound of d2/n_common for every
    non-candidate. r_loc, c: (m,) block row and column of each cell to impute. Donors are the first
    k usable candidates in (distance, fit-row index) order. Returns the donors, ``ok`` (m,) and the
    k-th donor's sq_scaled (m,), +inf where fewer than k candidates are usable (the threshold of the
    wider search for the cells not ok).
    """
    by_index = np.argsort(cand, axis=1, kind="stable")
    order = np.take_along_axis(by_index, np.argsort(np.take_along_axis(dist, by_index, axis=1), axis=1,
                                                    kind="stable"), axis=1)  # NaN last
    cand = np.take_along_axis(cand, order, axis=1)
    dist = np.take_along_axis(dist, order, axis=1)
    sq_scaled = np.take_along_axis(sq_scaled, order, axis=1)
    usable = ~fit_mask[cand[r_loc], c[:, None]] & np.isfinite(dist[r_loc])  # (m, n_cand)
    n_usable = usable.sum(axis=1)
    pos = np.argsort(~usable, axis=1, kind="stable")[:, :k]  # positions of the first usable candidates
    filled = np.arange(k)[None, :] < np.minimum(n_usable, k)[:, None]
    index = np.where(filled, cand[r_loc[:, None], pos], -1)
    distance = np.where(filled, dist[r_loc[:, None], pos], np.nan)
    kth_sq = np.where(n_usable >= k, sq_scaled[r_loc, pos[:, k - 1]], np.inf)
    row_bound = bound[r_loc]
    beyond = kth_sq < row_bound * (1 - _SLACK)  # every non-candidate is strictly farther
    ok = ((n_usable >= k) & beyond) | ((n_usable < k) & np.isinf(row_bound))
    return _Donors(r_loc, c, index, distance), ok, kth_sq


class _CandidateSearch:
    """float32 lower bounds of d2/n_common for query rows against all fit rows, and the smallest.

    With rows centred by the fit means and scaled by a power of two (so |value| <= 1), and
    q~, y~ zero-filled where missing, p the observed indicators:
        d2 = sum_j q~_j^2 p(y)_j + p(q)_j y~_j^2 - 2 q~_j y~_j     (one product with 3F columns)
    The float32 rounding error of that product is at most (K + 4) u sum|terms|
    <= 2.01 (K + 4) u (|q~|^2 + |y~|^2); ``_C`` (K + 4) u (|q~|^2 + |y~|^2) with _C = 5 is
    subtracted inside the same product, so every entry is a lower bound of the exact d2.
    Pairs without a common observed coordinate get +inf.

    Selection of the n_cand smallest bounds per row is done in two steps (exact for the bound it
    returns): minima over chunks of ``_CHUNK`` fit rows, the n_cand chunks with the smallest
    minima, then the n_cand smallest entries inside them.
    """

    _C = 5.0
    _CHUNK = 64

    def __init__(self, fit_X: np.ndarray, fit_mask: np.ndarray, query: np.ndarray, device: torch.device,
                 block: int):
        n_fit = fit_X.shape[0]
        mean = np.zeros(fit_X.shape[1])
        valid = ~fit_mask.all(axis=0)
        mean[valid] = np.nanmean(fit_X[:, valid], axis=0)
        fit_c = np.where(fit_mask, 0.0, fit_X - mean)
        q_mask = np.isnan(query)
        q_c = np.where(q_mask, 0.0, query - mean)
        top = max(np.abs(fit_c).max(initial=0.0), np.abs(q_c).max(initial=0.0))
        self.scale = 2.0 ** math.ceil(math.log2(top)) if top > 0 else 1.0
        fit_c /= self.scale
        q_c /= self.scale
        c = self._C * (3 * fit_X.shape[1] + 6) * _U32
        fit_norm = (fit_c**2).sum(axis=1, keepdims=True)
        q_norm = (q_c**2).sum(axis=1, keepdims=True)
        fit_obs = (~fit_mask).astype(np.float64)
        # fit rows padded with all-zero rows (no common coordinate -> +inf) to whole chunks
        self.n_fit = n_fit
        self.n_pad = -(-n_fit // self._CHUNK) * self._CHUNK
        pad = np.zeros((self.n_pad - n_fit, 1))
        self.device = device
        self.fit_terms = self._as_tensor(np.vstack([
            np.hstack([fit_obs, fit_c**2, fit_c, np.ones_like(fit_norm), fit_norm]),
            np.zeros((pad.shape[0], 3 * fit_X.shape[1] + 2))]))
        self.fit_obs = self._as_tensor(np.vstack([fit_obs, np.zeros((pad.shape[0], fit_X.shape[1]))]))
        self.q_terms = self._as_tensor(np.hstack([q_c**2, ~q_mask, -2.0 * q_c, -(c * q_norm + 1e-30),
                                                  np.full_like(q_norm, -c)]))
        self.q_obs = self._as_tensor(~q_mask)
        self._block = block
        self._local = threading.local()  # per-thread (block, n_pad) float32 work buffers

    def _as_tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device)

    def _matmul(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> None:
        if out.device.type == "cpu":  # OpenBLAS's sgemm via numpy: faster than torch's on AMD CPUs
            np.matmul(a.numpy(), b.numpy().T, out=out.numpy())
            return
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False  # the error bound assumes true float32 products
        try:
            torch.matmul(a, b.T, out=out)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32

    def candidates(self, local_rows: np.ndarray, n_cand: int) -> tuple[np.ndarray, np.ndarray]:
        """(cand (b, n_cand) fit-row indices, bound (b,)): every non-candidate has d2/n_common >= bound.

        Candidates can include pad rows (index >= n_fit) only when the bound is +inf.
        """
        b = local_rows.size
        idx = torch.from_numpy(local_rows).to(self.device)
        if not hasattr(self._local, "bounds"):
            shape = (self._block, self.n_pad)
            self._local.bounds, self._local.common = (self._as_tensor(np.empty(shape, np.float32)) for _ in range(2))
        lower, common = self._local.bounds[:b], self._local.common[:b]
        self._matmul(self.q_terms[idx], self.fit_terms, lower)
        self._matmul(self.q_obs[idx], self.fit_obs, common)
        lower.div_(common).nan_to_num_(nan=math.inf, posinf=math.inf, neginf=math.inf)
        n_chunks = self.n_pad // self._CHUNK
        if n_chunks <= n_cand + 1:
            vals, cand = torch.topk(lower, min(n_cand, self.n_pad), dim=1, largest=False, sorted=False)
            rest = torch.full((b,), math.inf, device=self.device) if n_cand >= self.n_pad else None
        else:
            chunks = lower.view(b, n_chunks, self._CHUNK)
            chunk_min, chunk_idx = torch.topk(chunks.amin(dim=2), n_cand + 1, dim=1, largest=False, sorted=True)
            inside = chunks[torch.arange(b, device=self.device)[:, None], chunk_idx[:, :n_cand]]
            vals, pos = torch.topk(inside.reshape(b, -1), n_cand, dim=1, largest=False, sorted=False)
            cand = chunk_idx.gather(1, pos // self._CHUNK) * self._CHUNK + pos % self._CHUNK
            rest = chunk_min[:, n_cand]
        bound = vals.max(dim=1).values
        if rest is not None:
            bound = torch.minimum(bound, rest)
        return cand.cpu().numpy(), bound.double().cpu().numpy()

    def within(self, positions: np.ndarray, threshold: np.ndarray, min_width: int
               ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every fit row whose bound is <= ``threshold`` (finite), for rows ``positions`` of the block
        last given to :meth:`candidates` in this thread.

        Yields groups (positions indices (g,), cand (g, width) padded with n_fit, bound (g,)): the
        bound is the smallest bound left out (+inf when none); groups keep cand under ~2M entries.
        """
        lower = self._local.bounds[torch.from_numpy(positions).to(self.device), :self.n_fit]
        thr = torch.from_numpy(threshold).to(lower)[:, None]
        inside = lower <= thr
        left_out = lower.masked_fill(inside, math.inf).amin(dim=1).double().cpu().numpy()
        counts = inside.sum(dim=1).cpu().numpy()
        found = [np.flatnonzero(row) for row in inside.cpu().numpy()]
        order = np.argsort(counts, kind="stable")
        start = 0
        while start < order.size:  # rows whose counts are within a factor 2: padding at most doubles
            first = max(min_width, int(counts[order[start]]))
            stop = start + 1
            while stop < order.size and counts[order[stop]] <= 2 * first \
                    and (stop - start + 1) * max(first, counts[order[stop]]) <= 2**21:
                stop += 1
            width = max(first, int(counts[order[stop - 1]]))
            group = np.sort(order[start:stop])
            cand = np.full((group.size, width), self.n_fit, dtype=np.int64)
            for i, g in enumerate(group):
                cand[i, :counts[g]] = found[g]
            yield group, cand, left_out[group]
            start = stop


class DonorKNNImputer(FastKNNImputer):
    """Fill gaps in actual records from their k nearest records of a reference pool, with an audit.

    ``fit(reference_pool)`` stores the pool (a synthetic cohort or a historical study: array or
    DataFrame, same columns as the actual data); ``transform(actual)`` fills each missing cell of
    ``actual`` with the (weighted) mean of the cell's column over the k pool records nearest to
    the actual record that observe that column; the rules, distance and results are those of
    ``FastKNNImputer`` fitted on the pool (scikit-learn's KNNImputer semantics).

    ``audit_`` (also returned by ``transform(..., return_audit=True)``) is a DataFrame with one row
    per (imputed record, filled column, donor):

    record, column          the actual record's index label and the filled column
    filled_value            the value written into the cell
    donor                   the pool record's index label (NA when no donor, see ``method``)
    donor_rank              1 = nearest
    distance                nan-Euclidean distance used for ranking: Euclidean distance over the
                            n_common commonly observed columns, scaled by sqrt(n_features / n_common)
    euclidean_common        unscaled Euclidean distance over the commonly observed columns
    n_common                number of commonly observed columns
    donor_value, weight     the donor's value and its share of the filled value (weights sum to 1)
    method                  "donors", or "pool_mean" when the record shares no observed column
                            with any pool record observing that column (the pool's mean is used)
    """

    def transform(self, X: np.ndarray | pd.DataFrame, return_audit: bool = False
                  ) -> np.ndarray | pd.DataFrame | tuple[np.ndarray | pd.DataFrame, pd.DataFrame]:
        """Impute ``X`` (n_records, n_features) from the pool; sets ``audit_`` (see class doc)."""
        values = self._check_transform_input(X)
        donors = self._donors(values)
        filled = self._fill_values(donors)
        out = values.copy()
        out[donors.rows, donors.cols] = filled
        self.audit_ = self._audit(values, donors, filled, X)
        result = self._format_output(out, X)
        return (result, self.audit_) if return_audit else result

    def _audit(self, values: np.ndarray, donors: _Donors, filled: np.ndarray,
               X: np.ndarray | pd.DataFrame) -> pd.DataFrame:
        w = _donor_weights(donors.distance, self.weights)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = w / w.sum(axis=1, keepdims=True)
        rank = np.argsort(np.argsort(np.where(donors.index >= 0, donors.distance, np.inf), axis=1,
                                     kind="stable"), axis=1, kind="stable") + 1
        cell, slot = np.nonzero(donors.index >= 0)
        donor = donors.index[cell, slot]
        d2, n_common = _sq_dist(values[donors.rows[cell]], self.fit_X_.T, donor[:, None])
        pool_labels = self.pool_index_ if self.pool_index_ is not None else np.arange(self.fit_X_.shape[0])
        with_donors = pd.DataFrame({
            "_row": donors.rows[cell], "_col": donors.cols[cell], "filled_value": filled[cell],
            "donor": pd.array(pool_labels[donor]), "donor_rank": rank[cell, slot],
            "distance": donors.distance[cell, slot], "euclidean_common": np.sqrt(d2[:, 0]),
            "n_common": n_common[:, 0], "donor_value": self.fit_X_[donor, donors.cols[cell]],
            "weight": share[cell, slot], "method": "donors",
        })
        no_donor = np.flatnonzero(w.sum(axis=1) == 0)
        fallback = pd.DataFrame({"_row": donors.rows[no_donor], "_col": donors.cols[no_donor],
                                 "filled_value": filled[no_donor], "method": "pool_mean"})
        audit = pd.concat([with_donors, fallback], ignore_index=True) if len(fallback) else with_donors
        audit = audit.sort_values(["_row", "_col", "donor_rank"], kind="stable", ignore_index=True)
        record_labels = X.index.to_numpy() if isinstance(X, pd.DataFrame) else np.arange(values.shape[0])
        col_labels = np.asarray(getattr(self, "feature_names_in_", None) or self.labels_, dtype=object)
        audit.insert(0, "record", record_labels[audit["_row"].to_numpy()])
        audit.insert(1, "column", col_labels[audit["_col"].to_numpy()])
        return audit.drop(columns=["_row", "_col"]).astype({"donor_rank": "Int64", "n_common": "Int64"})

    def fit(self, X: np.ndarray | pd.DataFrame, y: object = None) -> DonorKNNImputer:
        """Store the reference pool X (n_pool_records, n_features)."""
        super().fit(X)
        self.pool_index_ = X.index.to_numpy() if isinstance(X, pd.DataFrame) else None
        return self
