"""Privacy metrics: do synthetic rows sit closer to the training records than fresh real data does?

Distances are Euclidean in the space of :func:`models.evidence.encoding.distance_encoder` fitted on
the training frame (standardized numeric columns + missing indicators + one-hot categories). The
real holdout (records the synthesizer never saw) is the yardstick: a synthesizer that generalizes
puts its rows as far from the training records as the holdout's rows are.

These metrics are evidence, not a guarantee; :func:`guarantee_section` states the formal
differential-privacy guarantee of the synthesizer (or "none").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from models.evidence.encoding import distance_encoder, subsample
from models.evidence.metrics import MetricValue

EXACT_COPY_TOLERANCE = 1e-9
"""Encoded distance at or below which a synthetic row counts as a copy of a training record."""


def nearest_distances(
    reference: np.ndarray, queries: np.ndarray, k: int = 1, chunk_size: int = 2048
) -> np.ndarray:
    """Distances, shape ``(len(queries), k)`` and ascending per row, from each query row to its
    ``k`` nearest rows of ``reference`` (both 2-D float arrays with the same number of columns).

    Queries are processed ``chunk_size`` rows at a time so memory stays O(chunk_size x len(reference))
    even when the neighbour search is brute force.
    """
    if len(reference) < k:
        raise ValueError(f"need at least k={k} reference rows, got {len(reference)}")
    index = NearestNeighbors(n_neighbors=k).fit(reference)
    parts = [index.kneighbors(queries[i : i + chunk_size])[0] for i in range(0, len(queries), chunk_size)]
    return np.vstack(parts) if parts else np.empty((0, k))


def _nndr(distances: np.ndarray) -> np.ndarray:
    """Nearest / second-nearest distance; 0 where both are 0 (a duplicated record copied)."""
    return np.divide(
        distances[:, 0], distances[:, 1], out=np.zeros(len(distances)), where=distances[:, 1] > 0
    )


def _ratio(numerator: float, denominator: float) -> float:
    if denominator > 0:
        return numerator / denominator
    return 1.0 if numerator == 0 else float("inf")


@dataclass(frozen=True)
class PrivacyResult:
    """Privacy evidence. Arrays hold one distance per row of the (subsampled) frame named.

    ``dcr_synthetic`` / ``dcr_holdout``: distance from each synthetic / holdout row to its closest
    training record; ``nndr_*``: nearest-neighbour distance ratio (closest / second-closest training
    record, in [0, 1]; near 0 = the row singles out one record); ``dcr_train_to_synthetic`` /
    ``dcr_holdout_to_synthetic``: distance from each training / holdout record to its closest
    synthetic row (the membership-inference attack's score).
    """

    dcr_synthetic: np.ndarray
    dcr_holdout: np.ndarray
    nndr_synthetic: np.ndarray
    nndr_holdout: np.ndarray
    dcr_train_to_synthetic: np.ndarray
    dcr_holdout_to_synthetic: np.ndarray

    @property
    def holdout_p5(self) -> float:
        """5th percentile of the holdout's distances to the training records."""
        return float(np.percentile(self.dcr_holdout, 5))

    @property
    def dcr_share_below_holdout_p5(self) -> float:
        """Share of synthetic rows strictly closer to a training record than :attr:`holdout_p5`
        (about 0.05 for data as private as fresh real data)."""
        return float(np.mean(self.dcr_synthetic < self.holdout_p5))

    @property
    def dcr_median_ratio(self) -> float:
        """Median DCR of synthetic rows / median DCR of holdout rows (< 1: synthetic sits closer)."""
        return _ratio(float(np.median(self.dcr_synthetic)), float(np.median(self.dcr_holdout)))

    @property
    def nndr_median_ratio(self) -> float:
        """Median NNDR of synthetic rows / median NNDR of holdout rows."""
        return _ratio(float(np.median(self.nndr_synthetic)), float(np.median(self.nndr_holdout)))

    @property
    def exact_copy_share(self) -> float:
        """Share of synthetic rows identical (in the encoded space) to a training record."""
        return float(np.mean(self.dcr_synthetic <= EXACT_COPY_TOLERANCE))

    @property
    def holdout_exact_copy_share(self) -> float:
        """The same share for holdout rows: the rate at which real data repeats by chance."""
        return float(np.mean(self.dcr_holdout <= EXACT_COPY_TOLERANCE))

    @property
    def mia_auc(self) -> float:
        """ROC AUC of the distance-based membership-inference attack: the attacker, holding the
        synthetic data, calls a record a training member the closer it is to a synthetic row.
        0.5 = members and non-members look alike (no risk); 1 = every member is given away."""
        members = np.r_[
            np.ones(len(self.dcr_train_to_synthetic)), np.zeros(len(self.dcr_holdout_to_synthetic))
        ]
        return float(
            roc_auc_score(members, -np.r_[self.dcr_train_to_synthetic, self.dcr_holdout_to_synthetic])
        )

    def metric_values(self) -> list[MetricValue]:
        """The thresholded privacy metrics."""
        names = (
            "dcr_share_below_holdout_p5",
            "dcr_median_ratio",
            "nndr_median_ratio",
            "exact_copy_share",
            "mia_auc",
        )
        return [MetricValue(name, None, getattr(self, name)) for name in names]

    def summary(self) -> dict[str, float]:
        """JSON-ready numbers for the evidence pack: quantiles of the distances and the shares."""
        quantiles = {"p5": 5, "median": 50, "p95": 95}
        out = {
            f"{name}_{q}": float(np.percentile(getattr(self, name), pct))
            for name in ("dcr_synthetic", "dcr_holdout", "nndr_synthetic", "nndr_holdout")
            for q, pct in quantiles.items()
        }
        out["holdout_exact_copy_share"] = self.holdout_exact_copy_share
        out["rows_synthetic"] = len(self.dcr_synthetic)
        out["rows_holdout"] = len(self.dcr_holdout)
        out["rows_train"] = len(self.dcr_train_to_synthetic)
        return out


def privacy_metrics(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame,
    categorical: Sequence[str],
    numeric: Sequence[str],
    *,
    max_rows: int | None = 20_000,
    random_state: int | None = 0,
) -> PrivacyResult:
    """Distances between synthetic, training and holdout records (clean frames).

    ``train`` is the real data the synthesizer was fitted on, ``holdout`` real data it never saw.
    Each frame is first subsampled to at most ``max_rows`` rows (seeded by ``random_state``); the
    neighbour searches then cost O(max_rows^2 x columns) time and O(chunk x max_rows) memory.
    """
    rng = np.random.default_rng(random_state)
    train, synthetic, holdout = (subsample(df, max_rows, rng) for df in (train, synthetic, holdout))
    if len(train) < 2:
        raise ValueError("privacy metrics need at least 2 training rows")
    encoder = distance_encoder(categorical, numeric).fit(train)
    z_train, z_synth, z_hold = (encoder.transform(df) for df in (train, synthetic, holdout))
    d_synth = nearest_distances(z_train, z_synth, k=2)
    d_hold = nearest_distances(z_train, z_hold, k=2)
    return PrivacyResult(
        dcr_synthetic=d_synth[:, 0],
        dcr_holdout=d_hold[:, 0],
        nndr_synthetic=_nndr(d_synth),
        nndr_holdout=_nndr(d_hold),
        dcr_train_to_synthetic=nearest_distances(z_synth, z_train)[:, 0],
        dcr_holdout_to_synthetic=nearest_distances(z_synth, z_hold)[:, 0],
    )


NO_GUARANTEE = (
    "none: the synthesizer has no differential-privacy guarantee; the distance and membership-inference "
    "metrics of this pack are evidence about this cohort, not a guarantee"
)
GUARANTEE_SCOPE = (
    "covers the model artifact and every cohort sampled from it (post-processing); this pack itself is "
    "computed on the real training and holdout rows and is not differentially private: share the cohort, "
    "not the pack"
)


def guarantee_section(privacy: Mapping[str, Any] | None) -> dict[str, Any]:
    """The evidence pack's statement of the formal privacy guarantee, JSON-ready.

    ``privacy`` is a DP synthesizer's ``privacy_`` (mechanism, epsilon, delta, rho, neighbours,
    measurements; see :class:`models.synth.dp.ZCDPAccountant`) or None for a synthesizer without a
    guarantee, which is stated as "none".
    """
    if privacy is None:
        return {"guarantee": "none", "statement": NO_GUARANTEE}
    epsilon, delta = privacy["budget"]["epsilon"], privacy["budget"]["delta"]
    return {
        "guarantee": f"(epsilon={epsilon:g}, delta={delta:g})-differential privacy",
        "mechanism": privacy["mechanism"],
        "epsilon": epsilon,
        "delta": delta,
        "epsilon_spent": privacy["epsilon"],
        "rho": privacy["rho"],
        "neighbours": privacy["neighbours"],
        "statement": GUARANTEE_SCOPE,
        "budget_split": [
            {"measurement": m["label"], "mechanism": m["mechanism"], "sensitivity": m["sensitivity"],
             "noise_scale": m["scale"], "rho": m["rho"]}
            for m in privacy["measurements"]
        ],
    }
