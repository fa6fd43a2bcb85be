"""``install-units``: the shipped systemd units, or a cron file (docs/monitoring.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tlsa_manager.cli.common import Subparsers, progress
from tlsa_manager.errors import ExitCode, UsageError


def add_parser(sub: Subparsers, name: str, help: str) -> None:
    p = sub.add_parser(name, help=help)
    p.add_argument(
        "--dir", default="/etc/systemd/system", help="where to write them (default /etc/systemd/system)"
    )
    p.add_argument("--cron", action="store_true", help="print an /etc/cron.d file instead")


def run(args: argparse.Namespace) -> int:
    from tlsa_manager.units import DEFAULT_STATE_DIR, TIMERS, command_path, cron_text, global_options, install

    options = global_options(args.config, args.state_dir)
    state = options[options.index("--state-dir") + 1] if args.state_dir else None
    if args.config:
        # checked now, not by a timer every 15 minutes; its state_dir is where the units write
        from tlsa_manager.config import load_config

        config = load_config(Path(options[1]))
        state = state or (str(config.state_dir) if config.state_dir else None)
    command = command_path() + options
    if args.cron:
        sys.stdout.write(cron_text(command))
        return ExitCode.OK
    if not args.dir:
        raise UsageError(
            "--dir is empty", "give the folder of the unit files, e.g. --dir /etc/systemd/system"
        )
    for path in install(Path(args.dir), command, state or DEFAULT_STATE_DIR):
        progress(f"wrote {path}")
    progress(f"now: systemctl daemon-reload && systemctl enable --now {' '.join(TIMERS)}")
    return ExitCode.OK
