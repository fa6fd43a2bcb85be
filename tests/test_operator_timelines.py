"""Timelines an operator (or someone else with the TSIG key) makes between runs, against
the real BIND primary and secondary: what `sync` and `status` then say must be what the
servers serve and what the tool did.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tlsa_manager.records import owner_name

import pki
from conftest import CliRunner, bind_read, openssl_tlsa_data, probed_host_lines, rfc2136_config
from servers import ZONE, Bind, Postfix, require
from test_sync_cli import le_shaped_chain

GATE = 2 * 2 + 1 + 0.5  # 2 x TTL (2 s) + slack (1 s), and a little


def nsupdate(bind: Bind, *lines: str) -> None:
    """Someone else's change with BIND's own nsupdate (the tool's TSIG key)."""
    script = f"server 127.0.0.1 {bind.primary.port}\nzone {bind.zone}\n" + "".join(f"{x}\n" for x in lines) + "send\n"
    subprocess.run(["nsupdate", "-k", str(bind.key_file)], input=script.encode(), check=True, capture_output=True)


def site(tmp_path: Path, bind: Bind, prefix: str) -> tuple[str, Path]:
    """A host on the test BIND with an LE-shaped ECDSA chain live and a staged_dir."""
    host = f"{prefix}-{secrets.token_hex(3)}.{ZONE}"
    leaf, chain = le_shaped_chain(host, "ye1.pem")
    pki.write(tmp_path / "live" / "ecdsa.pem", leaf.key_pem, leaf.pem, chain)
    (tmp_path / "staged").mkdir()
    config = tmp_path / "tlsa-manager.toml"
    config.write_text(rfc2136_config(tmp_path / "state", bind, host, f"""
cert = "{tmp_path / 'live' / 'ecdsa.pem'}"
staged_dir = "{tmp_path / 'staged'}"
"""))
    return host, config


def test_a_ttl_changed_by_hand_is_set_back_and_the_run_says_so(tmp_path: Path, bind: Bind, cli: CliRunner) -> None:
    """Before: the run wrote an UPDATE that set the TTL back, and printed 'nothing to change'."""
    host, config = site(tmp_path, bind, "ttl")
    assert cli("--config", config, "sync", host).code == 0
    owner = owner_name(host)
    records, ttl = bind_read(bind.primary.port, owner)
    assert ttl == 2
    # the same record again with TTL 300: BIND gives the whole RRset that TTL
    nsupdate(bind, f"update add {owner} 300 IN TLSA {sorted(r.to_text() for r in records)[0]}")
    assert bind_read(bind.primary.port, owner) == (records, 300)
    result = cli("--config", config, "sync", host)
    assert result.code == 0, result.err
    assert bind_read(bind.primary.port, owner) == (records, 2)
    assert result.out.splitlines()[0] == f"{host}: TTL 300 -> 2", result.out
    again = cli("--config", config, "sync", host)
    assert again.out.splitlines()[0] == f"{host}: nothing to change", again.out


@pytest.mark.parametrize("kind", ["3 0 1"])
def test_a_foreign_record_kind_that_blocks_a_deploy_is_named(
    tmp_path: Path, bind: Bind, cli: CliRunner, kind: str
) -> None:
    """Someone adds a "3 0 1" of the live certificate.  A staged new key can then never
    go live (a sender using "3 0 1" would fail on it): the gate must say why, not "its
    records are not published yet" (before: that, every run, with the records published)."""
    host, config = site(tmp_path, bind, "foreign")
    owner = owner_name(host)
    assert cli("--config", config, "sync", host).code == 0
    leaf_pem = tmp_path / "leaf.pem"
    text = (tmp_path / "live" / "ecdsa.pem").read_text()
    leaf_pem.write_text("-----BEGIN CERTIFICATE-----" + text.split("-----BEGIN CERTIFICATE-----")[1])
    whole = openssl_tlsa_data(leaf_pem, 0, 1)
    nsupdate(bind, f"update add {owner} 2 IN TLSA {kind} {whole}")
    new_leaf, chain = le_shaped_chain(host, "ye1.pem")
    pki.write(tmp_path / "staged" / "ecdsa.pem", new_leaf.key_pem, new_leaf.pem, chain)
    assert cli("--config", config, "sync", host).code == 4  # H3: the "3 0 1"
    new_key = openssl_tlsa_data(tmp_path / "staged" / "ecdsa.pem", 1, 1, key=True)
    for port in (bind.primary.port, bind.secondary.port):
        assert new_key in {r.data.hex() for r in bind_read(port, owner)[0]}  # published and served
    time.sleep(GATE)
    blocked = cli("--config", config, "sync", host)
    assert (tmp_path / "staged" / "ecdsa.pem").exists()  # not deployed: "3 0 1" would not match it
    want = f'{owner} holds "{kind}" records, a kind tlsa-manager does not publish here, and none matches it'
    assert want in blocked.out and "not published yet" not in blocked.out, blocked.out
    status = cli("--config", config, "status", host)
    assert want in status.out, status.out
    # once it is gone the usual gate applies, and the deploy follows
    nsupdate(bind, f"update delete {owner} IN TLSA {kind} {whole}")
    waiting = cli("--config", config, "sync", host)
    assert "may go live not before" in waiting.out, waiting.out
    time.sleep(GATE)
    deployed = cli("--config", config, "sync", host)
    assert "deployed staged ecdsa.pem" in deployed.out, deployed.out


def presented_leaf(port: int, host: str, tmp: Path) -> str:
    """The "3 1 1" data of the leaf the MTA presents, as openssl computes it."""
    shown = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
                            "-servername", host, "-showcerts"], input=b"QUIT\r\n", capture_output=True, timeout=30)
    text = shown.stdout.decode()
    leaf = tmp / "presented.pem"
    leaf.write_text("-----BEGIN CERTIFICATE-----" + text.split("-----BEGIN CERTIFICATE-----")[1].split(
        "-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
    return openssl_tlsa_data(leaf, 1, 1)


def senders_accept(bind: Bind, port: int, host: str) -> bool:
    """openssl as a DANE sender, with the RRset of each server in turn."""
    for server in (bind.primary.port, bind.secondary.port):
        records = [r.to_text() for r in bind_read(server, owner_name(host, port))[0]]
        args = ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}", "-servername", host,
                "-dane_tlsa_domain", host, "-verify_return_error"]
        for record in records:
            args += ["-dane_tlsa_rrdata", record]
        result = subprocess.run(args, input=b"QUIT\r\n", capture_output=True, timeout=30)
        if result.returncode != 0:
            return False
    return True


