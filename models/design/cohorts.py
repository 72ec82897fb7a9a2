"""Baseline covariates of virtual cohorts, on a standardised scale (mean 0, SD 1).

The simulations need one baseline covariate per subject: it drives the outcome through
``baseline_correlation`` (continuous endpoint, also the ANCOVA covariate) and the probability of
dropping out under MAR. Two sources:

- :class:`NormalCohort` -- a parametric model, z ~ N(0, 1).
- :class:`ResampledCohort` -- subjects resampled with replacement from a real or synthetic baseline
  table (a pandas DataFrame, e.g. the synthetic cohort), one numeric column standardised with the
  table's mean and SD, so its shape (skew, heavy tails, discreteness) carries into the trials.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
from scipy import special

if TYPE_CHECKING:
    import pandas as pd


class Cohort(Protocol):
    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Standardised baseline values, array of ``shape``."""
        ...

    def calibration_values(self) -> np.ndarray:
        """Values representing the distribution, to calibrate MAR dropout to its target rate."""
        ...

    def describe(self) -> dict:
        """JSON-able description stored with simulation results."""
        ...


@dataclass(frozen=True)
class NormalCohort:
    """Standard-normal baseline covariate."""

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal(shape)

    def calibration_values(self) -> np.ndarray:
        # 2,000 evenly spaced normal quantiles: expectations over them are exact to ~1e-4
        return special.ndtri((np.arange(2000) + 0.5) / 2000)  # = scipy.stats.norm.ppf

    def describe(self) -> dict:
        return {"kind": "normal"}


@dataclass(frozen=True)
class ResampledCohort:
    """Bootstrap resampling of one numeric baseline column.

    Build it with :meth:`from_table`; ``values`` holds the standardised non-missing values.
    """

    values: np.ndarray = field(repr=False)
    column: str = ""
    source_sha256: str = ""

    @classmethod
    def from_table(cls, table: pd.DataFrame, column: str) -> ResampledCohort:
        """Standardise ``table[column]`` (missing values dropped). Needs >= 2 distinct values."""
        import pandas as pd  # here: the power CLI imports this module and must start fast

        if not isinstance(table, pd.DataFrame):
            raise ValueError(f"table must be a pandas DataFrame, got {type(table).__name__}")
        if column not in table.columns:
            raise ValueError(
                f"column {column!r} is not in the baseline table (columns: {list(table.columns)})"
            )
        raw = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
        raw = raw[np.isfinite(raw)]
        if raw.size < 2 or np.std(raw) == 0:
            raise ValueError(f"column {column!r} needs at least two distinct numeric values to resample")
        z = (raw - raw.mean()) / raw.std()
        return cls(
            values=z,
            column=column,
            source_sha256=hashlib.sha256(np.ascontiguousarray(raw).tobytes()).hexdigest(),
        )

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return self.values[rng.integers(0, self.values.size, size=shape)]

    def calibration_values(self) -> np.ndarray:
        return self.values

    def describe(self) -> dict:
        return {
            "kind": "resampled",
            "column": self.column,
            "n_values": int(self.values.size),
            "sha256": self.source_sha256,
        }
