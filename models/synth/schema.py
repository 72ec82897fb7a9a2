"""Column specifications of a table to synthesize, and their inference from a DataFrame.

A :class:`TableSchema` lists the modelled columns, each a :class:`ColumnSpec` with a kind:

``continuous``  real values, clipped to ``[min_value, max_value]`` and rounded to ``decimals``
                places (if set) on output;
``integer``     like continuous, rounded to whole numbers on output;
``categorical`` unordered labels, ``categories`` lists the allowed values;
``ordinal``     ordered labels, ``categories`` lists them from lowest to highest;
``date``        calendar dates, modelled as offsets in days from ``reference_date`` and returned as
                ``datetime64[ns]`` values at midnight; ``min_value``/``max_value`` are dates.

Columns of the DataFrame that the schema does not list are ignored by the synthesizers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

KINDS = ("continuous", "integer", "categorical", "ordinal", "date")
DISCRETE_KINDS = ("categorical", "ordinal")


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a :class:`TableSchema`.

    Fields left as ``None`` are filled from the training data by :meth:`TableSchema.complete`:
    categories (observed values, in dtype order for pandas categoricals, else sorted), value range
    (observed min and max) and the reference date (earliest observed date).
    """

    name: str
    kind: str
    categories: tuple | None = None
    min_value: Any = None
    max_value: Any = None
    reference_date: pd.Timestamp | None = None
    decimals: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.categories is not None:
            if self.kind not in DISCRETE_KINDS:
                raise ValueError(f"column {self.name!r}: categories are only allowed for {DISCRETE_KINDS}")
            cats = tuple(self.categories)
            if len(cats) == 0 or len(set(cats)) != len(cats):
                raise ValueError(f"column {self.name!r}: categories must be non-empty and unique")
            object.__setattr__(self, "categories", cats)
        if self.kind == "date":
            for attr in ("min_value", "max_value", "reference_date"):
                value = getattr(self, attr)
                if value is not None:
                    object.__setattr__(self, attr, pd.Timestamp(value).normalize())
        elif self.kind in DISCRETE_KINDS and (self.min_value is not None or self.max_value is not None):
            raise ValueError(f"column {self.name!r}: min_value/max_value do not apply to kind {self.kind!r}")
        if self.decimals is not None and (self.kind != "continuous" or not 0 <= self.decimals <= 15):
            raise ValueError(f"column {self.name!r}: decimals must be 0..15 and only for continuous columns")
        lo, hi = self.min_value, self.max_value
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"column {self.name!r}: min_value {lo!r} is greater than max_value {hi!r}")

    @property
    def discrete(self) -> bool:
        """True for categorical and ordinal columns."""
        return self.kind in DISCRETE_KINDS

    def to_dict(self) -> dict:
        """JSON-friendly dict (timestamps as ISO strings)."""
        out = asdict(self)
        out["categories"] = None if self.categories is None else [_jsonable(c) for c in self.categories]
        for key in ("min_value", "max_value", "reference_date"):
            out[key] = _jsonable(out[key])
        return out


