"""The public domain of a table for the DP synthesizers, its DP estimate, and binned codes.

A DP synthesizer may only look at the data through its noisy measurements, so everything that shapes
those measurements must be public: the columns and their kinds (the table's structure), the numeric
bounds and the category sets. They come from the study config (the protocol, CDISC controlled
terminology), or from :func:`estimate_domain`, which spends part of the privacy budget on them; never
from the raw min/max or the set of values seen (that would publish the extreme and the rare subjects).

Codes: every column becomes an integer code per row, 0 = missing (every column may be missing: which
ones are is not public), then one code per category, or per bin of the public range for numeric
columns (``n_bins`` equal-width bins; integer columns with a narrow range get one bin per value).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from models.synth.dp.accountant import ZCDPAccountant
from models.synth.schema import ColumnSpec, TableSchema
from models.synth.transformers import MISSING_SUFFIX, ModelColumn, TableEncoder

DP_KINDS = ("continuous", "integer", "categorical", "ordinal")
# Signed powers of two for the DP bounds estimate: buckets [2^k, 2^(k+1)) for k in [_K_MIN, _K_MAX),
# their negatives, and one bucket (-2^_K_MIN, 2^_K_MIN) around zero. Values beyond fall in the end buckets.
_K_MIN, _K_MAX = -8, 24
_PEAK_Z = 3.0  # the fullest bucket must clear 3 sigma to be told apart from noise
_EXTEND_Z = 2.0  # a neighbouring bucket joins the range above 2 sigma (noise: 2.3% per step)


def _kind_of(dtype: Any) -> str:
    """The kind a column's dtype implies (structure only: no value is looked at)."""
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "date"
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return "ordinal" if isinstance(dtype, pd.CategoricalDtype) and dtype.ordered else "categorical"
    return "integer" if pd.api.types.is_integer_dtype(dtype) else "continuous"


def public_schema(df: pd.DataFrame, columns: Mapping[str, Mapping[str, Any]] | None) -> TableSchema:
    """One spec per column of ``df`` from its dtype and the public ``columns`` (name -> ColumnSpec
    fields: kind, min_value, max_value, categories, decimals); bounds and categories not given stay
    None. Raises ValueError for a configured column that ``df`` lacks or a date column."""
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(map(str, df.columns)))
    if unknown:
        raise ValueError(f"columns: {unknown} are not columns of the training table")
    specs = []
    for name in df.columns:
        fields = {"kind": _kind_of(df[name].dtype)} | {k: v for k, v in columns.get(name, {}).items() if v is not None}
        if fields["kind"] not in DP_KINDS:
            raise ValueError(f"column {name!r}: kind {fields['kind']!r} is not supported by the DP synthesizers "
                             f"({DP_KINDS}); convert dates to study days first")
        specs.append(ColumnSpec(name=name, **fields))
    return TableSchema(tuple(specs), model_missing=True)


def incomplete(schema: TableSchema) -> list[str]:
    """Columns whose public bounds (numeric) or categories (categorical/ordinal) are not given."""
    return [c.name for c in schema.columns
            if (c.categories is None if c.discrete else c.min_value is None or c.max_value is None)]


def _bucket_edges() -> np.ndarray:
    positive = 2.0 ** np.arange(_K_MIN, _K_MAX + 1)
    return np.concatenate([-positive[::-1], positive])


def estimate_domain(
    df: pd.DataFrame, schema: TableSchema, accountant: ZCDPAccountant, rho: float, rng: np.random.Generator
) -> tuple[TableSchema, dict[str, str]]:
    """Fill the missing bounds and categories of ``schema`` with a DP estimate spending ``rho``.

    One Gaussian measurement of every incomplete column's histogram (L2 sensitivity sqrt(2) per column
    when one row is replaced): numeric columns over signed power-of-two buckets (the range starts at
    the fullest bucket, which must clear 3 sigma, and grows over neighbouring buckets above 2 sigma, so
    that a stray noisy bucket far away cannot stretch it), categorical columns over the values
    present, released only when the noisy count clears
    ``1 + sigma * z`` with ``z`` set so that a value held by one subject is released with probability
    at most ``accountant.delta_threshold`` (the stability-based histogram, Korolova et al. 2009).
    Returns the completed schema (columns without an estimate left out) and column -> why it was left
    out. Post-processing only after the measurement.
    """
    names = incomplete(schema)
    if not names:
        return schema, {}
    n_categorical = sum(schema[n].discrete and schema[n].categories is None for n in names)
    if n_categorical and accountant.delta_threshold <= 0:
        raise ValueError("estimating category sets needs a delta_threshold > 0 in the accountant")
    sigma = accountant.gaussian(f"domain estimate of {names}", np.sqrt(2 * len(names)), rho)
    edges = _bucket_edges()
    category_threshold = 1 + sigma * norm.isf(accountant.delta_threshold / (2 * max(n_categorical, 1)))
    specs, dropped = {}, {}
    for name in names:
        spec, observed = schema[name], df[name].dropna()
        if spec.discrete and spec.categories is None:
            counts = observed.value_counts(sort=False).sort_index()
            noisy = counts.to_numpy(dtype=float) + rng.normal(0, sigma, len(counts))
            kept = tuple(counts.index[noisy > category_threshold].tolist())
            if kept:
                specs[name] = replace(spec, categories=kept)
            else:
                dropped[name] = f"no category clears the DP threshold {category_threshold:.0f}"
            continue
        if spec.discrete:
            continue
        buckets = np.clip(np.searchsorted(edges, observed.to_numpy(dtype=float), side="right"), 1, len(edges) - 1) - 1
        noisy = np.bincount(buckets, minlength=len(edges) - 1) + rng.normal(0, sigma, len(edges) - 1)
        first = last = int(np.argmax(noisy))
        if noisy[first] <= _PEAK_Z * sigma:
            dropped[name] = f"no value bucket clears the DP threshold {_PEAK_Z * sigma:.0f}"
            continue
        while first > 0 and noisy[first - 1] > _EXTEND_Z * sigma:
            first -= 1
        while last < len(noisy) - 1 and noisy[last + 1] > _EXTEND_Z * sigma:
            last += 1
        lo, hi = float(edges[first]), float(edges[last + 1])
        lo, hi = (spec.min_value if spec.min_value is not None else lo), (spec.max_value if spec.max_value is not None else hi)
        if spec.kind == "integer":
            lo, hi = float(np.floor(lo)), float(np.ceil(hi))
        specs[name] = replace(spec, min_value=lo, max_value=hi)
    kept = [specs.get(c.name, c) for c in schema.columns if c.name not in dropped]
    return replace(schema, columns=tuple(kept)), dropped


