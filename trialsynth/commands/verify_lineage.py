"""``trialsynth verify-lineage --tenant T --study S``: walk the hash chain, name the first broken link."""

from __future__ import annotations

import argparse

from trialsynth.lineage import LocalLineageStore, verify_chain
from trialsynth.names import validate_name
from trialsynth.settings import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("verify-lineage", help="verify a tenant/study's hash-chained lineage log")
    p.add_argument("--tenant", required=True)
    p.add_argument("--study", required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    tenant, study = validate_name(args.tenant, "tenant"), validate_name(args.study, "study")
    store = LocalLineageStore(get_settings().lake_dir)
    records = store.read(tenant, study)
    if not records:
        raise FileNotFoundError(f"no lineage log for {tenant}/{study} at {store.path(tenant, study)}")
    report = verify_chain(records)
    print(report.describe(records))
    return 0 if report.ok else 1