@contextlib.contextmanager
def by_hand(bind: Bind, cli: CliRunner) -> Iterator[dict[str, Any]]:
    """A host synced once with Postfix presenting its live file (only "3 1 1", so no
    "2 1 1" of the issuer lets a sender through), then a new key and certificate copied
    over the live file by hand, without a reload: Postfix still presents the old one."""
    require("postfix", "openssl")
    root = Path(tempfile.mkdtemp(prefix="tlsa-byhand-"))
    root.chmod(0o755)
    host = f"byhand-{secrets.token_hex(3)}.{ZONE}"
    live = root / "live" / "ecdsa.pem"
    leaf, chain = le_shaped_chain(host, "ye1.pem")
    pki.write(live, leaf.key_pem, leaf.pem, chain)
    # one long-lived smtpd per address, as a busy server's are: it loaded the file at start
    postfix = Postfix(root / "postfix", host, [live], smtpd_maxproc="1", smtpd_options="-o max_idle=3600")
    postfix.start()
    try:
        config = root / "tlsa-manager.toml"
        config.write_text(rfc2136_config(root / "state", bind, host, probed_host_lines(postfix, live, root / "staged")
                                         + 'records = ["3 1 1"]\n'))
        first = cli("--config", config, "sync", host)
        assert first.code == 0, first.out + first.err
        old = presented_leaf(postfix.port, host, root)
        assert senders_accept(bind, postfix.port, host)
        new_leaf, chain = le_shaped_chain(host, "ye1.pem")
        pki.write(root / "copy.pem", new_leaf.key_pem, new_leaf.pem, chain)
        subprocess.run(["chgrp", "postfix", str(root / "copy.pem")], check=True)
        (root / "copy.pem").chmod(0o640)
        (root / "copy.pem").rename(live)
        assert presented_leaf(postfix.port, host, root) == old  # not reloaded
        yield {"root": root, "host": host, "config": config, "postfix": postfix, "old": old}
    finally:
        postfix.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_certificate_replaced_by_hand_keeps_its_predecessors_record_while_the_mta_presents_it(
    bind: Bind, cli: CliRunner
) -> None:
    """An operator copies a new key + certificate over the live file and forgets the
    reload.  Before: the next sync removed the old key's "3 1 1" while Postfix still
    presented that key, and DANE senders deferred mail.  Now, with a probe, the run sees
    that the MTA presents a chain no file holds (H27): its record stays, the new key's
    is published, and once that has been served for two TTLs the tool reloads Postfix
    (as it would deploy a staged file); only then does the old record go."""
    with by_hand(bind, cli) as s:
        root, host, config, postfix, old = s["root"], s["host"], s["config"], s["postfix"], s["old"]
        run = cli("--config", config, "sync", host)
        assert run.code == 4 and "[H27 risk]" in run.out, run.out + run.err
        assert presented_leaf(postfix.port, host, root) == old
        assert senders_accept(bind, postfix.port, host), run.out + run.err
        early = cli("--config", config, "sync", host)  # the new key's gate is not passed yet
        assert "[H27 risk]" in early.out and presented_leaf(postfix.port, host, root) == old, early.out
        assert senders_accept(bind, postfix.port, host)

        time.sleep(GATE)
        done = cli("--config", config, "sync", host)
        assert done.code == 0 and "H27 is over" in done.out, done.out + done.err
        new = presented_leaf(postfix.port, host, root)
        assert new != old
        assert senders_accept(bind, postfix.port, host)
        for server in (bind.primary.port, bind.secondary.port):
            assert {r.data.hex() for r in bind_read(server, owner_name(host, postfix.port))[0]} == {new}


