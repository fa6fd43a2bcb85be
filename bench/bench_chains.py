"""Benchmark: the CPU of loading a fleet's certificate chains, and of linting them, per host.

What ``sync``/``plan`` do once per host before planning: read the host's PEM file (key,
leaf, Let's-Encrypt-shaped chain, as ``tests/pki.py`` ``fleet()`` makes them for
``bench_fleet.py``), parse it, check that the key belongs to the leaf, find the catalog
issuer and describe the chain (``hostfiles.chain_facts``).

N certificate files are made once in a temp dir; then each revision loads all of them
in a fresh child process (a run's process-wide caches start cold, as in a real run),
timed with ``time.process_time()`` around the loading loop only (imports, the catalog
and one warm-up file on other names are outside it).  The revisions take turns, run
after run, so a change of load on the shared machine hits them alike; the best of
``--runs`` is reported.  Each child also prints a digest of every ChainFacts it made:
the revisions must agree on it (the same results, only faster).  Then each host's
RRset once in sync (its 3 1 1 and the 2 1 1 of YE1-3) is linted against its chain, as
the planner does for every owner (``lint.lint``), timed the same way.

Usage: python bench/bench_chains.py [--hosts 1000] [--runs 5] [--key rsa2048] [--chain other]
[--rev main] [--tree PATH]
(default: ``git archive`` of ``main`` against this working tree; a P-256 key per host,
or with ``--key`` one shared key of that kind in every file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from trees import run_json

REPO = Path(__file__).resolve().parent.parent
LE = REPO / "tlsa_manager" / "data" / "letsencrypt"


def child(directory: Path) -> None:
    """Load every ``h*.pem`` of ``directory``, then lint each host's RRset; print the CPU
    per host of each and a digest of what they gave."""
    import tlsa_manager
    from tlsa_manager.catalog import load_bundled
    from tlsa_manager.hostfiles import chain_facts
    from tlsa_manager.lint import lint
    from tlsa_manager.policy import issuers_from_catalog
    from tlsa_manager.records import MatchingType, Selector, Usage

    catalog = load_bundled()
    paths = sorted(directory.glob("h*.pem"))
    chain_facts(directory / "warm.pem", "live warm.pem", catalog)  # lazy imports, the shared CA
    start = time.process_time()
    found = [chain_facts(path, f"live {path.name}", catalog) for path in paths]
    cpu = time.process_time() - start
    # what the planner lints for each host once it is in sync: its 3 1 1 and the 2 1 1 of
    # the catalog's ECDSA intermediates (YE1-3), against its live chain
    issuers, roots = issuers_from_catalog(catalog), issuers_from_catalog(catalog, roots=True)
    ee, ta = (
        (Usage.DANE_EE, Selector.SPKI, MatchingType.SHA2_256),
        (Usage.DANE_TA, Selector.SPKI, MatchingType.SHA2_256),
    )
    pinned = frozenset().union(*(i.records(ta) for i in issuers if i.name in ("YE1", "YE2", "YE3")))
    rrsets = [(chain.matching(ee) | pinned, chain) for chain in found]
    start = time.process_time()
    findings = [
        lint(records, (chain,), (), (), issuers, roots, 12, f"_25._tcp.{chain.label}")
        for records, chain in rrsets
    ]
    lint_cpu = time.process_time() - start
    digest = hashlib.sha256("".join(map(repr, [*found, *findings])).encode()).hexdigest()[:16]
    found_in = tlsa_manager.__file__
    print(
        json.dumps(
            {
                "ms_per_host": cpu * 1000 / len(paths),
                "lint_ms_per_host": lint_cpu * 1000 / len(paths),
                "digest": digest,
                "module": found_in,
            }
        )
    )


def export(rev: str, into: Path) -> Path:
    """The package of ``rev`` as files (``git archive``), without touching any worktree."""
    archive_cmd = ["git", "-C", str(REPO), "archive", rev, "tlsa_manager"]
    blob = subprocess.run(archive_cmd, capture_output=True, check=True)
    with tempfile.TemporaryFile() as tar:
        tar.write(blob.stdout)
        tar.seek(0)
        with tarfile.open(fileobj=tar) as archive:
            archive.extractall(into, filter="data")
    return into


def run_child(tree: Path, directory: Path) -> dict[str, Any]:
    result = run_json(tree, [str(Path(__file__).resolve()), "--child", str(directory)])
    if not str(result["module"]).startswith(str(tree)):
        raise SystemExit(f"the child imported {result['module']}, not the tree {tree}")
    return result


def make_certs(directory: Path, n: int, key: str | None = None, chain: str = "le") -> None:
    """``le``: key, leaf and YE1 (the catalog's CA, by its chain certificate); ``other``:
    the same from a CA the catalog does not know; ``bare``: key and leaf alone, the leaf
    naming YE1 (a cert.pem without its chain: the catalog's certificates are searched)."""
    sys.path.insert(0, str(REPO / "tests"))
    import pki

    issuer = (
        (LE / "ye1.pem").read_bytes() if chain != "other" else pki.make_ca("Other CA", org="Other Org").pem
    )
    paths = pki.fleet(directory, [f"h{i}.example.net" for i in range(n)], issuer, key)
    paths += pki.fleet(directory, ["warm.example.org"], issuer)
    if chain == "bare":
        for path in paths:
            path.write_bytes(path.read_bytes().replace(issuer, b""))
    (directory / "warm.pem").write_bytes(paths[-1].read_bytes())


def pki_kinds() -> tuple[str, ...]:
    sys.path.insert(0, str(REPO / "tests"))
    import pki

    return pki.KEY_KINDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--key", choices=pki_kinds(), help="one shared leaf key of this kind (default: a P-256 key each)"
    )
    parser.add_argument("--chain", choices=["le", "other", "bare"], default="le", help="see make_certs")
    parser.add_argument("--rev", action="append", default=[], help="a git revision to compare (default main)")
    parser.add_argument("--tree", action="append", default=[], type=Path, help="a source tree to compare")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    revs = args.rev or ([] if args.tree else ["main"])
    trees = args.tree or [REPO]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        labelled = [(rev, export(rev, root / f"rev{i}")) for i, rev in enumerate(revs)]
        labelled += [(str(tree), tree.resolve()) for tree in trees]
        subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(t) for _, t in labelled)], check=True)
        certs = root / "certs"
        certs.mkdir()
        make_certs(certs, args.hosts, args.key, args.chain)
        times: dict[str, list[float]] = {label: [] for label, _ in labelled}
        lints: dict[str, list[float]] = {label: [] for label, _ in labelled}
        digests: dict[str, set[str]] = {label: set() for label, _ in labelled}
        for _ in range(args.runs):
            for label, tree in labelled:
                result = run_child(tree, certs)
                times[label].append(float(str(result["ms_per_host"])))
                lints[label].append(float(str(result["lint_ms_per_host"])))
                digests[label].add(str(result["digest"]))
    first, first_lint = min(times[labelled[0][0]]), min(lints[labelled[0][0]])
    print(
        f"| tree ({args.hosts} hosts, {args.key or 'p256'} keys, {args.chain} chain, {args.runs} runs) "
        "| loading: best ms/host | median | vs first | lint: best ms/host | median | vs first | digest |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for label, _ in labelled:
        best, best_lint = min(times[label]), min(lints[label])
        print(
            f"| {label} | {best:.3f} | {statistics.median(times[label]):.3f} | {first / best:.2f}x faster "
            f"| {best_lint:.3f} | {statistics.median(lints[label]):.3f} "
            f"| {first_lint / best_lint:.2f}x faster "
            f"| {', '.join(sorted(digests[label]))} |"
        )
    if len(set().union(*digests.values())) != 1:
        raise SystemExit("the trees disagree on the chains' facts or the lint's findings")


if __name__ == "__main__":
    main()
