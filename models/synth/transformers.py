"""Reversible encodings between a DataFrame and the numeric matrices the synthesizers model.

Two layers:

* :class:`TableEncoder` (schema-driven, shared by all synthesizers): DataFrame <-> float matrix of
  *model columns*. Numeric columns become floats (dates: days from the reference date), labels become
  integer codes, and each column with missing training values gets a 0/1 missing-indicator model
  column ``"<name>__missing"`` (its value cell is filled with a random observed value).
* :class:`GanTransformer` (CTGAN): model-column matrix <-> network matrix, with
  :class:`ModeSpecificNormalizer` (Bayesian GMM, Xu et al. 2019, sec. 4.2) for continuous model
  columns and one-hot blocks for discrete ones.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture

from models.synth.schema import TableSchema, to_day_offsets

MISSING_SUFFIX = "__missing"


@dataclass(frozen=True)
class ModelColumn:
    """A column of the model matrix: ``n_categories`` is 0 for continuous columns, else the codes are
    ``0 .. n_categories - 1``; ``source`` is the schema column it comes from."""

    name: str
    source: str
    n_categories: int

    @property
    def discrete(self) -> bool:
        return self.n_categories > 0


class TableEncoder:
    """DataFrame <-> model matrix of shape (n_rows, n_model_columns), following a complete schema.

    After :meth:`fit`: ``columns_`` (list of :class:`ModelColumn`), ``category_counts_`` (model
    column name -> training count per code, discrete columns only).
    """

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema

    def fit(self, df: pd.DataFrame) -> TableEncoder:
        specs = self.schema.columns
        with_missing = [s.name for s in specs if self.schema.model_missing and df[s.name].isna().any()]
        self.columns_ = [ModelColumn(s.name, s.name, len(s.categories) if s.discrete else 0) for s in specs]
        self.columns_ += [ModelColumn(n + MISSING_SUFFIX, n, 2) for n in with_missing]
        self.dtypes_ = {s.name: df[s.name].dtype for s in specs}
        raw = self._raw_codes(df)
        self.category_counts_ = {
            c.name: np.bincount(raw[:, i][~np.isnan(raw[:, i])].astype(int), minlength=c.n_categories)
            for i, c in enumerate(self.columns_)
            if c.discrete
        }
        return self

    def transform(self, df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
        """Model matrix, float64, shape (n_rows, n_model_columns); missing cells are filled with
        values drawn (with ``rng``) from the column's observed values."""
        out = self._raw_codes(df)
        for i in range(len(self.schema.columns)):
            miss = np.isnan(out[:, i])
            if miss.any():
                out[miss, i] = rng.choice(out[~miss, i], size=int(miss.sum()))
        return out

    def inverse_transform(self, matrix: np.ndarray) -> pd.DataFrame:
        """Model matrix (n, n_model_columns) -> DataFrame (n, n_schema_columns) with constraints
        enforced: codes rounded and clipped, numbers clipped to the range, integers and dates rounded,
        missing indicators turned into NaN/NaT."""
        index = {c.name: i for i, c in enumerate(self.columns_)}
        data = {}
        for spec in self.schema.columns:
            x = matrix[:, index[spec.name]]
            if spec.discrete:
                codes = np.clip(np.rint(x), 0, len(spec.categories) - 1).astype(int)
                values = pd.Series(np.asarray(spec.categories, dtype=object)[codes], dtype=object)
            elif spec.kind == "date":
                lo, hi = ((v - spec.reference_date).days for v in (spec.min_value, spec.max_value))
                days = np.clip(np.rint(x), lo, hi)
                values = pd.Series(spec.reference_date + pd.to_timedelta(days, unit="D"))
            else:
                values = np.clip(x, spec.min_value, spec.max_value)
                decimals = 0 if spec.kind == "integer" else spec.decimals
                values = pd.Series(values if decimals is None else np.round(values, decimals))
            miss_col = index.get(spec.name + MISSING_SUFFIX)
            if miss_col is not None:
                values = values.mask(matrix[:, miss_col] >= 0.5)
            data[spec.name] = self._restore_dtype(spec.name, spec.kind, values)
        return pd.DataFrame(data)

    def encode_condition(self, column: str, value: object) -> tuple[int, int]:
        """(model column index, code) of ``column == value``; ValueError if the column is unknown,
        not categorical/ordinal, or ``value`` was never seen in training."""
        if column not in self.schema:
            raise ValueError(
                f"conditions: column {column!r} is not a synthesized column ({self.schema.names})"
            )
        spec = self.schema[column]
        if not spec.discrete:
            raise ValueError(
                f"conditions: column {column!r} is {spec.kind}; only categorical/ordinal columns can be conditioned on"
            )
        counts = self.category_counts_[column]
        seen = [c for c, k in zip(spec.categories, counts, strict=True) if k > 0]
        code = next((i for i, c in enumerate(spec.categories) if c == value), None)
        if code is None or counts[code] == 0:
            raise ValueError(
                f"conditions: value {value!r} of column {column!r} was never seen in training (seen: {seen})"
            )
        return self.column_index(column), code

    def column_index(self, name: str) -> int | None:
        """Index of the model column ``name`` (None if there is none)."""
        return next((i for i, c in enumerate(self.columns_) if c.name == name), None)

    def _raw_codes(self, df: pd.DataFrame) -> np.ndarray:
        """Model matrix with NaN in missing value cells (indicators filled in)."""
        out = np.empty((len(df), len(self.columns_)))
        for i, spec in enumerate(self.schema.columns):
            col = df[spec.name]
            if spec.discrete:
                codes = pd.Categorical(col, categories=list(spec.categories)).codes.astype(float)
                codes[codes < 0] = np.nan
                out[:, i] = codes
            elif spec.kind == "date":
                out[:, i] = to_day_offsets(col, spec.reference_date)
            else:
                out[:, i] = col.to_numpy(dtype=float, na_value=np.nan)
        for j, c in enumerate(self.columns_[len(self.schema.columns) :], start=len(self.schema.columns)):
            out[:, j] = df[c.source].isna().to_numpy(dtype=float)
        return out

    def _restore_dtype(self, name: str, kind: str, values: pd.Series) -> pd.Series:
        dtype = self.dtypes_[name]
        has_na = bool(values.isna().any())
        if kind == "integer":
            if pd.api.types.is_float_dtype(dtype):
                return values
            return values.astype("Int64" if has_na else "int64")
        if kind == "date" and pd.api.types.is_datetime64_dtype(dtype):
            return values.astype(dtype)
        if kind in ("continuous", "date"):
            return values
        if isinstance(dtype, pd.CategoricalDtype):
            return values.astype(dtype)
        if pd.api.types.is_bool_dtype(dtype) and not has_na:
            return values.astype(bool)
        if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
            return values.astype(dtype)
        return values


