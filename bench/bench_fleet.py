"""Benchmark: `tlsa-manager sync` of a fleet, timed as a user runs it.

N hosts in one zone, each with its own certificate file, published by RFC 2136 to a
real BIND primary with a secondary (both listed as nameservers, so every run waits
for and observes both).  The command runs as a subprocess,
``python -m tlsa_manager --config C sync``, and is timed end to end (wall and CPU of
the child, peak RSS from wait4).  In the same run, beside it, the two baselines:

- a per-host ``nsupdate`` loop (what scripts do today), 4 records per host;
- one batched ``nsupdate`` of the same records in the fewest messages, plus the time
  until the secondary serves the primary's serial (the server's floor).

What the servers saw comes from ``rndc stats`` (UPDATEs, queries by type).  Then the
zone-file provider: N hosts in a zone of 5,000 other lines, against appending the
records and one ``named-checkzone``.

Usage: python bench/bench_fleet.py [--hosts 100 1000] [--zonefile 1000] [--big 10000] [--runs 3]
Prints Markdown tables for docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rdatatype  # noqa: E402

import pki  # noqa: E402
from servers import ZONE, Bind  # noqa: E402

LE = REPO / "tlsa_manager" / "data" / "letsencrypt"
RECORDS_PER_HOST = 4  # 3 1 1 of the leaf, 2 1 1 of the three issuers of the key type


@dataclass
class Timed:
    wall: float
    cpu: float
    peak_mib: float
    code: int
    out: str
    err: str


#: whether :func:`compile_once` ran (False: the children compile our modules each run)
COMPILED = False


def compile_once(root: Path) -> None:
    """Compile the package's modules once, in place (``__pycache__`` beside the sources,
    as pip byte-compiles an installed package), so each timed run does not compile the
    ~80 modules from source again: with PYTHONDONTWRITEBYTECODE set (as on the project's
    machine) that is 0.15-0.2 s of CPU per command that no installation pays.

    Not with PYTHONPYCACHEPREFIX: a prefix moves the cache of *every* module there, so
    the children compiled the standard library and dnspython/cryptography again on every
    run (0.75-0.85 s of CPU, 200 modules; the figures from 04:40 to 07:05 on 2026-11-26
    carry that).  ``root`` is unused and kept for the callers."""
    global COMPILED
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "tlsa_manager"), str(REPO / "providers")],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    COMPILED = True


def run_cli(config: Path, *args: str) -> Timed:
    """The command as a user runs it; CPU and peak RSS of that child alone (wait4)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "tlsa_manager", "--config", str(config), *args],
            stdout=out,
            stderr=err,
            env=env,
        )
        _pid, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Timed(
            wall,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024,
            process.returncode,
            out.read().decode(),
            err.read().decode(),
        )


def make_fleet(directory: Path, prefix: str, n: int) -> list[tuple[str, Path]]:
    """N hosts, each a certificate file (key, leaf, LE-shaped chain) of its own."""
    names = [f"{prefix}{i}.{ZONE}" for i in range(n)]
    return list(zip(names, pki.fleet(directory, names, (LE / "ye1.pem").read_bytes()), strict=True))


def fleet_config(
    path: Path, state: Path, provider: str, hosts: list[tuple[str, Path]], extra: str = ""
) -> Path:
    lines = [f'state_dir = "{state}"', provider]
    for name, cert in hosts:
        lines.append(f'[hosts."{name}"]\nprovider = "p"\ncert = "{cert}"\nttl = 60\n{extra}')
    path.write_text("\n".join(lines) + "\n")
    return path


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        k: after.get(k, 0) - before.get(k, 0)
        for k in set(after) | set(before)
        if after.get(k, 0) != before.get(k, 0)
    }


def serial(port: int) -> int:
    response = dns.query.tcp(
        dns.message.make_query(ZONE, dns.rdatatype.SOA), "127.0.0.1", port=port, timeout=5
    )
    return int(next(iter(response.answer[0])).serial)


def nsupdate(bind: Bind, script: str) -> None:
    head = f"server 127.0.0.1 {bind.primary.port}\nzone {ZONE}\n"
    result = subprocess.run(
        ["nsupdate", "-v", "-k", str(bind.key_file)], input=(head + script).encode(), capture_output=True
    )
    if result.returncode != 0:
        raise SystemExit(f"nsupdate failed: {result.stderr.decode()[-500:]}")


