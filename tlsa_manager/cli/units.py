"""``install-units``: the shipped systemd units, or a cron file (docs/monitoring.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tlsa_manager.cli.common import Subparsers
from tlsa_manager.errors import ExitCode, UsageError


def add_parser(sub: Subparsers, name: str, help: str) -> None:
    p = sub.add_parser(name, help=help)
    p.add_argument(
        "--dir", default="/etc/systemd/system", help="where to write them (default /etc/systemd/system)"
    )
    p.add_argument("--cron", action="store_true", help="print an /etc/cron.d file instead")


def run(args: argparse.Namespace) -> int:
    from tlsa_manager.units import TIMERS, cron_text, install

    if args.cron:
        sys.stdout.write(cron_text())
        return ExitCode.OK
    if not args.dir:
        raise UsageError(
            "--dir is empty", "give the folder of the unit files, e.g. --dir /etc/systemd/system"
        )
    for path in install(Path(args.dir)):
        sys.stdout.write(f"wrote {path}\n")
    sys.stdout.write(f"now: systemctl daemon-reload && systemctl enable --now {' '.join(TIMERS)}\n")
    return ExitCode.OK
