"""``key next HOST`` / ``key csr HOST``: the tool-managed next keys (docs/key-rollover.md)."""

from __future__ import annotations

import argparse
import sys

from tlsa_manager.cli.common import Subparsers, configured, emit_json, quiet, state_dir
from tlsa_manager.errors import ExitCode


def add_parser(sub: Subparsers, name: str, help: str) -> None:
    p = sub.add_parser(name, help=help)
    p.add_argument(
        "action", choices=["next", "csr"], help="next: make the missing next keys; csr: print a CSR"
    )
    p.add_argument("host", help="the configured MX host")
    p.add_argument("--type", action="append", choices=["ecdsa", "rsa"], help="key type (repeat; csr: one)")
    p.add_argument("--name", action="append", default=[], help="csr: a further DNS name (repeat)")
    p.set_defaults(hosts=[], cert=None)


def run(args: argparse.Namespace) -> int:
    from tlsa_manager.nextkey import key_command

    config = configured(args)
    report = key_command(config.host(args.host), state_dir(args), args.action, args.type, args.name)
    if args.json:
        emit_json(report.as_dict())
        return ExitCode.OK
    if report.csr is not None:
        sys.stdout.flush()
        sys.stdout.buffer.write(report.csr)
    for line in report.lines() if not quiet() else ():
        (sys.stderr if report.csr is not None else sys.stdout).write(line + "\n")
    return ExitCode.OK
