"""The ``agent-supervisor`` command (minimal: ``serve``; the rest of the commands come next)."""
from __future__ import annotations

import argparse
import logging
import sys

from .exceptions import SupervisorError


def _serve(args: argparse.Namespace) -> int:
    from api.server import run_server  # the core stays free of Flask until it is needed

    from .config import load_config

    config = load_config(
        args.config, host=args.host, port=args.port, data_dir=args.data_dir, token=args.token,
        insecure=True if args.insecure else None,
    )

    def ready(url: str) -> None:
        print(f"agent-supervisor: serving on {url}", flush=True)

    run_server(config, ready=ready, demo=args.demo)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent-supervisor")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--data-dir")
    serve.add_argument("--config")
    serve.add_argument("--token")
    serve.add_argument("--insecure", action="store_true")
    serve.add_argument("--demo", action="store_true", help="also run the demo agent (scripts/demo_agent.py)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _serve(args)
    except SupervisorError as exc:
        print(f"agent-supervisor: {exc}", file=sys.stderr)
        return 2
