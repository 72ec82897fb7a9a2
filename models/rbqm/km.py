"""Kaplan-Meier time to study discontinuation by arm.

The product-limit estimate itself and its Greenwood confidence limits come from
``scipy.stats.ecdf`` on right-censored data (scipy >= 1.11); this module adds what a KM table shows
beside them (subjects at risk, events and censorings per distinct time) and derives each
randomized subject's (time, event) from SDTM DM, DS and SV:

* time origin: first dose (DM.RFSTDTC), else the DS RANDOMIZED milestone;
* end of study: the latest DS disposition event (DSCAT DISPOSITION EVENT or none) that is not a
  SCREEN FAILURE. Any reason but COMPLETED is a discontinuation (the event); COMPLETED is censored
  at its date;
* subjects still on study are censored at their last known contact: the latest of DM.RFENDTC,
  their SV visit dates and DS dates (as ``dim_subject.last_known_date`` in the warehouse).

Randomized = a planned arm code other than SCRNFAIL / NOTASSGN / NOTTRT and no DS SCREEN FAILURE
record, as ``dim_subject.is_randomized``. Dates are ISO 8601 text; partial dates count as unknown.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import polars as pl
from scipy import stats

NOT_RANDOMIZED_ARMCDS = ("SCRNFAIL", "NOTASSGN", "NOTTRT")
KM_COLUMNS = ["time_days", "survival", "at_risk", "events", "censored", "ci_lower", "ci_upper"]


class KaplanMeier:
    """Product-limit estimator of the survival function S(t) = P(T > t) from right-censored data.

    Parameters
    ----------
    confidence_level : float in (0, 1)
        Level of the pointwise confidence limits (Greenwood variance).
    ci_method : {"log-log", "linear"}
        Transform of the confidence limits (scipy's ``confidence_interval`` methods); log-log keeps
        them inside [0, 1].

    Attributes (after ``fit``), each of shape (m,) over the m distinct times, ascending:
    ``timeline_`` (the unit of ``durations``), ``survival_``, ``at_risk_`` (subjects with time >= t),
    ``events_``, ``censored_``, ``ci_lower_``, ``ci_upper_`` (NaN where the limits are undefined,
    i.e. where the estimate has reached 0; 1 while no event has happened). ``n_subjects_``.
    """

    def __init__(self, confidence_level: float = 0.95, ci_method: str = "log-log") -> None:
        self.confidence_level = confidence_level
        self.ci_method = ci_method

    def fit(self, durations: np.ndarray, events: np.ndarray) -> KaplanMeier:
        """durations: (n,) times >= 0, finite; events: (n,) bool, True = event, False = censored."""
        if not 0 < self.confidence_level < 1:
            raise ValueError(f"confidence_level must be in (0, 1), got {self.confidence_level}")
        if self.ci_method not in ("log-log", "linear"):
            raise ValueError(f"ci_method must be 'log-log' or 'linear', got {self.ci_method!r}")
        time = np.asarray(durations, dtype=np.float64)
        event = np.asarray(events)
        if time.ndim != 1 or time.size == 0:
            raise ValueError(f"durations must be a non-empty 1-D array, got shape {time.shape}")
        if event.shape != time.shape:
            raise ValueError(f"events must have the shape of durations {time.shape}, got {event.shape}")
        if event.dtype != bool and not np.isin(event, (0, 1)).all():
            raise ValueError("events must be boolean (True = event observed, False = censored)")
        if not np.isfinite(time).all() or (time < 0).any():
            raise ValueError("durations must be finite and >= 0")
        event = event.astype(bool)

        result = stats.ecdf(stats.CensoredData.right_censored(time, censored=~event))
        with warnings.catch_warnings():  # undefined limits where S(t) is 0 or 1: handled below
            warnings.simplefilter("ignore", RuntimeWarning)
            ci = result.sf.confidence_interval(self.confidence_level, method=self.ci_method)
        self.timeline_ = result.sf.quantiles
        self.survival_ = result.sf.probabilities
        no_event_yet = self.survival_ >= 1.0
        self.ci_lower_ = np.where(no_event_yet, 1.0, ci.low.probabilities)
        self.ci_upper_ = np.where(no_event_yet, 1.0, ci.high.probabilities)
        # counts per distinct time: scipy gives the estimate only
        index = np.searchsorted(self.timeline_, time)
        self.events_ = np.bincount(index[event], minlength=self.timeline_.size)
        self.censored_ = np.bincount(index[~event], minlength=self.timeline_.size)
        self.at_risk_ = time.size - np.concatenate([[0], np.cumsum(self.events_ + self.censored_)[:-1]])
        self.n_subjects_ = time.size
        return self

    def predict(self, times: np.ndarray) -> np.ndarray:
        """S(t) at ``times`` (k,): the right-continuous step function, 1 before the first event."""
        self._check_fitted()
        position = np.searchsorted(self.timeline_, np.asarray(times, dtype=np.float64), side="right")
        return np.concatenate([[1.0], self.survival_])[position]

    def table(self) -> pd.DataFrame:
        """One row per distinct time (columns ``KM_COLUMNS``), led by a time-0 row with S = 1
        unless something happens at time 0."""
        self._check_fitted()
        frame = pd.DataFrame({
            "time_days": self.timeline_, "survival": self.survival_, "at_risk": self.at_risk_,
            "events": self.events_, "censored": self.censored_, "ci_lower": self.ci_lower_,
            "ci_upper": self.ci_upper_,
        })
        if self.timeline_[0] > 0:
            start = pd.DataFrame([{"time_days": 0.0, "survival": 1.0, "at_risk": self.n_subjects_, "events": 0,
                                   "censored": 0, "ci_lower": 1.0, "ci_upper": 1.0}])
            frame = pd.concat([start, frame], ignore_index=True)
        return frame.astype({"at_risk": "int64", "events": "int64", "censored": "int64"})

    def _check_fitted(self) -> None:
        if not hasattr(self, "survival_"):
            raise ValueError("this KaplanMeier is not fitted yet: call fit(durations, events) first")


def _iso_date(column: str) -> pl.Expr:
    """Typed date of an ISO 8601 text column; partial or unparsable dates give null."""
    return pl.col(column).cast(pl.String).str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)


def _require(frame: pl.DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(missing)}")


def discontinuation_times(dm: pl.DataFrame, ds: pl.DataFrame, sv: pl.DataFrame) -> pd.DataFrame:
    """One row per randomized subject: ``usubjid, arm, time_days, event, end_reason``.

    dm/ds/sv: SDTM domains (bronze frames) with at least USUBJID, ARM, ARMCD, RFSTDTC, RFENDTC (DM),
    USUBJID, DSSEQ, DSDECOD, DSCAT, DSSTDTC (DS) and USUBJID, SVSTDTC, SVENDTC (SV). ``time_days``
    is days from the time origin to the end of study (event) or censoring, NaN when either date
    is unknown or the stop precedes the origin; ``event`` is True for a discontinuation; ``end_reason`` is the DSDECOD of the
    end-of-study event (missing while ongoing). Rules in the module docstring.
    """
    _require(dm, "dm", ("USUBJID", "ARM", "ARMCD", "RFSTDTC", "RFENDTC"))
    _require(ds, "ds", ("USUBJID", "DSSEQ", "DSDECOD", "DSCAT", "DSSTDTC"))
    _require(sv, "sv", ("USUBJID", "SVSTDTC", "SVENDTC"))
    text = lambda c: pl.col(c).cast(pl.String).str.strip_chars().str.to_uppercase()  # noqa: E731
    events = ds.select(
        pl.col("USUBJID").cast(pl.String), pl.col("DSSEQ").cast(pl.Float64).alias("seq"),
        text("DSDECOD").alias("decod"), text("DSCAT").alias("category"), _iso_date("DSSTDTC").alias("date"),
    )
    screen_failed = events.filter(pl.col("decod") == "SCREEN FAILURE").select("USUBJID").unique()
    randomized = (
        dm.select(pl.col("USUBJID").cast(pl.String), pl.col("ARM").cast(pl.String).alias("arm"),
                  text("ARMCD").alias("armcd"), _iso_date("RFSTDTC").alias("first_dose"),
                  _iso_date("RFENDTC").alias("reference_end"))
        .filter(pl.col("armcd").is_not_null() & ~pl.col("armcd").is_in(NOT_RANDOMIZED_ARMCDS))
        .join(screen_failed, on="USUBJID", how="anti")
    )
    randomized_on = (events.filter(pl.col("decod") == "RANDOMIZED").group_by("USUBJID")
                     .agg(pl.col("date").min().alias("randomized_on")))
    end_of_study = (
        events.filter((pl.col("category").is_null() | (pl.col("category") == "DISPOSITION EVENT"))
                      & (pl.col("decod").fill_null("") != "SCREEN FAILURE"))
        .sort(["date", "seq"], descending=True, nulls_last=True)
        .group_by("USUBJID", maintain_order=True).first()
        .select("USUBJID", pl.col("decod").alias("end_reason"), pl.col("date").alias("end_date"))
    )
    contacts = pl.concat([
        dm.select(pl.col("USUBJID").cast(pl.String), _iso_date("RFENDTC").alias("date")),
        sv.select(pl.col("USUBJID").cast(pl.String), _iso_date("SVSTDTC").alias("date")),
        sv.select(pl.col("USUBJID").cast(pl.String), _iso_date("SVENDTC").alias("date")),
        events.select("USUBJID", "date"),
    ]).group_by("USUBJID").agg(pl.col("date").max().alias("last_contact"))

    subjects = (
        randomized.join(randomized_on, on="USUBJID", how="left")
        .join(end_of_study, on="USUBJID", how="left")
        .join(contacts, on="USUBJID", how="left")
        .with_columns(
            pl.coalesce("first_dose", "randomized_on").alias("origin"),
            pl.when(pl.col("end_reason").is_not_null()).then(pl.coalesce("end_date", "last_contact"))
            .otherwise(pl.col("last_contact")).alias("stop"),
            (pl.col("end_reason").is_not_null() & (pl.col("end_reason") != "COMPLETED")).alias("event"),
        )
        .with_columns((pl.col("stop") - pl.col("origin")).dt.total_days().cast(pl.Float64).alias("time_days"))
        .with_columns(pl.when(pl.col("time_days") >= 0).then("time_days").alias("time_days"))  # stop before origin: unknown
        .sort("USUBJID")
    )
    return subjects.select(pl.col("USUBJID").alias("usubjid"), "arm", "time_days", "event", "end_reason").to_pandas()


def km_by_group(subjects: pd.DataFrame, group: str = "arm", confidence_level: float = 0.95) -> pd.DataFrame:
    """Kaplan-Meier table per group: columns ``group`` + ``KM_COLUMNS``.

    subjects: one row per subject with ``group``, ``time_days`` (>= 0; NaN rows are left out, as are
    rows without a group) and ``event`` (bool). Groups in sorted order; an empty input gives an
    empty, typed table.
    """
    for column in (group, "time_days", "event"):
        if column not in subjects.columns:
            raise ValueError(f"subjects lacks column {column!r}")
    usable = subjects.dropna(subset=[group, "time_days"])
    if (usable["time_days"] < 0).any():
        bad = usable.loc[usable["time_days"] < 0].index[:5].tolist()
        raise ValueError(f"time_days must be >= 0 (end of study before the time origin at rows {bad})")
    tables = []
    for name, part in usable.groupby(group, sort=True):
        km = KaplanMeier(confidence_level=confidence_level).fit(part["time_days"].to_numpy(),
                                                                part["event"].to_numpy(dtype=bool))
        tables.append(km.table().assign(**{group: name}))
    empty = pd.DataFrame({group: pd.Series(dtype="string"),
                          **{c: pd.Series(dtype="int64" if c in ("at_risk", "events", "censored") else "float64")
                             for c in KM_COLUMNS}})
    out = pd.concat(tables, ignore_index=True) if tables else empty
    return out[[group, *KM_COLUMNS]].astype({group: "string"})
