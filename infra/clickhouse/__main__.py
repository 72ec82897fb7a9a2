"""``python -m infra.clickhouse --path DIR --port PORT [--password-env NAME] [--ready-file FILE]``:
serve a chDB data folder on 127.0.0.1:PORT (0 = a free port) until SIGTERM/SIGINT. A LOCAL STAND-IN
for a ClickHouse server (see infra/clickhouse/__init__.py)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from infra.clickhouse.engine import ChdbEngine
from infra.clickhouse.server import EndpointServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.clickhouse", description=__doc__)
    parser.add_argument("--path", type=Path, required=True, help="chDB data folder (created)")
    parser.add_argument("--port", type=int, default=8123, help="port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--user", default="default", help="the account name clients log in with")
    parser.add_argument("--password-env", default="", help="env var holding the password (unset/empty: none)")
    parser.add_argument("--ready-file", type=Path, help="written with the port once the endpoint serves")
    args = parser.parse_args(argv)
    engine = ChdbEngine(args.path)
    try:
        server = EndpointServer(engine, args.port, args.user,
                                os.environ.get(args.password_env, "") if args.password_env else "")
    except OSError as exc:
        engine.close()
        print(f"ClickHouse endpoint: cannot listen on 127.0.0.1:{args.port} ({exc.strerror}): stop what uses "
              "that port or choose another one.", file=sys.stderr)
        return 1
    port = server.server_address[1]
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"ClickHouse endpoint (chDB {engine.version}, local stand-in) on http://127.0.0.1:{port}, data in "
          f"{args.path}", flush=True)
    if args.ready_file:
        args.ready_file.write_text(f"{port}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
