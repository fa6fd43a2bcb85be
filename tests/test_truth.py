"""Issue 13: plan, status, sync, hook and check say only what is true.

Against the real BIND primary + secondary (signed, TSIG, NOTIFY/IXFR), Unbound
validating, and Postfix serving the live file: after every step of a rollover, what
the commands say (records, gate times, verdicts, exit codes) is compared with what
both servers serve (read with dig) and what Postfix presents (openssl s_client, and
Postfix's own posttls-finger in DANE mode).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from test_rfc2136 import wait_for

import pki
from conftest import CliRunner, Result, probed_host_lines, rfc2136_config
from servers import ZONE, Bind, posttls_finger, require, start_resolver_and_mta, stop_resolver_and_mta

NOW = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
HOST = f"truth.{ZONE}"
GATE = 2 * 2 + 1 + 0.7  # 2 x TTL(2 s) + slack(1 s), and a little


# ---------------------------------------------------------------- oracles


def dig(endpoint: str, owner: str) -> list[str]:
    """The TLSA RRset one server answers, read with dig (independent of the tool)."""
    address, port = endpoint.rsplit(":", 1)
    out = subprocess.run(["dig", "+short", "+norecurse", "-p", port, f"@{address}", owner, "TLSA"],
                         capture_output=True, text=True, check=True).stdout
    return sorted(" ".join(line.split()[:3]) + " " + "".join(line.split()[3:]).lower()
                  for line in out.splitlines() if line.strip())


def openssl_311(pem: bytes) -> str:
    """ "3 1 1" of the first certificate in ``pem``, computed by the openssl CLI."""
    pub = subprocess.run(["openssl", "x509", "-noout", "-pubkey"], input=pem, capture_output=True,
                         check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub, capture_output=True,
                         check=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-r"], input=der, capture_output=True,
                            check=True).stdout.decode().split()[0]
    return f"3 1 1 {digest.lower()}"


def presented_311(port: int) -> str:
    """What Postfix presents now (openssl s_client), as its "3 1 1"."""
    result = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
                             "-servername", HOST], input=b"QUIT\r\n", capture_output=True, timeout=30)
    text = result.stdout
    start = text.index(b"-----BEGIN CERTIFICATE-----")
    end = text.index(b"-----END CERTIFICATE-----") + len(b"-----END CERTIFICATE-----")
    return openssl_311(text[start:end] + b"\n")


def nsupdate(bind: Bind, *lines: str) -> None:
    script = f"server 127.0.0.1 {bind.primary.port}\nzone {bind.zone}\n" + "".join(f"{x}\n" for x in lines)
    subprocess.run(["nsupdate", "-k", str(bind.key_file)], input=(script + "send\n").encode(), check=True,
                   capture_output=True)


# ---------------------------------------------------------------- the world


@pytest.fixture(scope="module")
def world(bind: Bind) -> Iterator[dict[str, Any]]:
    require("unbound", "postfix", "posttls-finger", "openssl", "unshare", "dig", "nsupdate")
    root = Path(tempfile.mkdtemp(prefix="tlsa-truth-"))
    root.chmod(0o755)
    state = root / "state"
    _ca_root, cas = pki.make_test_catalog(state / "catalog", "Truth Root X1", not_before=NOW)
    live, staged, incoming = root / "live", root / "staged", root / "incoming"
    for d in (live, staged, incoming):
        d.mkdir()
    key = pki.make_key("p256")
    leaf = pki.make_leaf([HOST], cas["TE1"], key=key, not_before=NOW)
    pki.write(live / "ecdsa.pem", leaf.key_pem, leaf.pem, cas["TE1"].pem)
    nsupdate(bind, f"update add {HOST} 2 IN A 127.0.0.1")
    unbound, postfix = start_resolver_and_mta(root, bind, HOST, [live / "ecdsa.pem"])
    config = root / "tlsa-manager.toml"
    # probe without probe_port: the host's own port is probed (issue 13.3)
    config.write_text(rfc2136_config(state, bind, HOST, probed_host_lines(postfix, live / "ecdsa.pem", staged)))
    try:
        yield {"root": root, "cas": cas, "key": key, "live": live, "staged": staged, "incoming": incoming,
               "config": config, "unbound": unbound, "postfix": postfix, "bind": bind,
               "owner": f"_{postfix.port}._tcp.{HOST}."}
    finally:
        stop_resolver_and_mta(root, unbound, postfix)


def renew(world: dict[str, Any], cli: CliRunner, issuer: str, *, new_key: bool) -> tuple[Result, float, pki.Issued]:
    """The ACME client renewed: `hook generic` with the new chain; returns (result, seconds, leaf)."""
    key = pki.make_key("p256") if new_key else world["key"]
    leaf = pki.make_leaf([HOST], world["cas"][issuer], key=key, not_before=NOW)
    d = world["incoming"]
    pki.write(d / "fullchain.pem", leaf.pem, world["cas"][issuer].pem)
    pki.write(d / "privkey.pem", leaf.key_pem)
    started = time.monotonic()
    result = cli("--config", world["config"], "hook", "generic", "--cert", d / "fullchain.pem",
                 "--key", d / "privkey.pem", "--host", HOST)
    if new_key:
        world["key"] = key
    return result, time.monotonic() - started, leaf


# ---------------------------------------------------------------- what everyone says


def compare(world: dict[str, Any], cli: CliRunner, step: str, *, lagging: bool = False) -> dict[str, Any]:
    """After a step: plan, status and check against dig (both servers) and Postfix."""
    cfg = ["--config", world["config"]]
    bind, owner, port = world["bind"], world["owner"], world["postfix"].port
    primary, secondary = bind.primary.endpoint, bind.secondary.endpoint
    on_primary, on_secondary = dig(primary, owner), dig(secondary, owner)
    assert (on_primary != on_secondary) == lagging, f"{step}: dig {on_primary} / {on_secondary}"

    # Postfix presents a leaf whose 3 1 1 both servers serve, and verifies with DANE
    presented = presented_311(port)
    assert presented in on_primary and presented in on_secondary, f"{step}: presented {presented}"
    finger = posttls_finger(world["postfix"], world["unbound"], "ecdsa")
    assert "Verified TLS connection established" in finger, f"{step}: {finger[-600:]}"

    # status: the servers as last observed, with the time, equal what dig reads now
    status = cli(*cfg, "--json", "status", HOST)
    doc = status.json()["hosts"][0]
    seen = doc["owners"][owner]
    assert seen["servers"] == {primary: on_primary, secondary: on_secondary}, f"{step}: status {seen}"
    observed = dt.datetime.fromisoformat(seen["observed_at"].replace("Z", "+00:00"))
    assert (dt.datetime.now(dt.UTC) - observed).total_seconds() < 120, f"{step}: stale {seen['observed_at']}"
    text = cli(*cfg, "status", HOST).out
    assert f"as last observed at {seen['observed_at']}" in text
    assert f"{primary}: {len(on_primary)} record(s)" in text and f"{secondary}: {len(on_secondary)} record(s)" in text

    # plan: nothing left to change; the same gates (to the second) and the same exit code
    plan = cli(*cfg, "--json", "plan", HOST)
    pdoc = plan.json()["plans"][0]
    assert pdoc["changes"] == [] or lagging, f"{step}: plan {pdoc['changes']}"
    assert [(g["chain"], g["opens_at"], g["term"]) for g in pdoc["gates"]] == \
        [(g["chain"], g["opens_at"], g["term"]) for g in doc["gates"]], f"{step}: {pdoc['gates']} / {doc['gates']}"
    h18 = [h for h in pdoc["hazards"] if h["code"] == "H18"]
    assert bool(h18) == lagging, f"{step}: {pdoc['hazards']}"
    if lagging:
        assert secondary in h18[0]["message"] and h18[0]["severity"] == "risk"
    assert plan.code == (4 if lagging else 0), f"{step}: plan exit {plan.code}"
    assert status.code == plan.code, f"{step}: status exit {status.code}"

    # check: the verdict Postfix reached, both servers compared, the same exit code
    check = cli("--json", "check", HOST, "--port", str(port), "--resolver", f"127.0.0.1:{world['unbound'].port}",
                "--timeout", "5", "--nameserver", primary, "--nameserver", secondary)
    cdoc = check.json()
    assert cdoc["verdict"] == "pass", f"{step}: check {cdoc}"
    authoritative = cdoc["hosts"][0]["authoritative"]
    assert f"{primary}: {len(on_primary)} record(s), TTL 2" in authoritative, authoritative
    assert f"{secondary}: {len(on_secondary)} record(s), TTL 2" in authoritative, authoritative
    check_h18 = [h for h in cdoc["hosts"][0]["hazards"] if h["code"] == "H18"]
    assert bool(check_h18) == lagging and not [h for h in cdoc["hosts"][0]["hazards"] if h["code"] == "H12"]
    assert check.code == plan.code, f"{step}: check exit {check.code}, plan exit {plan.code}"
    return {"plan": pdoc, "status": doc, "primary": on_primary, "secondary": on_secondary, "presented": presented}


def soa_refresh(bind: Bind, refresh: int) -> None:
    """Set the zone's SOA refresh/retry (a secondary that misses a NOTIFY then stays behind)."""
    out = subprocess.run(["dig", "+short", "-p", str(bind.primary.port), "@127.0.0.1", bind.zone, "SOA"],
                         capture_output=True, text=True, check=True).stdout.split()
    mname, rname, serial = out[0], out[1], int(out[2])
    nsupdate(bind, f"update add {bind.zone} 60 IN SOA {mname} {rname} {serial + 10} {refresh} {refresh} "
                   f"{max(3600, 2 * refresh)} 30")


