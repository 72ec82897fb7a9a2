"""``trialsynth verify-lineage [--tenant T [--study S]]``: verify the signed lineage chains (links,
hashes, signatures, checkpoints, Object Lock retention, outputs against the lake now), print the
report naming the first broken link, update the status table; exit 1 when anything is broken."""

from __future__ import annotations

import argparse

from trialsynth.lineage import open_store, run_verification
from trialsynth.names import validate_name
from trialsynth.settings import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("verify-lineage", help="verify the signed lineage chains and name the first broken link")
    p.add_argument("--tenant", help="only this tenant's chains (default: every chain in the store)")
    p.add_argument("--study", help="only this study's chain (needs --tenant)")
    p.add_argument("--checkpoint", action="store_true", help="sign a checkpoint for every chain that verifies intact")
    p.add_argument("--no-status", action="store_true", help="leave the lineage status table as it is")
    p.set_defaults(func=run)


def selected_partitions(store_partitions: list[tuple[str, str]], tenant: str | None,
                        study: str | None) -> list[tuple[str, str]] | None:
    """The (tenant, study) pairs ``--tenant/--study`` select; None = all. FileNotFoundError when none."""
    if study and not tenant:
        raise ValueError("--study needs --tenant")
    if not tenant:
        return None
    tenant = validate_name(tenant, "tenant")
    chosen = [(t, s) for t, s in store_partitions if t == tenant and (not study or s == validate_name(study, "study"))]
    if not chosen:
        raise FileNotFoundError(f"no lineage chain for {tenant}/{study or '*'}")
    return chosen


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    store = open_store(settings)
    partitions = selected_partitions(store.partitions(), args.tenant, args.study)
    report = run_verification(settings, store, partitions, checkpoint=args.checkpoint, write_status=not args.no_status)
    print(report.describe())
    return 0 if report.ok else 1
