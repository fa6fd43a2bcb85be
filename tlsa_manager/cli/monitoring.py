"""``metrics`` and ``exporter``: Prometheus metrics of the live check and the state
(docs/monitoring.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tlsa_manager.cli.common import Subparsers, add_host_flags, configured, quiet, seconds, state_dir
from tlsa_manager.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from tlsa_manager.metrics import Metric


def add_parser(sub: Subparsers, name: str, help: str) -> None:
    p = sub.add_parser(name, help=help)
    add_host_flags(p)
    p.add_argument("--resolver", help="validating resolver ADDR[:PORT] for the live check")
    p.add_argument(
        "--timeout", type=seconds(0.0, above=True), default=10.0, help="seconds per connection or query"
    )
    p.add_argument("--no-check", action="store_true", help="state only: no live check (offline)")
    if name == "metrics":
        p.add_argument(
            "--output", required=True, metavar="FILE", help="the .prom file (written atomically), or -"
        )
    else:
        p.add_argument(
            "--listen", default="127.0.0.1:9469", metavar="ADDR:PORT", help="default 127.0.0.1:9469"
        )
        p.add_argument(
            "--interval", type=seconds(0.0), default=300.0, help="collect at most this often (seconds)"
        )


def run(args: argparse.Namespace) -> int:
    return metrics(args) if args.command == "metrics" else exporter(args)


def source(args: argparse.Namespace) -> Callable[[], list[Metric]]:
    import functools

    from tlsa_manager.metrics import gather

    config = configured(args)
    return functools.partial(
        gather,
        config,
        state_dir(args),
        list(args.hosts),
        live=not args.no_check,
        resolver=args.resolver,
        timeout=args.timeout,
    )


def metrics(args: argparse.Namespace) -> int:
    from tlsa_manager.fsutil import atomic_write
    from tlsa_manager.metrics import render

    if not args.output:
        raise UsageError("--output is empty", "give the .prom file, or - for stdout")
    data = render(source(args)())
    if args.output == "-":
        sys.stdout.write(data.decode())
    else:
        atomic_write(Path(args.output), data, 0o644)
    return ExitCode.OK


def exporter(args: argparse.Namespace) -> int:
    from tlsa_manager.metrics import CachedSource, serve

    server, thread = serve(args.listen, CachedSource(source(args), args.interval))
    if not quiet():
        sys.stderr.write(f"tlsa-manager: serving http://{args.listen}/metrics\n")
        sys.stderr.flush()
    try:
        thread.join()
    finally:
        server.shutdown()
    return ExitCode.OK