def test_rollover_every_step_says_what_the_servers_serve(world: dict[str, Any], cli: CliRunner) -> None:
    cfg = ["--config", world["config"]]
    bind, owner = world["bind"], world["owner"]
    te = {n: openssl_311(world["cas"][n].pem).replace("3 1 1", "2 1 1") for n in ("TE1", "TE2", "TE3")}

    # 1. first sync: the live key and the three catalog issuers, on both servers
    first = cli(*cfg, "sync", HOST)
    assert first.code == 0 and "4 added, 0 removed" in first.out, first.out + first.err
    seen = compare(world, cli, "first sync")
    assert sorted(seen["primary"]) == sorted([seen["presented"], *te.values()])
    time.sleep(GATE)

    # 2. same-key renewal by the sibling TE2: covered, live at once, verified by the probe
    result, seconds, leaf = renew(world, cli, "TE2", new_key=False)
    port = world["postfix"].port
    assert result.code == 0 and f"deployed staged ecdsa.pem (verified: 127.0.0.1:{port} presents it)" \
        in result.out, result.out + result.err
    assert leaf.pem in (world["live"] / "ecdsa.pem").read_bytes()
    seen = compare(world, cli, "same-key renewal")
    assert len(seen["primary"]) == 4

    # 3. new-key rollover: pre-published, gated; hook, plan and status name the same second
    old_311 = seen["presented"]
    result, seconds, leaf = renew(world, cli, "TE1", new_key=True)
    assert result.code == 0 and "stays staged" in result.out, result.out + result.err
    seen = compare(world, cli, "new key staged")
    assert len(seen["primary"]) == 5 and openssl_311(leaf.pem) in seen["primary"]
    gate = seen["plan"]["gates"][0]
    opens = gate["opens_at"].replace("T", " ")
    assert f"staged ecdsa.pem: may go live not before {opens}" in result.out, (gate, result.out)
    assert "2 x TTL 2 s + slack 1 s" in gate["term"] and gate["term"] in result.out
    sync = cli(*cfg, "sync", HOST)
    assert sync.code == 0 and f"may go live not before {opens}" in sync.out, sync.out
    opens_at = dt.datetime.fromisoformat(gate["opens_at"].replace("Z", "+00:00")).timestamp()
    time.sleep(max(0.0, opens_at - time.time()) + 1.2)
    deploy = cli(*cfg, "sync", HOST)
    assert deploy.code == 0, deploy.out + deploy.err
    assert "0 added, 1 removed; deployed staged ecdsa.pem (verified: " in deploy.out, deploy.out
    seen = compare(world, cli, "new key deployed")  # status counts 4 on both, as dig does (13.7)
    assert len(seen["primary"]) == 4 and old_311 not in seen["primary"]
    assert seen["presented"] == openssl_311(leaf.pem)
    time.sleep(GATE)

    # 4. the secondary stops taking transfers; the hook returns at once all the same (13.5)
    soa_refresh(bind, 3600)
    assert wait_for(lambda: dig(bind.primary.endpoint, owner) == dig(bind.secondary.endpoint, owner))
    bind.set_notify(False)
    try:
        before = dig(bind.secondary.endpoint, owner)
        result, seconds, leaf = renew(world, cli, "TE1", new_key=True)
        assert seconds < 20, f"the hook took {seconds:.0f} s"
        # H18 risk is printed, but a hook exits 0 for it: the ACME client would count the
        # renewal as failed, and waiting for the secondary is the timer's job (cli.md).
        assert result.code == 0 and "[H18 risk]" in result.out, result.out + result.err
        assert "staged ecdsa.pem: may not go live yet (not yet served by " \
            f"{bind.secondary.endpoint} (old records))" in result.out, result.out
        assert dig(bind.secondary.endpoint, owner) == before
        seen = compare(world, cli, "lagging secondary", lagging=True)
        assert len(seen["primary"]) == 5 and len(seen["secondary"]) == 4
        assert seen["plan"]["gates"][0]["opens_at"] is None
        lag = cli(*cfg, "sync", HOST)
        assert lag.code == 4 and "may not go live yet" in lag.out and "[H18 risk]" in lag.out, lag.out
        assert leaf.pem not in (world["live"] / "ecdsa.pem").read_bytes()
    finally:
        bind.set_notify(True)
        bind.secondary.rndc(bind.keys, "refresh", bind.zone)

    # 5. caught up: the gate starts when both serve it, and the chain goes live after it
    assert wait_for(lambda: dig(bind.primary.endpoint, owner) == dig(bind.secondary.endpoint, owner), 30)
    caught = cli(*cfg, "sync", HOST)
    assert caught.code == 0 and "may go live not before" in caught.out, caught.out + caught.err
    seen = compare(world, cli, "caught-up secondary")
    opens_at = dt.datetime.fromisoformat(seen["plan"]["gates"][0]["opens_at"].replace("Z", "+00:00")).timestamp()
    time.sleep(max(0.0, opens_at - time.time()) + 1.2)
    done = cli(*cfg, "sync", HOST)
    assert done.code == 0 and "deployed staged ecdsa.pem (verified: " in done.out, done.out + done.err
    seen = compare(world, cli, "deployed after catching up")
    assert seen["presented"] == openssl_311(leaf.pem) and len(seen["primary"]) == 4
    soa_refresh(bind, 60)


