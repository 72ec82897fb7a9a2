"""The evidence pack of one synthesis run: every metric with its level, as JSON and HTML."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from models.evidence.encoding import clean_frame, split_columns
from models.evidence.metrics import MetricValue, detection_auc, fidelity_metrics, utility_scores
from models.evidence.privacy import EXACT_COPY_TOLERANCE, PrivacyResult, guarantee_section, privacy_metrics
from models.evidence.thresholds import Level, Threshold, resolve_thresholds, worst_level

SCHEMA_VERSION = 1
METRIC_COLUMNS = ["metric", "variable", "value", "threshold_warn", "threshold_fail", "level"]


@dataclass(frozen=True)
class PlotData:
    """What the HTML report draws from (clean frames, see :func:`~models.evidence.encoding.clean_frame`)."""

    real: pd.DataFrame
    synthetic: pd.DataFrame
    holdout: pd.DataFrame
    imputed: pd.DataFrame | None
    categorical: list[str]
    numeric: list[str]
    privacy: PrivacyResult
    random_state: int | None


@dataclass
class EvidencePack:
    """Metrics, levels and context of one run.

    ``metrics`` is the tidy table (columns :data:`METRIC_COLUMNS`); ``details`` holds JSON-ready
    supporting numbers (raw scores, distance quantiles, frame sizes). A pack read back with
    :meth:`from_json` has no ``plot_data`` and cannot render HTML.
    """

    run_id: str
    context: dict[str, Any]
    metrics: pd.DataFrame
    thresholds: dict[str, Threshold]
    details: dict[str, Any]
    created_at: str
    plot_data: PlotData | None = field(default=None, repr=False, compare=False)

    @property
    def overall_level(self) -> Level:
        """The worst level of any metric."""
        return worst_level(self.metrics["level"])

    def metrics_frame(self) -> pd.DataFrame:
        """Copy of the tidy metric table: metric, variable (None for table-level metrics), value,
        threshold_warn, threshold_fail, level (pass / warn / fail)."""
        return self.metrics.copy()

    def summary_text(self) -> str:
        """A few lines for a terminal: overall level, context, counts, every warn/fail metric."""
        counts = self.metrics["level"].value_counts()
        lines = [
            f"Evidence pack {self.run_id}: {self.overall_level.upper()}",
            *(f"  {key}: {value}" for key, value in self.context.items()),
            f"  {len(self.metrics)} metrics: "
            + ", ".join(f"{counts.get(level, 0)} {level}" for level in ("pass", "warn", "fail")),
        ]
        for level in ("fail", "warn"):
            for row in self.metrics[self.metrics["level"] == level].itertuples():
                name = row.metric if row.variable is None else f"{row.metric}[{row.variable}]"
                lines.append(
                    f"  {level.upper()} {name} = {row.value:.4g} ({self.thresholds[row.metric].describe()})"
                )
        guarantee = self.details.get("privacy_guarantee")
        if guarantee:
            mechanism = f" ({guarantee['mechanism']})" if "mechanism" in guarantee else ""
            lines.append(f"  privacy guarantee: {guarantee['guarantee']}{mechanism}")
        utility = self.details.get("utility")
        if utility:
            scores = ", ".join(f"{k} {v:.4g}" for k, v in utility.items() if isinstance(v, float))
            lines.append(f"  utility ({utility['task']} of {utility['target']}): {scores}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content (non-finite numbers become None)."""
        metrics = [
            {k: _finite_or_none(v) for k, v in row.items()}
            for row in self.metrics.astype(object).where(self.metrics.notna(), None).to_dict("records")
        ]
        return {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "overall_level": self.overall_level,
            "context": self.context,
            "metrics": metrics,
            "thresholds": {
                name: {"warn": t.warn, "fail": t.fail, "higher_is_better": t.higher_is_better}
                for name, t in self.thresholds.items()
            },
            "details": _jsonable(self.details),
        }

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path``; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False, default=str) + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> EvidencePack:
        """Read a pack written by :meth:`to_json` (without plot data)."""
        data = json.loads(Path(path).read_text())
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"{path}: unsupported evidence schema_version {data.get('schema_version')!r}")
        metrics = pd.DataFrame(data["metrics"], columns=METRIC_COLUMNS)
        for col in ("value", "threshold_warn", "threshold_fail"):
            metrics[col] = pd.to_numeric(metrics[col]).astype("float64")
        metrics["variable"] = metrics["variable"].astype(object).where(metrics["variable"].notna(), None)
        return cls(
            run_id=data["run_id"],
            context=data["context"],
            metrics=metrics,
            thresholds={name: Threshold(**spec) for name, spec in data["thresholds"].items()},
            details=data["details"],
            created_at=data["created_at"],
        )

    def to_html(self, path: str | Path) -> Path:
        """Write the self-contained HTML report to ``path``; returns the path."""
        from models.evidence.report import render_html  # matplotlib only when a report is drawn

        path = Path(path)
        path.write_text(render_html(self), encoding="utf-8")
        return path


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    return _finite_or_none(value)


