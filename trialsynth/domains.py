"""The canonical domain contract: one spec per SDTM domain and EDC operational table.

Everything downstream agrees on this file: the demo generator writes these columns, readers map
source files onto them (``aliases``), validation derives its expectation suites from them (run as polars checks, exported as Great Expectations suites),
bronze Parquet is typed by them, and dbt's sources select them. Columns a source has beyond the
spec are kept (typed as strings) so nothing a sponsor sent is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnType = Literal["str", "int", "float", "date"]


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType = "str"
    required: bool = False  # must be present in the file and non-null in every row
    min: float | None = None  # numeric range (inclusive)
    max: float | None = None
    allowed: tuple[str, ...] | None = None  # controlled terminology (non-null values)
    max_length: int | None = None  # longest text value allowed (define.xml Length)


@dataclass(frozen=True)
class DomainSpec:
    name: str  # canonical lower-case name: bronze file <name>.parquet
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # unique key within a tenant/study (empty: none checked)
    aliases: tuple[str, ...] = field(default=())  # other file stems this domain arrives as

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _c(name: str, type: ColumnType = "str", **kw: object) -> Column:
    return Column(name, type, **kw)  # type: ignore[arg-type]


_ID = (_c("STUDYID", required=True), _c("DOMAIN"), _c("USUBJID", required=True))
_VISIT = (_c("VISITNUM", "float"), _c("VISIT"))
NY = ("N", "Y")

DOMAINS: dict[str, DomainSpec] = {
    spec.name: spec
    for spec in (
        DomainSpec(
            "dm",
            "Demographics: one row per subject screened.",
            (
                *_ID,
                _c("SUBJID"),
                _c("SITEID", required=True),
                _c("AGE", "float", min=0, max=120),
                _c("AGEU"),
                _c("SEX", allowed=("M", "F", "U", "UNDIFFERENTIATED")),
                _c("RACE"),
                _c("ETHNIC"),
                _c("ARMCD"),
                _c("ARM"),
                _c("ACTARMCD"),
                _c("ACTARM"),
                _c("COUNTRY"),
                _c("RFICDTC", "date"),
                _c("RFSTDTC", "date"),
                _c("RFENDTC", "date"),
            ),
            key=("USUBJID",),
        ),
        DomainSpec(
            "sv",
            "Subject visits: one row per visit that took place.",
            (*_ID, _c("VISITNUM", "float", required=True), _c("VISIT"), _c("VISITDY", "float"),
             _c("SVSTDTC", "date"), _c("SVENDTC", "date")),
            key=("USUBJID", "VISITNUM"),
        ),
        DomainSpec(
            "vs",
            "Vital signs: one row per subject, visit, test and time point.",
            (*_ID, _c("VSSEQ", "float", required=True), _c("VSTESTCD", required=True), _c("VSTEST"),
             _c("VSPOS"), _c("VSORRES"), _c("VSORRESU"), _c("VSSTRESC"),
             _c("VSSTRESN", "float", min=-1e6, max=1e6), _c("VSSTRESU"), _c("VSSTAT", allowed=("NOT DONE",)),
             _c("VSREASND"), _c("VSTPT"), *_VISIT, _c("VSDTC", "date"), _c("VSDY", "float")),
            key=("USUBJID", "VSSEQ"),
        ),
        DomainSpec(
            "lb",
            "Laboratory results: one row per subject, visit and test.",
            (*_ID, _c("LBSEQ", "float", required=True), _c("LBTESTCD", required=True), _c("LBTEST"),
             _c("LBCAT"), _c("LBORRES"), _c("LBORRESU"), _c("LBSTRESC"),
             _c("LBSTRESN", "float", min=-1e9, max=1e9), _c("LBSTRESU"), _c("LBSTNRLO", "float"),
             _c("LBSTNRHI", "float"), _c("LBNRIND"), _c("LBSTAT", allowed=("NOT DONE",)), _c("LBREASND"),
             *_VISIT, _c("LBDTC", "date"), _c("LBDY", "float")),
            key=("USUBJID", "LBSEQ"),
        ),
        DomainSpec(
            "ae",
            "Adverse events with MedDRA coding (SOC, HLGT where present, PT).",
            (*_ID, _c("AESEQ", "float", required=True), _c("AETERM", required=True), _c("AEDECOD"),
             _c("AEHLGT"), _c("AEBODSYS"), _c("AESEV", allowed=("MILD", "MODERATE", "SEVERE")),
             _c("AESER", allowed=NY), _c("AEREL"), _c("AEOUT"), _c("AESTDTC", "date"), _c("AEENDTC", "date"),
             _c("AESTDY", "float"), _c("AEENTDTC", "date")),
            key=("USUBJID", "AESEQ"),
        ),
        DomainSpec(
            "ds",
            "Disposition: screen failures, completions, discontinuations with reasons.",
            (*_ID, _c("DSSEQ", "float", required=True), _c("DSTERM"), _c("DSDECOD", required=True), _c("DSCAT"),
             *_VISIT, _c("DSSTDTC", "date"), _c("DSSTDY", "float")),
            key=("USUBJID", "DSSEQ"),
        ),
        DomainSpec(
            "dv",
            "Protocol deviations; DVSCAT is IMPORTANT or NON-IMPORTANT.",
            (*_ID, _c("DVSEQ", "float", required=True), _c("DVTERM"), _c("DVDECOD"), _c("DVCAT"),
             _c("DVSCAT", allowed=("IMPORTANT", "NON-IMPORTANT")), _c("DVSTDTC", "date")),
            key=("USUBJID", "DVSEQ"),
        ),
        DomainSpec(
            "sites",
            "EDC site table: selection and activation dates, CRO, country, target enrollment.",
            (_c("STUDYID", required=True), _c("SITEID", required=True), _c("SITENAME"), _c("COUNTRY"),
             _c("CRO"), _c("SELECTED_DATE", "date"), _c("ACTIVATION_DATE", "date"),
             _c("TARGET_ENROLLMENT", "int", min=0, max=100000)),
            key=("SITEID",),
            aliases=("site", "site_table"),
        ),
        DomainSpec(
            "queries",
            "EDC query log: one row per data query with its life cycle.",
            (_c("STUDYID", required=True), _c("QUERYID", required=True), _c("SITEID", required=True),
             _c("USUBJID"), _c("CRFPAGE"), _c("VISITNUM", "float"), _c("FIELD"),
             _c("QUERY_TYPE", allowed=("AUTO", "MANUAL")), _c("OPENED_DTC", "date", required=True),
             _c("ANSWERED_DTC", "date"), _c("CLOSED_DTC", "date"),
             _c("STATUS", allowed=("OPEN", "ANSWERED", "CLOSED"))),
            key=("QUERYID",),
            aliases=("query_log",),
        ),
        DomainSpec(
            "crf_pages",
            "EDC CRF page entry log: visit date vs data-entry date per page.",
            (_c("STUDYID", required=True), _c("SITEID", required=True), _c("USUBJID", required=True),
             _c("CRFPAGE", required=True), _c("VISITNUM", "float", required=True), _c("VISIT_DATE", "date"),
             _c("ENTRY_DATE", "date")),
            key=("USUBJID", "CRFPAGE", "VISITNUM"),
            aliases=("crf_page_log", "page_log"),
        ),
    )
}


def domain_for_file_stem(stem: str) -> DomainSpec | None:
    """The domain a file belongs to by its stem (``dm``, ``DM``, ``query_log`` ...), or None."""
    s = stem.lower()
    for spec in DOMAINS.values():
        if s == spec.name or s in spec.aliases:
            return spec
    return None
