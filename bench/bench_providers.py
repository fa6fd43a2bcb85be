"""Benchmark: 2,000 owner names in one zone.

RFC 2136 against a real BIND primary (loopback): tlsa-manager's one UPDATE per
sync, against a loop of one `nsupdate` per owner (what scripts do today) and one
batched `nsupdate` (the server's own floor).  Cloudflare against the local fake:
requests counted.  Usage: python bench/bench_providers.py [--owners 2000]
Prints a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.name

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from tlsa_manager.provider import ChangeSet, OwnerChange
from tlsa_manager.records import Tlsa

from servers import ZONE, Bind


def owners(prefix: str, n: int) -> list[dns.name.Name]:
    return [dns.name.from_text(f"_25._tcp.{prefix}{i}.{ZONE}.") for i in range(n)]


def record(i: int) -> Tlsa:
    return Tlsa.from_text(f"3 1 1 {i:064x}")


def nsupdate(bind: Bind, lines: list[str]) -> None:
    script = f"server 127.0.0.1 {bind.primary.port}\nzone {ZONE}\n" + "".join(lines) + "send\n"
    subprocess.run(
        ["nsupdate", "-v", "-k", str(bind.key_file)], input=script.encode(), check=True, capture_output=True
    )


def bench_rfc2136(n: int) -> list[tuple[str, float, str]]:
    from tlsa_manager_providers.rfc2136 import Rfc2136Provider

    root = Path(tempfile.mkdtemp(prefix="tlsa-bench-"))
    bind = Bind(root).start()
    try:
        provider = Rfc2136Provider(
            {
                "server": bind.primary.endpoint,
                "tsig_key_file": str(bind.key_file),
                "zone": ZONE,
                "timeout": 120,
            }
        )
        rows = []
        names = owners("tm", n)
        changes = ChangeSet(
            tuple(OwnerChange(o, frozenset(), frozenset({record(i)}), ttl=300) for i, o in enumerate(names))
        )
        t = time.perf_counter()
        provider.apply(changes)
        ours = time.perf_counter() - t
        rows.append(("tlsa-manager, one CAS UPDATE", ours, f"{provider.writes} UPDATE"))
        before = provider.writes
        noop = ChangeSet(
            tuple(
                OwnerChange(o, frozenset({record(i)}), frozenset({record(i)}), ttl=300, expected_ttl=300)
                for i, o in enumerate(names)
            )
        )
        t = time.perf_counter()
        provider.apply(noop)
        rows.append(
            ("tlsa-manager, no-op sync", time.perf_counter() - t, f"{provider.writes - before} UPDATE")
        )
        floor_names = owners("batch", n)
        # The floor: one nsupdate process sending the same number of UPDATE messages.
        messages = Rfc2136Provider.chunks(list(changes.changes))
        t = time.perf_counter()
        lines: list[str] = []
        index = 0
        for chunk in messages:
            for _ in chunk:
                lines.append(f"update add {floor_names[index]} 300 IN TLSA {record(index)}\n")
                index += 1
            lines.append("send\n")
        nsupdate(bind, lines[:-1])
        floor = time.perf_counter() - t
        rows.append(("one batched nsupdate (floor)", floor, f"{len(messages)} UPDATE(s), 1 process"))
        loop_names = owners("loop", n)
        t = time.perf_counter()
        for i, o in enumerate(loop_names):
            nsupdate(bind, [f"update add {o} 300 IN TLSA {record(i)}\n"])
        loop = time.perf_counter() - t
        rows.append(("nsupdate per owner (scripts today)", loop, f"{n} UPDATEs"))
        rows.append(("speed-up vs loop / ratio to floor", loop / ours, f"{ours / floor:.2f}x the floor"))
        return rows
    finally:
        bind.stop()
        shutil.rmtree(root, ignore_errors=True)


def bench_cloudflare(n: int) -> list[tuple[str, float, str]]:
    import os

    from tlsa_manager_providers.cloudflare import CloudflareProvider

    from cloudflare_fake import FakeCloudflare

    fake = FakeCloudflare().start()
    try:
        fake.add_zone(ZONE)
        os.environ["BENCH_CF_TOKEN"] = fake.token
        provider = CloudflareProvider({"api_token_env": "BENCH_CF_TOKEN", "api_url": fake.base_url})
        names = owners("cf", n)
        provider.read(names[:1])
        fake.counts.clear()
        t = time.perf_counter()
        provider.apply(
            ChangeSet(
                tuple(
                    OwnerChange(o, frozenset(), frozenset({record(i)}), ttl=300) for i, o in enumerate(names)
                )
            )
        )
        first = time.perf_counter() - t
        lists, batches = (
            fake.counts["GET /zones/{id}/dns_records"],
            fake.counts["POST /zones/{id}/dns_records/batch"],
        )
        fake.counts.clear()
        t = time.perf_counter()
        provider.apply(
            ChangeSet(
                tuple(
                    OwnerChange(o, frozenset({record(i)}), frozenset({record(i)}), ttl=300, expected_ttl=300)
                    for i, o in enumerate(names)
                )
            )
        )
        noop = time.perf_counter() - t
        return [
            ("Cloudflare (fake), first sync", first, f"{lists} list pages, {batches} batch"),
            (
                "Cloudflare (fake), no-op sync",
                noop,
                f"{fake.counts['GET /zones/{id}/dns_records']} list, "
                f"{fake.counts['POST /zones/{id}/dns_records/batch']} batch",
            ),
        ]
    finally:
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--owners", type=int, default=2000)
    args = parser.parse_args()
    rows = bench_rfc2136(args.owners) + bench_cloudflare(args.owners)
    print(f"| {args.owners} owner names in one zone | seconds | requests |")
    print("| --- | ---: | --- |")
    for name, seconds, note in rows:
        value = f"{seconds:.1f}x" if name.startswith("speed-up") else f"{seconds:.3f}"
        print(f"| {name} | {value} | {note} |")


if __name__ == "__main__":
    main()
