"""``trialsynth drops list|retry``: the state of every drop, and asking a failed or skipped drop to run again.

``list`` shows, per study, every drop in arrival order with its state (pending, landed, ingested,
failed, superseded, duplicate; see :mod:`trialsynth.ingest.drops`), the reason, the raw zone version,
the content hash and the run id; ``*`` marks the drop the study's bronze holds. It first settles the
states from the Dagster runs, as the landing sensor does. ``retry`` marks the newest bytes of a drop to
run again and runs the study's due drops now (``--no-run``: leave it to ``trialsynth ingest`` or the
sensor of a running daemon).
"""

from __future__ import annotations

import argparse

from trialsynth.commands.ingest import study_filter


def _plan(tenant: str | None, study: str | None):
    """Settle every study's drop states against the Dagster instance; the plans of the selected studies."""
    import dagster as dg

    from orchestration.resources import LakeResource
    from orchestration.sensors import plan_landing
    from trialsynth.dagster_home import ensure_dagster_home

    ensure_dagster_home()
    plan = plan_landing(LakeResource(), dg.DagsterInstance.get())
    studies = [p for p in plan.studies.values() if tenant in (None, p.tenant) and study in (None, p.study)]
    return studies, plan.skipped


def _list(args: argparse.Namespace) -> int:
    tenant, study = study_filter(args)
    studies, skipped = _plan(tenant, study)
    if not studies:
        print("no drops recorded" + (" for this tenant/study" if tenant else ""))
    header = ("", "arrival", "drop", "state", "raw", "content hash", "run id")
    for plan in studies:
        print(plan.describe())
        rows = [("*" if r == plan.current else "", str(r.arrival), r.drop_id, r.state,
                 f"v{r.raw_version}" if r.raw_version else "-", r.content_hash[:16], r.run_id or "-")
                for r in plan.records]
        widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
        for row, record in zip((header, *rows), (None, *plan.records), strict=True):
            print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
            if record is not None and record.reason:
                print("      why: " + record.reason.replace("\n", "\n           "))
    if skipped:
        print("landing zone folders not taken:")
        print("\n".join(f"  {message}" for message in skipped))
    return 0


def _retry(args: argparse.Namespace) -> int:
    tenant, study = study_filter(args)
    _plan(tenant, study)
    from trialsynth.ingest.drops import DropRegistry
    from trialsynth.runner import outcome_lines, process_landing_zone
    from trialsynth.settings import get_settings

    record = DropRegistry(get_settings().lake_dir, tenant, study).request_retry(args.drop, allow_older=args.allow_older)
    print(f"drop {record.drop_id} of {tenant}/{study}: retry {record.attempt} requested")
    if args.no_run:
        print("it runs at the next `trialsynth ingest` or landing sensor evaluation")
        return 0
    outcomes = process_landing_zone(log=print, tenant=tenant, study=study)
    print("\n".join(outcome_lines(outcomes)))
    if not any(o.drop_id == record.drop_id and o.status != "SKIPPED" for o in outcomes):
        print(f"drop {record.drop_id} did not run: it is not complete in the landing zone now with the bytes it "
              "had (new bytes run as a new arrival by themselves)")
        return 1
    return 1 if any(o.status == "FAILURE" for o in outcomes) else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("drops", help="list every drop with its state; retry a drop")
    actions = parser.add_subparsers(dest="action", required=True)
    list_parser = actions.add_parser("list", help="every drop of every study (or of --tenant/--study) with its state")
    list_parser.add_argument("--tenant")
    list_parser.add_argument("--study", help="needs --tenant")
    list_parser.set_defaults(func=_list)
    retry = actions.add_parser("retry", help="run a failed, superseded or duplicate drop again")
    retry.add_argument("--tenant", required=True)
    retry.add_argument("--study", required=True)
    retry.add_argument("--drop", required=True, help="the drop id (its newest bytes are retried)")
    retry.add_argument("--allow-older", action="store_true",
                       help="retry a drop that arrived before the one the study's bronze holds: its run replaces "
                       "that bronze with this drop as a whole")
    retry.add_argument("--no-run", action="store_true", help="only mark it; the next ingest or sensor tick runs it")
    retry.set_defaults(func=_retry)
