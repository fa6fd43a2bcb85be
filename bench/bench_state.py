"""Benchmark: the per-run bookkeeping of a fleet run, in process: reading the
configuration, opening the hosts, and reading and saving the ledger.

A fleet of N hosts in one zone (as bench_fleet.py builds it: each host its own
certificate file, ``provider``, ``cert``, ``ttl``, ``nameservers``), published by RFC
2136 to a real BIND primary with a secondary; one real ``sync`` makes the ledger (every
owner with its managed records and an observation of both servers).  Then each source
tree given is timed on that same fleet, in a child process of its own (the tree on
``PYTHONPATH``), the trees taking turns for ``--rounds`` rounds:

- ``load_config``: the TOML of N hosts to a Config;
- ``open_hosts``: providers, servers (the one SOA query per zone and server), ports;
  each of these two also as the first call in the process ("first"), as a run calls it:
  with the imports it makes and the caches it fills (the owner names, the entry points);
- ledger load: ``Ledger.load`` of the sync's ledger.json;
- ledger save: ``Ledger.save`` of that ledger by a new Ledger (nothing remembered from an
  earlier save, as after a phase that recorded an observation for every owner) into a
  private directory; the file's SHA-256 says whether two trees write the same bytes.

- first sync saves: the records removed from BIND again and the state directory new,
  ``sync`` of the fleet run by the tree's CLI in that child, each ``Ledger.save`` timed
  (a first sync saves after every phase; the first save of a run has nothing from an
  earlier one, the later ones reuse what did not change).

Each figure is CPU time (``time.process_time()``), the best of ``--repeat`` calls, and
the best over the rounds (the saves: of the round with the least in all).

Usage: python bench/bench_state.py [--hosts 1000] [--repeat 5] [--rounds 2] [TREE ...]
(default TREE: this checkout; e.g. ``/work/main .`` compares main with this branch).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PHASES = (
    "load_config, first",
    "load_config",
    "open_hosts, first",
    "open_hosts",
    "ledger load",
    "ledger save",
)


def best(repeat: int, call: Any) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        call()
        times.append(time.process_time() - start)
    return min(times)


def measure(config_path: Path, state: Path, repeat: int) -> dict[str, Any]:
    """In the child: the four phases of the tree on ``sys.path``."""
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.config import load_config
    from tlsa_manager.ledger import Ledger
    from tlsa_manager.runner import open_hosts

    start = time.process_time()
    config = load_config(config_path)  # the first call: what a run pays (lazy imports too)
    first_config = time.process_time() - start
    catalog = load_catalog(state)
    start = time.process_time()
    open_hosts(config, [], True, catalog, state_dir=state)  # imports the provider, names the owners
    first_open = time.process_time() - start
    data = Ledger(state).load()
    out = Path(tempfile.mkdtemp(prefix="tlsa-state-save-"))
    try:
        figures = {
            "load_config, first": first_config,
            "load_config": best(repeat, lambda: load_config(config_path)),
            "open_hosts, first": first_open,
            "open_hosts": best(repeat, lambda: open_hosts(config, [], True, catalog, state_dir=state)),
            "ledger load": best(repeat, lambda: Ledger(state).load()),
            "ledger save": best(repeat, lambda: Ledger(out).save(data)),
        }
        digest = hashlib.sha256((out / "ledger.json").read_bytes()).hexdigest()[:12]
        size = (out / "ledger.json").stat().st_size
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"figures": figures, "sha": digest, "size": size}


def first_sync_saves(config: Path, state: Path) -> list[float]:
    """In the child: ``sync`` by the CLI into the new ``state``, the CPU of each save."""
    import tlsa_manager.cli.main  # noqa: F401  (the module; the package exports its main())
    from tlsa_manager import ledger

    cli = sys.modules["tlsa_manager.cli.main"]
    save = ledger.Ledger.save
    times: list[float] = []

    def timed(self: Any, data: Any) -> None:
        start = time.process_time()
        save(self, data)
        times.append(time.process_time() - start)

    ledger.Ledger.save = timed  # type: ignore[method-assign]
    sys.argv = ["tlsa-manager", "-q", "--config", str(config), "--state-dir", str(state), "sync"]
    try:
        cli.run()
    except SystemExit as exc:
        if exc.code:
            raise
    return times


def reset(bind: Any, hosts: list[tuple[str, Path]]) -> None:
    """The fleet's records out of the zone again (both servers), for another first sync."""
    import bench_fleet

    script = ""
    for start in range(0, len(hosts), 250):
        owners = hosts[start : start + 250]
        script += "".join(f"update delete _25._tcp.{name}. TLSA\n" for name, _cert in owners) + "send\n"
    bench_fleet.nsupdate(bind, script)
    target = bench_fleet.serial(bind.primary.port)
    while bench_fleet.serial(bind.secondary.port) < target:
        time.sleep(0.01)


