"""`check` against real Unbound + BIND + Postfix on loopback; each verdict agrees with posttls-finger."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tlsa_manager.records import MatchingType, Selector, Tlsa, Usage, compute

import pki
from conftest import CLI, CliRunner, Result
from servers import Bind, Postfix, Unbound, free_port, posttls_finger, require

NOW = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
ZONE = "example.test"


def serve_lines(port: int, greeting: bytes, stop: threading.Event) -> None:
    """A tiny TCP server: SMTP without STARTTLS, or garbage."""
    with socket.socket() as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", port))
        srv.listen()
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(greeting)
                try:
                    conn.settimeout(2)
                    while data := conn.recv(1024):
                        if data.upper().startswith(b"EHLO"):
                            conn.sendall(b"250-nostarttls.example.test\r\n250 PIPELINING\r\n")
                        elif data.upper().startswith(b"QUIT"):
                            conn.sendall(b"221 bye\r\n")
                            break
                        else:
                            conn.sendall(b"502 no\r\n")
                except OSError:
                    pass


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require("named", "unbound", "postfix", "posttls-finger", "nsupdate", "unshare")
    root = Path(tempfile.mkdtemp(prefix="tlsa-check-"))
    root.chmod(0o755)
    (root / "bind").mkdir()
    bind = Bind(root / "bind", extra_zones=(("insecure.test", False), ("bogus.test", True)))
    ca = pki.make_ca("Test Root C", pki.make_key("p384"), not_before=NOW)
    inter = pki.make_ca("TC1", pki.make_key("p384"), issuer=ca, not_before=NOW)
    names = [f"mx.{ZONE}", f"good.{ZONE}", f"wrong.{ZONE}", f"rsaonly.{ZONE}", f"tanotsent.{ZONE}",
             f"le301.{ZONE}", f"privateca.{ZONE}", "mx.insecure.test", "mx.bogus.test"]
    leaves = {k: pki.make_leaf(names, inter, key=pki.make_key(k), not_before=NOW) for k in ("p256", "rsa2048")}
    live = root / "live"
    files = [pki.write(live / f"{k}.pem", leaf.key_pem, leaf.pem, inter.pem) for k, leaf in leaves.items()]
    unbound = Unbound(root / "unbound", bind, zones={"insecure.test": "none", "bogus.test": "wrong"})
    postfix = Postfix(root / "postfix", f"mx.{ZONE}", files)
    stop = threading.Event()
    nost, garbage = free_port(), free_port()
    threads = [threading.Thread(target=serve_lines, args=(p, g, stop), daemon=True)
               for p, g in ((nost, b"220 nostarttls ESMTP\r\n"), (garbage, b"\x16\x03\x01garbage\r\n"))]
    try:
        bind.start()
        unbound.start()
        postfix.start()
        for t in threads:
            t.start()
        port = postfix.port
        r311 = {k: Tlsa.from_text(subprocess.run([*CLI, "records", str(f), "--usage", "3"],
                                                 capture_output=True, text=True, check=True).stdout)
                for k, f in zip(("ecdsa", "rsa"), files, strict=True)}
        r301 = {k: Tlsa.from_text(subprocess.run([*CLI, "records", str(f), "--usage", "3",
                                                  "--selector", "0"], capture_output=True, text=True,
                                                 check=True).stdout)
                for k, f in zip(("ecdsa", "rsa"), files, strict=True)}
        script = []
        hosts: list[tuple[str, str, list[Any]]] = [
            (ZONE, "mx", [r311["ecdsa"], r311["rsa"]]),
            (ZONE, "good", [r311["ecdsa"], r311["rsa"]]),
            (ZONE, "wrong", [Tlsa.from_text("3 1 1 " + "ab" * 32)]),
            (ZONE, "rsaonly", [r311["rsa"]]),
            # DANE-TA for the root, which the server does not send (it sends leaf + TC1)
            (ZONE, "tanotsent", [compute(Usage.DANE_TA, Selector.SPKI, MatchingType.SHA2_256, cert=ca.cert)]),
            (ZONE, "le301", [r301["ecdsa"], r301["rsa"]]),
            # the chain's own issuer pinned, as sync publishes for a CA the catalog does not know
            (ZONE, "privateca", [r311["ecdsa"], r311["rsa"],
                                 compute(Usage.DANE_TA, Selector.SPKI, MatchingType.SHA2_256, cert=inter.cert)]),
            ("insecure.test", "mx", [r311["ecdsa"], r311["rsa"]]),
            ("bogus.test", "mx", [r311["ecdsa"], r311["rsa"]]),
            (ZONE, "nostarttls", [r311["ecdsa"]]),
            (ZONE, "lag", [r311["ecdsa"], r311["rsa"]]),
            # a digest of the wrong length and unknown parameters: unusable, ignored by senders
            (ZONE, "junk", [r311["ecdsa"], r311["rsa"], "\\# 4 03010100", "255 255 255 aabb"]),
        ]
        for zone, host, records in hosts:
            script.append(f"server 127.0.0.1 {bind.primary.port}\nzone {zone}\n")
            if host not in ("mx",) or zone != ZONE:
                script.append(f"update add {host}.{zone} 60 IN A 127.0.0.1\n")
            tlsa_port = nost if host == "nostarttls" else port
            for rec in records:
                script.append(f"update add _{tlsa_port}._tcp.{host}.{zone} 60 IN TLSA {rec}\n")
            script.append("send\n")
        script.append(f"server 127.0.0.1 {bind.primary.port}\nzone {ZONE}\nupdate add nullmx.{ZONE} 60 IN MX 0 .\nsend\n")
        subprocess.run(["nsupdate", "-k", str(bind.key_file)], input="".join(script).encode(), check=True,
                       capture_output=True)
        wait_resolvable(unbound.port, [f"{h}.{ZONE}" for h in ("good", "wrong", "rsaonly", "tanotsent", "le301",
                                                                 "privateca", "nostarttls", "lag", "junk")] + ["mx.insecure.test"])
        yield {"bind": bind, "unbound": unbound, "postfix": postfix, "port": port, "nost": nost,
               "garbage": garbage, "resolver": f"127.0.0.1:{unbound.port}", "r311": r311}
    finally:
        stop.set()
        postfix.stop()
        unbound.stop()
        bind.stop()
        shutil.rmtree(root, ignore_errors=True)


def wait_resolvable(port: int, names: list[str]) -> None:
    """The updates are in before any check starts (no negative answer gets cached)."""
    import time

    import dns.message
    import dns.query
    import dns.rcode

    deadline = time.monotonic() + 15
    pending = list(names)
    while pending and time.monotonic() < deadline:
        name = pending[0]
        reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2)
        if reply.rcode() == dns.rcode.NOERROR and reply.answer:
            pending.pop(0)
        else:
            time.sleep(1.1)
    assert not pending, f"not resolvable through unbound: {pending}"


def authoritative(env: dict[str, Any]) -> list[str]:
    """The test zone's NS names point at port 53; its servers listen on high ports."""
    return [a for server in env["bind"].nameservers for a in ("--nameserver", server)]


