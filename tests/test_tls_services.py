"""`check` on every TLS service a TLSA record protects, against real servers.

Postfix's implicit-TLS listener (465 style), Dovecot's IMAP/POP3 with STARTTLS/STLS
and implicit TLS (993/995 style), and ``openssl s_server`` for HTTPS-style 443, all on
loopback high ports, each serving an ECDSA and an RSA chain; TLSA records published in
a real signed BIND zone and read through a validating Unbound.  Every verdict, per
service, host and algorithm, must agree with ``openssl s_client -dane_tlsa_rrdata``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tlsa_manager.records import MatchingType, Selector, Tlsa, Usage, compute
from tlsa_manager.tlsprobe import protocol_for

import pki
from conftest import CliRunner, Result
from servers import Bind, Postfix, Unbound, free_port, require
from test_check import wait_resolvable
from tls_servers import Dovecot, SServer, s_client_dane

NOW = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
ZONE = "example.test"
HOSTS = ("svc", "bad", "ta", "rsaonly")
#: service -> (protocol for --protocol, what openssl s_client -starttls calls it)
SERVICES = {
    "smtps": ("tls", None),
    "smtp": ("smtp", "smtp"),
    "imap": ("imap", "imap"),
    "imaps": ("tls", None),
    "pop3": ("pop3", "pop3"),
    "pop3s": ("tls", None),
    "https": ("tls", None),
}
EXPECTED = {"svc": ("pass", "pass"), "bad": ("fail", "fail"), "ta": ("pass", "pass"), "rsaonly": ("fail", "pass")}


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, Any]]:
    require("named", "unbound", "postfix", "dovecot", "openssl", "nsupdate")
    root = Path(tempfile.mkdtemp(prefix="tlsa-services-"))
    root.chmod(0o755)
    (root / "bind").mkdir()
    bind = Bind(root / "bind")
    ca = pki.make_ca("Test Root S", pki.make_key("p384"), not_before=NOW)
    inter = pki.make_ca("TS1", pki.make_key("p384"), issuer=ca, not_before=NOW)
    names = [f"{h}.{ZONE}" for h in HOSTS]
    leaves = {alg: pki.make_leaf(names, inter, key=pki.make_key(kind), not_before=NOW)
              for alg, kind in (("ecdsa", "p256"), ("rsa", "rsa2048"))}
    pem = root / "pem"
    postfix_files = [pki.write(pem / f"postfix-{alg}.pem", leaf.key_pem, leaf.pem, inter.pem)
                     for alg, leaf in leaves.items()]
    dovecot_chains = {alg: (pki.write(pem / f"{alg}-chain.pem", leaf.pem, inter.pem),
                            pki.write(pem / f"{alg}-key.pem", leaf.key_pem)) for alg, leaf in leaves.items()}
    s_chains = {alg: (pki.write(pem / f"{alg}-leaf.pem", leaf.pem), dovecot_chains[alg][1],
                      pki.write(pem / f"{alg}-inter.pem", inter.pem)) for alg, leaf in leaves.items()}
    unbound = Unbound(root / "unbound", bind)
    postfix = Postfix(root / "postfix", f"mx.{ZONE}", postfix_files, wrapper_port=free_port())
    dovecot = Dovecot(root / "dovecot", dovecot_chains)
    plain = Dovecot(root / "dovecot-plain", dovecot_chains, tls=False)
    https = SServer(root / "s_server", s_chains)
    # a Let's Encrypt-named intermediate the catalog does not know (a stale catalog, H26)
    le_ca = pki.make_ca("YR9", pki.make_key("rsa2048"), issuer=ca, org="Let's Encrypt", not_before=NOW)
    le_leaf = pki.make_leaf([f"le.{ZONE}"], le_ca, key=pki.make_key("rsa2048"), not_before=NOW)
    le_files = (pki.write(pem / "le-leaf.pem", le_leaf.pem), pki.write(pem / "le-key.pem", le_leaf.key_pem),
                pki.write(pem / "le-inter.pem", le_ca.pem))
    le_https = SServer(root / "s_server_le", {"ecdsa": le_files, "rsa": le_files})
    # a CA certificate that has nothing to do with the chain, sent before the intermediate
    stray = pki.make_ca("Stray CA", pki.make_key("p256"), not_before=NOW)
    misordered = {alg: (s_chains[alg][0], s_chains[alg][1], pki.write(pem / f"{alg}-misordered.pem", stray.pem,
                                                                       inter.pem)) for alg in s_chains}
    misordered_https = SServer(root / "s_server_misordered", misordered)
    # a CA certificate with a key the cryptography library cannot read (SM2), sent first
    subprocess.run(["openssl", "genpkey", "-algorithm", "SM2", "-out", str(pem / "sm2.key")], check=True,
                   capture_output=True)
    subprocess.run(["openssl", "req", "-new", "-x509", "-key", str(pem / "sm2.key"), "-out", str(pem / "sm2.pem"),
                    "-days", "30", "-subj", "/CN=SM2 CA"], check=True, capture_output=True)
    foreign = {alg: (s_chains[alg][0], s_chains[alg][1], pki.write(pem / f"{alg}-foreign.pem",
                                                                    (pem / "sm2.pem").read_bytes(), inter.pem))
               for alg in s_chains}
    foreign_https = SServer(root / "s_server_foreign", foreign)
    started: list[Any] = []
    try:
        for server in (bind, unbound, postfix, dovecot, plain, https, le_https, misordered_https, foreign_https):
            server.start()
            started.append(server)
        ports = {"smtps": postfix.wrapper_port, "smtp": postfix.port, "https": https.port, **dovecot.ports}
        r311 = {alg: compute(Usage.DANE_EE, Selector.SPKI, MatchingType.SHA2_256, cert=leaf.cert)
                for alg, leaf in leaves.items()}
        records = {
            "svc": [r311["ecdsa"], r311["rsa"]],
            "bad": [Tlsa.from_text("3 1 1 " + "ab" * 32)],
            "ta": [compute(Usage.DANE_TA, Selector.SPKI, MatchingType.SHA2_256, cert=inter.cert)],
            "rsaonly": [r311["rsa"]],
        }
        script = [f"server 127.0.0.1 {bind.primary.port}\nzone {ZONE}\n"]
        for host, recs in records.items():
            script.append(f"update add {host}.{ZONE} 60 IN A 127.0.0.1\n")
            script += [f"update add _{port}._tcp.{host}.{ZONE} 60 IN TLSA {r}\n" for port in ports.values()
                       for r in recs]
        for port in (plain.ports["imap"], plain.ports["pop3"]):  # TLSA for a service without TLS
            script += [f"update add _{port}._tcp.svc.{ZONE} 60 IN TLSA {r}\n" for r in records["svc"]]
        le311 = compute(Usage.DANE_EE, Selector.SPKI, MatchingType.SHA2_256, cert=le_leaf.cert)
        script += [f"update add _{p}._tcp.ta.{ZONE} 60 IN TLSA {r}\n" for r in records["ta"]
                   for p in (misordered_https.port, foreign_https.port)]
        script += [f"update add le.{ZONE} 60 IN A 127.0.0.1\n",
                   f"update add _{le_https.port}._tcp.le.{ZONE} 60 IN TLSA {le311}\n"]
        script.append("send\n")
        subprocess.run(["nsupdate", "-k", str(bind.key_file)], input="".join(script).encode(), check=True,
                       capture_output=True)
        wait_resolvable(unbound.port, [f"{h}.{ZONE}" for h in (*HOSTS, "le")])
        ports |= {"plain-imap": plain.ports["imap"], "plain-pop3": plain.ports["pop3"], "le": le_https.port,
                  "misordered": misordered_https.port, "foreign": foreign_https.port}
        yield {"bind": bind, "resolver": f"127.0.0.1:{unbound.port}", "ports": ports, "le311": le311.to_text(),
               "records": {h: [r.to_text() for r in recs] for h, recs in records.items()}}
    finally:
        for server in reversed(started):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def run_check(cli: CliRunner, services: dict[str, Any], host: str, service: str, *extra: str) -> Result:
    nameservers = [a for s in services["bind"].nameservers for a in ("--nameserver", s)]
    return cli("--json", "check", f"{host}.{ZONE}", "--port", str(services["ports"][service]),
               "--protocol", SERVICES[service][0], "--resolver", services["resolver"], "--timeout", "5",
               *nameservers, *extra)


@pytest.mark.parametrize("service", sorted(SERVICES))
@pytest.mark.parametrize("host", HOSTS)
def test_verdict_agrees_with_openssl(cli: CliRunner, services: dict[str, Any], service: str, host: str) -> None:
    result = run_check(cli, services, host, service)
    doc = result.json()
    verdicts = {e["algorithm"]: e["verdict"] for h in doc["hosts"] for e in h["endpoints"]}
    port, starttls = services["ports"][service], SERVICES[service][1]
    oracle = {alg: "pass" if s_client_dane(port, f"{host}.{ZONE}", services["records"][host], alg, starttls)
              else "fail" for alg in ("ecdsa", "rsa")}
    assert verdicts == oracle, (result.out, oracle)
    assert (verdicts["ecdsa"], verdicts["rsa"]) == EXPECTED[host]  # and both are what the setup means
    assert doc["mx"].startswith("not used") or service == "smtp"
    # "ta" passes, but its exit code also counts catalog advice for a test CA (H12)
    assert result.code == {"svc": 0, "bad": 4, "rsaonly": 4}.get(host, result.code), result.err


def test_wrong_protocol_is_one_clear_verdict(cli: CliRunner, services: dict[str, Any]) -> None:
    """IMAP spoken to the POP3 port, and SMTP to the IMAPS port: unreachable, said plainly."""
    for service, protocol in (("pop3", "imap"), ("imaps", "smtp")):
        nameservers = [a for s in services["bind"].nameservers for a in ("--nameserver", s)]
        result = cli("--json", "check", f"svc.{ZONE}", "--port", str(services["ports"][service]),
                     "--protocol", protocol, "--resolver", services["resolver"], "--timeout", "3", *nameservers)
        endpoints = [e for h in result.json()["hosts"] for e in h["endpoints"]]
        assert result.code in (1, 4) and "Traceback" not in result.err
        assert {e["verdict"] for e in endpoints} <= {"unreachable", "no-tls", "no-starttls"}, endpoints
        hint = "not an IMAP greeting" if protocol == "imap" else "implicit TLS? try --protocol tls"
        assert all(hint in e["detail"] for e in endpoints), endpoints


def test_protocol_follows_the_port() -> None:
    assert [protocol_for(p) for p in (25, 587, 465, 143, 993, 110, 995, 443, 2525)] == [
        "smtp", "smtp", "tls", "imap", "tls", "pop3", "tls", "tls", "smtp"]
    assert protocol_for(25, "tls") == "tls"


def test_unknown_protocol_is_a_usage_error(cli: CliRunner) -> None:
    result = cli("check", "mail.example.test", "--protocol", "gopher")
    assert result.code == 2 and "gopher" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize(("service", "protocol", "word"), [("plain-imap", "imap", "STARTTLS"),
                                                          ("plain-pop3", "pop3", "STLS")])
def test_upgrade_missing_while_tlsa_published(cli: CliRunner, services: dict[str, Any], service: str, protocol: str,
                                              word: str) -> None:
    """Dovecot with TLS off offers no STARTTLS/STLS: H20, and openssl cannot start TLS either."""
    nameservers = [a for s in services["bind"].nameservers for a in ("--nameserver", s)]
    port = services["ports"][service]
    result = cli("--json", "check", f"svc.{ZONE}", "--port", str(port), "--protocol", protocol,
                 "--resolver", services["resolver"], "--timeout", "5", *nameservers)
    doc = result.json()
    assert result.code == 4 and doc["verdict"] == "fail", result.out
    assert {e["verdict"] for h in doc["hosts"] for e in h["endpoints"]} == {"no-starttls"}
    h20 = [h for h in doc["hosts"][0]["hazards"] if h["code"] == "H20"]
    assert h20 and word in h20[0]["message"] and h20[0]["severity"] == "fatal"
    assert not s_client_dane(port, f"svc.{ZONE}", services["records"]["svc"], "rsa", protocol)


def test_stale_catalog_seen_live(cli: CliRunner, services: dict[str, Any]) -> None:
    """A live chain from a Let's Encrypt intermediate the catalog lacks: DANE passes now (3 1 1,
    as openssl agrees) and H26 names `catalog update`."""
    nameservers = [a for s in services["bind"].nameservers for a in ("--nameserver", s)]
    port = services["ports"]["le"]
    doc = cli("--json", "check", f"le.{ZONE}", "--port", str(port), "--protocol", "tls",
              "--resolver", services["resolver"], "--timeout", "5", *nameservers).json()
    assert doc["verdict"] == "pass" and s_client_dane(port, f"le.{ZONE}", [services["le311"]], "rsa", None)
    h26 = [h for h in doc["hosts"][0]["hazards"] if h["code"] == "H26"]
    assert h26 and "YR9" in h26[0]["message"] and "catalog update" in h26[0]["fix"], doc["hosts"][0]["hazards"]


def _hostile_server(mode: str) -> tuple[socket.socket, threading.Event]:
    """A TCP server that never finishes its SMTP greeting: ``flood`` streams "220-" reply
    lines as fast as it can, ``drip`` sends one byte every 0.2 s (each read succeeds, so
    no per-read timeout ever trips), ``handshake`` answers STARTTLS and then drips the
    TLS handshake."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            if mode == "handshake":
                conn.sendall(b"220 ready\r\n")
                conn.recv(1024)
                conn.sendall(b"250-hi\r\n250 STARTTLS\r\n")
                conn.recv(1024)
                conn.sendall(b"220 go ahead\r\n")
                conn.recv(4096)  # the ClientHello
                conn.sendall(b"\x16\x03\x03\x40\x00")  # a 16 KiB handshake record, dripped
            while not stop.is_set():
                if mode == "flood":
                    conn.sendall(b"220-" + b"x" * 1000 + b"\r\n")
                else:
                    conn.sendall(b"\x00" if mode == "handshake" else b"2")
                    time.sleep(0.2)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set():
                conn, _ = server.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server, stop


