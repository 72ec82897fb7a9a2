"""Common fit/sample/save/load interface of the synthesizers."""

from __future__ import annotations

import logging
import pickle
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from models.synth.schema import TableSchema
from models.synth.transformers import MISSING_SUFFIX, TableEncoder

logger = logging.getLogger("models.synth")

ARTIFACT_FORMAT = "trialsynth.synthesizer/1"
MIN_ROWS = 10
# rejection sampling gives up once this many candidates were drawn at an acceptance below
# `min_acceptance` (the estimate is then good enough to call the strata combination rare)
_REJECTION_PROBE = 10_000
_MAX_CHUNK = 50_000


class BaseSynthesizer(BaseEstimator, ABC):
    """Fit on a DataFrame, sample synthetic rows, optionally conditioned on categorical strata.

    Subclasses implement ``_fit(matrix, rng)`` and ``_sample(n, conditions, rng)`` on the model
    matrix of :class:`~models.synth.transformers.TableEncoder` (one column per schema column plus
    missing indicators; categorical values as integer codes).

    Parameters common to all synthesizers
    -------------------------------------
    random_state : int or None
        Seeds fitting, and sampling when ``sample`` gets no ``random_state``. The same seed gives
        byte-identical output (on the same machine, library versions and thread count).
    verbose : bool
        Print progress lines to stderr.
    progress : callable(dict) or None
        Called with a progress record (keys depend on the synthesizer; always ``"stage"`` and
        ``"elapsed_s"``).
    min_acceptance : float in (0, 1]
        Conditional sampling that needs rejection fails with ValueError when, after at least 10,000
        candidates, fewer than this share of them fell in the requested strata (requests filled
        before that are never refused).
    """

    def __init__(
        self,
        random_state: int | None = None,
        verbose: bool = False,
        progress: Callable[[dict], None] | None = None,
        min_acceptance: float = 1e-3,
    ) -> None:
        self.random_state = random_state
        self.verbose = verbose
        self.progress = progress
        self.min_acceptance = min_acceptance

    # ------------------------------------------------------------------ public API
    def fit(self, df: pd.DataFrame, schema: TableSchema | None = None) -> Self:
        """Learn the joint distribution of the schema's columns of ``df`` (n_rows, n_columns).

        ``schema=None`` infers one with :meth:`TableSchema.infer`; a given schema is completed from
        ``df`` (:meth:`TableSchema.complete`). Columns of ``df`` not in the schema are ignored.
        """
        self._validate_params()
        schema = TableSchema.infer(df) if schema is None else schema.complete(df)
        if len(df) < self._min_rows():
            raise ValueError(
                f"df has {len(df)} rows; {type(self).__name__} needs at least {self._min_rows()}"
            )
        rng = np.random.default_rng(self.random_state)
        self.schema_ = schema
        self.encoder_ = TableEncoder(schema).fit(df)
        self.n_training_rows_ = len(df)
        self._fit(self.encoder_.transform(df, rng), rng)
        self._sample_rng_ = np.random.default_rng(rng.integers(2**63))
        return self

    def sample(
        self, n: int, conditions: Mapping[str, Any] | None = None, random_state: int | None = None
    ) -> pd.DataFrame:
        """Return exactly ``n`` synthetic rows (columns in schema order).

        ``conditions`` maps categorical/ordinal columns to one value each, e.g.
        ``{"ARM": "Placebo", "BIOMARKER_STRATUM": "high"}``; every returned row has those values
        (never missing). ``random_state`` seeds this call; ``None`` continues the synthesizer's own
        stream (seeded by the constructor's ``random_state``).
        """
        if not hasattr(self, "_sample_rng_"):  # set last in fit
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if conditions is not None and not isinstance(conditions, Mapping):
            raise ValueError(f"conditions must be a mapping column -> value, got {type(conditions).__name__}")
        codes = dict(self.encoder_.encode_condition(c, v) for c, v in (conditions or {}).items())
        rng = self._sample_rng_ if random_state is None else np.random.default_rng(random_state)
        matrix = self._sample(int(n), codes, rng)
        for name in conditions or {}:  # a row in the requested stratum has the value, not NaN
            indicator = self.encoder_.column_index(name + MISSING_SUFFIX)
            if indicator is not None:
                matrix[:, indicator] = 0.0
        return self.encoder_.inverse_transform(matrix)

    def save(self, path: str | Path) -> Path:
        """Pickle the fitted synthesizer to ``path`` (parents created); returns the path.
        Load only files you trust (pickle executes code)."""
        if not hasattr(self, "_sample_rng_"):  # set last in fit
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; nothing to save")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            pickle.dump(
                {"format": ARTIFACT_FORMAT, "synthesizer": self}, fh, protocol=pickle.HIGHEST_PROTOCOL
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Load a synthesizer written by :meth:`save`; ValueError if the file holds something else."""
        with Path(path).open("rb") as fh:
            payload = pickle.load(fh)  # noqa: S301 - artifacts are our own, see save()
        if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"path: {path} is not a trialsynth synthesizer artifact")
        model = payload["synthesizer"]
        if not isinstance(model, cls):
            raise ValueError(f"path: {path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    # ------------------------------------------------------------------ for subclasses
    @abstractmethod
    def _fit(self, matrix: np.ndarray, rng: np.random.Generator) -> None:
        """matrix: model matrix (n_rows, n_model_columns)."""

    @abstractmethod
    def _sample(self, n: int, conditions: dict[int, int], rng: np.random.Generator) -> np.ndarray:
        """Return a model matrix (n, n_model_columns) whose rows satisfy ``conditions``
        (model column index -> code)."""

    def _validate_params(self) -> None:
        if not 0 < self.min_acceptance <= 1:
            raise ValueError(f"min_acceptance must be in (0, 1], got {self.min_acceptance!r}")

    def _min_rows(self) -> int:
        return MIN_ROWS

    def _report(self, message: str, **record: Any) -> None:
        logger.info(message)
        if self.verbose:
            print(f"[{type(self).__name__}] {message}", file=sys.stderr, flush=True)
        if self.progress is not None:
            self.progress(record)

    def _rejection_sample(
        self,
        n: int,
        generate: Callable[[int], np.ndarray],
        accept: Callable[[np.ndarray], np.ndarray],
        describe: Callable[[], str],
    ) -> np.ndarray:
        """Draw candidate rows with ``generate(k)`` until ``n`` pass ``accept(rows) -> bool mask``;
        returns the first ``n`` accepted rows in generation order. Raises ValueError (text from
        ``describe()``) when the acceptance rate is below ``min_acceptance``."""
        kept: list[np.ndarray] = []
        n_kept = n_drawn = 0
        while n_kept < n:
            rate = max(n_kept / n_drawn if n_drawn else 1.0, self.min_acceptance)
            k = int(min(max((n - n_kept) / rate * 1.1, 100), _MAX_CHUNK))
            rows = generate(k)
            rows = rows[accept(rows)]
            kept.append(rows)
            n_kept += len(rows)
            n_drawn += k
            if n_kept < n and n_drawn >= _REJECTION_PROBE and n_kept < self.min_acceptance * n_drawn:
                raise ValueError(
                    f"conditions: {describe()} is never or rarely produced by the model "
                    f"({n_kept} of {n_drawn} generated rows, below min_acceptance={self.min_acceptance})"
                )
        return np.concatenate(kept)[:n]

    def _describe_conditions(self, conditions: dict[int, int]) -> str:
        parts = []
        for j, code in conditions.items():
            spec = self.schema_[self.encoder_.columns_[j].source]
            parts.append(f"{spec.name}={spec.categories[code]!r}")
        return "the strata combination " + ", ".join(parts)
