"""kill -9 of a real `tlsa-manager sync` process in the middle of a key rollover, against
the real BIND primary and secondary.

The MTA is modelled by the reload command: it copies the live file to ``presented.pem``
when (and only when) it completes, as an MTA loads its certificate at reload.  After
every kill, each authoritative server's RRset must still match, for every record kind
present, both the chain the MTA presents and the chain in the live file (what it would
present after a restart), computed with openssl; the ledger must load; and the next
uninterrupted run must converge to records for the new chain only.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tlsa_manager.records import owner_name

import pki
from conftest import bind_read, openssl_tlsa_data, rfc2136_config
from servers import ZONE, Bind
from test_sync_cli import le_shaped_chain

RELOAD = """
import pathlib, shutil, sys, time
d = pathlib.Path(sys.argv[1])
if (d / "hang").exists():
    (d / "reloading").touch()
    time.sleep(120)
shutil.copyfile(d / "live" / "ecdsa.pem", d / "presented.pem")
"""


@pytest.fixture
def rollover(tmp_path: Path, bind: Bind) -> dict[str, Any]:
    """A host synced once on a YE1 chain, with a new-key YE2 renewal staged and published."""
    host = f"crash-{secrets.token_hex(3)}.{ZONE}"
    live, staged = tmp_path / "live", tmp_path / "staged"
    leaf, chain = le_shaped_chain(host, "ye1.pem")
    pki.write(live / "ecdsa.pem", leaf.key_pem, leaf.pem, chain)
    (tmp_path / "presented.pem").write_bytes((live / "ecdsa.pem").read_bytes())
    (tmp_path / "reload.py").write_text(RELOAD)
    config = tmp_path / "tlsa-manager.toml"
    config.write_text(rfc2136_config(tmp_path / "state", bind, host, f"""
cert = "{live / 'ecdsa.pem'}"
staged_dir = "{staged}"
reload = ["{sys.executable}", "{tmp_path / 'reload.py'}", "{tmp_path}"]
"""))
    site = {"host": host, "config": config, "dir": tmp_path, "owner": owner_name(host), "bind": bind}
    assert sync(site).returncode == 0
    new_leaf, new_chain = le_shaped_chain(host, "ye2.pem")
    pki.write(staged / "ecdsa.pem", new_leaf.key_pem, new_leaf.pem, new_chain)
    published = sync(site)  # what the renewal hook does: pre-publish; the gate starts now
    assert published.returncode == 0 and "may go live not before" in published.stdout, published.stdout
    return site


def start_sync(site: dict[str, Any]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tlsa_manager", "--config", str(site["config"]), "sync", site["host"]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def sync(site: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tlsa_manager", "--config", str(site["config"]), "sync", site["host"]],
        capture_output=True, text=True, timeout=120)


def kill9(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it finished first
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=10)  # reaps it and closes the pipes


def expected(pem: Path, tmp: Path) -> dict[tuple[int, int, int], str]:
    """3 1 1 of the leaf and 2 1 1 of the issuer the file carries, as openssl computes them."""
    text = pem.read_text()
    blocks = [b for b in text.split("-----BEGIN ")[1:] if b.startswith("CERTIFICATE")]
    leaf, issuer = tmp / "leaf.pem", tmp / "issuer.pem"
    leaf.write_text("-----BEGIN " + blocks[0])
    issuer.write_text("-----BEGIN " + blocks[1])
    return {(3, 1, 1): openssl_tlsa_data(leaf, 1, 1), (2, 1, 1): openssl_tlsa_data(issuer, 1, 1)}


def assert_covered(site: dict[str, Any]) -> None:
    """Every server's RRset matches, per record kind present, what the MTA may present."""
    tmp = site["dir"]
    chains = {"presented": expected(tmp / "presented.pem", tmp),
              "live file": expected(tmp / "live" / "ecdsa.pem", tmp)}
    bind = site["bind"]
    for server, port in (("primary", bind.primary.port), ("secondary", bind.secondary.port)):
        records, _ttl = bind_read(port, site["owner"])
        for kind in {(int(r.usage), int(r.selector), int(r.mtype)) for r in records}:
            values = {r.data.hex() for r in records if (int(r.usage), int(r.selector), int(r.mtype)) == kind}
            for what, want in chains.items():
                assert want[kind] in values, f"{server}: no {kind} record matches the {what} chain: {values}"