@pytest.mark.parametrize("mode", ["flood", "drip", "handshake"])
def test_a_server_that_never_finishes_is_cut_off_at_the_timeout(services: dict[str, Any], mode: str) -> None:
    """--timeout bounds each connection (check.md).  A server streaming "220-" lines made
    `check` run forever while its memory grew by gigabytes a minute (the reply lines were
    all kept); one dripping a byte at a time made it run forever too."""
    server, stop = _hostile_server(mode)
    port = server.getsockname()[1]
    try:
        subprocess.run(["nsupdate", "-k", str(services["bind"].key_file)], check=True, capture_output=True,
                       input=(f"server 127.0.0.1 {services['bind'].primary.port}\nzone {ZONE}\n"
                              f"update add _{port}._tcp.svc.{ZONE} 60 IN TLSA {services['records']['svc'][0]}\n"
                              "send\n").encode())
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "tlsa_manager", "--json", "check", f"svc.{ZONE}", "--port", str(port),
             "--protocol", "smtp", "--resolver", services["resolver"], "--timeout", "2"],
            capture_output=True, text=True, timeout=60,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)))
        assert time.monotonic() - started < 20, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        endpoints = [e for h in json.loads(result.stdout)["hosts"] for e in h["endpoints"]]
        assert endpoints and {e["verdict"] for e in endpoints} <= {"unreachable", "no-tls"}, endpoints
        assert all("did not end in time" in e["detail"] or "endless" in e["detail"]
                   or "no complete TLS handshake within 2 s" in e["detail"] for e in endpoints), [e["detail"] for e in endpoints]
    finally:
        stop.set()
        server.close()


@pytest.mark.parametrize("server", ["misordered", "foreign"])
def test_dane_ta_through_a_chain_sent_out_of_order(cli: CliRunner, services: dict[str, Any], server: str) -> None:
    """Before: a server that sends an unrelated CA certificate before the intermediate
    (a stray file in the chain) failed "2 1 1 matches a certificate the chain does not
    lead to", and one whose stray certificate has a key the cryptography library cannot
    read (SM2) was "internal error: UnsupportedAlgorithm" (exit 1), while OpenSSL (and so
    Postfix) builds the chain from what was sent in any order and verifies it."""
    port = services["ports"][server]
    nameservers = [a for s in services["bind"].nameservers for a in ("--nameserver", s)]
    doc = cli("--json", "check", f"ta.{ZONE}", "--port", str(port), "--protocol", "tls", "--resolver",
              services["resolver"], "--timeout", "5", *nameservers).json()
    verdicts = {e["algorithm"]: e["verdict"] for h in doc["hosts"] for e in h["endpoints"]}
    assert all(s_client_dane(port, f"ta.{ZONE}", services["records"]["ta"], alg, None) for alg in ("ecdsa", "rsa"))
    assert verdicts == {"ecdsa": "pass", "rsa": "pass"}, doc
