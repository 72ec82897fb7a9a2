"""``trialsynth evidence show RUN_ID``: print the summary of a run's evidence pack."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from trialsynth.settings import get_settings


def find_pack(run_id: str) -> Path:
    """Path of ``evidence.json`` of ``run_id`` in the lake (``<lake>/<tenant>/<study>/evidence/<run_id>/``)."""
    lake = get_settings().lake_dir
    if not run_id or any(sep in run_id for sep in ("/", "\\", "*", "?", "[")) or run_id in (".", ".."):
        raise ValueError(f"invalid run id {run_id!r}")
    found = sorted(lake.glob(f"*/*/evidence/{run_id}/evidence.json"))
    if not found:
        raise FileNotFoundError(
            f"no evidence pack for run {run_id!r} under {lake}/<tenant>/<study>/evidence/"
        )
    if len(found) > 1:
        raise ValueError(f"run id {run_id!r} has several evidence packs: {', '.join(map(str, found))}")
    return found[0]


def _show(args: argparse.Namespace) -> int:
    from trialsynth.artifacts import read_evidence  # decrypts and verifies (packs are encrypted at rest)

    path = find_pack(args.run_id)
    document = json.loads(read_evidence(path))
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    from models.evidence.pack import EvidencePack  # sklearn & co. only when this command runs

    with tempfile.TemporaryDirectory(prefix="trialsynth-pack-") as plain:  # from_json reads a file
        copy = Path(plain) / path.name
        copy.write_text(json.dumps(document))
        print(EvidencePack.from_json(copy).summary_text())
    report = path.with_name("report.html")
    print(f"  json: {path}" + (f"\n  report: {report}" if report.is_file() else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evidence", help="inspect the evidence packs of synthesis runs")
    actions = parser.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="print the summary of a run's evidence pack")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true", help="print the whole evidence.json instead")
    show.set_defaults(func=_show)
