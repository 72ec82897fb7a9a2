"""``trialsynth demo-data``: generate the deterministic demo study and land it as a drop."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from trialsynth.demo.generator import (
    FORMATS,
    READY_MARKER,
    check_name,
    default_drop_id,
    generate_study,
    write_drop,
)
from trialsynth.settings import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo-data",
        help="generate a deterministic demo EDC study and land it as a drop",
        description="Generate SDTM-shaped domains (DM SV VS LB AE DS DV) and EDC operational tables "
        "(sites, queries, crf_pages) of a synthetic two-arm trial and write them to "
        "<landing>/<tenant>/<study>/<drop_id>/ followed by a _READY marker. The same arguments "
        "always give the same bytes; re-running with an existing identical drop writes nothing.",
    )
    parser.add_argument("--tenant", required=True, help="tenant name (letters, digits, '_', '.', '-')")
    parser.add_argument("--study", required=True, help="study id, also STUDYID (letters, digits, '_', '.', '-')")
    parser.add_argument("--subjects", type=int, default=600, help="subjects screened (DM rows); default 600")
    parser.add_argument("--sites", type=int, default=12, help="number of sites; default 12")
    parser.add_argument("--seed", type=int, default=7, help="random seed; default 7")
    parser.add_argument("--format", choices=FORMATS, default="csv",
                        help="file format (xpt: SDTM domains as SAS transport, operational tables as csv)")
    parser.add_argument("--drop-id", default=None,
                        help="drop folder name; default demo-s<seed>-n<subjects>-k<sites>[-<format>]")
    parser.add_argument("--landing", type=Path, default=None,
                        help="landing directory; default the configured landing_dir (data/landing)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    tenant = check_name(args.tenant, "--tenant")
    study = check_name(args.study, "--study")
    drop_id = check_name(args.drop_id or default_drop_id(args.seed, args.subjects, args.sites, args.format),
                         "--drop-id")
    landing = args.landing or get_settings().landing_dir
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    existed = (landing / tenant / study / drop_id / READY_MARKER).exists()
    started = time.perf_counter()
    tables = generate_study(tenant, study, n_subjects=args.subjects, n_sites=args.sites, seed=args.seed)
    generated = time.perf_counter() - started
    try:
        path = write_drop(tables, landing, tenant, study, drop_id=drop_id, fmt=args.format)
    except FileExistsError as exc:  # the CLI reports ValueErrors as clean errors
        raise ValueError(str(exc)) from exc
    state = "unchanged (identical drop already landed, nothing written)" if existed else "written"
    print(f"demo drop {state}: {path}")
    print(f"  generated in {generated:.1f} s, total {time.perf_counter() - started:.1f} s")
    for name, frame in tables.items():
        print(f"  {name:<10} {len(frame):>10,} rows")
    return 0
