"""Common fit path of the differentially private synthesizers: public domain, budget, codes."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, Self

import numpy as np
import pandas as pd

from models.synth.base import BaseSynthesizer
from models.synth.dp.accountant import ZCDPAccountant, _check_budget
from models.synth.dp.domain import PublicEncoder, estimate_domain, incomplete, public_schema
from models.synth.schema import TableSchema


class DPSynthesizer(BaseSynthesizer):
    """A synthesizer whose artifact, and every row sampled from it, is (epsilon, delta)-DP.

    Neighbouring tables differ in one subject's row (replaced); the number of rows is public. Only
    noisy measurements of the codes of :mod:`models.synth.dp.domain` reach the model, and everything
    after them is post-processing.

    Parameters
    ----------
    epsilon, delta : the budget of one fit; delta must be below 1 / n_rows.
    columns : mapping column -> public ColumnSpec fields (kind, min_value, max_value, categories,
        decimals), e.g. from the study config. Never computed from the training rows.
    estimate_domain : bool
        False: a column without public bounds/categories is refused (ValueError). True: they are
        estimated with DP (:func:`~models.synth.dp.domain.estimate_domain`) for ``domain_share`` of
        the budget (and delta / 2 when a category set is estimated); a column the estimate cannot
        resolve is left out of the model (``dropped_columns_``) and sampled as all missing.
    domain_share : float in (0, 1), share of rho spent on that estimate.
    n_bins : int >= 2 or "auto", bins of each numeric column's public range. "auto" balances binning
        error against noise from public quantities only: round(sqrt(n_rows / sigma)) clipped to
        [4, 32], sigma being the noise of one bin of the one-way histograms (at 400 rows and
        epsilon 1 that is 4 bins, at epsilon 10 about 8).
    random_state, verbose, progress, min_acceptance : see :class:`BaseSynthesizer`.

    Attributes
    ----------
    schema_ : the public schema; privacy_ : dict, what was spent (:meth:`ZCDPAccountant.guarantee`)
    plus ``mechanism``; dropped_columns_ : column -> why it is not modelled; n_bins_ : bins used.
    """

    mechanism = "dp"

    def __init__(
        self,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        columns: Mapping[str, Mapping[str, Any]] | None = None,
        estimate_domain: bool = False,
        domain_share: float = 0.1,
        n_bins: int | str = "auto",
        random_state: int | None = None,
        verbose: bool = False,
        progress: Callable[[dict], None] | None = None,
        min_acceptance: float = 1e-3,
    ) -> None:
        super().__init__(random_state=random_state, verbose=verbose, progress=progress, min_acceptance=min_acceptance)
        self.epsilon = epsilon
        self.delta = delta
        self.columns = columns
        self.estimate_domain = estimate_domain
        self.domain_share = domain_share
        self.n_bins = n_bins

    def _validate_params(self) -> None:
        super()._validate_params()
        _check_budget(self.epsilon, self.delta)
        if not 0 < self.domain_share < 1:
            raise ValueError(f"domain_share must be in (0, 1), got {self.domain_share!r}")
        if self.n_bins != "auto" and (isinstance(self.n_bins, bool) or not isinstance(self.n_bins, int) or self.n_bins < 2):
            raise ValueError(f"n_bins must be an integer >= 2 or 'auto', got {self.n_bins!r}")

    def fit(self, df: pd.DataFrame, schema: TableSchema | None = None) -> Self:
        """Fit on ``df`` (n_rows, n_columns): every column is modelled (the column set is the table's
        public structure). ``schema`` must be None: a schema completed from the data carries its raw
        min/max and category sets, which a DP model must not see."""
        if schema is not None:
            raise ValueError(
                "schema: a DP synthesizer takes its domain from `columns` (public: study config, protocol) "
                "or a DP estimate; a TableSchema completed from the data holds its raw min/max and category "
                "sets and would leak the extreme and rare subjects"
            )
        if not isinstance(df, pd.DataFrame) or not df.columns.is_unique:
            raise ValueError("df must be a pandas DataFrame with unique column names")
        self._validate_params()
        n = len(df)
        if n < self._min_rows():
            raise ValueError(f"df has {n} rows; {type(self).__name__} needs at least {self._min_rows()}")
        if self.delta >= 1 / n:
            raise ValueError(f"delta must be below 1/n_rows = {1 / n:.3g} (got {self.delta:g}): a larger delta "
                             "allows publishing whole rows")
        rng = np.random.default_rng(self.random_state)
        schema = public_schema(df, self.columns)
        missing = incomplete(schema)
        if missing and not self.estimate_domain:
            raise ValueError(
                f"columns {missing}: no public bounds/categories; a DP synthesizer never reads the raw min/max "
                "or category set (that would disclose the extreme and rare subjects): give them in `columns` "
                "(study config synthesis.columns) or set estimate_domain=True to spend part of the budget on a "
                "DP estimate"
            )
        estimates_categories = any(schema[c].discrete for c in missing)
        self.accountant_ = ZCDPAccountant(self.epsilon, self.delta, self.delta / 2 if estimates_categories else 0.0)
        schema, self.dropped_columns_ = estimate_domain(
            df, schema, self.accountant_, self.domain_share * self.accountant_.rho_budget, rng)
        if not schema.columns:
            raise ValueError(f"no column left to model: {self.dropped_columns_}")
        self.output_columns_ = list(df.columns)
        self.schema_ = schema
        d = len(schema.columns)
        sigma = np.sqrt(2 * d) / np.sqrt(2 * self._marginal_share(d) * self.rho_left)
        self.n_bins_ = int(np.clip(round(np.sqrt(n / sigma)), 4, 32)) if self.n_bins == "auto" else self.n_bins
        self.encoder_ = PublicEncoder(schema, self.n_bins_).fit_public(df.dtypes)
        self.n_training_rows_ = n
        self._fit(self.encoder_.to_codes(df), rng)
        self.privacy_ = {"mechanism": self.mechanism, **self.accountant_.guarantee()}
        self._sample_rng_ = np.random.default_rng(rng.integers(2**63))
        return self

    def sample(self, n: int, conditions: Mapping[str, Any] | None = None, random_state: int | None = None) -> pd.DataFrame:
        """As :meth:`BaseSynthesizer.sample`; columns left out of the model come back all missing."""
        rows = super().sample(n, conditions=conditions, random_state=random_state)
        return rows.reindex(columns=self.output_columns_)

    def _sample(self, n: int, conditions: dict[int, int], rng: np.random.Generator) -> np.ndarray:
        codes, within = self._sample_codes(n, {j: code + 1 for j, code in conditions.items()}, rng)
        return self.encoder_.from_codes(codes, within)

    def _describe_conditions(self, conditions: dict[int, int]) -> str:
        return super()._describe_conditions({j: code - 1 for j, code in conditions.items()})

    @property
    def rho_left(self) -> float:
        """rho of the budget not spent yet (during fit)."""
        return self.accountant_.rho_budget - self.accountant_.rho_spent

    @abstractmethod
    def _marginal_share(self, n_columns: int) -> float:
        """Share of the rho left after the domain estimate that the one-way histograms get."""

    @abstractmethod
    def _sample_codes(self, n: int, conditions: dict[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(codes (n, n_columns), positions in [0, 1] inside numeric bins (n, n_columns)); rows satisfy
        ``conditions`` (column index -> code, 0 = missing)."""


def to_probabilities(noisy: np.ndarray, total: float, floor: float = 1e-6) -> np.ndarray:
    """Post-processing of noisy counts (any shape) whose true counts are >= 0 and sum to the public
    ``total``: the Euclidean projection onto that simplex (Duchi et al. 2008: subtract one constant,
    clip at 0; noise in empty cells mostly vanishes, where clipping alone would keep its positive
    half), normalized, with a ``floor`` share spread over all cells so no cell (stratum) is impossible.
    Hand-written: numpy/scipy have no simplex projection."""
    flat = np.asarray(noisy, dtype=float).ravel()
    ordered = np.sort(flat)[::-1]
    cumulative = np.cumsum(ordered) - total
    k = np.flatnonzero(ordered - cumulative / np.arange(1, len(flat) + 1) > 0)[-1]
    p = np.clip(flat - cumulative[k] / (k + 1), 0.0, None).reshape(np.shape(noisy)) / total
    return (p + floor) / (1 + floor * p.size)
