"""`sync`, `plan`, `status`, `export` from a config file, against the real BIND (RFC 2136)."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import TypedDict

import dns.name
import pytest
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from tlsa_manager.records import Tlsa, owner_name

import pki
from conftest import LE_DATA, CliRunner, bind_read, openssl_tlsa_data, rfc2136_config
from servers import ZONE, Bind

YE_FILES = ("ye1.pem", "ye2.pem")


def le_shaped_chain(host: str, issuer_file: str,
                    key: CertificateIssuerPrivateKeyTypes | None = None) -> tuple[pki.Issued, bytes]:
    """A leaf 'issued' by a real LE intermediate (name and chain; our own signing key)."""
    from cryptography import x509

    issuer_cert = x509.load_pem_x509_certificate((LE_DATA / issuer_file).read_bytes())
    leaf = pki.make_leaf([host], pki.Issued(issuer_cert, pki.make_key("p384")), key=key)
    return leaf, (LE_DATA / issuer_file).read_bytes()


class SyncSite(TypedDict):
    """One host on the test BIND, synced by RFC 2136 from a config file."""

    host: str
    config: Path
    live: Path
    staged: Path
    leaf: pki.Issued
    tmp: Path
    owner: dns.name.Name


@pytest.fixture
def site(tmp_path: Path, bind: Bind) -> SyncSite:
    host = f"mx-{secrets.token_hex(3)}.{ZONE}"
    live = tmp_path / "live"
    staged = tmp_path / "staged"
    live.mkdir()
    staged.mkdir()
    leaf, chain = le_shaped_chain(host, "ye1.pem")
    pki.write(live / "ecdsa.pem", leaf.key_pem, leaf.pem, chain)
    config = tmp_path / "tlsa-manager.toml"
    config.write_text(rfc2136_config(tmp_path / "state", bind, host, f"""
