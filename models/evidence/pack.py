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

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from models.evidence.closest import ClosestRecords, closest_records
from models.evidence.encoding import MISSING, clean_frame, split_columns
from models.evidence.metrics import (
    MetricValue,
    TargetChoice,
    choose_utility_targets,
    detection_auc,
    fidelity_metrics,
    utility_scores,
)
from models.evidence.privacy import EXACT_COPY_TOLERANCE, PrivacyResult, guarantee_section, privacy_metrics
from models.evidence.thresholds import (
    DERIVED_METRICS,
    LEVELS,
    Level,
    Threshold,
    metric_info,
    resolve_thresholds,
    worst_level,
)

SCHEMA_VERSION = 2  # 2: ci_low / ci_high columns, utility as a list of targets, warnings
METRIC_COLUMNS = ["metric", "variable", "value", "ci_low", "ci_high", "threshold_warn", "threshold_fail", "level"]
MIN_STRATUM_ROWS = 10
"""Fewer real subjects than this in a requested stratum draw a warning: the synthesizer has almost
nothing to learn the stratum from, and its metrics are noise."""
CLOSEST_FILE = "closest_records.parquet"


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
    real_positions: np.ndarray  # row positions, in the real frame given, of the rows of ``real``
    date_columns: list[str] = field(default_factory=list)  # numeric here, in days since 1970-01-01


