"""End to end, real components on loopback: BIND primary + secondary (signed, TSIG),
Unbound validating with the zone's trust anchor, Postfix with STARTTLS serving an RSA
and an ECDSA chain, and a test PKI shaped like Let's Encrypt (a root, sibling
intermediates in the catalog's active and backup roles).

After every step, two independent verifiers accept the live server against the RRset
as a validating resolver returns it: `openssl s_client -dane_tlsa_rrdata` (per record
kind too) and Postfix's own `posttls-finger` in DANE mode through Unbound.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest

from tlsa_manager.records import Tlsa, owner_name

import pki
from conftest import CliRunner, rfc2136_config
from servers import ZONE, Bind, posttls_finger, require, start_resolver_and_mta, stop_resolver_and_mta

HOST = f"mx.{ZONE}"
NOW = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
GATE = 2 * 2 + 1 + 0.7  # 2 x TTL(2 s) + slack(1 s), and a little


@pytest.fixture(scope="module")
def world(bind: Bind, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require("unbound", "postfix", "posttls-finger", "openssl", "unshare")
    root = Path(tempfile.mkdtemp(prefix="tlsa-e2e-"))
    (root).chmod(0o755)
    state = root / "state"
    _ca_root, cas = pki.make_test_catalog(
        state / "catalog", "Test Root X9",
        [("TE1", "p384"), ("TE2", "p384"), ("TE3", "p384"), ("TR1", "rsa2048"), ("TR2", "rsa2048"), ("TR3", "rsa2048")],
        NOW)
    live, staged, incoming = root / "live", root / "staged", root / "incoming"
    for d in (live, staged, incoming):
        d.mkdir()
    keys = {"ecdsa": pki.make_key("p256"), "rsa": pki.make_key("rsa2048")}
    for kind, issuer in (("ecdsa", "TE1"), ("rsa", "TR1")):
        leaf = pki.make_leaf([HOST], cas[issuer], key=keys[kind], not_before=NOW)
        pki.write(live / f"{kind}.pem", leaf.key_pem, leaf.pem, cas[issuer].pem)
    unbound, postfix = start_resolver_and_mta(root, bind, HOST, [live / "ecdsa.pem", live / "rsa.pem"])
    config = root / "tlsa-manager.toml"
    config.write_text(rfc2136_config(state, bind, HOST, f"""
