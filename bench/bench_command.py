"""Benchmark: a whole `sync` / `plan` of a fleet, source trees side by side in one run.

N hosts in one zone (bench_fleet.py's fleet: each its own certificate file), RFC 2136 to
a real BIND primary and secondary (both ``nameservers``) or a zone file of 5,000 other
lines.  Each round runs, for each tree in turn, a first sync (from nothing: records
removed, state directory new), a no-op sync and ``plan``.  Each command is the CLI's
own entry point (``tlsa_manager.cli.run``, as ``python -m tlsa_manager`` calls it) in
a child process with that tree first on ``PYTHONPATH``, and its CPU time is what
``wait4`` reports for the child: start-up, imports, the command and the process's exit.

The clocks are frozen for the run (every tree sees the same wall and boot-time clock:
the start of the benchmark, an hour later for the no-op sync and ``plan``), so the
trees' outputs and ledgers can be compared byte for byte: the benchmark fails unless
every tree printed the same stdout and stderr, wrote the same ledger and left the same
records (the zone file, or the primary's TLSA records by AXFR) in every round.

With ``--phases`` each child also times the phases of a run (CPU): planning, the ledger
saves, the certificate chains, the provider's reads and the observations, the write and
the wait, the report; "exit" is the CPU after the command returned.

Usage: python bench/bench_command.py [--kind rfc2136|zonefile] [--hosts 1000] [--rounds 3]
       [--phases] TREE [TREE ...]      (e.g. /tmp/main .: main against this checkout)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

HERE = Path(__file__).resolve().parent
COMMANDS = {"first sync": ("sync",), "no-op sync": ("sync",), "plan": ("plan",)}
#: (module, class or "", function, label) of the phases --phases times in the child
PHASES = (
    ("tlsa_manager.engine", "", "plan_host", "planning"),
    ("tlsa_manager.ledger", "Ledger", "save", "ledger saves"),
    ("tlsa_manager.ledger", "Ledger", "load", "ledger load"),
    ("tlsa_manager.engine", "", "_host_chains", "chains"),
    ("tlsa_manager.fleet", "FleetZones", "read", "provider reads"),
    ("tlsa_manager.fleet", "FleetZones", "observe", "observations"),
    ("tlsa_manager.fleet", "FleetZones", "apply", "the write"),
    ("tlsa_manager.fleet", "FleetZones", "wait_for_propagation", "the wait"),
    ("tlsa_manager.engine", "", "_begin_runs", "begin_runs"),
    ("tlsa_manager.engine", "", "clock_behind_dns", "clock_behind_dns"),
    ("tlsa_manager.engine", "", "record_applied", "record_applied"),
    ("tlsa_manager.cli.hosts", "", "open_runs", "configuration and opening the hosts"),
    ("tlsa_manager.cli.hosts", "", "report_syncs", "the report (sync)"),
    ("tlsa_manager.cli.hosts", "", "write_plan", "the report (plan)"),
)


def child(result: Path, wall: float, phases: bool, argv: list[str]) -> None:
    """In the child: the CLI as ``python -m tlsa_manager`` runs it, clocks frozen at
    ``wall``; the CPU figures go to ``result`` when the command returns, before the exit."""
    import importlib
    import types

    import tlsa_manager.cli.main  # noqa: F401  (the module; the package exports its main())
    from tlsa_manager import clock, runner

    fixed = clock.ClockSample(wall, wall - 1_700_000_000.0, "bench-boot")
    clock.sample = lambda: fixed
    frozen = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("__")})
    frozen.time = lambda: wall
    setattr(runner, "time", frozen)  # noqa: B010  (last-sync.json's time)
    cli: Any = sys.modules["tlsa_manager.cli.main"]
    stats: dict[str, list[float]] = {}

    def timer(function: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                entry = stats.setdefault(label, [0, 0.0])
                entry[0] += 1
                entry[1] += time.process_time() - start

        return timed

    if phases:
        for module, cls, attribute, label in PHASES:
            owner: Any = importlib.import_module(module)
            owner = getattr(owner, cls) if cls else owner
            if hasattr(owner, attribute):
                setattr(owner, attribute, timer(getattr(owner, attribute), label))
    main = cli.main

    def measured() -> int:
        start = time.process_time()
        code = int(main())
        end = time.process_time()
        figures = {"before": start, "command": end - start, "at_return": end, "phases": stats}
        result.write_text(json.dumps(figures))
        return code

    cli.main = measured
    sys.argv = ["tlsa-manager", *argv]
    cli.run()


def run_child(
    tree: Path, config: Path, command: tuple[str, ...], wall: float, phases: bool
) -> dict[str, Any]:
    """One command in a child on ``tree``: its figures, CPU (wait4) and output digests."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "providers")])}
    env.pop("PYTHONPYCACHEPREFIX", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory() as scratch:
        result, out, err = Path(scratch, "result"), Path(scratch, "out"), Path(scratch, "err")
        args = [str(result), repr(wall), "1" if phases else "0", "--config", str(config), *command]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, __file__, "--child", *args],
                stdout=stdout,
                stderr=stderr,
                env=env,
                cwd=scratch,
            )
            _pid, status, usage = os.wait4(process.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if not result.exists():
            raise SystemExit(f"{tree} {' '.join(command)} failed ({code}): {err.read_text()[-2000:]}")
        figures: dict[str, Any] = json.loads(result.read_text())
        figures["cpu"] = usage.ru_utime + usage.ru_stime
        figures["exit"] = figures["cpu"] - figures["at_return"]
        figures["code"] = code
        figures["digest"] = {"stdout": digest(out.read_bytes()), "stderr": digest(err.read_bytes())}
        return figures


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def directory_digest(path: Path) -> str:
    """The state directory's files (ledger, last sync), the lock left out."""
    h = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file() and p.name != "lock"):
        h.update(item.name.encode() + b"\0" + item.read_bytes())
    return h.hexdigest()[:16]


