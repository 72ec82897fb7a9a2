"""Each synthetic row's k closest real training records: the "closest imputation" made visible.

Distances are Euclidean in the evidence pack's encoding space
(:func:`models.evidence.encoding.distance_encoder` fitted on the real training rows, described by
:data:`~models.evidence.encoding.ENCODING_DESCRIPTION`), the space of the privacy metrics. A
synthetic row whose closest real record is nearer than the 5th percentile of the holdout rows'
closest distances sits closer to a training subject than 95 % of fresh real subjects do: it is
flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from models.evidence.encoding import ENCODING_DESCRIPTION, distance_encoder

CLOSEST_COLUMNS = ["synthetic_row", "rank", "real_row", "distance", "holdout_p5", "nearer_than_holdout_p5"]
"""Columns of :attr:`ClosestRecords.table` (and of ``closest_records.parquet``)."""


@dataclass(frozen=True)
class ClosestRecords:
    """``table``: one row per synthetic row and rank (columns :data:`CLOSEST_COLUMNS`):
    ``synthetic_row`` / ``real_row`` are row positions in the synthetic frame and in the real
    training frame, ``rank`` 1 is the closest (ties by lower ``real_row``), ``distance`` is in the
    encoding space, ``holdout_p5`` the 5th percentile of the holdout rows' distances to their closest
    training record, ``nearer_than_holdout_p5`` whether ``distance < holdout_p5``."""

    table: pd.DataFrame
    k: int
    holdout_p5: float
    encoding: str = ENCODING_DESCRIPTION

    @property
    def closest(self) -> pd.DataFrame:
        """The rank-1 rows: each synthetic row's closest real record."""
        return self.table[self.table["rank"] == 1].reset_index(drop=True)

    def summary(self) -> dict[str, float | int | str]:
        """JSON-ready numbers for the evidence pack."""
        closest = self.closest
        return {
            "k": self.k,
            "encoding": self.encoding,
            "holdout_p5": self.holdout_p5,
            "synthetic_rows": len(closest),
            "flagged_rows": int(closest["nearer_than_holdout_p5"].sum()),
            "flagged_share": float(closest["nearer_than_holdout_p5"].mean()) if len(closest) else 0.0,
            "median_closest_distance": float(closest["distance"].median()) if len(closest) else float("nan"),
        }


def closest_records(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame,
    categorical: Sequence[str],
    numeric: Sequence[str],
    k: int = 3,
) -> ClosestRecords:
    """The ``k`` closest rows of ``real`` (the synthesizer's training rows) to every row of
    ``synthetic``, all clean frames with the same columns; ``holdout`` (real rows the synthesizer
    never saw) sets the flag's yardstick. Every row is used (no subsampling): the neighbour search
    costs O(n_synthetic x n_real x columns) time, memory bounded by scikit-learn's chunking.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if len(real) < 1 or len(holdout) < 1:
        raise ValueError("closest records need at least one real and one holdout row")
    k = min(k, len(real))
    encoder = distance_encoder(categorical, numeric).fit(real)
    z_real, z_synth, z_hold = (encoder.transform(df) for df in (real, synthetic, holdout))
    index = NearestNeighbors(n_neighbors=k).fit(z_real)
    holdout_p5 = float(np.percentile(index.kneighbors(z_hold, n_neighbors=1)[0][:, 0], 5))
    distance, real_row = index.kneighbors(z_synth) if len(z_synth) else (np.empty((0, k)), np.empty((0, k), int))
    order = np.lexsort((real_row, distance), axis=1)  # ties: lower real row first
    distance, real_row = np.take_along_axis(distance, order, 1), np.take_along_axis(real_row, order, 1)
    table = pd.DataFrame({
        "synthetic_row": np.repeat(np.arange(len(z_synth)), k),
        "rank": np.tile(np.arange(1, k + 1), len(z_synth)),
        "real_row": real_row.ravel().astype(np.int64),
        "distance": distance.ravel(),
        "holdout_p5": holdout_p5,
        "nearer_than_holdout_p5": distance.ravel() < holdout_p5,
    }, columns=CLOSEST_COLUMNS)
    return ClosestRecords(table, k, holdout_p5)