@dataclass
class EvidencePack:
    """Metrics, levels and context of one run.

    ``metrics`` is the tidy table (columns :data:`METRIC_COLUMNS`); ``details`` holds JSON-ready
    supporting numbers (raw scores, distance quantiles, frame sizes, ``warnings``). ``closest`` is
    each synthetic row's closest real records (:class:`~models.evidence.closest.ClosestRecords`),
    written beside the JSON as :data:`CLOSEST_FILE`. A pack read back with :meth:`from_json` has no
    ``plot_data`` or ``closest`` and cannot render HTML.
    """

    run_id: str
    context: dict[str, Any]
    metrics: pd.DataFrame
    thresholds: dict[str, Threshold]
    details: dict[str, Any]
    created_at: str
    plot_data: PlotData | None = field(default=None, repr=False, compare=False)
    closest: ClosestRecords | None = field(default=None, repr=False, compare=False)

    @property
    def overall_level(self) -> Level:
        """The worst level of any metric."""
        return worst_level(self.metrics["level"])

    def metrics_frame(self) -> pd.DataFrame:
        """Copy of the tidy metric table: metric, variable (None for table-level metrics), value,
        ci_low / ci_high (confidence interval, NaN when none), threshold_warn, threshold_fail, level
        (pass / warn / fail)."""
        return self.metrics.copy()

    def by_severity(self) -> pd.DataFrame:
        """The metric table, most severe first: fail, warn, pass, and within a level the value
        farthest past (or nearest to) its fail cut-off first, in units of the warn-fail gap."""
        frame = self.metrics_frame()
        frame["_rank"] = frame["level"].map({lv: -i for i, lv in enumerate(LEVELS)})
        frame["_excess"] = [_excess(self.thresholds[r.metric], r.value) for r in frame.itertuples()]
        return frame.sort_values(["_rank", "_excess"], ascending=[True, False], kind="stable").drop(
            columns=["_rank", "_excess"]).reset_index(drop=True)

    def explanation(self) -> list[str]:
        """What failed and why, one sentence per warn/fail metric (per-column metrics grouped),
        worst first; then the warnings and notes. The report's opening text."""
        counts = self.metrics["level"].value_counts()
        tally = ", ".join(f"{counts.get(level, 0)} {level}" for level in ("fail", "warn", "pass"))
        lines = [f"{self.overall_level.upper()}: {tally} of {len(self.metrics)} metrics."]
        ordered = self.by_severity()
        bad = ordered[(ordered["level"] != "pass") & ~ordered["metric"].isin(list(DERIVED_METRICS))]
        for metric, rows in bad.groupby("metric", sort=False):
            lines.append(_explain(metric, rows, self.thresholds[metric]))
        lines += [f"Warning: {w}" for w in self.details.get("warnings", [])]
        lines += [f"Note: {n}" for n in self.details.get("notes", [])]
        return lines

    def summary_text(self) -> str:
        """A few lines for a terminal: overall level, context, counts, every warn/fail metric (worst
        first), utility targets and why, closest records, warnings."""
        counts = self.metrics["level"].value_counts()
        lines = [
            f"Evidence pack {self.run_id}: {self.overall_level.upper()}",
            *(f"  {key}: {value}" for key, value in self.context.items()),
            f"  {len(self.metrics)} metrics: "
            + ", ".join(f"{counts.get(level, 0)} {level}" for level in ("pass", "warn", "fail")),
        ]
        for row in self.by_severity().itertuples():
            if row.level != "pass":
                lines.append(f"  {row.level.upper()} {_name(row)} = {_value(row)} "
                             f"({self.thresholds[row.metric].describe()})")
        guarantee = self.details.get("privacy_guarantee")
        if guarantee:
            mechanism = f" ({guarantee['mechanism']})" if "mechanism" in guarantee else ""
            lines.append(f"  privacy guarantee: {guarantee['guarantee']}{mechanism}")
        targets = self.details.get("utility_targets")
        if targets:
            lines.append(f"  utility target(s): {targets['reason']}")
        for utility in self.details.get("utility") or []:
            scores = ", ".join(f"{k} {v:.4g}" for k, v in utility.items() if isinstance(v, float))
            lines.append(f"  utility ({utility['task']} of {utility['target']}): {scores}")
        curve = self.details.get("epsilon_curve")
        if curve:
            from models.evidence.epsilon_curve import curve_rows

            header, rows = curve_rows(curve)
            lines.append(f"  epsilon curve ({', '.join(header[2:])}):")
            lines += [f"    {row[0]} {row[1]}: {' '.join(row[2:])}" for row in rows]
        closest = self.details.get("closest_records")
        if closest:
            lines.append(f"  closest records: {closest['flagged_rows']} of {closest['synthetic_rows']} synthetic "
                         f"rows nearer to a training record than the holdout's 5th percentile "
                         f"({closest['holdout_p5']:.4g})")
        lines += [f"  warning: {w}" for w in self.details.get("warnings", [])]
        return "\n".join(lines)

    def summary_markdown(self) -> str:
        """:meth:`summary_text` as Markdown that keeps its line breaks (a fenced block), for Dagster."""
        return f"```\n{self.summary_text()}\n```"

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
        if data.get("schema_version") not in (1, SCHEMA_VERSION):
            raise ValueError(f"{path}: unsupported evidence schema_version {data.get('schema_version')!r}")
        if data["schema_version"] == 1:  # one utility target as a dict, no intervals
            data["details"]["utility"] = [data["details"]["utility"]] if data["details"].get("utility") else []
        metrics = pd.DataFrame(data["metrics"], columns=METRIC_COLUMNS)
        for col in ("value", "ci_low", "ci_high", "threshold_warn", "threshold_fail"):
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


def _name(row: Any) -> str:
    return row.metric if row.variable is None else f"{row.metric}[{row.variable}]"


def _value(row: Any) -> str:
    """The value, with its interval when it has one."""
    if math.isnan(row.ci_low):
        return f"{row.value:.4g}"
    return f"{row.value:.4g} (interval {row.ci_low:.4g} to {row.ci_high:.4g})"


def _excess(threshold: Threshold, value: float) -> float:
    """How far ``value`` is past the fail cut-off (negative: inside), in warn-fail gaps; NaN: +inf."""
    if math.isnan(value):
        return math.inf
    gap = abs(threshold.fail - threshold.warn) or 1.0
    return (threshold.fail - value if threshold.higher_is_better else value - threshold.fail) / gap