def run_check(cli: CliRunner, env: dict[str, Any], target: str, *extra: str, port: int | None = None) -> Result:
    return cli("--json", "check", target, "--port", str(port or env["port"]), "--resolver", env["resolver"],
               "--timeout", "5", *authoritative(env), *extra)


def finger(env: dict[str, Any], host: str, algorithm: str) -> bool:
    postfix = env["postfix"]
    original = postfix.hostname
    postfix.hostname = host
    try:
        return "Verified TLS connection established" in posttls_finger(postfix, env["unbound"], algorithm)
    finally:
        postfix.hostname = original


def verdicts(doc: dict[str, Any]) -> dict[str, str]:
    return {e["algorithm"]: e["verdict"] for h in doc["hosts"] for e in h["endpoints"]}


def codes(doc: dict[str, Any]) -> set[str]:
    return {h["code"] for h in doc["hazards"]} | {h["code"] for host in doc["hosts"] for h in host["hazards"]}


def test_pass_and_domain_follows_mx(cli: CliRunner, env: dict[str, Any]) -> None:
    result = run_check(cli, env, f"good.{ZONE}")
    doc = result.json()
    assert doc["verdict"] == "pass" and verdicts(doc) == {"ecdsa": "pass", "rsa": "pass"}, result.out
    assert finger(env, f"good.{ZONE}", "ecdsa") and finger(env, f"good.{ZONE}", "rsa")
    domain = run_check(cli, env, ZONE).json()
    assert domain["mx"] == "secure" and [h["host"] for h in domain["hosts"]] == [f"mx.{ZONE}"]
    assert domain["verdict"] == "pass"


def test_wrong_hash_fails_like_posttls_finger(cli: CliRunner, env: dict[str, Any]) -> None:
    result = run_check(cli, env, f"wrong.{ZONE}")
    doc = result.json()
    assert result.code == 4 and doc["verdict"] == "fail"
    assert (verdicts(doc) == {"ecdsa": "fail", "rsa": "fail"} and "H1" in codes(doc)) or "H19" in codes(doc)
    assert not finger(env, f"wrong.{ZONE}", "ecdsa") and not finger(env, f"wrong.{ZONE}", "rsa")