# ---------------------------------------------------------------- one item each (BIND only)


def make_site(tmp_path: Path, bind: Bind, live_name: str, extra: str = "", negative_ttl: bool = True) -> dict[str, Any]:
    import secrets

    from test_sync_cli import le_shaped_chain

    host = f"mx-{secrets.token_hex(3)}.{ZONE}"
    live, staged = tmp_path / "live", tmp_path / "staged"
    staged.mkdir()
    key = pki.make_key("p256")
    leaf, chain = le_shaped_chain(host, "ye1.pem", key=key)
    pki.write(live / live_name, leaf.key_pem, leaf.pem, chain)
    text = rfc2136_config(tmp_path / "state", bind, host, f'cert = "{live / live_name}"\nstaged_dir = "{staged}"\n'
                          + extra)
    if not negative_ttl:
        text = text.replace("negative_ttl = 1\n", "")
    config = tmp_path / "tlsa-manager.toml"
    config.write_text(text)
    return {"host": host, "config": config, "live": live / live_name, "staged": staged, "key": key,
            "tmp": tmp_path}


def hook(cli: CliRunner, site: dict[str, Any], issuer: str,
         key: CertificateIssuerPrivateKeyTypes | None = None) -> tuple[Result, pki.Issued]:
    from test_sync_cli import le_shaped_chain

    leaf, chain = le_shaped_chain(site["host"], issuer, key=key)
    d = site["tmp"] / "incoming"
    pki.write(d / "fullchain.pem", leaf.pem, chain)
    pki.write(d / "privkey.pem", leaf.key_pem)
    result = cli("--config", site["config"], "hook", "generic", "--cert", d / "fullchain.pem",
                 "--key", d / "privkey.pem", "--host", site["host"])
    return result, leaf