class Fleet:
    """The fleet's files and how to put it back to before its first sync."""

    def __init__(self, root: Path, kind: str, hosts: int) -> None:
        sys.path.insert(0, str(HERE))
        sys.path.insert(0, str(HERE.parent / "tests"))
        import bench_fleet

        from servers import ZONE, Bind

        self.root, self.kind, self.zone_name = root, kind, ZONE
        self.state = root / "state"
        self.hosts = bench_fleet.make_fleet(root / "certs", "h", hosts)
        self.bind: Any = None
        if kind == "zonefile":
            self.zone = root / f"db.{ZONE}"
            body = ["$TTL 60\n@ IN SOA ns1 hostmaster ( 1 60 30 3600 30 )\n  IN NS ns1\nns1 IN A 127.0.0.1\n"]
            body += [f"www{i} IN A 192.0.2.{i % 250 + 1}\n" for i in range(5000 - 4)]
            self.pristine = "".join(body)
            self.zone.write_text(self.pristine)
            provider = f'[providers.p]\ntype = "zonefile"\nzone_file = "{self.zone}"\n'
            extra = ""
        else:
            (root / "bind").mkdir()
            self.bind = Bind(root / "bind").start()
            provider = (
                f'[providers.p]\ntype = "rfc2136"\nserver = "{self.bind.primary.endpoint}"\n'
                f'tsig_key_file = "{self.bind.key_file}"\ntimeout = 60\n'
            )
            extra = f'nameservers = ["{self.bind.primary.endpoint}", "{self.bind.secondary.endpoint}"]\n'
        self.config = bench_fleet.fleet_config(root / "fleet.toml", self.state, provider, self.hosts, extra)

    def reset(self) -> None:
        if self.bind is None:
            self.zone.write_text(self.pristine)
            shutil.rmtree(self.state, ignore_errors=True)
        elif self.state.exists():
            import bench_fleet

            bench_fleet.forget(self.bind, self.config, self.hosts)

    def records(self) -> str:
        """The zone file, or the primary's TLSA records (AXFR with the update key)."""
        if self.bind is None:
            return digest(self.zone.read_bytes())
        import dns.query
        import dns.rdatatype
        import dns.tsigkeyring
        import dns.zone

        found = re.search(r'secret "([^"]+)"', self.bind.key_file.read_text())
        assert found is not None
        name = self.bind.tsig_name
        keyring = dns.tsigkeyring.from_text({name: ("hmac-sha256", found.group(1))})
        xfr = dns.query.xfr(
            "127.0.0.1", self.zone_name, port=self.bind.primary.port, keyring=keyring, keyname=name
        )
        zone = dns.zone.from_xfr(xfr)
        lines = sorted(f"{n} {r}" for n, rds in zone.iterate_rdatasets(dns.rdatatype.TLSA) for r in rds)
        return digest("\n".join(lines).encode())

    def stop(self) -> None:
        if self.bind is not None:
            self.bind.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        result, frozen_at, phases, *argv = sys.argv[2:]
        child(Path(result), float(frozen_at), phases == "1", argv)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("trees", nargs="+", type=Path)
    parser.add_argument("--kind", choices=["rfc2136", "zonefile"], default="rfc2136")
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phases", action="store_true")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.trees]
    for tree in trees:  # the bytecode once, as an installed package has it (bench_fleet.compile_once)
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
        }
        packages = [str(tree / "tlsa_manager"), str(tree / "providers")]
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", *packages],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    root = Path(tempfile.mkdtemp(prefix="tlsa-command-"))
    os.chmod(root, 0o755)  # named runs as user bind
    wall = float(int(time.time()))
    runs: dict[tuple[Path, str], list[dict[str, Any]]] = {(t, c): [] for t in trees for c in COMMANDS}
    fleet = Fleet(root, args.kind, args.hosts)
    try:
        for index in range(args.rounds):
            for tree in trees if index % 2 == 0 else trees[::-1]:
                fleet.reset()
                for label, command in COMMANDS.items():
                    at = wall if label == "first sync" else wall + 3600
                    figures = run_child(tree, fleet.config, command, at, args.phases)
                    figures["digest"].update(ledger=directory_digest(fleet.state), records=fleet.records())
                    runs[(tree, label)].append(figures)
                    print(f"round {index} {tree} {label}: CPU {figures['cpu']:.3f} s", file=sys.stderr)
    finally:
        fleet.stop()
        shutil.rmtree(root, ignore_errors=True)
    report(trees, runs, args)


