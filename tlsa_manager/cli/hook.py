"""``hook CLIENT``: the post-renewal hook of an ACME client (docs/hooks.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tlsa_manager.cli.common import (
    DEFAULT_CONFIG,
    Subparsers,
    add_wait_lock,
    adopt_state_dir,
    emit_json,
    quiet,
    state_dir,
)
from tlsa_manager.cli.output import report_syncs
from tlsa_manager.errors import TlsaManagerError

#: seconds the hook polls the servers after publishing (sync: --propagation-timeout)
HOOK_PROPAGATION = 5.0


def add_parser(sub: Subparsers, name: str, help: str) -> None:
    p = sub.add_parser(name, help=help)
    p.add_argument("client", choices=["certbot", "acme.sh", "lego", "dehydrated", "generic"])
    p.add_argument("args", nargs="*", help='dehydrated: its event and arguments ("$@"); deploy_cert acts')
    p.add_argument(
        "--cert", help="generic: the full chain file (a bare cert.pem gets its issuer from the catalog)"
    )
    p.add_argument("--key", help="generic: the private key file")
    p.add_argument("--host", help="generic: the MX host name")
    add_wait_lock(p, 600.0, "wait this long for a running sync (default 600)")


def run(args: argparse.Namespace) -> int:
    import os

    from tlsa_manager.dehydrated import other_event

    event = other_event(args.args) if args.client == "dehydrated" else None
    if event is not None:  # dehydrated calls its hook for every event: only deploy_cert is ours
        if args.verbose:  # never stdout: dehydrated reads a CSR from it (generate_csr)
            note = f"tlsa-manager: hook dehydrated: {event}: nothing to do (it acts on deploy_cert)\n"
            sys.stderr.write(note)
        return 0
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.config import load_config
    from tlsa_manager.hooks import CoversNoHost, hosts_for, renewal_from, stage
    from tlsa_manager.nextkey import next_key_files
    from tlsa_manager.runner import open_hosts, sync_hosts

    config = load_config(Path(args.config) if args.config else DEFAULT_CONFIG)
    adopt_state_dir(args, config)
    renewal = renewal_from(args.client, os.environ, args.args, args.cert, args.key, args.host)
    try:
        specs = hosts_for(config, renewal)
    except CoversNoHost as exc:
        if not renewal.every_certificate:  # a hook given for this certificate: a mistake
            raise
        return _not_ours(args, exc)
    catalog = load_catalog(state_dir(args))
    # At most a few seconds for the servers to take the change: the hook returns at once
    # (an ACME client waits on it); gates decide on observations and the timer's next
    # sync deploys (docs/hooks.md), so a lagging secondary never blocks it.
    runs = open_hosts(
        config,
        [s.name for s in specs],
        False,
        catalog,
        propagation_timeout=HOOK_PROPAGATION,
        state_dir=state_dir(args),
    )
    # Staged under the ledger lock: never between another run's gate and its deploy.
    staged: list[tuple[str, Path | None]] = []
    reports = sync_hosts(
        runs,
        state_dir(args),
        lock_wait=args.wait_lock,
        prepare=lambda: staged.extend(
            (spec.name, stage(spec, renewal, catalog, next_key_files(spec, state_dir(args))))
            for spec in specs
        ),
    )
    for name, target in staged if not (args.json or args.quiet) else ():  # -q: no progress
        done = f"staged {target}" if target else f"{renewal.fullchain} is already live; nothing staged"
        sys.stdout.write(f"{name}: {done}\n")
    return report_syncs(args, runs, reports, hook=True)


def _not_ours(args: argparse.Namespace, exc: TlsaManagerError) -> int:
    """A certificate of another service, renewed by a client whose hook runs for every
    certificate (certbot, dehydrated): one line on stderr (none under -q), exit 0."""
    if not quiet():
        what = "another service's certificate; nothing done"
        sys.stderr.write(f"tlsa-manager: hook {args.client}: {exc.message}: {what}\n")
    if args.json:
        emit_json({"hosts": []})
    return 0