cert = "{live / 'ecdsa.pem'}"
staged_dir = "{staged}"
"""))
    return {"host": host, "config": config, "live": live, "staged": staged, "leaf": leaf, "tmp": tmp_path,
            "owner": owner_name(host)}


def served(bind: Bind, site: SyncSite) -> frozenset[Tlsa]:
    return bind_read(bind.secondary.port, site["owner"])[0]


def test_first_sync_then_new_key_rollover(cli: CliRunner, bind: Bind, site: SyncSite) -> None:
    cfg: list[str | Path] = ["--config", site["config"]]
    first = cli(*cfg, "sync", site["host"])
    assert first.code == 0, first.err
    assert "4 added" in first.out  # 3 1 1 + YE1, YE2, YE3
    live_311 = Tlsa.from_text(cli("records", site["live"] / "ecdsa.pem", "--usage", "3").out)
    assert live_311 in served(bind, site) and len(served(bind, site)) == 4

    # a renewal with a new key, issued by the sibling YE2, is staged
    new_leaf, chain = le_shaped_chain(site["host"], "ye2.pem")
    pki.write(site["staged"] / "ecdsa.pem", new_leaf.key_pem, new_leaf.pem, chain)
    sync = cli(*cfg, "sync", site["host"])
    assert sync.code == 0 and "1 added" in sync.out and "may go live not before" in sync.out
    assert (site["live"] / "ecdsa.pem").read_bytes().count(b"BEGIN CERTIFICATE") == 2
    plan = cli(*cfg, "--json", "plan", site["host"]).json()["plans"][0]
    assert plan["gates"][0]["ready"] is False and plan["gates"][0]["opens_at"]
    later = cli(*cfg, "--json", "plan", site["host"], "--at", "+1h").json()["plans"][0]
    assert later["gates"][0]["ready"] is True  # what-if: after the gate
    status = cli(*cfg, "status", site["host"])  # from the ledger alone
    assert status.code == 0 and "staged ecdsa.pem: may go live not before 20" in status.out, status.out
    assert "staged ecdsa.pem: may go live now" in cli(*cfg, "status", site["host"], "--at", "+1h").out
    time.sleep(2 * 2 + 1 + 0.5)
    deploy = cli(*cfg, "sync", site["host"])
    assert deploy.code == 0 and "deployed staged ecdsa.pem" in deploy.out, deploy.out
    assert new_leaf.pem in (site["live"] / "ecdsa.pem").read_bytes()
    assert not (site["staged"] / "ecdsa.pem").exists()
    new_311 = Tlsa.from_text(cli("records", site["live"] / "ecdsa.pem", "--usage", "3").out)
    # no reload command and no probe: nothing made the MTA load the new file, so it may
    # still present the old key; its 3 1 1 stays until the next sync (the old code removed
    # it in the deploying run)
    assert "not reloaded (no reload command" in deploy.out
    assert "the records of the replaced live ecdsa.pem stay until the next sync" in deploy.out, deploy.out
    assert new_311 in served(bind, site) and live_311 in served(bind, site)
    held = cli(*cfg, "--json", "status", site["host"])
    assert held.code == 0 and held.json()["hosts"][0]["unconfirmed_deploys"] == []  # no failure
    assert [d["deployed"] for d in held.json()["hosts"][0]["held_deploys"]] == ["staged ecdsa.pem"]
    assert "was not reloaded (no reload command, no probe)" in cli(*cfg, "status", site["host"]).out
    after = cli(*cfg, "sync", site["host"])
    assert after.code == 0 and "0 added, 1 removed" in after.out, after.out
    assert "kept until this sync, go now" in after.out
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and live_311 in served(bind, site):
        time.sleep(0.1)
    assert new_311 in served(bind, site) and live_311 not in served(bind, site)
    status = cli(*cfg, "--json", "status", site["host"])
    assert status.code == 0 and status.json()["hosts"][0]["held_deploys"] == []
    assert "managed: 3 1 1 " + new_311.data.hex() in cli(*cfg, "status", site["host"]).out


def test_same_key_renewal_without_reload_keeps_nothing_back(cli: CliRunner, bind: Bind, site: SyncSite) -> None:
    """A renewal with the same key and issuer needs no record the new chain lacks: with no
    reload and no probe it is deployed and nothing is held for the next sync."""
    cfg: list[str | Path] = ["--config", site["config"]]
    assert cli(*cfg, "sync", site["host"]).code == 0
    before = served(bind, site)
    renewed, chain = le_shaped_chain(site["host"], "ye1.pem", key=site["leaf"].key)
    pki.write(site["staged"] / "ecdsa.pem", renewed.key_pem, renewed.pem, chain)
    time.sleep(2 * 2 + 1 + 0.5)
    deploy = cli(*cfg, "sync", site["host"])
    assert deploy.code == 0 and "deployed staged ecdsa.pem" in deploy.out, deploy.out
    assert "stay until the next sync" not in deploy.out and served(bind, site) == before
    assert cli(*cfg, "--json", "status", site["host"]).json()["hosts"][0]["held_deploys"] == []


def test_plan_dry_run_export_write_nothing(cli: CliRunner, bind: Bind, site: SyncSite) -> None:
    cfg: list[str | Path] = ["--config", site["config"]]
    assert cli(*cfg, "plan", site["host"]).out.startswith(f"{site['host']}: add 4")
    assert cli(*cfg, "sync", "--dry-run", site["host"]).code == 0
    assert served(bind, site) == frozenset()
    assert not (site["tmp"] / "state" / "ledger.json").exists()
    zone_lines = cli(*cfg, "export", site["host"]).out
    assert zone_lines.count(" IN TLSA ") == 4
    ns = cli(*cfg, "export", site["host"], "--format", "nsupdate").out
    assert ns.count("update add") == 4 and ns.rstrip().endswith("send")
    doc = cli(*cfg, "export", site["host"], "--format", "json").json()
    assert {r["role"] for r in doc["records"]} == {"live", "issuer-active", "issuer-backup"}


def test_lock_and_corrupt_ledger(cli: CliRunner, site: SyncSite) -> None:
    from tlsa_manager.ledger import Ledger

    cfg: list[str | Path] = ["--config", site["config"]]
    state = site["tmp"] / "state"
    with Ledger(state).locked():
        busy = cli(*cfg, "sync", site["host"])
    assert busy.code == 1 and "another tlsa-manager run holds" in busy.err
    (state / "ledger.json").write_text("{broken")
    bad = cli(*cfg, "sync", site["host"])
    assert bad.code == 1 and "is not valid JSON" in bad.err and bad.err.count("\n") == 1
    assert (state / "ledger.json").read_text() == "{broken"


def test_config_errors_are_one_line(cli: CliRunner, tmp_path: Path) -> None:
    cases = {
        "[hosts.\"mx.example.com\"]\nprovider = \"nope\"\n": "provider 'nope' is not defined",
        "[providers.z]\ntype = \"zonefile\"\nzone_file = \"x\"\n[hosts.\"mx.example.com\"]\nrecords = [\"3 0 1\"]\n":
            "unsafe_allow_fragile_kinds",
        "[providers.z]\ntype = \"zonefile\"\nzone_file = \"x\"\n[hosts.\"mx.example.com\"]\nttl = \"long\"\n":
            "ttl must be a whole number",
        # the hint's example is the default, not the lower bound ("e.g. ttl = 1" reads as advice)
        "[providers.z]\ntype = \"zonefile\"\nzone_file = \"x\"\n[defaults]\nbudget = 0\n[hosts.\"mx.example.com\"]\n":
            "defaults.budget must be a whole number from 1 to 100, not 0; e.g. budget = 12",
        "[providers.z]\ntype = \"zonefile\"\nzone_file = \"x\"\n[hosts.\"mx_1.example.com\"]\n": "not a valid DNS host name",
        "[providers.z]\ntype = \"zonefile\"\nzone_file = \"x\"\n[hosts.\"mx.example.com\"]\ncolour = 1\n": "unknown key(s) colour",
        "[providers.c]\ntype = \"cloudflare\"\napi_token = \"sekrit-token-value\"\n": "chmod 600",
        "not toml [": "not valid TOML",
    }
    for text, fragment in cases.items():
        path = tmp_path / "c.toml"
        path.write_text(text)
        os.chmod(path, 0o644)
        result = cli("--config", path, "plan")
        assert result.code in (2, 3), (text, result)
        assert fragment in result.err and result.err.count("\n") == 1, (text, result.err)
        assert "sekrit-token-value" not in result.err
    assert "no such configuration file" in cli("--config", tmp_path / "none.toml", "plan").err
    assert json.loads("{}") == {}


def test_chain_from_a_ca_the_catalog_does_not_know(cli: CliRunner, bind: Bind, tmp_path: Path) -> None:
    """Issue 13.1: a private CA (or a test ACME server) has no Let's Encrypt siblings: sync pins
    the chain's own issuer and its leaf key, nothing else, and plan reports no missing YE1-3."""
    host = f"mx-{secrets.token_hex(3)}.{ZONE}"
    root = pki.make_ca("Private Root", pki.make_key("p384"))
    inter = pki.make_ca("Private Issuing CA", pki.make_key("p384"), issuer=root)
    leaf = pki.make_leaf([host], inter, key=pki.make_key("p256"))
    live = pki.write(tmp_path / "live" / "ecdsa.pem", leaf.key_pem, leaf.pem, inter.pem)
    config = tmp_path / "tlsa-manager.toml"
    config.write_text(rfc2136_config(tmp_path / "state", bind, host, f'cert = "{live}"'))
    cfg: list[str | Path] = ["--config", config]
    plan = cli(*cfg, "--json", "plan", host)
    assert plan.code == 0, plan.err
    doc = plan.json()["plans"][0]
    assert not [h for h in doc["hazards"] if h["code"] == "H12"], doc["hazards"]
    first = cli(*cfg, "sync", host)
    assert first.code == 0 and "2 added" in first.out, first.out + first.err
    # openssl is the oracle for the hashes
    own_issuer = Tlsa.from_text("2 1 1 " + openssl_tlsa_data(pki.write(tmp_path / "inter.pem", inter.pem), 1, 1))
    leaf_311 = Tlsa.from_text("3 1 1 " + openssl_tlsa_data(live, 1, 1))
    for port in (bind.primary.port, bind.secondary.port):
        deadline = time.monotonic() + 10
        while bind_read(port, owner_name(host))[0] != {own_issuer, leaf_311} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert bind_read(port, owner_name(host))[0] == {own_issuer, leaf_311}
    again = cli(*cfg, "--json", "plan", host).json()["plans"][0]
    assert again["changes"] == [] and not [h for h in again["hazards"] if h["code"] == "H12"]


