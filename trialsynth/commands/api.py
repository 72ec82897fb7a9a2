"""``trialsynth api``: serve the product API, write its OpenAPI spec, mint a development token.

Examples::

    trialsynth api serve --host 127.0.0.1 --port 8000     # what `make api` runs
    trialsynth api --host 0.0.0.0 --port 8000             # the same (the Kubernetes Deployment's args)
    trialsynth api openapi [--check]                      # (re)write trialsynth/api/openapi.json
    trialsynth api token --tenant acme --sub alice [--scope synth:approve]   # HS256, embedded default only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    server.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p = subparsers.add_parser("api", parents=[server], help="serve the product API (and its spec, dev tokens)",
                              description=__doc__.split("\n\n")[0])
    p.set_defaults(func=serve)
    actions = p.add_subparsers(dest="action")
    actions.add_parser("serve", parents=[server], help="serve the API with uvicorn").set_defaults(func=serve)
    spec = actions.add_parser("openapi", help="write the committed OpenAPI spec")
    spec.add_argument("--check", action="store_true", help="only compare; exit 1 when it differs")
    spec.add_argument("--out", type=Path, help="write here instead of trialsynth/api/openapi.json")
    spec.set_defaults(func=openapi)
    token = actions.add_parser("token", help="print an HS256 token (embedded default only)")
    token.add_argument("--tenant", required=True)
    token.add_argument("--sub", required=True, help="the caller (a user or a system)")
    token.add_argument("--scope", action="append", default=[], help="e.g. synth:approve (repeatable)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    token.set_defaults(func=mint)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from trialsynth.api.app import create_app
    from trialsynth.api.observability import configure_json_logging

    configure_json_logging()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=10)
    return 0


def openapi(args: argparse.Namespace) -> int:
    from trialsynth.api.openapi import REGENERATE, SPEC_PATH, spec_text

    text = spec_text()
    target = args.out or SPEC_PATH
    if args.check:
        if not target.exists() or target.read_text() != text:
            print(f"{target} differs from the app's spec; regenerate with `{REGENERATE}`", file=sys.stderr)
            return 1
        print(f"{target} is up to date")
        return 0
    target.write_text(text)
    print(f"wrote {target}")
    return 0


def mint(args: argparse.Namespace) -> int:
    from trialsynth.api.auth import is_embedded, mint_token
    from trialsynth.settings import get_settings

    settings = get_settings()
    if settings.api.jwt_algorithm != "HS256" or not is_embedded(settings):
        raise ValueError("tokens are minted here only for the embedded default (HS256); "
                         "the identity provider issues RS256 tokens")
    print(mint_token(settings, args.tenant, args.sub, scopes=tuple(args.scope), ttl_s=args.ttl))
    return 0
