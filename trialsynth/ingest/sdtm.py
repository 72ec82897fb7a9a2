"""Where each file of a drop goes: SDTM layouts recognised by file name *and* content.

Every tabular file of a drop gets exactly one :class:`Target` (or a failure), so nothing is set aside
silently:

- a **modelled domain** (:data:`trialsynth.domains.DOMAINS`), by file stem or alias: ``dm.xpt``;
- a **split dataset** of a modelled domain (SDTM IG 4.1.1.7: a large domain may be sent in several
  files whose names extend the domain code, all with the same ``DOMAIN`` value): ``lbch.xpt``,
  ``lbhe.xpt``, ``lbur.xpt`` are concatenated and validated as LB. A file is taken as a split part
  only when its ``DOMAIN`` column says so; ``dsmb.csv`` without ``DOMAIN = 'DS'`` is not DS;
- a **supplemental qualifier** dataset (``suppae.xpt``, or one ``suppqual``): kept as a typed
  supplemental table ``bronze/supp/<file>.parquet`` (not pivoted onto the parent, which would make
  each parent's schema depend on the QNAMs a sponsor chose), validated, and each row checked to
  have its parent record (``RDOMAIN`` + ``USUBJID`` + ``IDVAR = IDVARVAL``) in the drop;
- **any other SDTM domain** (MH, SC, EX, SE, TA, TS, TV, RELREC, CM, ...): typed and validated by the
  drop's ``define.xml`` when it carries one (data types, lengths, mandatory variables, codelists), or
  else by its SDTM class and variable-name conventions (``--SEQ``/``--DY``/``--STRESN``/``VISITNUM``
  numeric, ``--DTC`` ISO 8601), and written to ``bronze/other/<domain>.parquet``;
- a table that is no SDTM domain at all goes to ``bronze/other/<file>.parquet`` as read, reported as
  "not validated".
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from trialsynth.domains import DOMAINS, Column, DomainSpec, domain_for_file_stem

SDTM_CLASSES: dict[str, tuple[str, ...]] = {
    "Interventions": ("AG", "CM", "EC", "EX", "ML", "PR", "SU"),
    "Events": ("AE", "CE", "DS", "DV", "HO", "MH"),
    "Findings": ("CV", "DA", "DD", "EG", "FA", "FT", "IE", "IS", "LB", "MB", "MI", "MK", "MO", "MS", "NV", "OE",
                 "PC", "PE", "PP", "QS", "RE", "RP", "RS", "SC", "SR", "SS", "TR", "TU", "UR", "VS"),
    "Special purpose": ("CO", "DM", "SE", "SM", "SV"),
    "Trial design": ("TA", "TD", "TE", "TI", "TM", "TS", "TV"),
    "Relationship": ("RELREC", "RELSPEC", "RELSUB"),
}
CLASS_OF = {code: cls for cls, codes in SDTM_CLASSES.items() for code in codes}
_NUMERIC_NAMES = {"AGE", "VISITNUM", "VISITDY", "TAETORD"}
_NUMERIC_SUFFIXES = ("SEQ", "DY", "STDY", "ENDY", "TPTNUM", "DOSE", "DOSTOT", "STRESN", "STNRLO", "STNRHI")
SUPP_COLUMNS = (Column("STUDYID", required=True), Column("RDOMAIN", required=True), Column("USUBJID"),
                Column("IDVAR"), Column("IDVARVAL"), Column("QNAM", required=True), Column("QLABEL"),
                Column("QVAL"), Column("QORIG"), Column("QEVAL"))
_SPLIT_STEM = re.compile(r"^([a-z]{2})([a-z0-9]{1,6})$")


@dataclass(frozen=True)
class DefineVariable:
    name: str
    type: str  # our column type: str, float, date
    length: int | None
    mandatory: bool
    codelist: tuple[str, ...] | None


@dataclass(frozen=True)
class DefineDomain:
    code: str
    sdtm_class: str | None
    variables: tuple[DefineVariable, ...]


@dataclass
class Target:
    """One bronze output of a drop and the files that make it."""

    name: str  # bronze path below bronze/, without .parquet: "lb", "supp/suppae", "other/mh"
    kind: str  # domain | supplemental | other | unvalidated
    spec: DomainSpec | None  # None: kept as read, not validated
    code: str | None = None  # SDTM domain code ("LB", "MH"); None for EDC tables and unknown ones
    files: list[str] = field(default_factory=list)
    rule_source: str = ""  # what the validation rules came from, for the report

    def describe(self, file: str) -> str:
        where = f"bronze/{self.name}"
        if self.spec is None:
            return f"{file} -> {where}, not validated: no SDTM domain recognised (no DOMAIN column, unknown name)"
        split = f" (split dataset {len(self.files)} files)" if len(self.files) > 1 else ""
        return f"{file} -> {where}{split}, validated by {self.rule_source}"


def read_define(path: Path) -> dict[str, DefineDomain]:
    """Variable metadata per domain from a define.xml (v1.0 or v2.x: both use ODM ItemGroupDef/ItemDef)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{path.name}: not well-formed XML ({exc}); the drop's define.xml cannot be used") from exc

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    def attr(el: ET.Element, name: str) -> str | None:
        return next((v for k, v in el.attrib.items() if local(k) == name), None)

    codelists = {
        attr(cl, "OID"): tuple(attr(item, "CodedValue") for item in cl if local(item.tag) in ("CodeListItem", "EnumeratedItem"))
        for cl in root.iter() if local(cl.tag) == "CodeList"
    }
    items = {}
    for el in root.iter():
        if local(el.tag) != "ItemDef":
            continue
        ref = next((attr(c, "CodeListOID") for c in el if local(c.tag) == "CodeListRef"), None)
        dtype = (attr(el, "DataType") or "text").lower()
        items[attr(el, "OID")] = (attr(el, "Name"), {"integer": "float", "float": "float", "date": "date",
                                                      "datetime": "date", "partialdate": "date"}.get(dtype, "str"),
                                  int(attr(el, "Length")) if (attr(el, "Length") or "").isdigit() else None,
                                  codelists.get(ref) if ref else None)
    out: dict[str, DefineDomain] = {}
    for group in root.iter():
        if local(group.tag) != "ItemGroupDef":
            continue
        code = (attr(group, "Domain") or attr(group, "Name") or "").upper()
        variables = []
        for ref in group:
            if local(ref.tag) != "ItemRef" or attr(ref, "ItemOID") not in items:
                continue
            name, dtype, length, codes = items[attr(ref, "ItemOID")]
            variables.append(DefineVariable(name.upper(), dtype, length, attr(ref, "Mandatory") == "Yes", codes))
        out[(attr(group, "Name") or code).upper()] = DefineDomain(code, attr(group, "Class"), tuple(variables))
    return out


