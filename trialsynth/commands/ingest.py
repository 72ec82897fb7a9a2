"""``trialsynth ingest [--tenant T] [--study S]``: run the drops that are ready in the landing zone now.

What the landing sensor does under ``make ui``, without a daemon: each study's complete drops are
run one at a time in arrival order (the whole study pipeline, from the raw zone to the marts), with a
progress line per drop and a summary; drops already ingested, failed before (until their bytes change
or ``trialsynth drops retry``), superseded or duplicated are listed as skipped with the reason. Exit
status 1 when a run of this call failed, else 0.
"""

from __future__ import annotations

import argparse

from trialsynth.names import validate_name


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ingest", help="ingest the drops that are ready in the landing zone now, in order")
    p.add_argument("--tenant", help="only this tenant's studies")
    p.add_argument("--study", help="only this study (needs --tenant)")
    p.set_defaults(func=run)


def study_filter(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """``--tenant``/``--study`` validated; ``--study`` alone is refused (study ids are per tenant)."""
    if args.study and not args.tenant:
        raise ValueError("--study needs --tenant: a study id is only unique within its tenant")
    return (validate_name(args.tenant, "tenant") if args.tenant else None,
            validate_name(args.study, "study") if args.study else None)


def run(args: argparse.Namespace) -> int:
    tenant, study = study_filter(args)
    from trialsynth.dagster_home import dagster_home_choice
    from trialsynth.runner import outcome_lines, process_landing_zone
    from trialsynth.settings import get_settings

    print(f"landing zone {get_settings().landing_dir}; {dagster_home_choice().describe()}")
    outcomes = process_landing_zone(log=print, tenant=tenant, study=study)
    if not outcomes:
        print("nothing in the landing zone" + (" for this tenant/study" if tenant else ""))
        return 0
    print("\n".join(outcome_lines(outcomes)))
    return 1 if any(o.status == "FAILURE" for o in outcomes) else 0