def child(tree: Path, config: Path, state: Path, repeat: int, mode: str = "--measure") -> dict[str, Any]:
    from trees import run_json

    return run_json(tree, [str(HERE / "bench_state.py"), mode, str(config), str(state), str(repeat)])


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--measure":
        print(json.dumps(measure(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))))
        return
    if len(sys.argv) == 5 and sys.argv[1] == "--first-sync":
        print(json.dumps({"saves": first_sync_saves(Path(sys.argv[2]), Path(sys.argv[3]))}))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("trees", nargs="*", type=Path, default=[HERE.parent])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    sys.path.insert(0, str(HERE))
    import bench_fleet

    from servers import Bind

    root = Path(tempfile.mkdtemp(prefix="tlsa-state-"))
    os.chmod(root, 0o755)  # named runs as user bind
    (root / "bind").mkdir()
    bind = Bind(root / "bind").start()
    try:
        hosts = bench_fleet.make_fleet(root / "certs", "h", args.hosts)
        provider = (
            f'[providers.p]\ntype = "rfc2136"\nserver = "{bind.primary.endpoint}"\n'
            f'tsig_key_file = "{bind.key_file}"\ntimeout = 60\n'
        )
        extra = f'nameservers = ["{bind.primary.endpoint}", "{bind.secondary.endpoint}"]\n'
        state = root / "state"
        config = bench_fleet.fleet_config(root / "fleet.toml", state, provider, hosts, extra)
        synced = bench_fleet.run_cli(config, "sync")
        if synced.code != 0:
            raise SystemExit(f"sync failed ({synced.code}): {synced.err[-2000:]}")
        results: dict[Path, list[dict[str, Any]]] = {tree: [] for tree in args.trees}
        saves: dict[Path, list[list[float]]] = {tree: [] for tree in args.trees}
        for index in range(args.rounds):
            for tree in args.trees:
                results[tree].append(child(tree.resolve(), config, state, args.repeat))
                reset(bind, hosts)
                fresh = root / f"first-{index}-{len(saves[tree])}-{tree.resolve().name}"
                saves[tree].append(child(tree.resolve(), config, fresh, 1, "--first-sync")["saves"])
    finally:
        bind.stop()
        shutil.rmtree(root, ignore_errors=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{args.hosts} hosts; CPU ms, best of {args.repeat} x {args.rounds} rounds; load {load}\n")
    print("| tree | " + " | ".join(PHASES) + " | saves of a first sync | saved file |")
    print("| --- |" + " ---: |" * len(PHASES) + " --- | --- |")
    for tree, runs in results.items():
        cells = [f"{min(r['figures'][p] for r in runs) * 1000:.1f}" for p in PHASES]
        least = min(saves[tree], key=sum)
        each = " + ".join(f"{t * 1000:.0f}" for t in least)
        saved = f"{runs[0]['size']} bytes, sha256 {runs[0]['sha']}"
        print(f"| {tree} | " + " | ".join(cells) + f" | {each} = {sum(least) * 1000:.0f} | {saved} |")


if __name__ == "__main__":
    main()