def _class_column(name: str, subject_level: bool) -> Column:
    numeric = name in _NUMERIC_NAMES or name.endswith(_NUMERIC_SUFFIXES)
    kind = "float" if numeric else "date" if name.endswith("DTC") else "str"
    return Column(name, kind, required=name == "STUDYID" or (subject_level and name == "USUBJID"))


def _seq_key(code: str, columns: list[str], subject_level: bool) -> tuple[str, ...]:
    seq = f"{code}SEQ"
    return ("USUBJID", seq) if subject_level and seq in columns and "USUBJID" in columns else ()


def other_domain_spec(code: str, name: str, columns: list[str], define: DefineDomain | None) -> tuple[DomainSpec, str]:
    """Validation rules for a domain trialsynth does not model, and where they came from."""
    sdtm_class = (define.sdtm_class if define and define.sdtm_class else None) or CLASS_OF.get(code)
    subject_level = sdtm_class not in ("Trial design", "Trial Design", None) and code != "RELREC"
    key = _seq_key(code, columns, subject_level)
    if define is not None:
        declared = {v.name: v for v in define.variables}
        # Codelists are checked on text variables only: numeric codes (VISITNUM) are typed values.
        # A mandatory variable the file lacks is reported, not fatal: the domain is not one we model.
        cols = tuple(
            Column(v.name, v.type, required=v.mandatory, allowed=v.codelist if v.type == "str" else None,
                   max_length=v.length)
            for v in declared.values() if v.name in columns
        )
        missing = [v.name for v in declared.values() if v.mandatory and v.name not in columns]
        note = f"; mandatory per define.xml but absent: {', '.join(missing)}" if missing else ""
        return DomainSpec(name, f"{code} (from define.xml)", cols, key), \
            f"define.xml ({sdtm_class or 'class not stated'}){note}"
    cols = tuple(_class_column(c, subject_level) for c in columns)
    return DomainSpec(name, f"{code} ({sdtm_class or 'unknown class'})", cols, key), \
        f"SDTM {sdtm_class or 'naming'} rules (no define.xml in the drop)"


