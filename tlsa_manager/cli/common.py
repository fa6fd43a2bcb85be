"""What several commands share: output helpers, the state directory, the configuration
(a file or one-off flags), ``--at``, host flags and checked option values.

Nothing heavy at module level: every command module imports this one.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from tlsa_manager.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from tlsa_manager.cli.main import CommandParser
    from tlsa_manager.config import Config

#: what each command module's ``add_parser`` adds its parser to
Subparsers: TypeAlias = "argparse._SubParsersAction[CommandParser]"

DEFAULT_STATE_DIR = Path("/var/lib/tlsa-manager")
DEFAULT_CONFIG = Path("/etc/tlsa-manager/config.toml")


#: ``-q``: set once by main before the command runs (:func:`set_quiet`)
_quiet = False


def set_quiet(on: bool) -> None:
    """``-q``: from now on :func:`warn` and :func:`progress` write nothing (docs/cli.md)."""
    global _quiet
    _quiet = on


def quiet() -> bool:
    """Whether ``-q`` was given: only errors, and hazards that set the exit code, on
    stderr; no per-host progress, notes or warnings (a cron job mails any output)."""
    return _quiet


def progress(line: str) -> None:
    """A line of a command's human-readable report on stdout, left out under ``-q``."""
    if not _quiet:
        sys.stdout.write(line + "\n")


def emit_json(document: object) -> None:
    import json

    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")


def write_lines(lines: list[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))


def warn(message: str) -> None:
    """A warning never changes the exit code; ``-q`` leaves it out."""
    if not _quiet:
        sys.stderr.write(f"warning: {message}\n")


def state_dir(args: argparse.Namespace) -> Path:
    """--state-dir, then $TLSA_MANAGER_STATE_DIR, then /var/lib/tlsa-manager."""
    if getattr(args, "state_dir", None):
        path = Path(args.state_dir)
    else:
        env = os.environ.get("TLSA_MANAGER_STATE_DIR")
        path = Path(env) if env else DEFAULT_STATE_DIR
    if path.exists() and not path.is_dir():
        raise UsageError(
            f"{path}: the state directory is not a directory",
            "point --state-dir (or state_dir, $TLSA_MANAGER_STATE_DIR) at a directory; it is made if missing",
        )
    return path


def adopt_state_dir(args: argparse.Namespace, config: Config) -> None:
    """The configuration's ``state_dir`` counts unless --state-dir was given."""
    if config.state_dir and not getattr(args, "state_dir", None):
        args.state_dir = str(config.state_dir)


def has_config(args: argparse.Namespace) -> bool:
    """Whether a configuration file or one-off flags say which hosts there are."""
    return bool(args.config or getattr(args, "cert", None) or DEFAULT_CONFIG.exists())


def load_cli_config(args: argparse.Namespace, *, publishing: bool = True) -> Config:
    """The configuration file, or a one-off configuration from flags (without
    ``publishing``, as for ``export``, no provider is needed: nothing is published)."""
    from tlsa_manager.config import config_from_flags, load_config

    flag_cert = getattr(args, "cert", None)
    _refuse_mixed_flags(args)
    if args.config:
        return load_config(Path(args.config))
    if not flag_cert:
        if DEFAULT_CONFIG.exists():
            return load_config(DEFAULT_CONFIG)
        raise UsageError(
            "no configuration: give --config FILE, or --cert and a provider",
            "e.g. sync mail.example.com --cert fullchain.pem --zone-file db.example.com",
        )
    hosts = getattr(args, "hosts", [])
    if len(hosts) != 1:
        raise UsageError("with --cert, name exactly one host", "e.g. sync mail.example.com --cert ...")
    provider = args.provider or ("zonefile" if args.zone_file else None)
    if provider is None and not publishing:
        provider = "none"  # export prints the records; no provider is ever opened
    if provider is None:
        raise UsageError("with --cert, say where to publish", "add --zone-file FILE or --provider NAME")
    from tlsa_manager.secrets import parse_provider_options

    settings: dict[str, Any] = parse_provider_options(args.provider_option or [])
    if args.zone_file:
        settings["zone_file"] = args.zone_file
    extra: dict[str, Any] = {}
    if args.next_key:
        extra["next_keys"] = args.next_key
    if args.nameserver:
        extra["nameservers"] = args.nameserver
    if args.ttl is not None:
        extra["ttl"] = args.ttl
    if args.record:
        extra["records"] = args.record
    if args.staged_dir:
        extra["staged_dir"] = args.staged_dir
    return config_from_flags(
        hosts[0], certs=flag_cert, key=args.key, provider=provider, provider_settings=settings, extra=extra
    )