@dataclass(frozen=True)
class TableSchema:
    """Ordered column specifications plus whether to reproduce the missingness pattern.

    ``model_missing=True`` learns, for every column with missing training values, a missing
    indicator modelled jointly with the data, and re-inserts NaN/NaT on output. With ``False`` the
    synthesizers fill missing training values and never output missing values.
    """

    columns: tuple[ColumnSpec, ...]
    model_missing: bool = True
    _by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cols = tuple(self.columns)
        if not cols:
            raise ValueError("columns: a schema needs at least one column")
        names = [c.name for c in cols]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"columns: duplicate column names {dupes}")
        object.__setattr__(self, "columns", cols)
        object.__setattr__(self, "_by_name", {c.name: c for c in cols})

    @property
    def names(self) -> list[str]:
        """Column names in schema order."""
        return [c.name for c in self.columns]

    def __getitem__(self, name: str) -> ColumnSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"column {name!r} is not in the schema (columns: {self.names})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @classmethod
    def infer(
        cls,
        df: pd.DataFrame,
        overrides: Mapping[str, str | Mapping[str, Any]] | None = None,
        *,
        model_missing: bool = True,
        max_categories: int = 100,
    ) -> TableSchema:
        """Infer a complete schema from ``df``.

        Kinds from dtypes: bool, string/object and unordered pandas categoricals -> categorical;
        ordered pandas categoricals -> ordinal; datetimes -> date; integer dtypes, and floats whose
        observed values are all whole numbers -> integer; other numbers -> continuous, with
        ``decimals`` set when every observed value has at most 6 decimal places (recorded
        precision, e.g. weights to 0.1 kg, is then reproduced).

        Parameters
        ----------
        df : DataFrame, shape (n_rows, n_columns)
        overrides : mapping column -> kind string or dict of :class:`ColumnSpec` fields
            (e.g. ``{"AGE": {"kind": "integer", "min_value": 18}, "SEV": {"kind": "ordinal",
            "categories": ["mild", "moderate", "severe"]}}``); an override may name the column
            ``None`` (``{"USUBJID": None}``) to leave it out of the schema.
        model_missing : bool
            See the class docstring.
        max_categories : int
            Inferred categorical columns with more distinct values raise ValueError (identifiers
            should be dropped or overridden, not synthesized).
        """
        _check_frame(df)
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(map(str, df.columns)))
        if unknown:
            raise ValueError(f"overrides: columns {unknown} are not in the DataFrame")
        specs = []
        for name in df.columns:
            override = overrides.get(name, {})
            if override is None:
                continue
            if isinstance(override, str):
                override = {"kind": override}
            fields = {"name": name, "kind": _infer_kind(df[name])} | dict(override)
            if fields["kind"] == "continuous" and "decimals" not in override:
                fields["decimals"] = _infer_decimals(df[name])
            if fields["kind"] == "ordinal" and fields.get("categories") is None:
                dtype = df[name].dtype
                if not (isinstance(dtype, pd.CategoricalDtype) and dtype.ordered):
                    raise ValueError(f"column {name!r}: an ordinal override needs its categories in order")
            spec = ColumnSpec(**fields)
            if spec.kind == "categorical" and "kind" not in override:
                n_unique = df[name].nunique(dropna=True)
                if n_unique > max_categories:
                    raise ValueError(
                        f"column {name!r} looks like an identifier or free text ({n_unique} distinct "
                        f"values > max_categories={max_categories}); drop it or pass an override"
                    )
            specs.append(spec)
        return cls(tuple(specs), model_missing=model_missing).complete(df)

    def complete(self, df: pd.DataFrame) -> TableSchema:
        """Return a copy with every ``None`` field filled from ``df``, after checking that ``df``
        holds every schema column, no column is entirely missing, and every observed categorical
        value is a listed category. Raises ValueError naming the offending column."""
        _check_frame(df)
        missing = [n for n in self.names if n not in df.columns]
        if missing:
            raise ValueError(f"df: schema columns {missing} are not in the DataFrame")
        return replace(self, columns=tuple(_complete_spec(spec, df[spec.name]) for spec in self.columns))

    def to_dict(self) -> dict:
        """JSON-friendly dict, e.g. for a model registry's parameters."""
        return {"model_missing": self.model_missing, "columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableSchema:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(ColumnSpec(**c) for c in data["columns"]), model_missing=data["model_missing"])


def to_day_offsets(values: pd.Series, reference_date: pd.Timestamp) -> np.ndarray:
    """Dates -> float days since ``reference_date`` (NaN for missing), shape (n,)."""
    dates = pd.to_datetime(values).dt.normalize()
    return ((dates - reference_date) / pd.Timedelta(days=1)).to_numpy(dtype=float, na_value=np.nan)


def _check_frame(df: pd.DataFrame) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if not df.columns.is_unique:
        raise ValueError("df: column names must be unique")


def _infer_kind(col: pd.Series) -> str:
    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "ordinal" if dtype.ordered else "categorical"
    if pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "date"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_numeric_dtype(dtype):
        values = col.dropna().to_numpy(dtype=float)
        return "integer" if len(values) and np.all(np.mod(values, 1) == 0) else "continuous"
    return "categorical"


def _infer_decimals(col: pd.Series, max_decimals: int = 6) -> int | None:
    values = col.dropna().to_numpy(dtype=float)
    tol = 1e-9 * np.maximum(1.0, np.abs(values))
    return next(
        (k for k in range(1, max_decimals + 1) if np.all(np.abs(np.round(values, k) - values) <= tol)), None
    )


def _complete_spec(spec: ColumnSpec, col: pd.Series) -> ColumnSpec:
    observed = col.dropna()
    if observed.empty:
        raise ValueError(f"column {spec.name!r} is entirely missing; drop it or fill it before fitting")
    if spec.discrete:
        present = _observed_categories(observed)
        if spec.categories is None:
            return replace(spec, categories=present)
        unknown = [v for v in present if v not in set(spec.categories)]
        if unknown:
            raise ValueError(f"column {spec.name!r}: values {unknown[:5]} are not among its categories")
        return spec
    if spec.kind == "date":
        try:
            dates = pd.to_datetime(observed).dt.normalize()
        except (ValueError, TypeError) as exc:
            raise ValueError(f"column {spec.name!r}: cannot read values as dates ({exc})") from exc
        if dates.dt.tz is not None:
            raise ValueError(f"column {spec.name!r}: timezone-aware dates are not supported")
        lo, hi = dates.min(), dates.max()
    else:
        if not pd.api.types.is_numeric_dtype(observed.dtype) or pd.api.types.is_bool_dtype(observed.dtype):
            raise ValueError(
                f"column {spec.name!r}: kind {spec.kind!r} needs numeric values, got {col.dtype}"
            )
        lo, hi = float(observed.min()), float(observed.max())
    return replace(
        spec,
        min_value=lo if spec.min_value is None else spec.min_value,
        max_value=hi if spec.max_value is None else spec.max_value,
        reference_date=(lo if spec.reference_date is None else spec.reference_date)
        if spec.kind == "date"
        else None,
    )


def _observed_categories(observed: pd.Series) -> tuple:
    if isinstance(observed.dtype, pd.CategoricalDtype):
        present = set(observed.unique())
        return tuple(c for c in observed.dtype.categories if c in present)
    values = observed.unique().tolist()
    try:
        return tuple(sorted(values))
    except TypeError:  # mixed types: keep order of first appearance
        return tuple(values)


def _jsonable(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value