def supplemental_spec(name: str) -> DomainSpec:
    return DomainSpec(name, "Supplemental qualifiers", SUPP_COLUMNS, ("USUBJID", "RDOMAIN", "IDVAR", "IDVARVAL", "QNAM"))


def _domain_values(df: pl.DataFrame) -> set[str]:
    if "DOMAIN" not in df.columns:
        return set()
    return {str(v).strip().upper() for v in df["DOMAIN"].drop_nulls().unique().to_list() if str(v).strip()}


def plan_files(frames: dict[str, pl.DataFrame], define: dict[str, DefineDomain] | None) -> tuple[list[Target], dict[str, str]]:
    """Assign every file to a bronze target; return (targets, failures by file)."""
    targets: dict[str, Target] = {}
    failures: dict[str, str] = {}
    whole: dict[str, str] = {}  # modelled domain -> the single file delivering it whole

    def add(name: str, kind: str, spec: DomainSpec | None, file: str, source: str, code: str | None = None) -> None:
        targets.setdefault(name, Target(name, kind, spec, code, rule_source=source)).files.append(file)

    for file in sorted(frames):
        stem = Path(file).stem.lower()
        df = frames[file]
        codes = _domain_values(df)
        spec = domain_for_file_stem(stem)
        split = _SPLIT_STEM.match(stem)
        if spec is not None:
            if spec.name in whole:
                failures[file] = (f"{file}: domain {spec.name.upper()} already delivered as {whole[spec.name]}; "
                                  "send one file per domain (or SDTM split files named after the domain code)")
                continue
            whole[spec.name] = file
            add(spec.name, "domain", spec, file, "trialsynth's domain contract (its expectation suite)",
                spec.name.upper() if spec.name.upper() in CLASS_OF else None)
        elif split and split.group(1) in DOMAINS and codes == {split.group(1).upper()}:
            add(split.group(1), "domain", DOMAINS[split.group(1)], file,
                "trialsynth's domain contract (its expectation suite)", split.group(1).upper())
        elif stem.startswith("supp") and "RDOMAIN" in df.columns and "QNAM" in df.columns:
            add(f"supp/{stem}", "supplemental", supplemental_spec(f"supp_{stem}"), file,
                "the SDTM supplemental-qualifier rules and a parent-record check")
        elif len(codes) == 1 or (not codes and stem.upper() in CLASS_OF):
            code = next(iter(codes)) if codes else stem.upper()
            entry = (define or {}).get(stem.upper()) or (define or {}).get(code)
            spec_other, source = other_domain_spec(code, f"other_{stem}", [c for c in df.columns if not c.startswith("_")], entry)
            add(f"other/{stem}", "other", spec_other, file, source, code)
        else:
            why = f"DOMAIN values {sorted(codes)}" if codes else "no DOMAIN column"
            add(f"other/{stem}", "unvalidated", None, file, why)
    for name, spec in ((n, s) for n, s in DOMAINS.items() if n in targets and n in whole):
        parts = [f for f in targets[name].files if f != whole[name]]
        if parts:
            failures[whole[name]] = (f"{whole[name]}: domain {spec.name.upper()} delivered both whole and as split "
                                     f"files ({', '.join(parts)}); send one or the other")
    return list(targets.values()), failures
