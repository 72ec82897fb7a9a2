"""``trialsynth registry list|approve|retire``: inspect the model registry and change approval status."""

from __future__ import annotations

import argparse

from trialsynth.registry import KINDS, STATUSES, ModelRegistry


def _registry(args: argparse.Namespace) -> ModelRegistry:
    return ModelRegistry(args.url)  # None: the settings' registry URL


def _list(args: argparse.Namespace) -> int:
    records = _registry(args).list(kind=args.kind, status=args.status, name=args.name)
    if not records:
        print(
            "no models registered"
            + (" matching the filters" if args.kind or args.status or args.name else "")
        )
        return 0
    header = ("id", "kind", "name", "status", "trained_at", "trained_by", "seed")
    rows = [
        (
            r.id,
            r.kind,
            r.name,
            r.status,
            r.trained_at.isoformat(timespec="seconds"),
            r.trained_by,
            str(r.seed),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _change(args: argparse.Namespace) -> int:
    registry = _registry(args)
    change = registry.approve if args.action == "approve" else registry.retire
    record = change(args.model_id, by=args.by, why=args.why)
    print(f"model {record.id} ({record.kind} {record.name}) is now {record.status}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("registry", help="list registered models; approve or retire one")
    parser.add_argument("--url", default=None, help="SQLAlchemy URL of the registry (default: from settings)")
    actions = parser.add_subparsers(dest="action", required=True)

    list_parser = actions.add_parser("list", help="list registered models, oldest first")
    list_parser.add_argument("--kind", choices=KINDS)
    list_parser.add_argument("--status", choices=STATUSES)
    list_parser.add_argument("--name", help="only models with this name")
    list_parser.set_defaults(func=_list)

    for action, help_text in (
        ("approve", "approve a draft model for the generate step"),
        ("retire", "retire a draft or approved model (final)"),
    ):
        action_parser = actions.add_parser(action, help=help_text)
        action_parser.add_argument("model_id")
        action_parser.add_argument("--by", required=True, help="who makes the change")
        action_parser.add_argument("--why", required=True, help="reason, recorded in the audit trail")
        action_parser.set_defaults(func=_change)
