"""``trialsynth lineage show|export|key``: read the lineage chains.

- ``show --tenant T --study S [--asset A]``: the chain as a table (sequence, time, asset, output hash,
  inputs, git commit, signing key, manifest hash).
- ``export --openlineage [--tenant T [--study S]] [--output FILE]``: every manifest as one OpenLineage
  RunEvent JSON per line, for Marquez / DataHub style consumers (the audit facet rides along).
- ``key``: the local signing key's id and file, and how to trust it on another machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from trialsynth.commands.verify_lineage import selected_partitions
from trialsynth.lineage import open_store
from trialsynth.lineage.keys import FileSigner, default_key_path
from trialsynth.markdown import md_table
from trialsynth.names import validate_name
from trialsynth.settings import get_settings


def _short(value: object, n: int = 12) -> str:
    return "" if value is None else str(value)[:n]


def _show(args: argparse.Namespace) -> int:
    tenant, study = validate_name(args.tenant, "tenant"), validate_name(args.study, "study")
    store = open_store(get_settings())
    records = store.read(tenant, study)
    if not records:
        raise FileNotFoundError(f"no lineage chain for {tenant}/{study} in {store.location}")
    rows = [{"seq": r["sequence"], "time": _short(r["time"], 19), "asset": r["asset_key"],
             "output sha256": _short(r["output_sha256"]), "inputs": len(r["input_sha256s"]),
             "git": _short(r["git_sha"]), "key": r["key_id"], "hash": _short(r["hash"])}
            for r in records if args.asset is None or r["asset_key"] == args.asset]
    print(f"lineage of {tenant}/{study} ({store.location}): {len(rows)} of {len(records)} manifests")
    print(md_table(rows))
    return 0


def _export(args: argparse.Namespace) -> int:
    store = open_store(get_settings())
    partitions = selected_partitions(store.partitions(), args.tenant, args.study) or store.partitions()
    n = 0
    with open(args.output, "w") if args.output else contextlib.nullcontext(sys.stdout) as out:
        for tenant, study in partitions:
            for event in store.read_events(tenant, study):
                out.write(json.dumps(event, sort_keys=True) + "\n")
                n += 1
    print(f"exported {n} OpenLineage RunEvents from {len(partitions)} chain(s)", file=sys.stderr)
    return 0


def _key(args: argparse.Namespace) -> int:
    settings = get_settings()
    signer = FileSigner(default_key_path(settings))
    print(f"signing key {signer.key_id}\nfile {signer.path} (created on first use, mode 0600)\n"
          f"to trust it elsewhere: lineage.trusted_key_ids: [{signer.key_id}] "
          f"(or TRIALSYNTH_LINEAGE__TRUSTED_KEY_IDS='[\"{signer.key_id}\"]')")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("lineage", help="show or export the signed lineage chains")
    actions = parser.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="one tenant/study's chain as a table")
    show.add_argument("--tenant", required=True)
    show.add_argument("--study", required=True)
    show.add_argument("--asset", help="only manifests of this asset key (e.g. bronze/dm, dbt/mart_safety)")
    show.set_defaults(func=_show)
    export = actions.add_parser("export", help="manifests as OpenLineage RunEvents, one JSON per line")
    export.add_argument("--openlineage", action="store_true", required=True, help="OpenLineage JSON lines (the format)")
    export.add_argument("--tenant")
    export.add_argument("--study")
    export.add_argument("--output", help="file to write (default: stdout)")
    export.set_defaults(func=_export)
    key = actions.add_parser("key", help="the local signing key's id and file (created when missing)")
    key.set_defaults(func=_key)
