"""``trialsynth demo``: generate a demo drop (and land the CDISC pilot when ../shared has it), let
the landing sensor pick the drops up, run the study pipeline for each new drop in the persistent
Dagster instance (so ``make ui`` shows the runs), and print a summary. Idempotent: a drop whose
content was already ingested successfully is skipped by its run key.

The terminal gets one line per pipeline step and the summary; each run's whole log (Dagster's events
and the dbt log stream) goes to ``<data dir>/logs/<run id>.log``, whose path the summary prints."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from trialsynth.settings import PROJECT_ROOT, get_settings

CDISC_SOURCE = PROJECT_ROOT.parent / "shared" / "data" / "cdiscpilot01" / "sdtm"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="generate, land and process the demo study end to end")
    p.add_argument("--tenant", default="acme")
    p.add_argument("--study", default="ACME-001")
    p.add_argument("--subjects", type=int, default=600)
    p.add_argument("--sites", type=int, default=12)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-cdisc", action="store_true", help="do not land the CDISC pilot as tenant 'cdisc'")
    p.set_defaults(func=run)


def land_cdisc_pilot(landing_dir: Path, source: Path = CDISC_SOURCE) -> Path | None:
    """Copy the CDISC pilot SDTM files into the landing zone as tenant cdisc (marker last)."""
    if not source.is_dir():
        print(f"CDISC pilot not found at {source}: landing only the generated study")
        return None
    target = landing_dir / "cdisc" / "CDISCPILOT01" / "cdiscpilot01-sdtm"
    if (target / "_READY").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for f in sorted(source.iterdir()):
        if f.is_file():
            shutil.copyfile(f, target / f.name)
    (target / "_READY").touch()
    return target


def run(args: argparse.Namespace) -> int:
    from trialsynth.dagster_home import ensure_dagster_home
    from trialsynth.demo.generator import generate_study, write_drop

    settings = get_settings()
    home = ensure_dagster_home(settings)
    t0 = time.perf_counter()
    print(f"[1/3] generating demo study {args.tenant}/{args.study}: {args.subjects} subjects, {args.sites} sites, seed {args.seed}")
    tables = generate_study(args.tenant, args.study, n_subjects=args.subjects, n_sites=args.sites, seed=args.seed)
    drop_dir = write_drop(tables, settings.landing_dir, args.tenant, args.study)
    print(f"      drop at {drop_dir}")
    if not args.no_cdisc:
        cdisc = land_cdisc_pilot(settings.landing_dir)
        if cdisc:
            print(f"      CDISC pilot (CDISC/PHUSE, MIT) landed at {cdisc}")

    from trialsynth.runner import process_landing_zone
    from trialsynth.storage import open_lake_store

    logs = settings.data_path / "logs"
    print(f"[2/3] landing sensor -> study pipeline runs (one line per step; whole logs in {logs})")
    outcomes = process_landing_zone(log=print, run_log_dir=logs)
    print("[3/3] summary")
    for o in outcomes:
        print(f"  {o.partition_key:<28} {o.status:<8} run {o.run_id or '-'}")
        for line in o.summary:
            print(f"      {line}")
        if o.log_path:
            print(f"      full log: {o.log_path}")
    wh, lineage, registry = settings.warehouse, settings.lineage, make_url(settings.registry_sqlalchemy_url)
    warehouse = (f"ClickHouse {wh.clickhouse_host}:{wh.clickhouse_port}, database {wh.clickhouse_database}"
                 if wh.target == "clickhouse" else settings.warehouse_path)
    print(f"\nfiles:  landing {settings.landing_dir}\n        raw zone {open_lake_store(settings, 'raw').location}\n"
          f"        lake (bronze, quarantine, analytics) {open_lake_store(settings).location}\n        warehouse {warehouse}\n"
          f"        lineage {f'S3 bucket {lineage.s3_bucket}' if lineage.store == 's3' else settings.lake_dir}\n"
          f"        Dagster storage {settings.dagster_storage}, model registry {registry.render_as_string(hide_password=True)}")
    print(f"Dagster UI: `make ui` then open http://127.0.0.1:3000 (DAGSTER_HOME={home})")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0 if all(o.status != "FAILURE" for o in outcomes) else 1
