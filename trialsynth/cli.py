"""``trialsynth`` command line. Each sub-command lives in ``trialsynth/commands/<name>.py`` (the
command name with '-' for '_') and exposes ``register(subparsers)``; they are discovered here, so
features add commands without editing this file. Only the invoked command's module is imported,
so one command's heavy imports (torch, scipy) never slow another down."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from trialsynth import commands


def _command_modules(argv: list[str]) -> list[str]:
    available = sorted(m.name for m in pkgutil.iter_modules(commands.__path__))
    first = next((a for a in argv if not a.startswith("-")), None)
    wanted = first.replace("-", "_") if first else None
    return [wanted] if wanted in available else available


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trialsynth", description="trialsynth: clinical-trial data lakehouse (ingest, imputation, synthesis, evidence, design)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in _command_modules(sys.argv[1:] if argv is None else argv):
        importlib.import_module(f"{commands.__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    try:
        # `keys` is how a failing key check is diagnosed (status) and fixed; `doctor` reports broken settings itself
        if args.command not in ("keys", "doctor"):
            from trialsynth.security import check_keys
            from trialsynth.settings import get_settings

            check_keys(get_settings())  # refuse to start on a missing or wrong tenant key (docs/security.md)
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"trialsynth {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