def ledger_loads(site: dict[str, Any]) -> dict[str, Any]:
    status = subprocess.run([sys.executable, "-m", "tlsa_manager", "--config", str(site["config"]), "--json",
                             "status", site["host"]], capture_output=True, text=True, timeout=60)
    import json

    host: dict[str, Any] = json.loads(status.stdout)["hosts"][0]
    # the exit-code contract (docs/cli.md): an unconfirmed deploy is a failure (1)
    assert status.returncode == (1 if host["unconfirmed_deploys"] else 0), status.stderr
    return host


def converge(site: dict[str, Any]) -> None:
    """Uninterrupted runs finish the rollover: the MTA presents the new chain and DNS holds
    records for it alone (the old 3 1 1 gone from both servers)."""
    tmp = site["dir"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        result = sync(site)
        assert result.returncode == 0, result.stderr
        assert_covered(site)
        new = expected(tmp / "live" / "ecdsa.pem", tmp)[(3, 1, 1)]
        leafs = [{r.data.hex() for r in bind_read(p, site["owner"])[0] if r.usage == 3}
                 for p in (site["bind"].primary.port, site["bind"].secondary.port)]
        if (tmp / "presented.pem").read_bytes() == (tmp / "live" / "ecdsa.pem").read_bytes() and \
                not (tmp / "staged" / "ecdsa.pem").exists() and all(s == {new} for s in leafs):
            assert ledger_loads(site)["unconfirmed_deploys"] == []
            return
        time.sleep(1)
    raise AssertionError(f"did not converge: {result.stdout} {result.stderr}")


def test_kill_9_between_rename_and_reload(rollover: dict[str, Any]) -> None:
    site, tmp = rollover, rollover["dir"]
    old_live = (tmp / "live" / "ecdsa.pem").read_bytes()
    time.sleep(2 * 2 + 1 + 1)  # the gate: t_sync + 2 x TTL + slack
    (tmp / "hang").touch()
    process = start_sync(site)
    deadline = time.monotonic() + 60
    while not (tmp / "reloading").exists() and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    assert (tmp / "reloading").exists(), "the sync never reached the deploy"
    kill9(process)
    # the file was renamed, the MTA never reloaded: it presents the old chain
    assert (tmp / "live" / "ecdsa.pem").read_bytes() != old_live
    assert (tmp / "presented.pem").read_bytes() == old_live
    assert_covered(site)
    status = ledger_loads(site)
    assert [d["deployed"] for d in status["unconfirmed_deploys"]] == ["staged ecdsa.pem"]
    (tmp / "hang").unlink()
    # the next run reloads first and removes the old key's record only after that
    first = sync(site)
    assert_covered(site)
    assert first.returncode == 0 and "finished the deploy of staged ecdsa.pem: reloaded, not verified" in first.stdout + first.stderr
    assert (tmp / "presented.pem").read_bytes() == (tmp / "live" / "ecdsa.pem").read_bytes()
    converge(site)


def test_kill_9_while_waiting_for_a_lagging_secondary(rollover: dict[str, Any]) -> None:
    site, bind = rollover, rollover["bind"]
    time.sleep(2 * 2 + 1 + 1)
    # a further renewal: a third key, while the secondary stops getting NOTIFYs
    third, chain = le_shaped_chain(site["host"], "ye1.pem")
    bind.set_notify(False)
    try:
        pki.write(site["dir"] / "staged" / "ecdsa.pem", third.key_pem, third.pem, chain)
        before = bind_read(bind.primary.port, site["owner"])[0]
        process = start_sync(site)
        deadline = time.monotonic() + 60
        while bind_read(bind.primary.port, site["owner"])[0] == before and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        time.sleep(0.3)
        kill9(process)  # the update is in, the secondary lags, the sync was polling it
        assert bind_read(bind.primary.port, site["owner"])[0] != bind_read(bind.secondary.port, site["owner"])[0]
        assert_covered(site)
        ledger_loads(site)
    finally:
        bind.set_notify(True)
    bind.secondary.rndc(bind.keys, "refresh", ZONE)
    converge(site)


def test_kill_9_at_random_moments_of_a_rollover(rollover: dict[str, Any]) -> None:
    """Kills at seeded random moments, each followed by the invariant; then convergence."""
    site = rollover
    rng = random.Random(7225)
    kills = attempts = 0
    while kills < 6 and attempts < 40:
        attempts += 1
        process = start_sync(site)
        time.sleep(rng.uniform(0.2, 1.2))
        if process.poll() is None:
            kills += 1
        kill9(process)
        assert_covered(site)
        ledger_loads(site)
    assert kills == 6, f"only {kills} of {attempts} runs were still going when killed"
    converge(site)