def test_a_file_copied_in_by_hand_is_not_made_live_by_the_tools_reload(bind: Bind, cli: CliRunner) -> None:
    """The same, then the ledger is lost: the first run probes, finds the MTA presenting
    a chain no file holds (H27) and publishes both.  Before: that very run then reloaded
    Postfix "to confirm", which made the copied key live before any server served its
    record (I-2); DANE senders deferred mail until their caches caught up.  Now H27 ends
    only when a probe shows the file presented; the tool never reloads for it."""
    with by_hand(bind, cli) as s:
        root, host, config, postfix, old = s["root"], s["host"], s["config"], s["postfix"], s["old"]
        (root / "state" / "ledger.json").unlink()
        run = cli("--config", config, "sync", host)
        assert run.code == 4 and "[H27 risk]" in run.out, run.out + run.err
        assert presented_leaf(postfix.port, host, root) == old
        assert senders_accept(bind, postfix.port, host)
        again = cli("--config", config, "sync", host)
        assert "[H27 risk]" in again.out and presented_leaf(postfix.port, host, root) == old, again.out


def test_a_cname_at_one_owner_stops_that_host_alone(tmp_path: Path, bind: Bind, cli: CliRunner) -> None:
    """Someone points one host's TLSA owner at a shared RRset with a CNAME.  Before: BIND
    dropped the records added beside the CNAME while every run printed "N added", exit 0,
    and then waited the whole propagation timeout for records nobody serves.  Now that host
    stops with the reason (exit 3) before anything is written for it; the zone's other host
    is published as before."""
    import dns.message
    import dns.query
    import dns.rdatatype

    host, config = site(tmp_path, bind, "plain")
    aliased = f"alias-{secrets.token_hex(3)}.{ZONE}"
    leaf, chain = le_shaped_chain(aliased, "ye1.pem")
    pki.write(tmp_path / "alias.pem", leaf.key_pem, leaf.pem, chain)
    with open(config, "a") as handle:
        handle.write(f'[hosts."{aliased}"]\nprovider = "bind"\ncert = "{tmp_path / "alias.pem"}"\nttl = 2\n'
                     f'nameservers = ["{bind.primary.endpoint}", "{bind.secondary.endpoint}"]\n')
    target = f"_25._tcp.shared.{ZONE}."
    nsupdate(bind, f"update add {owner_name(aliased)} 2 IN CNAME {target}")
    started = time.monotonic()
    result = cli("--config", config, "sync", "--propagation-timeout", "30")
    assert result.code == 3, result.out + result.err
    assert f"is a CNAME to {target}" in result.out + result.err
    assert time.monotonic() - started < 25  # no wait for records nobody serves
    assert bind_read(bind.primary.port, owner_name(host))[0]  # the other host is published
    answer = dns.query.tcp(dns.message.make_query(owner_name(aliased), dns.rdatatype.TLSA), "127.0.0.1",
                           port=bind.primary.port, timeout=5).answer
    assert [r.rdtype for r in answer] == [dns.rdatatype.CNAME]  # nothing was added beside it


def test_status_lists_what_is_served_beside_the_managed_records(tmp_path: Path, bind: Bind, cli: CliRunner) -> None:
    """Before: with a record someone else added, status said "5 record(s)" per server and
    listed the 4 managed ones only; the fifth was nowhere."""
    host, config = site(tmp_path, bind, "status")
    assert cli("--config", config, "sync", host).code == 0
    foreign = "2 1 1 " + secrets.token_hex(32)
    nsupdate(bind, f"update add {owner_name(host)} 2 IN TLSA {foreign}")
    deadline = time.monotonic() + 10
    while len(bind_read(bind.secondary.port, owner_name(host))[0]) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)  # the secondary has it too: no H18 (lagging) in the next run
    assert cli("--config", config, "sync", host).code == 0  # observes it
    out = cli("--config", config, "status", host).out
    assert f"served, not managed: {foreign}" in out, out
    listed = [x for x in out.splitlines() if x.startswith(("    managed: ", "    served, not managed: "))]
    assert len(listed) == len(bind_read(bind.primary.port, owner_name(host))[0]), out
