"""Two or more versions of tlsa-manager side by side on the RFC 2136 fleet, alternating.

Usage: python bench/ab_fleet.py [--hosts 1000] [--rounds 3] [--key rsa2048] [REV ...]
(default: ``main`` against this working tree).

bench_fleet.py times one version; on a shared machine two of its runs minutes apart
differ by more than most changes.  Here every version is a ``git archive`` of its
revision (this working tree as it is, with ``.``), all publish into the same real
BIND primary + secondary (bench_fleet's servers, both listed as nameservers), each
with hosts of its own, and in every round each version in turn runs, from nothing
(records deleted, state removed): the first sync, a no-op sync and ``plan``.  Wall
and CPU (``wait4``: the command's own process and its children) of each command, the
median and the best per version.  ``--key`` gives every host one shared leaf key of
that kind (``rsa2048``: an RSA fleet) instead of a P-256 key each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_fleet

import pki
from servers import ZONE, Bind

COMMANDS = (("first sync", ("sync",)), ("no-op sync", ("sync",)), ("plan", ("plan",)))


def export(rev: str, into: Path) -> Path:
    """The package of ``rev`` (``.``: this working tree) as files, compiled once."""
    into.mkdir(parents=True)
    if rev == ".":
        for part in ("tlsa_manager", "providers"):
            shutil.copytree(
                bench_fleet.REPO / part,
                into / part,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
            )
    else:
        blob = subprocess.run(
            ["git", "-C", str(bench_fleet.REPO), "archive", rev, "tlsa_manager", "providers"],
            capture_output=True,
            check=True,
        ).stdout
        with tempfile.TemporaryFile() as tar:
            tar.write(blob)
            tar.seek(0)
            with tarfile.open(fileobj=tar) as archive:
                archive.extractall(into, filter="data")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(into)], env=env, check=True)
    return into


def run(tree: Path, config: Path, args: tuple[str, ...]) -> tuple[float, float]:
    """(wall, CPU) of ``python -m tlsa_manager --config CONFIG ARGS`` on ``tree``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    env["PYTHONPATH"] = f"{tree}:{tree / 'providers'}"
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "tlsa_manager", "--config", str(config), *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=tree,
        )
        _pid, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"{tree.name}: {' '.join(args)} failed: {err.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("revs", nargs="*", metavar="REV", default=["main", "."])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--key", choices=pki.KEY_KINDS, help="one shared leaf key of this kind")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tlsa-abfleet-"))
    os.chmod(root, 0o755)  # named runs as user bind
    (root / "bind").mkdir()
    bind = Bind(root / "bind").start()
    try:
        sites = {}
        for index, rev in enumerate(args.revs):
            tree = export(rev, root / f"tree{index}")
            prefix = f"v{index}-"
            names = [f"{prefix}{i}.{ZONE}" for i in range(args.hosts)]
            issuer = (bench_fleet.LE / "ye1.pem").read_bytes()
            hosts = list(zip(names, pki.fleet(root / f"certs{index}", names, issuer, args.key), strict=True))
            provider = (
                f'[providers.p]\ntype = "rfc2136"\nserver = "{bind.primary.endpoint}"\n'
                f'tsig_key_file = "{bind.key_file}"\ntimeout = 60\n'
            )
            extra = f'nameservers = ["{bind.primary.endpoint}", "{bind.secondary.endpoint}"]\n'
            config = bench_fleet.fleet_config(
                root / f"fleet{index}.toml", root / f"state{index}", provider, hosts, extra
            )
            sites[rev] = (tree, config, hosts)
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for round_ in range(args.rounds):
            for rev, (tree, config, hosts) in sites.items():
                if round_:
                    bench_fleet.forget(bind, config, hosts)
                for label, command in COMMANDS:
                    times.setdefault((rev, label), []).append(run(tree, config, command))
            print(f"round {round_ + 1} done", file=sys.stderr, flush=True)
    finally:
        bind.stop()
        shutil.rmtree(root, ignore_errors=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{args.hosts} hosts, {args.key or 'p256'} keys, {args.rounds} rounds; load at the end {load}\n")
    print("| version | " + " | ".join(f"{label}: wall s | CPU s" for label, _ in COMMANDS) + " |")
    print("| --- |" + " ---: | ---: |" * len(COMMANDS))
    for rev in args.revs:
        cells = []
        for label, _ in COMMANDS:
            walls = [w for w, _ in times[rev, label]]
            cpus = [c for _, c in times[rev, label]]
            cells.append(f"{statistics.median(walls):.2f} ({min(walls):.2f})")
            cells.append(f"{statistics.median(cpus):.2f} ({min(cpus):.2f})")
        print(f"| {'this tree' if rev == '.' else rev} | " + " | ".join(cells) + " |")
    print("\n(median of the rounds, the best in brackets)")


if __name__ == "__main__":
    main()
