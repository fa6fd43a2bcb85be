"""``bench_startup.py --fleet N``: the CPU a `plan` of N hosts spends before the first
host is planned, phase by phase, each run a fresh process (see bench_startup.py)."""

from __future__ import annotations

import ast
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_fleet import ZONE, fleet_config, make_fleet

REPO = Path(__file__).resolve().parent.parent
#: the modules a sync imports (issue 14's list); the rfc2136 provider although the
#: fleet here is a zone file, so that the figure is the one the issue quotes
IMPORTS = (
    "tlsa_manager.cli.main, tlsa_manager.runner, tlsa_manager.engine, tlsa_manager.fleet, "
    "tlsa_manager_providers.rfc2136, tlsa_manager.hostfiles, tlsa_manager.certs, tlsa_manager.ledger"
)
CHILD = f"""
import gc, sys, time
start = time.process_time()
import {IMPORTS}
out = {{"imports": time.process_time() - start}}
gc.disable()  # as the CLI runs a one-pass command
from pathlib import Path
from tlsa_manager import config, runner
from tlsa_manager.catalog import load as load_catalog
def phase(label, call):
    begin = time.process_time()
    value = call()
    out[label] = time.process_time() - begin
    return value
cfg = phase("configuration", lambda: config.load_config(Path(sys.argv[1])))
catalog = phase("catalog", lambda: load_catalog(cfg.state_dir))
runs = phase("opening the hosts", lambda: runner.open_hosts(cfg, [], True, catalog, state_dir=cfg.state_dir))
assert len(runs) == int(sys.argv[2])
print(repr(out))
"""
PHASES = ("imports", "configuration", "catalog", "opening the hosts", "whole `plan` command")


def environment(tree: Path) -> dict[str, str]:
    """The tree's modules first on the path (before an editable install's finder)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    env["PYTHONPATH"] = os.pathsep.join([str(tree), str(tree / "providers")])
    return env


def cpu_of(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """The child's CPU (user + system, from wait4) and its stdout."""
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _pid, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) not in (0, 4):  # 4: a hazard (no servers to ask)
            raise SystemExit(f"{' '.join(cmd)} failed")
        out.seek(0)
        return usage.ru_utime + usage.ru_stime, out.read().decode()


def one_run(tree: Path, config: Path, n: int) -> dict[str, float]:
    env = environment(tree)
    _cpu, text = cpu_of([sys.executable, "-c", CHILD, str(config), str(n)], env)
    phases: dict[str, float] = ast.literal_eval(text)
    phases["whole `plan` command"], _ = cpu_of(
        [sys.executable, "-m", "tlsa_manager", "--config", str(config), "-q", "plan"], env
    )
    return phases


def fleet_phases(n: int, runs: int, against: Path | None) -> None:
    trees = {"this tree": REPO, **({f"{against}": against.resolve()} if against else {})}
    for tree in trees.values():  # in place, as pip byte-compiles an installed package
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(tree / "tlsa_manager"), str(tree / "providers")],
            env=environment(tree),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        zone = root / f"db.{ZONE}"
        body = ["$TTL 60\n@ IN SOA ns1 hostmaster ( 1 60 30 3600 30 )\n  IN NS ns1\nns1 IN A 127.0.0.1\n"]
        zone.write_text("".join(body + [f"www{i} IN A 192.0.2.{i % 250 + 1}\n" for i in range(4996)]))
        provider = f'[providers.p]\ntype = "zonefile"\nzone_file = "{zone}"\n'
        hosts = make_fleet(root / "certs", "z", n)
        config = fleet_config(root / "fleet.toml", root / "state", provider, hosts)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for _ in range(runs):  # alternating, so that both see the same load
            for name, tree in trees.items():
                results[name].append(one_run(tree, config, n))
    floor = min(cpu_of([sys.executable, "-c", "pass"], environment(REPO))[0] for _ in range(5))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{n} hosts (zone file), {runs} runs each; `python -c pass`: {floor:.3f} s; load {load}\n")
    print("| phase (CPU s) | " + " | ".join(f"{name}: best / median" for name in trees) + " |")
    print("| --- |" + " ---: |" * len(trees))
    for phase in PHASES:
        cells = []
        for name in trees:
            values = [r[phase] for r in results[name]]
            cells.append(f"{min(values):.3f} / {statistics.median(values):.3f}")
        print(f"| {phase} | " + " | ".join(cells) + " |")