class ModeSpecificNormalizer:
    """Mode-specific normalization of one continuous column (CTGAN, Xu et al. 2019, sec. 4.2).

    A variational (Dirichlet-process) Gaussian mixture with at most ``max_components`` modes is fitted
    on at most ``subsample`` values; modes with weight below ``weight_threshold`` are dropped. A value
    x is encoded as a mode k drawn from the posterior P(k | x) and the scalar
    ``alpha = (x - mu_k) / (4 sigma_k)`` clipped to [-0.99, 0.99].
    """

    def __init__(
        self,
        max_components: int = 10,
        subsample: int = 5000,
        weight_threshold: float = 0.005,
        random_state: int | None = None,
    ) -> None:
        self.max_components = max_components
        self.subsample = subsample
        self.weight_threshold = weight_threshold
        self.random_state = random_state

    def fit(self, x: np.ndarray) -> ModeSpecificNormalizer:
        """x: shape (n,), no NaN."""
        rng = np.random.default_rng(self.random_state)
        if len(x) > self.subsample:
            x = rng.choice(x, size=self.subsample, replace=False)
        n_components = int(min(self.max_components, len(np.unique(x))))
        gmm = BayesianGaussianMixture(
            n_components=n_components,
            weight_concentration_prior_type="dirichlet_process",
            weight_concentration_prior=0.001,
            max_iter=100,
            n_init=1,
            random_state=self.random_state,
        )
        with warnings.catch_warnings():
            # 100 variational iterations (as in CTGAN) often stop short of the tolerance; the modes
            # found are still usable, so the warning would only be noise for every column
            warnings.simplefilter("ignore", ConvergenceWarning)
            gmm.fit(x.reshape(-1, 1))
        self.gmm_ = gmm
        self.valid_ = gmm.weights_ > self.weight_threshold
        if not self.valid_.any():  # cannot happen for a fitted mixture, but keep the largest mode
            self.valid_[np.argmax(gmm.weights_)] = True
        self.means_ = gmm.means_.ravel()[self.valid_]
        self.stds_ = np.sqrt(gmm.covariances_.ravel()[self.valid_])
        return self

    @property
    def n_modes(self) -> int:
        return int(self.valid_.sum())

    def transform(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """x: shape (n,) -> shape (n, 1 + n_modes): [alpha, one-hot mode]."""
        probs = self.gmm_.predict_proba(x.reshape(-1, 1))[:, self.valid_] + 1e-6
        probs /= probs.sum(axis=1, keepdims=True)
        modes = _sample_rows(probs, rng)
        alpha = (x - self.means_[modes]) / (4 * self.stds_[modes])
        out = np.zeros((len(x), 1 + self.n_modes))
        out[:, 0] = np.clip(alpha, -0.99, 0.99)
        out[np.arange(len(x)), 1 + modes] = 1.0
        return out

    def inverse_transform(self, encoded: np.ndarray) -> np.ndarray:
        """shape (n, 1 + n_modes) -> shape (n,)"""
        modes = np.argmax(encoded[:, 1:], axis=1)
        return np.clip(encoded[:, 0], -1, 1) * 4 * self.stds_[modes] + self.means_[modes]


@dataclass(frozen=True)
class Span:
    """A block ``[start, end)`` of the network matrix; ``activation`` is "tanh" or "softmax";
    ``column`` is the model-column index; ``discrete`` marks one-hot blocks of discrete columns
    (the blocks the conditional vector refers to)."""

    start: int
    end: int
    activation: str
    column: int
    discrete: bool


class GanTransformer:
    """Model matrix (n, n_model_columns) <-> network matrix (n, output_dim) for CTGAN.

    ``spans_`` lists the output blocks in order; ``discrete_spans_`` the one-hot blocks of discrete
    model columns.
    """

    def __init__(self, max_components: int = 10, subsample: int = 5000) -> None:
        self.max_components = max_components
        self.subsample = subsample

    def fit(self, matrix: np.ndarray, columns: list[ModelColumn], rng: np.random.Generator) -> GanTransformer:
        self.columns_ = list(columns)
        self.normalizers_: dict[int, ModeSpecificNormalizer] = {}
        self.spans_: list[Span] = []
        start = 0
        for j, col in enumerate(columns):
            if col.discrete:
                self.spans_.append(Span(start, start + col.n_categories, "softmax", j, True))
                start += col.n_categories
                continue
            norm = ModeSpecificNormalizer(
                self.max_components, self.subsample, random_state=int(rng.integers(2**31 - 1))
            ).fit(matrix[:, j])
            self.normalizers_[j] = norm
            self.spans_ += [
                Span(start, start + 1, "tanh", j, False),
                Span(start + 1, start + 1 + norm.n_modes, "softmax", j, False),
            ]
            start += 1 + norm.n_modes
        self.output_dim_ = start
        self.discrete_spans_ = [s for s in self.spans_ if s.discrete]
        return self

    def transform(self, matrix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """shape (n, n_model_columns) -> float32 shape (n, output_dim_)."""
        blocks = []
        for j, col in enumerate(self.columns_):
            if col.discrete:
                # one-hot by indexing an identity matrix: codes are already 0..k-1, no fitting needed
                blocks.append(np.eye(col.n_categories)[matrix[:, j].astype(int)])
            else:
                blocks.append(self.normalizers_[j].transform(matrix[:, j], rng))
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def inverse_transform(self, data: np.ndarray) -> np.ndarray:
        """shape (n, output_dim_) -> float64 shape (n, n_model_columns); one-hot blocks -> argmax."""
        out = np.empty((len(data), len(self.columns_)))
        for s in self.spans_:
            if s.discrete:
                out[:, s.column] = np.argmax(data[:, s.start : s.end], axis=1)
            elif s.activation == "tanh":
                width = 1 + self.normalizers_[s.column].n_modes
                out[:, s.column] = self.normalizers_[s.column].inverse_transform(
                    data[:, s.start : s.start + width]
                )
        return out


def _sample_rows(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row of ``probs`` (n, k), rows summing to 1 -> codes (n,).
    Hand-written because numpy's Generator.choice takes a single probability vector."""
    u = rng.random((len(probs), 1))
    return np.minimum((np.cumsum(probs, axis=1) < u).sum(axis=1), probs.shape[1] - 1)