def frame_sha256(df: pd.DataFrame) -> str:
    """sha256 of a frame's column names and pandas row hashes (stable for a given pandas version)."""
    digest = hashlib.sha256(json.dumps([str(c) for c in df.columns]).encode())
    digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def build_evidence_pack(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame,
    categorical: Sequence[str],
    target: str | None = None,
    imputed: pd.DataFrame | None = None,
    thresholds: Mapping[str, Any] | None = None,
    *,
    run_id: str,
    context: Mapping[str, Any] | None = None,
    max_rows: int | None = 20_000,
    random_state: int | None = 0,
    n_threads: int | None = 1,
    privacy_guarantee: Mapping[str, Any] | None = None,
) -> EvidencePack:
    """Measure ``synthetic`` against the real data and grade every metric.

    Parameters
    ----------
    real : the real rows the synthesizer was trained on, shape (n_real, n_columns).
    synthetic : synthetic rows with the same columns, shape (n_synthetic, n_columns).
    holdout : real rows the synthesizer never saw, same columns (privacy yardstick, utility test set).
    categorical : names of the categorical columns; every other column must be numeric, boolean
        or datetime (datetimes are compared in days).
    target : column predicted for the utility metric (None: no utility metric).
    imputed : optionally the real rows after imputation, same columns (drawn in the overlays only).
    thresholds : per-study overrides, see :func:`~models.evidence.thresholds.resolve_thresholds`.
    run_id : identifier of the run; context : anything to record with it (tenant, study, model id,
        seed, data sha256 ...), JSON-serializable.
    max_rows : rows per frame used by the detection and privacy metrics (seeded subsample).
    random_state : seed of subsampling and classifiers; the same seed gives the same pack.
    n_threads : OpenMP/BLAS threads for the classifiers and distances (None: the libraries'
        default, all cores). 1 by default: on a shared machine OpenMP threads contend so badly that
        the detection classifier took 50 s instead of 3 s for 2 x 1000 rows on 2 busy cores.
    privacy_guarantee : the DP synthesizer's ``privacy_`` (None: no guarantee); stated in the
        details as ``privacy_guarantee`` (:func:`~models.evidence.privacy.guarantee_section`), in the
        summary and in the report, "none" when there is none.
    """
    if not isinstance(run_id, str) or not run_id.strip():
        raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
    if max_rows is not None and max_rows < 10:
        raise ValueError(f"max_rows must be None or at least 10, got {max_rows}")
    resolved = resolve_thresholds(thresholds)
    frames = {"real": real, "synthetic": synthetic, "holdout": holdout, "imputed": imputed}
    cat, num = split_columns(frames, categorical)
    if target is not None and target not in real.columns:
        raise ValueError(f"target {target!r} is not a column of real")
    clean = {name: clean_frame(df, cat, num) for name, df in frames.items() if df is not None}
    with threadpool_limits(n_threads):
        values, details, privacy = _measure(clean, cat, num, target, max_rows, random_state)
    metrics = pd.DataFrame(
        [
            (
                v.metric,
                v.variable,
                float(v.value),
                resolved[v.metric].warn,
                resolved[v.metric].fail,
                resolved[v.metric].level(v.value),
            )
            for v in values
        ],
        columns=METRIC_COLUMNS,
    )
    metrics["variable"] = metrics["variable"].astype(object).where(metrics["variable"].notna(), None)
    details["frames"] = {
        name: {"rows": len(df), "content_sha256": frame_sha256(df)}
        for name, df in frames.items()
        if df is not None
    }
    details["settings"] = {"max_rows": max_rows, "random_state": random_state}
    details["privacy_guarantee"] = guarantee_section(privacy_guarantee)
    return EvidencePack(
        run_id=run_id,
        context=dict(context or {}),
        metrics=metrics,
        thresholds=resolved,
        details=details,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        plot_data=PlotData(
            real=clean["real"],
            synthetic=clean["synthetic"],
            holdout=clean["holdout"],
            imputed=clean.get("imputed"),
            categorical=cat,
            numeric=num,
            privacy=privacy,
            random_state=random_state,
        ),
    )


def _measure(
    clean: dict[str, pd.DataFrame],
    cat: list[str],
    num: list[str],
    target: str | None,
    max_rows: int | None,
    random_state: int | None,
) -> tuple[list[MetricValue], dict[str, Any], PrivacyResult]:
    """All metric values, the details section, and the privacy distances (for the figures)."""
    values: list[MetricValue] = fidelity_metrics(clean["real"], clean["synthetic"], cat, num)
    detection = detection_auc(
        clean["real"], clean["synthetic"], cat, max_rows=max_rows, random_state=random_state
    )
    values.append(MetricValue("detection_auc", None, detection["auc"]))
    utility = None
    if target is not None:
        utility = utility_scores(
            clean["real"], clean["synthetic"], clean["holdout"], target, cat, random_state=random_state
        )
        values.append(MetricValue("utility_ratio", target, float(utility["ratio"])))
    privacy = privacy_metrics(
        clean["real"],
        clean["synthetic"],
        clean["holdout"],
        cat,
        num,
        max_rows=max_rows,
        random_state=random_state,
    )
    values += privacy.metric_values()
    details = {
        "columns": {"categorical": cat, "numeric": num},
        "detection": detection,
        "utility": utility,
        "privacy": {**privacy.summary(), "exact_copy_tolerance": EXACT_COPY_TOLERANCE},
    }
    return values, details, privacy


def write_pack(pack: EvidencePack, out_dir: str | Path) -> dict[str, Path]:
    """Write ``evidence.json`` and ``report.html`` into ``out_dir`` (created if needed).

    Returns ``{"json": path, "html": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {"json": pack.to_json(out / "evidence.json"), "html": pack.to_html(out / "report.html")}
