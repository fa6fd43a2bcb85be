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
from typing import Any

from bench_fleet import fleet_config, make_fleet

from servers import ZONE  # tests/ is on the path once bench_fleet is imported

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
out["tree"] = __import__("tlsa_manager").__file__
print(repr(out))
"""
#: the CLI's own entry point (what the console script calls), and the CPU when its atexit
#: handlers run: the rest of the process's CPU is the interpreter's exit
PLAN = """
import atexit, os, sys, time
atexit.register(lambda: os.write(2, f"@{time.process_time()!r}\\n".encode()))
from tlsa_manager.cli.main import run
run()
"""
PHASES = (
    "imports",
    "configuration",
    "catalog",
    "opening the hosts",
    "whole `plan` command",
    "of which the interpreter's exit",
)


def environment(tree: Path) -> dict[str, str]:
    """The tree's modules first on the path (before an editable install's finder)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    env["PYTHONPATH"] = os.pathsep.join([str(tree), str(tree / "providers")])
    return env


def cpu_of(cmd: list[str], env: dict[str, str], tree: Path = REPO) -> tuple[float, str, str]:
    """The child's CPU (user + system, from wait4), its stdout and its stderr.  It runs in
    ``tree``: ``-c`` and ``-m`` put the working directory first on the path, so a child
    started in another checkout would import that checkout's modules."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=tree)
        _pid, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) not in (0, 4):  # 4: a hazard (no servers to ask)
            raise SystemExit(f"{' '.join(cmd)} failed")
        out.seek(0)
        err.seek(0)
        return usage.ru_utime + usage.ru_stime, out.read().decode(), err.read().decode()


def one_run(tree: Path, config: Path, n: int) -> dict[str, Any]:
    env = environment(tree)
    _cpu, text, _ = cpu_of([sys.executable, "-c", CHILD, str(config), str(n)], env, tree)
    phases: dict[str, Any] = ast.literal_eval(text)
    if not phases.pop("tree").startswith(str(tree)):
        raise SystemExit(f"the child did not import the modules of {tree}")
    whole, _, err = cpu_of([sys.executable, "-c", PLAN, "--config", str(config), "-q", "plan"], env, tree)
    phases["whole `plan` command"] = whole
    phases["of which the interpreter's exit"] = whole - float(err.rsplit("@", 1)[1])
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
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
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


#: the sync path's imports in layers, each timed after the ones above it (what a layer
#: shares with an earlier one is counted there): whose CPU the imports are
LAYERS = {
    "standard library": "argparse, json, logging, socket, selectors, concurrent.futures, tomllib, hashlib, "
    "hmac, base64, tempfile, datetime, ipaddress, threading, struct, enum, typing, re, stat, contextlib, "
    "functools, abc, collections, random, secrets, signal, subprocess, shutil",
    "dnspython": "dns.name, dns.message, dns.query, dns.rdatatype, dns.rdataclass, dns.flags, dns.dnssec, "
    "dns.dnssecalgs, dns.tsig, dns.tsigkeyring, dns.update, dns.rcode, dns.exception, dns.zone, "
    "dns.rdtypes.ANY.TLSA",
    "cryptography": "cryptography.x509, cryptography.hazmat.primitives.serialization, "
    "cryptography.hazmat.primitives.asymmetric.ec, cryptography.hazmat.primitives.asymmetric.rsa, "
    "cryptography.hazmat.primitives.asymmetric.ed25519, cryptography.hazmat.primitives.hashes",
    "tlsa_manager (the rest of the list)": IMPORTS,
}
SPLIT = f"""
import time
begin = time.process_time()
import dataclasses, importlib.metadata as metadata, importlib.resources
out = {{"dataclasses, importlib.metadata (ours and dnspython's)": time.process_time() - begin}}
made, versions = [0.0, 0], [0.0, 0]
def timed(total, call):
    def wrapper(*args, **kwargs):
        begin = time.process_time()
        try:
            return call(*args, **kwargs)
        finally:
            total[0] += time.process_time() - begin
            total[1] += 1
    return wrapper
dataclasses._process_class = timed(made, dataclasses._process_class)
metadata.version = timed(versions, metadata.version)
for label, modules in {list(LAYERS.items())!r}:
    if label.startswith("tlsa_manager"):
        made[:] = [0.0, 0]
    begin = time.process_time()
    exec("import " + modules, {{}})
    out[label] = time.process_time() - begin
out["of which making our dataclasses"] = made[0]
out["dnspython's distribution version look-ups"] = versions[0]
print(repr(out))
"""


def import_split(runs: int) -> None:
    """The CPU of each layer of the imports, best and median of ``runs`` fresh processes."""
    results = [
        ast.literal_eval(cpu_of([sys.executable, "-c", SPLIT], environment(REPO))[1]) for _ in range(runs)
    ]
    print(f"imports of the sync path by layer, {runs} runs\n")
    print("| layer (CPU ms) | best | median |\n| --- | ---: | ---: |")
    for label in results[0]:
        values = [r[label] * 1000 for r in results]
        print(f"| {label} | {min(values):.1f} | {statistics.median(values):.1f} |")
