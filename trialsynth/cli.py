"""``trialsynth`` command line. Each sub-command lives in ``trialsynth/commands/<name>.py`` and
exposes ``register(subparsers)``; they are discovered here so features add commands without
editing this file."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from trialsynth import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trialsynth", description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"trialsynth {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