class PublicEncoder(TableEncoder):
    """:class:`TableEncoder` of a complete public schema, set up without reading any value.

    Model matrix as for the other synthesizers (value or category index per column, then a missing
    indicator per column); codes as in the module docstring. Any public category can be a condition
    (a DP model keeps no record of which categories were seen).
    """

    def __init__(self, schema: TableSchema, n_bins: int) -> None:
        super().__init__(schema)
        self.n_bins = n_bins

    def fit_public(self, dtypes: Mapping[str, Any]) -> PublicEncoder:
        specs = self.schema.columns
        self.columns_ = [ModelColumn(s.name, s.name, len(s.categories) if s.discrete else 0) for s in specs]
        self.columns_ += [ModelColumn(s.name + MISSING_SUFFIX, s.name, 2) for s in specs]
        self.dtypes_ = {s.name: dtypes[s.name] for s in specs}
        self.edges_ = {s.name: self._edges(s) for s in specs if not s.discrete}
        self.sizes_ = np.array([1 + (len(s.categories) if s.discrete else len(self.edges_[s.name]) - 1)
                                for s in specs])
        return self

    def _edges(self, spec: ColumnSpec) -> np.ndarray:
        lo, hi = float(spec.min_value), float(spec.max_value)
        if spec.kind == "integer" and hi - lo + 1 <= self.n_bins:
            return np.arange(lo - 0.5, hi + 1.0)  # one bin per whole number
        return np.linspace(lo, hi, self.n_bins + 1) if hi > lo else np.array([lo - 0.5, lo + 0.5])

    def encode_condition(self, column: str, value: object) -> tuple[int, int]:
        if column not in self.schema or not self.schema[column].discrete:
            raise ValueError(f"conditions: column {column!r} is not a categorical/ordinal column of the model")
        categories = self.schema[column].categories
        if value not in categories:
            raise ValueError(f"conditions: value {value!r} of column {column!r} is not in its public "
                             f"categories {list(categories)}")
        return self.column_index(column), categories.index(value)

    def to_codes(self, df: pd.DataFrame) -> np.ndarray:
        """Codes (n_rows, n_columns) int64: 0 missing; numeric values clipped into the end bins;
        a category outside the public set counts as missing."""
        codes = np.zeros((len(df), len(self.schema.columns)), dtype=np.int64)
        for j, spec in enumerate(self.schema.columns):
            col = df[spec.name]
            if spec.discrete:
                index = pd.Categorical(col, categories=list(spec.categories)).codes
                codes[:, j] = np.where(index >= 0, index + 1, 0)
            else:
                x = col.to_numpy(dtype=float, na_value=np.nan)
                edges = self.edges_[spec.name]
                bins = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
                codes[:, j] = np.where(np.isnan(x), 0, bins + 1)
        return codes

    def from_codes(self, codes: np.ndarray, within: np.ndarray) -> np.ndarray:
        """Model matrix (n, 2 n_columns) from codes (n, n_columns) and positions in [0, 1] inside each
        numeric bin (same shape; ignored for categorical columns)."""
        n, d = codes.shape
        out = np.zeros((n, 2 * d))
        for j, spec in enumerate(self.schema.columns):
            present = codes[:, j] > 0
            index = np.maximum(codes[:, j] - 1, 0)
            if spec.discrete:
                out[:, j] = index
            else:
                edges = self.edges_[spec.name]
                out[:, j] = edges[index] + within[:, j] * (edges[index + 1] - edges[index])
            out[:, d + j] = (~present).astype(float)
        return out