def test_rsa_covered_ecdsa_not(cli: CliRunner, env: dict[str, Any]) -> None:
    doc = run_check(cli, env, f"rsaonly.{ZONE}").json()
    assert verdicts(doc) == {"ecdsa": "fail", "rsa": "pass"} and "H19" in codes(doc)
    assert finger(env, f"rsaonly.{ZONE}", "rsa") and not finger(env, f"rsaonly.{ZONE}", "ecdsa")


def test_dane_ta_for_a_certificate_not_sent(cli: CliRunner, env: dict[str, Any]) -> None:
    doc = run_check(cli, env, f"tanotsent.{ZONE}").json()
    assert doc["verdict"] == "fail" and set(verdicts(doc).values()) == {"fail"}
    assert not finger(env, f"tanotsent.{ZONE}", "ecdsa")


def test_3_0_1_passes_now_with_a_warning(cli: CliRunner, env: dict[str, Any]) -> None:
    result = run_check(cli, env, f"le301.{ZONE}")
    doc = result.json()
    assert doc["verdict"] == "pass" and "H3" in codes(doc) and result.code == 4
    assert finger(env, f"le301.{ZONE}", "ecdsa")


def test_chain_from_a_ca_the_catalog_does_not_know(cli: CliRunner, env: dict[str, Any]) -> None:
    """Issue 13.1: a private CA's chain pinned by its own issuer is OK; check never asks for
    Let's Encrypt issuers (H12) on it, and Nagios says OK exactly when Postfix verifies."""
    host = f"privateca.{ZONE}"
    result = run_check(cli, env, host)
    doc = result.json()
    assert doc["verdict"] == "pass" and "H12" not in codes(doc), doc
    assert result.code == 0, result.out
    nagios = cli("check", host, "--port", str(env["port"]), "--resolver", env["resolver"], "--nagios",
                 *authoritative(env))
    assert nagios.code == 0 and nagios.out.startswith("DANE OK - "), nagios.out
    assert finger(env, host, "ecdsa") and finger(env, host, "rsa")


def test_unsigned_zone_is_dane_not_in_force(cli: CliRunner, env: dict[str, Any]) -> None:
    doc = run_check(cli, env, "mx.insecure.test").json()
    assert doc["verdict"] == "dane not in force" and {"H6", "H8"} & codes(doc)
    assert not finger(env, "mx.insecure.test", "ecdsa")


def test_bogus_is_mail_deferred(cli: CliRunner, env: dict[str, Any]) -> None:
    result = run_check(cli, env, "mx.bogus.test")
    doc = result.json()
    assert doc["verdict"] == "fail" and "H7" in codes(doc)
    assert "bogus: mail deferred" in doc["hosts"][0]["detail"]
    assert not finger(env, "mx.bogus.test", "ecdsa")


def test_starttls_missing_while_tlsa_published(cli: CliRunner, env: dict[str, Any]) -> None:
    doc = run_check(cli, env, f"nostarttls.{ZONE}", port=env["nost"]).json()
    assert doc["verdict"] == "fail" and "H20" in codes(doc)


def test_garbage_speaker_and_unresolvable_name_are_clear(cli: CliRunner, env: dict[str, Any]) -> None:
    garbage = run_check(cli, env, f"good.{ZONE}", port=env["garbage"])
    assert garbage.code in (1, 4) and "Traceback" not in garbage.err
    assert {e["verdict"] for h in garbage.json()["hosts"] for e in h["endpoints"]} <= {"unreachable", "fail",
                                                                                      "no-tls", "not-applicable"}
    missing = run_check(cli, env, f"nothere.{ZONE}")
    assert missing.code == 1 and missing.json()["verdict"] == "unknown" and "Traceback" not in missing.err


def test_nagios_lines(cli: CliRunner, env: dict[str, Any]) -> None:
    ok = cli("check", f"good.{ZONE}", "--port", str(env["port"]), "--resolver", env["resolver"], "--nagios",
             *authoritative(env))
    assert ok.code == 0 and ok.out.startswith("DANE OK - ") and "| hosts=1 endpoints=2 verified=2" in ok.out
    bad = cli("check", f"wrong.{ZONE}", "--port", str(env["port"]), "--resolver", env["resolver"], "--nagios",
              *authoritative(env))
    assert bad.code == 2 and bad.out.startswith("DANE CRITICAL - ") and bad.out.count("\n") == 1