def report(
    trees: list[Path], runs: dict[tuple[Path, str], list[dict[str, Any]]], args: argparse.Namespace
) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{args.hosts} hosts ({args.kind}), {args.rounds} rounds, CPU s (wait4); load at the end {load}\n")
    print("| command | tree | CPU best | median | the command (in main) median | exit median |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for label in COMMANDS:
        for tree in trees:
            done = runs[(tree, label)]
            cpu = [f["cpu"] for f in done]
            cells = f"{min(cpu):.3f} | {median(cpu):.3f} | {median(f['command'] for f in done):.3f}"
            print(f"| {label} | {tree} | {cells} | {median(f['exit'] for f in done):.3f} |")
    if args.phases:
        print("\n| command | tree | phase | calls | CPU s median |")
        print("| --- | --- | --- | ---: | ---: |")
        for label in COMMANDS:
            for tree in trees:
                done = runs[(tree, label)]
                for phase in dict.fromkeys(p for f in done for p in f["phases"]):
                    calls = done[0]["phases"].get(phase, [0])[0]
                    cpu = median(f["phases"].get(phase, [0, 0.0])[1] for f in done)
                    print(f"| {label} | {tree.name} | {phase} | {calls} | {cpu:.3f} |")
    digests = {
        label: {json.dumps(f["digest"], sort_keys=True) for t in trees for f in runs[(t, label)]}
        for label in COMMANDS
    }
    for label, seen in digests.items():
        same = "the same output, ledger and records in every run" if len(seen) == 1 else "DIFFERENT"
        print(f"\n{label}: {same}")
        if len(seen) > 1:
            print("\n".join(sorted(seen)))
    if any(len(seen) > 1 for seen in digests.values()):
        raise SystemExit("the trees' outputs, ledgers or records differ")


if __name__ == "__main__":
    main()
