"""Two versions of tlsa-manager side by side: the zone-file fleet, alternating runs.

Usage: python bench/ab_zonefile.py [--hosts 1000] [--rounds 4] REV_A REV_B

Single runs on a shared machine move by up to 40% from one minute to the next, so a
before/after figure taken minutes apart says little.  This checks out each revision
into its own worktree, then in every round runs both versions in turn on a fresh copy
of the same zone-file site (``--hosts`` hosts in a zone of 5,000 other lines, as
bench_fleet.py builds it): first sync, no-op sync, plan.  It prints the median and the
best CPU time of each command's process (``wait4``) per version.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_fleet

from servers import ZONE

COMMANDS = (("first sync", ("sync",)), ("no-op sync", ("sync",)), ("plan", ("plan",)))


def checkout(root: Path, rev: str) -> Path:
    tree = root / f"tree-{rev}"
    subprocess.run(
        ["git", "-C", str(bench_fleet.REPO), "worktree", "add", "-q", "--detach", str(tree), rev], check=True
    )
    return tree


def cpu_of(tree: Path, config: Path, args: tuple[str, ...], cache: Path) -> float:
    env = {**os.environ, "PYTHONPATH": f"{tree}:{tree / 'providers'}", "PYTHONPYCACHEPREFIX": str(cache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode compiled once
    process = subprocess.Popen(
        [sys.executable, "-m", "tlsa_manager", "--config", str(config), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=tree,
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, 4):
        raise SystemExit(f"{tree.name}: {' '.join(args)} failed")
    return usage.ru_utime + usage.ru_stime


def site(directory: Path, hosts: list[tuple[str, Path]]) -> Path:
    """A fresh zone of 5,000 other lines and a config publishing the hosts into it."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    zone = directory / f"db.{ZONE}"
    body = ["$TTL 60\n@ IN SOA ns1 hostmaster ( 1 60 30 3600 30 )\n  IN NS ns1\nns1 IN A 127.0.0.1\n"]
    body += [f"www{i} IN A 192.0.2.{i % 250 + 1}\n" for i in range(4996)]
    zone.write_text("".join(body))
    provider = f'[providers.p]\ntype = "zonefile"\nzone_file = "{zone}"\n'
    return bench_fleet.fleet_config(directory / "fleet.toml", directory / "state", provider, hosts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("revs", nargs=2, metavar="REV")
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tlsa-ab-") as tmp:
        root = Path(tmp)
        trees = {rev: checkout(root, rev) for rev in args.revs}
        try:
            hosts = bench_fleet.make_fleet(root / "certs", "z", args.hosts)
            cpu: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.rounds):
                for rev, tree in trees.items():
                    config = site(root / f"site-{rev}", hosts)
                    for label, command in COMMANDS:
                        cpu.setdefault((rev, label), []).append(
                            cpu_of(tree, config, command, root / f"pyc-{rev}")
                        )
            print(
                f"| CPU s, median of {args.rounds} (best) | "
                + " | ".join(label for label, _ in COMMANDS)
                + " |"
            )
            print("| --- |" + " ---: |" * len(COMMANDS))
            for rev in args.revs:
                cells = [
                    f"{statistics.median(cpu[rev, label]):.2f} ({min(cpu[rev, label]):.2f})"
                    for label, _ in COMMANDS
                ]
                print(f"| {rev} | " + " | ".join(cells) + " |")
        finally:
            for tree in trees.values():
                subprocess.run(
                    ["git", "-C", str(bench_fleet.REPO), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )


if __name__ == "__main__":
    main()