def _explain(metric: str, rows: pd.DataFrame, threshold: Threshold) -> str:
    """One sentence: which values of ``metric`` are at warn/fail, against which cut-off, and what it means."""
    info = metric_info(metric)
    worst = next(rows.itertuples())
    undecided = rows[rows["ci_low"].notna() & (rows["level"] == "warn")]
    if len(rows) == 1 or rows["variable"].isna().all():
        what = f"{_name(worst)} = {_value(worst)} is at {worst.level}"
    else:
        parts = ", ".join(f"{n} {lv}" for lv, n in rows["level"].value_counts().items())
        what = f"{metric} is at warn/fail for {len(rows)} variables ({parts}; worst {worst.variable} = {_value(worst)})"
    note = " (its interval straddles a cut-off, so it does not decide)" if len(undecided) else ""
    scale = f" Scale: {info.normalisation}." if info.normalisation else ""
    return f"{what}{note}; {threshold.describe()}. {info.definition[0].upper()}{info.definition[1:]}.{scale}"


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
    target: str | Sequence[str] | None = None,
    imputed: pd.DataFrame | None = None,
    thresholds: Mapping[str, Any] | None = None,
    *,
    run_id: str,
    context: Mapping[str, Any] | None = None,
    max_rows: int | None = 20_000,
    random_state: int | None = 0,
    n_threads: int | None = 1,
    privacy_guarantee: Mapping[str, Any] | None = None,
    n_bootstrap: int = 30,
    closest_k: int = 3,
    conditions: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    epsilon_curve: Mapping[str, Any] | None = None,
) -> EvidencePack:
    """Measure ``synthetic`` against the real data and grade every metric.

    Parameters
    ----------
    real : the real rows the synthesizer was trained on, shape (n_real, n_columns).
    synthetic : synthetic rows with the same columns, shape (n_synthetic, n_columns).
    holdout : real rows the synthesizer never saw, same columns (privacy yardstick, utility test set).
    categorical : names of the categorical columns; every other column must be numeric, boolean
        or datetime (datetimes are compared in days).
    target : column(s) predicted for the utility metric, one ``utility_ratio`` each; ``"auto"``:
        the column the other real columns predict best, never the randomized arm
        (:func:`~models.evidence.metrics.choose_utility_targets`, reason in
        ``details["utility_targets"]``); None: no utility metric.
    imputed : optionally the real rows after imputation, same columns (drawn in the overlays only).
    thresholds : per-study overrides, see :func:`~models.evidence.thresholds.resolve_thresholds`.
    run_id : identifier of the run; context : anything to record with it (tenant, study, model id,
        seed, data sha256 ...), JSON-serializable.
    max_rows : rows per frame used by the detection and privacy metrics (seeded subsample).
    random_state : seed of subsampling, classifiers and bootstrap; the same seed gives the same pack.
    n_threads : OpenMP/BLAS threads for the classifiers and distances (None: the libraries'
        default, all cores). 1 by default: on a shared machine OpenMP threads contend so badly that
        the detection classifier took 50 s instead of 3 s for 2 x 1000 rows on 2 busy cores.
    privacy_guarantee : the DP synthesizer's ``privacy_`` (None: no guarantee); stated in the
        details as ``privacy_guarantee`` (:func:`~models.evidence.privacy.guarantee_section`), in the
        summary and in the report, "none" when there is none.
    n_bootstrap : bootstrap replicates of each utility ratio (each refits the synthetic model, see
        :func:`~models.evidence.metrics.utility_scores`; 0: no interval, the point value grades it).
    closest_k : closest real records listed per synthetic row (:attr:`EvidencePack.closest`); 0: none.
    conditions : the strata the synthetic cohort was sampled in (``{column: value}``); real, holdout
        and imputed rows are restricted to them before measuring, and a stratum with fewer than
        :data:`MIN_STRATUM_ROWS` real rows is warned about. ``real_row`` of the closest records
        still counts rows of the full ``real``.
    notes : sentences recorded in ``details["notes"]`` and shown at the top of the report (e.g. why
        this synthesizer was used).
    epsilon_curve : None (no curve) or the options of
        :func:`~models.evidence.epsilon_curve.epsilon_curve` (``columns``: the study's public domain,
        ``delta``, ``epsilons``, ``mechanisms``; ``{}``: its defaults): fidelity, utility (for the
        first utility target) and MIA AUC of the DP synthesizers refitted on ``real`` at each epsilon,
        and of one without a guarantee, in ``details["epsilon_curve"]`` and drawn in the report (a
        curve that cannot be computed is a warning, the rest of the pack stands). It costs
        (mechanisms x epsilons + 1) fits and scorings: 20 s to a few minutes at trial sizes.
    """
    if not isinstance(run_id, str) or not run_id.strip():
        raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
    if max_rows is not None and max_rows < 10:
        raise ValueError(f"max_rows must be None or at least 10, got {max_rows}")
    resolved = resolve_thresholds(thresholds)
    frames = {"real": real, "synthetic": synthetic, "holdout": holdout, "imputed": imputed}
    cat, num = split_columns(frames, categorical)
    targets = [] if target is None or target == "auto" else [target] if isinstance(target, str) else list(target)
    for t in targets:
        if t not in real.columns:
            raise ValueError(f"target {t!r} is not a column of real")
    clean = {name: clean_frame(df, cat, num) for name, df in frames.items() if df is not None}
    warnings: list[str] = []
    real_rows = np.arange(len(real))
    if conditions:
        clean, real_rows = _stratum(clean, dict(conditions), cat, warnings)
        targets = [t for t in targets if t not in conditions]
    with threadpool_limits(n_threads):
        values, details, privacy, closest = _measure(
            clean, cat, num, "auto" if target == "auto" else targets, max_rows, random_state, n_bootstrap,
            closest_k, warnings)
        if epsilon_curve is not None:
            try:
                details["epsilon_curve"] = _epsilon_curve(real, holdout, cat, details, random_state, max_rows,
                                                          {"n_threads": n_threads, **epsilon_curve})
            except ValueError as exc:  # an optional section: the rest of the pack stands without it
                warnings.append(f"epsilon curve not computed: {exc}")
    if closest is not None:
        closest.table["real_row"] = real_rows[closest.table["real_row"].to_numpy()]
    metrics = pd.DataFrame(
        [
            (
                v.metric,
                v.variable,
                float(v.value),
                float(v.low),
                float(v.high),
                resolved[v.metric].warn,
                resolved[v.metric].fail,
                resolved[v.metric].level(v.value) if math.isnan(v.low)
                else resolved[v.metric].level_of_interval(v.low, v.high),
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
    details["settings"] = {"max_rows": max_rows, "random_state": random_state, "n_bootstrap": n_bootstrap,
                           "closest_k": closest_k, "conditions": dict(conditions or {})}
    details["privacy_guarantee"] = guarantee_section(privacy_guarantee)
    details["warnings"] = warnings
    details["notes"] = list(notes)
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
            real_positions=real_rows,
            date_columns=[c for c in num if pd.api.types.is_datetime64_any_dtype(real[c].dtype)],
        ),
        closest=closest,
    )


def _epsilon_curve(real: pd.DataFrame, holdout: pd.DataFrame, cat: list[str], details: dict[str, Any],
                   random_state: int | None, max_rows: int | None, options: dict[str, Any]) -> dict[str, Any]:
    """The epsilon curve on the whole training table (strata ignored), for the pack's first utility target."""
    from models.evidence.epsilon_curve import epsilon_curve

    targets = (details.get("utility_targets") or {}).get("targets") or []
    return epsilon_curve(real, holdout, cat, target=targets[0] if targets else None, random_state=random_state,
                         max_rows=max_rows, **options)


def _stratum(clean: dict[str, pd.DataFrame], conditions: dict[str, Any], cat: list[str], warnings: list[str]
             ) -> tuple[dict[str, pd.DataFrame], np.ndarray]:
    """The real frames restricted to the rows in ``conditions``, and the kept rows' positions in real."""
    unknown = [c for c in conditions if c not in clean["real"].columns]
    if unknown:
        raise ValueError(f"conditions name columns that do not exist: {unknown}")

    def matches(df: pd.DataFrame) -> np.ndarray:
        keep = np.ones(len(df), dtype=bool)
        for col, value in conditions.items():
            wanted = (MISSING if value is None else str(value)) if col in cat else float(value)
            keep &= (df[col] == wanted).to_numpy()
        return keep

    out = dict(clean)
    for name in ("real", "holdout", "imputed"):
        if name in clean:
            out[name] = clean[name][matches(clean[name])].reset_index(drop=True)
    n_real = len(out["real"])
    if n_real == 0:
        raise ValueError(f"no real row is in the requested stratum {conditions}: nothing to compare with")
    if n_real < MIN_STRATUM_ROWS:
        warnings.append(f"the requested stratum {conditions} holds only {n_real} real subject(s) (fewer than "
                        f"{MIN_STRATUM_ROWS}): the synthesizer had almost nothing to learn it from and its "
                        "metrics are noise")
    if len(out["holdout"]) == 0:
        raise ValueError(f"no holdout row is in the requested stratum {conditions}: no yardstick to compare with")
    return out, np.flatnonzero(matches(clean["real"]))


def _measure(
    clean: dict[str, pd.DataFrame],
    cat: list[str],
    num: list[str],
    targets: list[str] | str,
    max_rows: int | None,
    random_state: int | None,
    n_bootstrap: int,
    closest_k: int,
    warnings: list[str],
) -> tuple[list[MetricValue], dict[str, Any], PrivacyResult, ClosestRecords | None]:
    """All metric values, the details section, the privacy distances (for the figures) and the
    closest records. A metric the data is too small for is NaN (it fails) and says why in ``warnings``."""
    real, synthetic, holdout = clean["real"], clean["synthetic"], clean["holdout"]
    values: list[MetricValue] = fidelity_metrics(real, synthetic, cat, num)
    try:
        detection = detection_auc(real, synthetic, cat, max_rows=max_rows, random_state=random_state)
    except ValueError as exc:
        warnings.append(f"detection_auc not computed: {exc}")
        detection = {"auc": float("nan"), "raw_auc": float("nan")}
    values.append(MetricValue("detection_auc", None, detection["auc"]))
    details: dict[str, Any] = {"columns": {"categorical": cat, "numeric": num}, "detection": detection}
    if targets == "auto":
        choice = choose_utility_targets(real, cat, random_state=random_state)
        details["utility_targets"] = _target_details(choice)
        targets = choice.targets
    elif targets:
        details["utility_targets"] = {"targets": targets, "reason": "given by the caller (study config "
                                      "evidence.target)", "screen": []}
    details["utility"] = []
    for target in targets:
        try:
            scores = utility_scores(real, synthetic, holdout, target, cat, random_state=random_state,
                                    n_bootstrap=n_bootstrap)
        except ValueError as exc:
            warnings.append(f"utility_ratio[{target}] not computed: {exc}")
            scores = {"target": target, "ratio": float("nan")}
        details["utility"].append(scores)
        values.append(MetricValue("utility_ratio", target, float(scores["ratio"]),
                                  float(scores.get("ratio_low", np.nan)), float(scores.get("ratio_high", np.nan))))
    privacy = privacy_metrics(real, synthetic, holdout, cat, num, max_rows=max_rows, random_state=random_state)
    values += privacy.metric_values()
    details["privacy"] = {**privacy.summary(), "exact_copy_tolerance": EXACT_COPY_TOLERANCE}
    closest = closest_records(real, synthetic, holdout, cat, num, k=closest_k) if closest_k else None
    if closest is not None:
        details["closest_records"] = {**closest.summary(), "file": CLOSEST_FILE}
    return values, details, privacy, closest


def _target_details(choice: TargetChoice) -> dict[str, Any]:
    return {"targets": choice.targets, "reason": choice.reason,
            "screen": choice.screen.round(4).to_dict("records")}


def write_pack(pack: EvidencePack, out_dir: str | Path) -> dict[str, Path]:
    """Write ``evidence.json``, ``report.html`` and, when the pack has closest records,
    :data:`CLOSEST_FILE` (columns :data:`~models.evidence.closest.CLOSEST_COLUMNS`) into ``out_dir``
    (created if needed).

    Returns ``{"json": path, "html": path}`` plus ``"closest": path``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": pack.to_json(out / "evidence.json"), "html": pack.to_html(out / "report.html")}
    if pack.closest is not None:
        paths["closest"] = out / CLOSEST_FILE
        pack.closest.table.to_parquet(paths["closest"], index=False)
    return paths
