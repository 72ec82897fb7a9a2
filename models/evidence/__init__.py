"""Evidence that a synthetic cohort is faithful, useful and private: metrics, thresholds, packs.

Typical use::

    pack = build_evidence_pack(real, synthetic, holdout, categorical=["SEX", "ARM"], target="auto",
                               thresholds=study_config.get("thresholds"), run_id=run_id,
                               context={"tenant": t, "study": s, "model_id": m, "seed": 7})
    paths = write_pack(pack, study_dir / "evidence" / run_id)   # evidence.json, report.html,
                                                                 # closest_records.parquet
    if pack.overall_level == "fail": ...
"""

from models.evidence.closest import CLOSEST_COLUMNS, ClosestRecords, closest_records
from models.evidence.metrics import (
    MetricValue,
    choose_utility_targets,
    correlation_delta,
    detection_auc,
    fidelity_metrics,
    ks_statistic,
    tv_complement,
    utility_scores,
    wasserstein_scaled,
)
from models.evidence.pack import EvidencePack, build_evidence_pack, write_pack
from models.evidence.privacy import PrivacyResult, nearest_distances, privacy_metrics
from models.evidence.thresholds import DEFAULT_THRESHOLDS, METRIC_INFO, Threshold, resolve_thresholds

__all__ = [
    "CLOSEST_COLUMNS",
    "DEFAULT_THRESHOLDS",
    "METRIC_INFO",
    "ClosestRecords",
    "EvidencePack",
    "MetricValue",
    "PrivacyResult",
    "Threshold",
    "build_evidence_pack",
    "choose_utility_targets",
    "closest_records",
    "correlation_delta",
    "detection_auc",
    "fidelity_metrics",
    "ks_statistic",
    "nearest_distances",
    "privacy_metrics",
    "resolve_thresholds",
    "tv_complement",
    "utility_scores",
    "wasserstein_scaled",
    "write_pack",
]