def host_records(prefix: str, n: int) -> list[tuple[str, list[str]]]:
    """Per host, the owner and the four TLSA records a script would add."""
    return [
        (f"_25._tcp.{prefix}{i}.{ZONE}.", [f"{u} 1 1 {secrets.token_hex(32)}" for u in (3, 2, 2, 2)])
        for i in range(n)
    ]


def script_for(hosts: list[tuple[str, list[str]]]) -> str:
    return "".join(f"update add {owner} 60 IN TLSA {r}\n" for owner, records in hosts for r in records)


def batched_floor(bind: Bind, prefix: str, n: int) -> tuple[float, float, int]:
    """One nsupdate process sending the same number of messages tlsa-manager sends
    (the provider's own split); then until the secondary serves the primary's serial."""
    import dns.name

    from tlsa_manager.provider import OwnerChange
    from tlsa_manager.records import Tlsa
    from tlsa_manager_providers.rfc2136 import Rfc2136Provider

    hosts = host_records(prefix, n)
    changes = [
        OwnerChange(dns.name.from_text(o), frozenset(), frozenset(map(Tlsa.from_text, r)), ttl=60)
        for o, r in hosts
    ]
    chunks = Rfc2136Provider.chunks(changes)
    script, start_index = "", 0
    for chunk in chunks:
        script += script_for(hosts[start_index : start_index + len(chunk)]) + "send\n"
        start_index += len(chunk)
    start = time.perf_counter()
    nsupdate(bind, script)
    sent = time.perf_counter() - start
    target = serial(bind.primary.port)
    while serial(bind.secondary.port) < target:
        time.sleep(0.01)
    return sent, time.perf_counter() - start, len(chunks)


def per_host_loop(bind: Bind, prefix: str, n: int) -> float:
    start = time.perf_counter()
    for host in host_records(prefix, n):
        nsupdate(bind, script_for([host]) + "send\n")
    return time.perf_counter() - start


def forget(bind: Bind, config: Path, hosts: list[tuple[str, Path]]) -> None:
    """Back to before the first sync: the hosts' records deleted (until the secondary
    has that too) and the state directory removed."""
    for start in range(0, len(hosts), 500):
        nsupdate(
            bind,
            "".join(f"update delete _25._tcp.{h}. TLSA\n" for h, _ in hosts[start : start + 500]) + "send\n",
        )
    target = serial(bind.primary.port)
    while serial(bind.secondary.port) < target:
        time.sleep(0.01)
    state = next(line for line in config.read_text().splitlines() if line.startswith("state_dir"))
    shutil.rmtree(state.split('"')[1])


def bench_rfc2136(bind: Bind, root: Path, n: int, loop: bool, runs: int = 1) -> list[str]:
    hosts = make_fleet(root / f"certs{n}", f"tm{n}-", n)
    provider = (
        f'[providers.p]\ntype = "rfc2136"\nserver = "{bind.primary.endpoint}"\n'
        f'tsig_key_file = "{bind.key_file}"\ntimeout = 60\n'
    )
    extra = f'nameservers = ["{bind.primary.endpoint}", "{bind.secondary.endpoint}"]\n'
    config = fleet_config(root / f"fleet{n}.toml", root / f"state{n}", provider, hosts, extra)
    floors = [batched_floor(bind, f"batch{n}-{k}-", n) for k in range(runs)]
    sent, floor, messages = min(floors, key=lambda f: f[1])
    best = f" (best of {runs}: {', '.join(f'{f[1]:.2f}' for f in floors)})" if runs > 1 else ""
    rows = [
        f"| {n} | one batched nsupdate ({messages} UPDATE), + until both servers serve it{best} | "
        f"{sent:.2f} + {floor - sent:.2f} = **{floor:.2f}** | | | {messages} UPDATE |"
    ]
    for label, args in (("first sync", ("sync",)), ("no-op sync", ("sync",)), ("plan", ("plan",))):
        before = (bind.primary.stats(bind.keys), bind.secondary.stats(bind.keys))
        timed = run_cli(config, *args)
        after = (bind.primary.stats(bind.keys), bind.secondary.stats(bind.keys))
        if timed.code != 0:
            raise SystemExit(f"{label} failed ({timed.code}): {timed.err[-2000:]}")
        if runs > 1:
            # a shared machine: the least disturbed of ``runs`` runs (wall and CPU each); a
            # first sync again starts from nothing: no records, no state
            more = []
            for _ in range(runs - 1):
                if label == "first sync":
                    forget(bind, config, hosts)
                more.append(run_cli(config, *args))
            print(f"{n} {label}: wall {', '.join(f'{t.wall:.2f}' for t in (timed, *more))}", file=sys.stderr)
            label += f" (best of {runs})"
            timed = Timed(
                min(t.wall for t in (timed, *more)),
                min(t.cpu for t in (timed, *more)),
                max(t.peak_mib for t in (timed, *more)),
                timed.code,
                timed.out,
                timed.err,
            )
        p, s = delta(before[0], after[0]), delta(before[1], after[1])
        seen = (
            f"{p.get('UPDATE', 0)} UPDATE; primary {p.get('TLSA', 0)} TLSA, {p.get('SOA', 0)} SOA, "
            f"{p.get('DNSKEY', 0)} DNSKEY; secondary {s.get('TLSA', 0)} TLSA, {s.get('SOA', 0)} SOA, "
            f"{s.get('DNSKEY', 0)} DNSKEY"
        )
        rows.append(
            f"| {n} | tlsa-manager {label} | **{timed.wall:.2f}** | {timed.cpu:.2f} | "
            f"{timed.peak_mib:.0f} | {seen} |"
        )
    if loop:
        rows.append(
            f"| {n} | per-host nsupdate loop | {per_host_loop(bind, f'loop{n}-', n):.2f} | | | {n} UPDATE |"
        )
    return rows


