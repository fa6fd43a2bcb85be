"""Benchmark: the CPU of planning one host (``hostplan.plan_host``), in process.

A fleet of N hosts (certificate files of their own: leaf and a Let's Encrypt-shaped
chain; the bundled catalog; two authoritative servers per host) is built once; then
``plan_host`` runs for every host in the two cases a run sees:

- ``first``: nothing served yet (the first pass of a first sync);
- ``no-op``: every record published and served by both servers for an hour (a no-op
  sync, or ``plan`` of a fleet in step).

Each case is timed with ``time.process_time()`` over all hosts, ``--repeat`` passes in
each of ``--rounds`` child processes per tree, and printed in ms per host (the best and
the median of all passes).  With ``--tree`` (repeatable) each source tree (e.g.
``/work/main`` and this one) is timed in children of its own on the same fleet files,
alternately, and the children's plans are compared: a digest of every plan's JSON must
be the same for all trees.  Every pass plans as a fresh process does: new chain objects,
every cache of the package emptied.

Usage: python bench/bench_planning.py [--hosts 1000] [--repeat 5] [--rounds 2] [--tree DIR ...]
"""

from __future__ import annotations

import argparse
import functools
import gc
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NOW = 1_790_000_000.0
SERVERS = ("127.0.0.1:5301", "127.0.0.1:5302")


def build_fleet(root: Path, n: int) -> Path:
    """The fleet's files (certificates, zone file, configuration); returns the config."""
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO / "bench"))
    from bench_fleet import fleet_config, make_fleet

    from servers import ZONE

    zone = root / f"db.{ZONE}"
    zone.write_text("$TTL 60\n@ IN SOA ns1 hostmaster ( 1 60 30 3600 30 )\n  IN NS ns1\nns1 IN A 127.0.0.1\n")
    provider = f'[providers.p]\ntype = "zonefile"\nzone_file = "{zone}"\n'
    extra = "nameservers = [" + ", ".join(f'"{s}"' for s in SERVERS) + "]\nnegative_ttl = 60\n"
    hosts = make_fleet(root / "certs", "h", n)
    return fleet_config(root / "fleet.toml", root / "state", provider, hosts, extra)


def fresh_caches() -> None:
    """Empty every ``functools`` cache of the package: each timed pass plans as the one
    pass of a fresh process does (a run plans each host once; a best of 5 over the same
    values would time the caches' hits)."""
    for obj in gc.get_objects():
        if isinstance(obj, functools._lru_cache_wrapper) and str(getattr(obj, "__module__", "")).startswith(
            "tlsa_manager"
        ):
            obj.cache_clear()


def child(config_path: Path, repeat: int) -> dict[str, Any]:
    """Load the fleet with the tree on sys.path, time plan_host, digest the plans."""
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.config import load_config
    from tlsa_manager.hostplan import plan_host
    from tlsa_manager.observations import History, ServerView
    from tlsa_manager.planner import name_text
    from tlsa_manager.provider import RRset
    from tlsa_manager.runner import open_hosts
    from tlsa_manager.state import LedgerData

    config = load_config(config_path)
    absent = tuple(ServerView(s, frozenset(), None) for s in SERVERS)

    def hosts() -> list[tuple[Any, Any]]:
        """Settings and chains as new objects (no memo of an earlier pass on them)."""
        catalog = load_catalog(config_path.parent / "state")
        return [(run.settings, run.ports.chains()) for run in open_hosts(config, [], True, catalog, at=NOW)]

    def first() -> list[tuple[Any, ...]]:
        return [
            (settings, chains, NOW, {}, {o: absent for o in settings.owners}, LedgerData(), False)
            for settings, chains in hosts()
        ]

    wanted = [plan_host(*args).changes for args in first()]

    def noop() -> list[tuple[Any, ...]]:
        cases = []
        for (settings, chains), changes in zip(hosts(), wanted, strict=True):
            published: dict[Any, Any] = {}
            views = {}
            ledger = LedgerData()
            for change in changes:
                # keyed by the host's own owner names, as the engine's reads and observations are
                owner = next(o for o in settings.owners if o == change.owner)
                records = frozenset(change.add)
                published[owner] = RRset(owner, records, change.ttl, managed=records)
                served = tuple(ServerView(s, records, change.ttl) for s in SERVERS)
                views[owner] = served
                rec = ledger.host(settings.host).owner(name_text(owner))
                rec.managed = records
                rec.history = History().observe(NOW - 7200, absent).observe(NOW - 3600, served)
            cases.append((settings, chains, NOW, published, views, ledger, False))
        return cases

    out: dict[str, Any] = {}
    for label, make in (("first", first), ("no-op", noop)):
        times: list[float] = []
        plans: list[Any] = []
        for _ in range(repeat):
            cases = make()
            fresh_caches()
            gc.collect()
            start = time.process_time()
            plans = [plan_host(*args) for args in cases]
            times.append(1000 * (time.process_time() - start) / len(cases))
        body = json.dumps([p.as_dict() for p in plans], sort_keys=True).encode()
        out[label] = {"ms_per_host": times, "digest": hashlib.sha256(body).hexdigest()[:16]}
    return out


def run_child(tree: Path, config: Path, repeat: int) -> dict[str, Any]:
    from trees import run_json

    return run_json(tree, [__file__, "--child", str(config), "--repeat", str(repeat)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="children per tree, alternating")
    parser.add_argument("--tree", type=Path, action="append", help="source tree to time (default: this one)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.repeat)))
        return
    trees = [t.resolve() for t in (args.tree or [REPO])]
    root = Path(tempfile.mkdtemp(prefix="tlsa-planbench-"))
    try:
        config = build_fleet(root, args.hosts)
        runs: dict[Path, dict[str, Any]] = {}
        for _ in range(args.rounds):
            for tree in trees:
                result = run_child(tree, config, args.repeat)
                kept = runs.setdefault(tree, result)
                for case, figures in result.items():
                    if figures["digest"] != kept[case]["digest"]:
                        raise SystemExit(f"{tree}: {case} plans differ between runs")
                    if figures is not kept[case]:
                        kept[case]["ms_per_host"] += figures["ms_per_host"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{args.hosts} hosts, plan_host CPU (process_time) in ms per host: best and median of "
        f"{args.repeat} passes x {args.rounds} child processes per tree"
    )
    print("| tree | first sync best | median | no-op best | median | plans digest (first, no-op) |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for tree, result in runs.items():
        cells = [f"{f(result[c]['ms_per_host']):.3f}" for c in ("first", "no-op") for f in (min, median)]
        print(f"| {tree} | {' | '.join(cells)} | {result['first']['digest']}, {result['no-op']['digest']} |")
    digests = {(r["first"]["digest"], r["no-op"]["digest"]) for r in runs.values()}
    if len(digests) > 1:
        raise SystemExit("the trees' plans differ")


if __name__ == "__main__":
    main()
