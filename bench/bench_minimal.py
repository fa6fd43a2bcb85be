"""Issue 14's first-sync goal beside the least a first sync can do, in one run.

For N hosts in one zone on a real BIND primary and secondary, alternating R rounds
(each from nothing: records deleted, state removed):
- the floor: one batched nsupdate of four records a host, until both servers serve it;
- ``bench/minimal_sync.py``: a Python script that only parses the config, loads each
  host's key and chain, hashes, sends the UPDATEs and waits for the secondary (no
  read, no DNSSEC observation, no ledger, no planner);
- ``tlsa-manager --config C sync``, the first sync.
The ratios to the floor show how much of "within 2x of the floor" a bare Python script
already spends before any of the tool's safety work.

Usage: python bench/bench_minimal.py [--hosts 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import bench_fleet as fleet

from servers import ZONE, Bind

MINIMAL = Path(__file__).resolve().parent / "minimal_sync.py"


def run_minimal(bind: Bind, config: Path) -> tuple[float, float]:
    """Wall and CPU of the bare script (wait4: that child alone)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            str(MINIMAL),
            str(config),
            str(bind.primary.port),
            str(bind.secondary.port),
            str(bind.key_file),
            ZONE,
        ]
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("minimal_sync.py failed")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def tlsa_count(port: int, owner: str) -> int:
    reply = dns.query.tcp(dns.message.make_query(owner, "TLSA"), "127.0.0.1", port=port, timeout=5)
    return sum(len(rrset) for rrset in reply.answer if rrset.rdtype == dns.rdatatype.TLSA)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.hosts
    root = Path(tempfile.mkdtemp(prefix="tlsa-minimal-"))
    os.chmod(root, 0o755)  # named runs as user bind
    fleet.compile_once(root)
    (root / "bind").mkdir()
    bind = Bind(root / "bind").start()
    results: dict[str, list[tuple[float, float]]] = {"floor": [], "minimal": [], "tlsa-manager": []}
    try:
        hosts = fleet.make_fleet(root / "certs", "tm-", n)
        provider = (
            f'[providers.p]\ntype = "rfc2136"\nserver = "{bind.primary.endpoint}"\n'
            f'tsig_key_file = "{bind.key_file}"\ntimeout = 60\n'
        )
        extra = f'nameservers = ["{bind.primary.endpoint}", "{bind.secondary.endpoint}"]\n'
        config = fleet.fleet_config(root / "fleet.toml", root / "state", provider, hosts, extra)
        for k in range(args.rounds):
            _sent, floor, _messages = fleet.batched_floor(bind, f"batch{k}-", n)
            results["floor"].append((floor, 0.0))
            results["minimal"].append(run_minimal(bind, config))
            served = tlsa_count(bind.secondary.port, f"_25._tcp.{hosts[-1][0]}.")
            if served != 4:
                raise SystemExit(f"minimal_sync.py: the secondary serves {served} records, not 4")
            (root / "state").mkdir(exist_ok=True)  # forget() removes it; the script made none
            fleet.forget(bind, config, hosts)
            timed = fleet.run_cli(config, "sync")
            if timed.code != 0:
                raise SystemExit(f"sync failed ({timed.code}): {timed.err[-2000:]}")
            results["tlsa-manager"].append((timed.wall, timed.cpu))
            fleet.forget(bind, config, hosts)
            print(
                f"round {k + 1}: " + ", ".join(f"{w} {v[-1][0]:.2f} s" for w, v in results.items()),
                file=sys.stderr,
                flush=True,
            )
    finally:
        bind.stop()
        shutil.rmtree(root, ignore_errors=True)
    floor = statistics.median(w for w, _ in results["floor"])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{n} hosts, one zone, median of {args.rounds} alternating rounds (load at the end: {load})\n")
    print("| what | wall s (median) | CPU s (median) | x floor |")
    print("| --- | ---: | ---: | ---: |")
    for what, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"| {what} | {wall:.2f} | {cpu:.2f} | {wall / floor:.2f} |")


if __name__ == "__main__":
    main()