def test_an_expired_staged_certificate_does_not_replace_a_longer_lived_one(
    cli: CliRunner, bind: Bind, site: SyncSite
) -> None:
    """Before: a file dropped into staged_dir by hand or by a deploy script (not through
    the hook, which refuses it) was deployed even when it had expired and the live one ran
    for months: exit 0, "deployed staged ecdsa.pem", PKIX and MTA-STS senders then failed.
    Now it stays staged, named in a note, and the live file and the ledger are untouched."""
    import datetime as dt

    from cryptography import x509

    cfg: list[str | Path] = ["--config", site["config"]]
    issuer = x509.load_pem_x509_certificate((LE_DATA / "ye1.pem").read_bytes())
    now = dt.datetime.now(dt.UTC)

    def leaf(not_before: dt.datetime) -> pki.Issued:
        return pki.make_leaf([site["host"]], pki.Issued(issuer, pki.make_key("p384")), key=site["leaf"].key,
                             not_before=not_before)

    current = leaf(now - dt.timedelta(days=1))  # valid for 89 more days
    pki.write(site["live"] / "ecdsa.pem", current.key_pem, current.pem, (LE_DATA / "ye1.pem").read_bytes())
    assert cli(*cfg, "sync", site["host"]).code == 0
    live_before = (site["live"] / "ecdsa.pem").read_bytes()
    old = leaf(now - dt.timedelta(days=100))  # expired 10 days ago
    pki.write(site["staged"] / "ecdsa.pem", old.key_pem, old.pem, (LE_DATA / "ye1.pem").read_bytes())
    time.sleep(2 * 2 + 1 + 0.5)  # past the gate
    result = cli(*cfg, "sync", site["host"])
    assert result.code == 0 and "deployed staged" not in result.out, result.out
    assert "staged ecdsa.pem: not deployed" in result.out + result.err
    assert "the certificate expired on" in result.out + result.err
    assert (site["live"] / "ecdsa.pem").read_bytes() == live_before
    assert (site["staged"] / "ecdsa.pem").exists()
    status = cli(*cfg, "--json", "status", site["host"]).json()["hosts"][0]
    assert status["unconfirmed_deploys"] == [] and status["held_deploys"] == []
