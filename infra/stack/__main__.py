"""``python -m infra.stack up|down|status [--state DIR]``: the scale-out stack on 127.0.0.1 (what
``make stack-up`` / ``make stack-down`` run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infra.stack.services import DEFAULT_STATE, StackError, start_all, status, stop_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help="state folder (default: .stack/)")
    parser.add_argument("--pg-port", type=int, help="PostgreSQL port (default: as last time if free, else a free one)")
    parser.add_argument("--s3-port", type=int, help="SeaweedFS S3 port (same default)")
    parser.add_argument("--clickhouse-port", type=int, help="ClickHouse endpoint port (same default)")
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            start_all(args.state, args.pg_port, args.s3_port, args.clickhouse_port)
        elif args.action == "down":
            stop_all(args.state)
        else:
            for name, line in status(args.state).items():
                print(f"{name:<11} {line}")
    except StackError as exc:
        print(f"stack {args.action}: {exc}", file=sys.stderr)
        if args.action == "up":
            print("Services already started keep running: `make stack-down` stops them.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