def test_quiet_check_says_only_why_the_code_is_not_0(cli: CliRunner, env: dict[str, Any]) -> None:
    """-q (docs/cli.md): nothing for a pass; for a fail, stderr lines naming the verdict and
    the hazards that set exit 4, no report on stdout."""
    common = ["--port", str(env["port"]), "--resolver", env["resolver"], "--timeout", "5", *authoritative(env)]
    ok = cli("-q", "check", f"good.{ZONE}", *common)
    assert (ok.code, ok.out, ok.err) == (0, "", "")
    bad = cli("-q", "check", f"wrong.{ZONE}", *common)
    loud = cli("check", f"wrong.{ZONE}", *common)
    assert bad.code == loud.code == 4 and bad.out == "" and loud.out
    lines = bad.err.splitlines()
    assert lines[0].startswith(f"tlsa-manager: wrong.{ZONE}: fail (MX ")
    assert len(lines) > 1 and all(f"tlsa-manager: wrong.{ZONE}: [H" in line for line in lines[1:]), bad.err


def test_records_file_before_publishing(cli: CliRunner, env: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "next.txt"
    path.write_text("3 1 1 " + "cd" * 32 + "\n")
    doc = run_check(cli, env, f"good.{ZONE}", "--records", str(path)).json()
    assert doc["verdict"] == "fail"  # the live server would not validate against these


def nsupdate(env: dict[str, Any], *lines: str) -> None:
    bind = env["bind"]
    script = f"server 127.0.0.1 {bind.primary.port}\nzone {ZONE}\n" + "".join(f"{x}\n" for x in lines) + "send\n"
    subprocess.run(["nsupdate", "-k", str(bind.key_file)], input=script.encode(), check=True, capture_output=True)


def served(endpoint: str, owner: str) -> set[str]:
    """The TLSA RRset one server answers, read with dig (independent of the tool)."""
    address, port = endpoint.rsplit(":", 1)
    out = subprocess.run(["dig", "+short", "+norecurse", "-p", port, f"@{address}", owner, "TLSA"],
                         capture_output=True, text=True, check=True).stdout
    return {" ".join(line.split()[:3]) + " " + "".join(line.split()[3:]).lower() for line in out.splitlines()}


def test_lagging_secondary_is_h18(cli: CliRunner, env: dict[str, Any]) -> None:
    """A secondary that missed updates: RISK while every version still matches, FATAL once one does not."""
    import time

    bind, owner = env["bind"], f"_{env['port']}._tcp.lag.{ZONE}"
    primary, secondary = bind.primary.endpoint, bind.secondary.endpoint
    deadline = time.monotonic() + 20
    while served(primary, owner) != served(secondary, owner) and time.monotonic() < deadline:
        time.sleep(0.5)
    doc = run_check(cli, env, f"lag.{ZONE}").json()
    assert "H18" not in codes(doc) and len(doc["hosts"][0]["authoritative"]) == 2, doc
    bind.set_notify(False)
    try:
        extra = "3 1 1 " + "ee" * 32
        nsupdate(env, f"update add {owner} 60 IN TLSA {extra}")
        assert served(primary, owner) != served(secondary, owner)  # dig sees the lag too
        doc = run_check(cli, env, f"lag.{ZONE}").json()
        h18 = [h for h in doc["hosts"][0]["hazards"] if h["code"] == "H18"]
        assert [h["severity"] for h in h18] == ["risk"], doc["hosts"][0]
        assert primary in h18[0]["message"] and secondary in h18[0]["message"]
        nsupdate(env, *(f"update delete {owner} TLSA {r}" for r in env["r311"].values()))
        doc = run_check(cli, env, f"lag.{ZONE}").json()
        h18 = [h for h in doc["hosts"][0]["hazards"] if h["code"] == "H18"]
        assert [h["severity"] for h in h18] == ["fatal"], doc["hosts"][0]
        assert f"{primary} fails the ECDSA chain" in h18[0]["message"]
        assert f"{primary} fails the RSA chain" in h18[0]["message"]
        assert secondary not in h18[0]["message"].split(") and ")[1]
    finally:
        bind.set_notify(True)


def test_lame_server_and_expiring_signatures(cli: CliRunner, env: dict[str, Any]) -> None:
    """A server that does not answer is named (H7); signatures that lapse within the margin are
    reported with the expiry time dig shows (H7)."""
    lame = f"127.0.0.1:{free_port()}"
    doc = run_check(cli, env, f"good.{ZONE}", "--nameserver", lame).json()
    assert doc["verdict"] == "pass"
    assert any(h["code"] == "H7" and lame in h["message"] for h in doc["hosts"][0]["hazards"]), doc["hosts"][0]
    owner = f"_{env['port']}._tcp.good.{ZONE}"
    address, port = env["resolver"].rsplit(":", 1)
    out = subprocess.run(["dig", "+dnssec", "-p", port, f"@{address}", owner, "TLSA"],
                         capture_output=True, text=True, check=True).stdout
    expirations = [line.split()[8] for line in out.splitlines() if "\tRRSIG\t" in line or " RRSIG " in line]
    assert expirations, out
    earliest = dt.datetime.strptime(min(expirations), "%Y%m%d%H%M%S")
    calm = run_check(cli, env, f"good.{ZONE}").json()
    assert not any(h["code"] == "H7" for h in calm["hosts"][0]["hazards"])  # 3 days: fresh signatures pass
    doc = run_check(cli, env, f"good.{ZONE}", "--rrsig-margin", "400").json()
    tlsa = [h for h in doc["hosts"][0]["hazards"] if h["code"] == "H7" and "TLSA" in h["message"]]
    assert tlsa and f"expire {earliest:%Y-%m-%d %H:%M}Z" in tlsa[0]["message"], doc["hosts"][0]["hazards"]


def test_records_senders_cannot_use_are_left_out_like_posttls_finger(cli: CliRunner, env: dict[str, Any]) -> None:
    """Before: a "3 1 1 00" (a digest too short) beside good records made the TLSA lookup
    fail ("resolver ...: FormError", verdict unknown, exit 1), and a "255 255 255" record
    was an internal error; Postfix warns "unusable TLSA RR" and verifies with the rest."""
    result = run_check(cli, env, f"junk.{ZONE}")
    doc = result.json()
    assert doc["verdict"] == "pass" and verdicts(doc) == {"ecdsa": "pass", "rsa": "pass"}, result.out + result.err
    assert "1 unusable (unknown usage, selector or matching type)" in doc["hosts"][0]["detail"]
    assert finger(env, f"junk.{ZONE}", "ecdsa") and finger(env, f"junk.{ZONE}", "rsa")
    # every authoritative server is read too, leaving out what senders leave out: before,
    # dnspython refused the whole answer ("no answer: FormError"), a false H7 and exit 4
    assert result.code == 0, result.out + result.err
    assert all("2 record(s)" in line for line in doc["hosts"][0]["authoritative"]), doc["hosts"][0]


def test_null_mx_says_the_domain_takes_no_mail(cli: CliRunner, env: dict[str, Any]) -> None:
    """Before: "MX 0 ." (RFC 7505) was checked as a host named ".": "unknown ... no
    address: REFUSED, REFUSED", exit 1; Postfix: "does not accept mail (nullMX)"."""
    result = run_check(cli, env, f"nullmx.{ZONE}")
    doc = result.json()
    assert doc["verdict"] == "dane not in force" and doc["hosts"] == [] and result.code == 4
    assert doc["mx"].startswith("null (RFC 7505: the domain accepts no mail")


def test_a_resolver_that_does_not_validate_is_not_blamed_on_the_zone(cli: CliRunner, env: dict[str, Any]) -> None:
    """Before: through a resolver that does not validate (here the primary itself, which
    sets no AD bit) a signed zone was reported "the host's addresses are not
    DNSSEC-signed; fix: sign the zone"; now the detail and the fix name the resolver (or a
    missing DS), and a really unsigned zone is still told to sign."""
    bind = env["bind"]
    result = cli("--json", "check", f"good.{ZONE}", "--port", str(env["port"]), "--resolver",
                 bind.primary.endpoint, "--timeout", "5", *authoritative(env))
    host = result.json()["hosts"][0]
    assert host["dane"] == "not in force" and "signed but not validated (no AD bit)" in host["detail"], host
    assert "validating resolver (--resolver ADDR)" in host["hazards"][0]["fix"]
    unsigned = run_check(cli, env, "mx.insecure.test").json()["hosts"][0]
    assert "not validated" not in unsigned["detail"] and "sign the zone" in str(unsigned["hazards"])


def test_nagios_line_keeps_names_from_the_dns_out_of_the_perfdata() -> None:
    """An MX name is whatever the zone says; before, a "|" in it (inside a hazard's
    message) started Nagios' perfdata early and a newline split the status line."""
    from tlsa_manager.checkresult import CheckResult, nagios
    from tlsa_manager.hazards import Hazard, Severity

    hazard = Hazard("H7", Severity.RISK, "mx|a.example.com:\nno answer", "fix the server")
    code, line = nagios(CheckResult("example.com", "mx|a.example.com", [], [hazard]))
    status, perfdata = line.split(" | ")
    assert code == 1 and "\n" not in line and line.count("|") == 1
    assert "H7 mx/a.example.com: no answer" in status and perfdata.startswith("hosts=0 ")