#: the flags of a one-off configuration (``add_host_flags``), as the user types them
ONE_OFF_FLAGS = {
    "cert": "--cert",
    "key": "--key",
    "next_key": "--next-key",
    "zone_file": "--zone-file",
    "provider": "--provider",
    "provider_option": "--provider-option",
    "nameserver": "--nameserver",
    "ttl": "--ttl",
    "record": "--record",
    "staged_dir": "--staged-dir",
}


def _refuse_mixed_flags(args: argparse.Namespace) -> None:
    """One-off flags describe a host without a file: next to ``--config`` (or, without
    ``--cert``, next to the default file) they would be ignored, so they are refused.
    Applying them over the file instead would make a one-off run publish what the next
    timer run takes back (a TTL or kind change each way)."""
    given = [flag for dest, flag in ONE_OFF_FLAGS.items() if getattr(args, dest, None) not in (None, [])]
    if args.config and given:
        raise UsageError(
            f"{given[0]} cannot be combined with --config: it is for a one-off configuration without a file",
            f"set it in {args.config} (see docs/config.md), or leave out --config",
        )
    if given and not getattr(args, "cert", None):
        raise UsageError(
            f"{given[0]} needs --cert (a one-off configuration without a file)",
            f"with a configuration file ({DEFAULT_CONFIG}), set it there",
        )


def configured(args: argparse.Namespace, *, publishing: bool = True) -> Config:
    """:func:`load_cli_config`, its ``state_dir`` adopted (:func:`adopt_state_dir`)."""
    config = load_cli_config(args, publishing=publishing)
    adopt_state_dir(args, config)
    return config


def at_time(args: argparse.Namespace) -> float | None:
    """``--at``: an ISO 8601 time with a zone, or ``+DURATION`` from now; None without it."""
    import time
    from datetime import datetime

    from tlsa_manager.durations import parse_duration

    value = getattr(args, "at", None)
    if value is None:
        return None
    forms = (
        "use an ISO 8601 time with a zone (2026-12-01T12:00Z), "
        "+DURATION (6 h from now: +6h) or -DURATION (3 h ago: -3h)"
    )
    if value[:1] in "+-" and value[1:2].isdigit():
        sign = 1 if value[0] == "+" else -1
        try:
            return time.time() + sign * parse_duration(value[1:], "--at")
        except ConfigError:
            raise UsageError(f"--at {value!r} is not a time", forms) from None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at {value!r} is not a time", forms) from None
    if parsed.tzinfo is None:
        raise UsageError(f"--at {value!r} has no time zone", "append Z for UTC") from None
    return parsed.timestamp()


def add_host_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("hosts", nargs="*", metavar="HOST", help="hosts to handle (default: all configured)")
    p.add_argument("--all", action="store_true", help="every configured host")
    g = p.add_argument_group("one-off configuration (no config file)")
    g.add_argument("--cert", action="append", help="chain file the MTA serves (repeat for RSA + ECDSA)")
    g.add_argument("--key", help="the key of the first --cert, if not in the same file")
    g.add_argument("--next-key", action="append", help="a pre-generated next key to pre-publish")
    g.add_argument("--zone-file", help="publish by editing this zone file (provider zonefile)")
    g.add_argument("--provider", help="provider type (zonefile, rfc2136, cloudflare, or a plugin)")
    g.add_argument("--provider-option", action="append", metavar="KEY=VALUE", help="a provider setting")
    g.add_argument("--nameserver", action="append", metavar="HOST:PORT", help="authoritative server to poll")
    g.add_argument("--ttl", type=int, help="TTL of the TLSA RRset (default 3600)")
    g.add_argument("--record", action="append", metavar="KIND", help='record kind, e.g. "3 1 1" (repeatable)')
    g.add_argument("--staged-dir", help="folder of staged chains (key + chain files)")


def add_wait_lock(p: argparse.ArgumentParser, default: float, help: str) -> None:
    p.add_argument("--wait-lock", type=seconds(0.0), default=default, metavar="SECONDS", help=help)


# ---------------------------------------------------------------- checked option values


#: the longest timeout, wait or margin taken (115 days): 1e10 s overflows time_t in
#: socket timeouts and datetime arithmetic
LONGEST = 10_000_000.0


def seconds(lowest: float, *, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds (or days) not below ``lowest`` (with
    ``above``, greater than it) and at most :data:`LONGEST`.  NaN, infinity or 1e308
    would reach timers, sockets and thread pools."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < lowest or (above and value == lowest) or value > LONGEST:
            bound = f"greater than {lowest:g}" if above else f"at least {lowest:g}"
            raise argparse.ArgumentTypeError(f"{text!r} must be a number {bound} and at most {LONGEST:g}")
        return value

    return parse


def bounded_int(lowest: int, highest: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``lowest`` to ``highest``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lowest <= value <= highest:
            raise argparse.ArgumentTypeError(f"{value} is outside {lowest}-{highest}")
        return value

    return parse