ports = [25, {postfix.port}]
certs = ["{live / 'ecdsa.pem'}", "{live / 'rsa.pem'}"]
staged_dir = "{staged}"
reload = {json.dumps(postfix.reload)}
probe = "127.0.0.1"
probe_port = {postfix.port}
"""))
    try:
        yield {"root": root, "cas": cas, "keys": keys, "live": live, "incoming": incoming, "config": config,
               "unbound": unbound, "postfix": postfix, "bind": bind}
    finally:
        stop_resolver_and_mta(root, unbound, postfix)


def validated_rrset(world: dict[str, Any], port: int) -> list[Tlsa]:
    owner = owner_name(HOST, port)
    query = dns.message.make_query(owner, dns.rdatatype.TLSA, want_dnssec=True)
    response = dns.query.udp(query, "127.0.0.1", port=world["unbound"].port, timeout=5)
    assert response.flags & dns.flags.AD, "the TLSA answer must validate (AD)"
    return sorted(Tlsa.from_rdata(r) for rrset in response.answer if rrset.rdtype == dns.rdatatype.TLSA
                  for r in rrset)


def openssl_dane(world: dict[str, Any], records: list[Tlsa], algorithm: str) -> bool:
    args = ["openssl", "s_client", "-brief", "-starttls", "smtp", "-connect", f"127.0.0.1:{world['postfix'].port}",
            "-servername", HOST, "-dane_tlsa_domain", HOST, "-verify_return_error", "-tls1_2"]
    args += ["-cipher", "aRSA" if algorithm == "rsa" else "aECDSA"]
    for record in records:
        args += ["-dane_tlsa_rrdata", record.to_text()]
    result = subprocess.run(args, input=b"QUIT\r\n", capture_output=True, timeout=30)
    return result.returncode == 0 and b"Verification: OK" in result.stdout + result.stderr


def soa_serial(port: int, zone: str) -> int:
    response = dns.query.tcp(dns.message.make_query(zone, dns.rdatatype.SOA), "127.0.0.1", port=port, timeout=5)
    return int(next(iter(response.answer[0])).serial)


def assert_senders_accept(world: dict[str, Any], step: str) -> None:
    # The hook returns before the secondary has the change (its gates wait, not it), and
    # unbound asks either server: compare the owners once both serve the same version.
    bind = world["bind"]
    deadline = time.monotonic() + 20
    while soa_serial(bind.secondary.port, bind.zone) < soa_serial(bind.primary.port, bind.zone):
        assert time.monotonic() < deadline, f"{step}: the secondary never caught up"
        time.sleep(0.05)
    time.sleep(1.2)  # unbound's cache-max-ttl is 1 s
    records = validated_rrset(world, world["postfix"].port)
    assert records == validated_rrset(world, 25), step
    kinds = {r.kind for r in records}
    for algorithm in ("ecdsa", "rsa"):
        assert openssl_dane(world, records, algorithm), f"{step}: openssl rejects {algorithm}"
        for kind in kinds:  # I-1: every record kind on its own matches the live chain
            subset = [r for r in records if r.kind == kind]
            assert openssl_dane(world, subset, algorithm), f"{step}: {kind} alone does not match {algorithm}"
        out = posttls_finger(world["postfix"], world["unbound"], algorithm)
        assert "Verified TLS connection established" in out, f"{step}: posttls-finger {algorithm}: {out[-800:]}"


def renew(world: dict[str, Any], cli: CliRunner, kind: str, issuer: str, *, new_key: bool) -> tuple[str, pki.Issued]:
    key = pki.make_key("p256" if kind == "ecdsa" else "rsa2048") if new_key else world["keys"][kind]
    leaf = pki.make_leaf([HOST], world["cas"][issuer], key=key, not_before=NOW)
    d = world["incoming"]
    pki.write(d / "fullchain.pem", leaf.pem, world["cas"][issuer].pem)
    pki.write(d / "privkey.pem", leaf.key_pem)
    result = cli("--config", world["config"], "hook", "generic", "--cert", d / "fullchain.pem",
                 "--key", d / "privkey.pem", "--host", HOST)
    assert result.code == 0, result.err
    if new_key:
        world["keys"][kind] = key
    return result.out, leaf


def test_renewals_end_to_end(world: dict[str, Any], cli: CliRunner) -> None:
    cfg = ["--config", world["config"]]
    # 1. first sync
    first = cli(*cfg, "sync", HOST)
    assert first.code == 0, first.err
    assert_senders_accept(world, "first sync")
    time.sleep(GATE)

    # 2. renewal with the same key (issued by the sibling TE2): covered, live at once
    out, leaf = renew(world, cli, "ecdsa", "TE2", new_key=False)
    assert "deployed staged ecdsa.pem (verified: " in out, out
    assert leaf.pem in (world["live"] / "ecdsa.pem").read_bytes()
    assert_senders_accept(world, "same-key renewal")

    # 3. renewal with a new key: staged, published, gate, deployed, old record removed
    old_rrset = validated_rrset(world, 25)
    out, leaf = renew(world, cli, "ecdsa", "TE1", new_key=True)
    assert "stays staged" in out and leaf.pem not in (world["live"] / "ecdsa.pem").read_bytes()
    assert_senders_accept(world, "new key staged")
    assert len(validated_rrset(world, 25)) == len(old_rrset) + 1
    time.sleep(GATE)
    deploy = cli(*cfg, "sync", HOST)
    assert "deployed staged ecdsa.pem" in deploy.out, deploy.out + deploy.err
    assert leaf.pem in (world["live"] / "ecdsa.pem").read_bytes()
    assert_senders_accept(world, "new key deployed")
    assert len(validated_rrset(world, 25)) == len(old_rrset)  # the old key's record is gone

    # 4. renewal issued by the backup sibling TE3, same key: live at once
    time.sleep(GATE)
    out, leaf = renew(world, cli, "ecdsa", "TE3", new_key=False)
    assert "deployed staged ecdsa.pem (verified: " in out, out
    assert_senders_accept(world, "backup issuer")

    # 5. the RSA chain renewed on its own with a new key
    out, leaf = renew(world, cli, "rsa", "TR2", new_key=True)
    assert "stays staged" in out
    assert_senders_accept(world, "rsa staged")
    time.sleep(GATE)
    deploy = cli(*cfg, "sync", HOST)
    assert "deployed staged rsa.pem" in deploy.out, deploy.out + deploy.err
    assert_senders_accept(world, "rsa deployed")
