"""Requests a first sync and a no-op sync of N owner names in one zone make, per provider.

Each provider is driven as a sync drives it: read the owners, then apply the change
set (add two records per owner the first time; nothing the second).  Two shapes:
"one call" (every owner in one read and one apply, as a batched run of many hosts in
one zone does) and "per host" (one read and one apply per owner, as a run of N hosts
with one port each does today).  ``provider.requests`` counts every backend request
(DNS messages, HTTP calls, zone-file reads and rewrites) and ``provider.writes`` the
writes; the Cloudflare fake's own per-endpoint count is the cross-check.

Backends: RFC 2136 against a real BIND, PowerDNS against a real pdns_server (API),
Cloudflare, deSEC and Hetzner against their local fakes, Route 53 against moto's server
made strict (tests/route53_fake.py), a zone file in a temp dir.  Propagation polling
(DNS queries to every authoritative server) is the core's and the same for all, so it
is not counted here.  Usage: python bench/bench_requests.py [--owners 100]
Prints a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.name

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from tlsa_manager.provider import ChangeSet, OwnerChange, Provider
from tlsa_manager.records import Tlsa

from servers import ZONE, Bind, PowerDns

Row = tuple[str, str, int, int, float]


def owners(prefix: str, n: int) -> list[dns.name.Name]:
    return [dns.name.from_text(f"_25._tcp.{prefix}{i}.{ZONE}.") for i in range(n)]


def wanted(i: int) -> frozenset[Tlsa]:
    return frozenset({Tlsa.from_text(f"3 1 1 {i:064x}"), Tlsa.from_text(f"2 1 1 {i + 10**6:064x}")})


def sync(provider: Provider, names: list[dns.name.Name], offset: int) -> None:
    """What a sync does with the provider: read, then apply what differs (maybe nothing)."""
    current = provider.read(names)
    provider.apply(
        ChangeSet(
            tuple(
                OwnerChange(
                    o,
                    current[o].records,
                    wanted(offset + i) - current[o].records,
                    current[o].records - wanted(offset + i),
                    ttl=300,
                    expected_ttl=current[o].ttl,
                )
                for i, o in enumerate(names)
            )
        )
    )


def measure(label: str, make: Callable[[], Provider], n: int) -> list[Row]:
    rows: list[Row] = []
    for shape in ("one call", "per host"):
        provider = make()
        names = owners(f"{shape[0]}{os.urandom(2).hex()}-", n)
        for run in ("first sync", "no-op sync"):
            before_requests, before_writes = provider.requests, provider.writes
            t = time.perf_counter()
            if shape == "one call":
                sync(provider, names, 0)
            else:
                for i, name in enumerate(names):
                    sync(provider, [name], i)
            rows.append(
                (
                    label,
                    f"{run}, {shape}",
                    provider.requests - before_requests,
                    provider.writes - before_writes,
                    time.perf_counter() - t,
                )
            )
        provider.close()
    return rows


@contextmanager
def bind_server() -> Iterator[Bind]:
    root = Path(tempfile.mkdtemp(prefix="tlsa-bench-"))
    bind = Bind(root)
    try:
        yield bind.start()
    finally:
        bind.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def pdns_server() -> Iterator[PowerDns]:
    root = Path(tempfile.mkdtemp(prefix="tlsa-bench-pdns-"))
    server = PowerDns(root)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def cloud_rows(n: int) -> list[Row]:
    """Route 53 (moto made strict), deSEC and Hetzner (local fakes); each fake's own count
    of the requests it served is the cross-check of ``provider.requests``."""
    import pytest

    from tlsa_manager_providers.desec import DesecProvider
    from tlsa_manager_providers.hetzner import HetznerProvider
    from tlsa_manager_providers.route53 import Route53Provider

    from desec_fake import FakeDesec
    from hetzner_fake import FakeHetzner
    from route53_fake import StrictRoute53

    rows: list[Row] = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        r53 = StrictRoute53(monkeypatch).start()
        try:
            zone_id = r53.add_zone(ZONE)
            os.environ["BENCH_AWS_SECRET"] = "bench-secret"
            settings = {
                "access_key_id": "AKIDBENCH",
                "secret_access_key_env": "BENCH_AWS_SECRET",
                "endpoint_url": r53.endpoint,
                "change_poll_seconds": 0.01,
            }
            r53.counts.clear()
            found = measure("route53 (moto, strict)", lambda: Route53Provider(settings), n)
            with_id = {**settings, "hosted_zone_id": zone_id}
            found += measure("route53, hosted_zone_id set", lambda: Route53Provider(with_id), n)
            assert sum(r[2] for r in found) == sum(r53.counts.values()), (found, r53.counts)
            rows += found
        finally:
            r53.stop()
    desec = FakeDesec().start()
    desec.limits = []  # counted here; deSEC's own limits are in docs/provider-desec.md
    try:
        desec.add_domain(ZONE, minimum_ttl=60)  # the bench's TTL is 300
        os.environ["BENCH_DESEC_TOKEN"] = desec.token
        settings = {"api_token_env": "BENCH_DESEC_TOKEN", "api_url": desec.base_url}
        found = measure("desec (local fake)", lambda: DesecProvider(settings), n)
        assert sum(r[2] for r in found) == sum(desec.counts.values()), (found, desec.counts)
        rows += found
    finally:
        desec.stop()
    hetzner = FakeHetzner().start()
    hetzner.action_polls = 0  # each write's action is done at the first poll
    try:
        hetzner.add_zone(ZONE)
        os.environ["BENCH_HZ_TOKEN"] = hetzner.token
        settings = {"api_token_env": "BENCH_HZ_TOKEN", "api_url": hetzner.base_url, "poll_interval": 0.01}
        found = measure("hetzner (local fake)", lambda: HetznerProvider(settings), n)
        assert sum(r[2] for r in found) == sum(hetzner.counts.values()), (found, hetzner.counts)
        rows += found
    finally:
        hetzner.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--owners", type=int, default=100)
    n = parser.parse_args().owners
    rows: list[Row] = []

    from tlsa_manager_providers.rfc2136 import Rfc2136Provider

    with bind_server() as bind:
        settings = {"server": bind.primary.endpoint, "tsig_key_file": str(bind.key_file)}
        rows += measure("rfc2136 (BIND)", lambda: Rfc2136Provider(settings), n)
        rows += measure("rfc2136 (BIND), zone set", lambda: Rfc2136Provider({**settings, "zone": ZONE}), n)

    from tlsa_manager_providers.powerdns import PowerDnsProvider

    with pdns_server() as pdns:
        rows += measure(
            "powerdns (pdns_server API)",
            lambda: PowerDnsProvider({"api_url": pdns.api_url, "api_key_file": str(pdns.key_file)}),
            n,
        )

    from tlsa_manager_providers.cloudflare import CloudflareProvider

    from cloudflare_fake import FakeCloudflare

    fake = FakeCloudflare().start()
    try:
        fake.add_zone(ZONE)
        os.environ["BENCH_CF_TOKEN"] = fake.token
        fake.counts.clear()
        cf_rows = measure(
            "cloudflare (local fake)",
            lambda: CloudflareProvider({"api_token_env": "BENCH_CF_TOKEN", "api_url": fake.base_url}),
            n,
        )
        assert sum(r[2] for r in cf_rows) == sum(fake.counts.values()), (cf_rows, fake.counts)
        rows += cf_rows
    finally:
        fake.stop()

    rows += cloud_rows(n)

    from tlsa_manager_providers.zonefile import ZoneFileProvider

    root = Path(tempfile.mkdtemp(prefix="tlsa-bench-zone-"))
    try:

        def zonefile() -> Provider:
            path = root / f"db.{ZONE}.{os.urandom(2).hex()}"
            path.write_text(
                f"$ORIGIN {ZONE}.\n$TTL 300\n@ IN SOA ns1 hostmaster ( 2026112501 60 30 3600 30 )\n"
                "  IN NS ns1\nns1 IN A 127.0.0.1\n"
            )
            return ZoneFileProvider({"zone_file": str(path)})

        rows += measure("zonefile (reads + rewrites)", zonefile, n)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"| provider | {n} owner names in one zone | requests | writes | seconds |")
    print("| --- | --- | ---: | ---: | ---: |")
    for label, what, requests, writes, seconds in rows:
        print(f"| {label} | {what} | {requests} | {writes} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