def test_gate_times_agree_and_name_the_negative_ttl(cli: CliRunner, bind: Bind, tmp_path: Path) -> None:
    """13.2: the negative TTL (from the SOA: min(60, 30) = 30 s) sets the first wait, and plan,
    status, sync and hook give the same second for it and say so."""
    site = make_site(tmp_path, bind, "ecdsa.pem", negative_ttl=False)
    cfg = ["--config", site["config"]]
    assert cli(*cfg, "sync", site["host"]).code == 0  # the name was absent: negative caching applies
    result, _leaf = hook(cli, site, "ye2.pem")  # a new key: staged, gated
    assert result.code == 0, result.out + result.err
    gate = cli(*cfg, "--json", "plan", site["host"]).json()["plans"][0]["gates"][0]
    assert gate["term"].startswith("2 x negative TTL 30 s (no TLSA record on 127.0.0.1:") and \
        gate["term"].endswith(" + slack 1 s"), gate
    assert gate["wait_seconds"] == 61
    status = cli(*cfg, "--json", "status", site["host"]).json()["hosts"][0]["gates"][0]
    assert (status["opens_at"], status["term"]) == (gate["opens_at"], gate["term"])
    line = f"may go live not before {gate['opens_at'].replace('T', ' ')} "
    assert line in result.out and gate["term"] in result.out, result.out
    assert line in cli(*cfg, "sync", site["host"]).out
    assert line in cli(*cfg, "status", site["host"]).out
    assert line in cli(*cfg, "plan", site["host"]).out


