"""Requests a first sync and a no-op sync of 100 owners make, per cloud provider, counted in the fakes.

Two figures per provider:
- ``sync``: the real command, ``tlsa-manager sync`` over a config of N hosts (one owner
  each, port 25), run in-process; the engine handles one host at a time (read, plan,
  apply, observe), so this is what an operator's run costs;
- ``floor``: one read of all N owners and one change set for all of them, the fewest
  requests the provider needs.

Run from the repository: ``python bench/cloud_requests.py --owners 100``.  The fakes'
own throttling is off here (deSEC's 50 reads a minute would otherwise dominate the time).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.name

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tlsa_manager.cli import main as cli_main  # noqa: E402
from tlsa_manager.provider import ChangeSet, OwnerChange, Provider  # noqa: E402
from tlsa_manager.records import Tlsa  # noqa: E402

import pki  # noqa: E402

ZONE = "example.test"


def write_config(base: Path, n: int, provider_toml: str) -> Path:
    """N hosts, each with its own ECDSA certificate under one test CA, ttl 3600."""
    ca = pki.make_ca("Bench CA", pki.make_key("p256"))
    lines = [f'state_dir = "{base / "state"}"', "[providers.cloud]", provider_toml.strip()]
    for i in range(n):
        host = f"mx{i}.{ZONE}"
        leaf = pki.make_leaf([host], ca, key=pki.make_key("p256"))
        path = pki.write(base / "certs" / f"{host}.pem", leaf.key_pem, leaf.pem, ca.pem)
        lines += [f'[hosts."{host}"]', 'provider = "cloud"', f'cert = "{path}"', "ttl = 3600",
                  "pin_backup_issuers = false"]
    config = base / "tlsa-manager.toml"
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o600)
    return config


def run_sync(config: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["--config", str(config), "sync", "--all"])
    if code != 0:
        raise SystemExit(f"sync failed ({code}): {err.getvalue().strip()}")


def measure(name: str, counts: Counter[str], config: Path, make: Callable[[], Provider], n: int,
            summary: Callable[[Counter[str]], str]) -> list[tuple[str, str, str]]:
    rows = []
    counts.clear()
    run_sync(config)
    first = Counter(counts)
    counts.clear()
    run_sync(config)
    rows.append((name, "sync of the hosts, first / no-op", f"{summary(first)} / {summary(Counter(counts))}"))
    provider = make()
    owners = [dns.name.from_text(f"_25._tcp.floor{i}.{ZONE}.") for i in range(n)]
    wanted = {o: Tlsa.from_text(f"3 1 1 {i:064x}") for i, o in enumerate(owners)}
    provider.read(owners[:1])  # zone lookup, cached for the run
    counts.clear()
    provider.read(owners)
    provider.apply(ChangeSet(tuple(OwnerChange(o, frozenset(), frozenset({r}), ttl=3600) for o, r in wanted.items())))
    first = Counter(counts)
    counts.clear()
    provider.read(owners)
    provider.apply(ChangeSet(tuple(OwnerChange(o, frozenset({r}), frozenset({r}), ttl=3600, expected_ttl=3600)
                                   for o, r in wanted.items())))
    rows.append((name, "floor: read + one change set, first / no-op", f"{summary(first)} / {summary(Counter(counts))}"))
    return rows


@contextlib.contextmanager
def route53(base: Path) -> Iterator[tuple[Counter[str], str, Callable[[], Provider]]]:
    import pytest

    from tlsa_manager_providers.route53 import Route53Provider

    from route53_fake import StrictRoute53

    monkeypatch = pytest.MonkeyPatch()
    fake = StrictRoute53(monkeypatch, pending_polls=1).start()
    try:
        zone_id = fake.add_zone(ZONE)
        os.environ["BENCH_AWS_SECRET"] = "bench-secret"
        settings = {"access_key_id": "AKIDBENCH", "secret_access_key_env": "BENCH_AWS_SECRET",
                    "endpoint_url": fake.endpoint, "change_poll_seconds": 0.01, "hosted_zone_id": zone_id}
        toml = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in {"type": "route53", **settings}.items())
        yield fake.counts, toml, lambda: Route53Provider(settings)
    finally:
        fake.stop()
        monkeypatch.undo()


@contextlib.contextmanager
def desec(base: Path) -> Iterator[tuple[Counter[str], str, Callable[[], Provider]]]:
    from tlsa_manager_providers.desec import DesecProvider

    from desec_fake import FakeDesec

    fake = FakeDesec().start()
    fake.limits = []  # counts, not deSEC's waiting, are measured here
    try:
        fake.add_domain(ZONE)
        os.environ["BENCH_DESEC_TOKEN"] = fake.token
        settings = {"api_token_env": "BENCH_DESEC_TOKEN", "api_url": fake.base_url}
        toml = f'type = "desec"\napi_token_env = "BENCH_DESEC_TOKEN"\napi_url = "{fake.base_url}"'
        yield fake.counts, toml, lambda: DesecProvider(settings)
    finally:
        fake.stop()


@contextlib.contextmanager
def hetzner(base: Path) -> Iterator[tuple[Counter[str], str, Callable[[], Provider]]]:
    from tlsa_manager_providers.hetzner import HetznerProvider

    from hetzner_fake import FakeHetzner

    fake = FakeHetzner().start()
    fake.action_polls = 0
    try:
        fake.add_zone(ZONE)
        os.environ["BENCH_HZ_TOKEN"] = fake.token
        settings = {"api_token_env": "BENCH_HZ_TOKEN", "api_url": fake.base_url, "poll_interval": 0.01}
        toml = (f'type = "hetzner"\napi_token_env = "BENCH_HZ_TOKEN"\napi_url = "{fake.base_url}"\n'
                "poll_interval = 0.01")
        yield fake.counts, toml, lambda: HetznerProvider(settings)
    finally:
        fake.stop()


def summarise(counts: Counter[str]) -> str:
    reads = sum(n for k, n in counts.items() if k.startswith(("GET", "list_", "get_")) and "change" not in k
                and "actions/" not in k)
    polls = counts.get("get_change", 0) + counts.get("GET /actions/{id}", 0)
    writes = sum(counts.values()) - reads - polls
    parts = [f"{reads} read", f"{writes} write"] + ([f"{polls} poll"] if polls else [])
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--owners", type=int, default=100)
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    for name, factory in (("Route 53 (moto, strict)", route53), ("deSEC (fake)", desec),
                          ("Hetzner (fake)", hetzner)):
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            with factory(base) as (counts, toml, make):
                config = write_config(base, args.owners, toml)
                rows += measure(name, counts, config, make, args.owners, summarise)
    print(f"| {args.owners} owners | what | requests (first / no-op) |")
    print("| --- | --- | --- |")
    for name, what, note in rows:
        print(f"| {name} | {what} | {note} |")


if __name__ == "__main__":
    main()