def bench_zonefile(root: Path, n: int, other: int = 5000) -> list[str]:
    hosts = make_fleet(root / f"zcerts{n}", "z", n)
    zone = root / f"db.{ZONE}"
    body = ["$TTL 60\n@ IN SOA ns1 hostmaster ( 1 60 30 3600 30 )\n  IN NS ns1\nns1 IN A 127.0.0.1\n"]
    body += [f"www{i} IN A 192.0.2.{i % 250 + 1}\n" for i in range(other - 4)]
    zone.write_text("".join(body))
    pristine = zone.read_text()
    provider = f'[providers.p]\ntype = "zonefile"\nzone_file = "{zone}"\n'
    config = fleet_config(root / "zonefleet.toml", root / "zstate", provider, hosts)
    rows = []
    for label, args in (("first sync", ("sync",)), ("no-op sync", ("sync",)), ("plan", ("plan",))):
        timed = run_cli(config, *args)
        if timed.code != 0:
            raise SystemExit(f"zone file {label} failed ({timed.code}): {timed.err[-2000:]}")
        rows.append(
            f"| {n} in a zone of {other} lines | tlsa-manager {label} | **{timed.wall:.2f}** | "
            f"{timed.cpu:.2f} | {timed.peak_mib:.0f} | |"
        )
    copy = root / "db.copy"
    start = time.perf_counter()
    copy.write_text(pristine + script_for(host_records("zz", n)).replace("update add ", ""))
    subprocess.run(["named-checkzone", "-q", ZONE, str(copy)], check=True)
    rows.append(
        f"| {n} in a zone of {other} lines | append + one named-checkzone | "
        f"{time.perf_counter() - start:.2f} | | | |"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--loop-max", type=int, default=1000, help="no per-host loop above this many hosts")
    parser.add_argument("--zonefile", type=int, default=1000, help="hosts for the zone-file case (0: skip)")
    parser.add_argument("--big", type=int, default=0, help="also this many hosts (e.g. 10000), no loop")
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="the floor, first sync (from nothing each time), no-op sync and plan: the best of N runs",
    )
    parser.add_argument(
        "--compile-each-run",
        action="store_true",
        help="no bytecode cache: every run compiles the modules (the figures before 2026-11-26 04:40)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tlsa-fleet-"))
    os.chmod(root, 0o755)  # named runs as user bind
    if not args.compile_each_run:
        compile_once(root)
    (root / "bind").mkdir()
    bind = Bind(root / "bind").start()
    rows = []
    try:
        for n in args.hosts + ([args.big] if args.big else []):
            rows += bench_rfc2136(bind, root, n, n <= args.loop_max, args.runs)
            print("\n".join(rows[-5:]), file=sys.stderr, flush=True)
        if args.zonefile:
            rows += bench_zonefile(root, args.zonefile)
    finally:
        bind.stop()
        shutil.rmtree(root, ignore_errors=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"Load average at the end (1, 5, 15 min): {load} on {os.cpu_count()} CPUs\n")
    print("| hosts, one zone | what | wall s | CPU s | peak MiB | what the servers saw |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