def test_live_file_not_named_pem_is_staged_and_deployed(cli: CliRunner, bind: Bind, tmp_path: Path) -> None:
    """13.4 and 13.3: a live file `mail.crt` is staged as `mail.crt`, found again and deployed;
    a file that matches no live name is named, not ignored; without a probe nothing is claimed."""
    site = make_site(tmp_path, bind, "mail.crt")
    cfg = ["--config", site["config"]]
    assert cli(*cfg, "sync", site["host"]).code == 0
    (site["staged"] / "other.pem").write_text("not a chain\n")
    result, leaf = hook(cli, site, "ye2.pem")  # new key
    assert result.code == 0 and f"staged {site['staged'] / 'mail.crt'}" in result.out, result.out + result.err
    assert "staged mail.crt: may go live not before" in result.out, result.out
    assert "other.pem in " in result.err and "matches no live file (mail.crt)" in result.err, result.err
    time.sleep(GATE)
    deploy = cli(*cfg, "sync", site["host"])
    # no reload command either: the line says the file was not reloaded, not that it was
    assert deploy.code == 0 and "deployed staged mail.crt (not reloaded (no reload command" \
        in deploy.out, deploy.out + deploy.err
    assert leaf.pem in site["live"].read_bytes() and not (site["staged"] / "mail.crt").exists()
    assert "presents it" not in deploy.out
    status = cli(*cfg, "status", site["host"])
    assert "deploys are not verified: no probe configured" in status.out, status.out


def test_exit_codes_when_the_reload_keeps_failing(cli: CliRunner, bind: Bind, tmp_path: Path) -> None:
    """13.6: a deploy whose reload fails exits 1 in sync, and so does every later sync while it
    stays unconfirmed, and status; the replaced chain's records stay."""
    site = make_site(tmp_path, bind, "ecdsa.pem", extra='reload = ["false"]\n')
    cfg = ["--config", site["config"]]
    first = cli(*cfg, "sync", site["host"])
    assert first.code == 0, first.out + first.err
    time.sleep(GATE)
    result, _leaf = hook(cli, site, "ye2.pem", key=site["key"])  # same key: covered, deployed at once
    assert result.code == 1 and "'false' exited 1" in result.err, result.out + result.err
    again = cli(*cfg, "sync", site["host"])
    assert again.code == 1 and "is not confirmed" in again.out, again.out + again.err
    status = cli(*cfg, "status", site["host"])
    assert status.code == 1 and "not confirmed" in status.out, status.out
    plan = cli(*cfg, "plan", site["host"])
    assert plan.code == 0, plan.out  # plan reads; nothing it found is a hazard
