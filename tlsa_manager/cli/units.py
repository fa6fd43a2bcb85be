"""``install-units``: the shipped systemd units, or a cron file (docs/monitoring.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tlsa_manager.cli.common import DEFAULT_STATE_DIR, Subparsers, progress
from tlsa_manager.errors import ExitCode, UsageError


def add_parser(sub: Subparsers, name: str, help: str) -> None:
    p = sub.add_parser(name, help=help)
    p.add_argument(
        "--dir", default="/etc/systemd/system", help="where to write them (default /etc/systemd/system)"
    )
    p.add_argument("--cron", action="store_true", help="print an /etc/cron.d file instead")


def run(args: argparse.Namespace) -> int:
    from tlsa_manager.units import TIMERS, command_path, cron_text, global_options, install

    config_state = None
    if args.config:
        # checked now, not by a timer every 15 minutes; its state_dir is where the units write
        from tlsa_manager.config import load_config

        config = load_config(Path(args.config).absolute())
        config_state = str(config.state_dir) if config.state_dir else None
    # the state directory this shell would use, as the commands pick it (--state-dir, the
    # config's state_dir, $TLSA_MANAGER_STATE_DIR): a timer does not see this shell's
    # environment, so the variable becomes --state-dir in the units
    explicit = args.state_dir or (None if config_state else os.environ.get("TLSA_MANAGER_STATE_DIR") or None)
    options = global_options(args.config, explicit)
    state = os.path.abspath(explicit) if explicit else config_state
    command = command_path() + options
    if args.cron:
        sys.stdout.write(cron_text(command))
        return ExitCode.OK
    if not args.dir:
        raise UsageError(
            "--dir is empty", "give the folder of the unit files, e.g. --dir /etc/systemd/system"
        )
    for path in install(Path(args.dir), command, state or str(DEFAULT_STATE_DIR)):
        progress(f"wrote {path}")
    progress(f"now: systemctl daemon-reload && systemctl enable --now {' '.join(TIMERS)}")
    return ExitCode.OK
