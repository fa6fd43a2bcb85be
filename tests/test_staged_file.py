"""The file a hook stages is one Postfix loads: one PEM private key, then the leaf, then
its CA certificates, whatever shape the ACME client's files had.

Postfix's ``smtpd_tls_chain_files`` reads "a key, then its certificate chain, leaf
first"; anything else (a CA certificate before the leaf, a second key, a DER key) makes
smtpd log "key at index N does not match next certificate" and **disable TLS**, and every
DANE sender then defers mail to the host.  openssl is the oracle: the first certificate
of the staged file must carry the public key of its one private key.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

import pki
from conftest import CliRunner
from servers import Bind
from test_sync_cli import SyncSite, le_shaped_chain, site  # noqa: F401  (fixture)


def _openssl(*args: str | Path) -> str:
    return subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, text=True).stdout


def assert_postfix_loadable(staged: Path, leaf: pki.Issued) -> None:
    text = staged.read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----"), text[:60]
    assert text.count("PRIVATE KEY-----") == 2, "exactly one private key block"
    first_cert_pubkey = _openssl("x509", "-in", staged, "-noout", "-pubkey")
    assert first_cert_pubkey == _openssl("pkey", "-in", staged, "-pubout")
    assert _openssl("x509", "-in", staged, "-noout", "-subject").strip().endswith(leaf.cert.subject.rfc4514_string().split("=", 1)[1])


@pytest.mark.parametrize("shape", ["issuer-first", "der-key", "key-in-fullchain-too", "key-only-in-fullchain"])
def test_staged_file_is_key_then_leaf_then_chain(cli: CliRunner, bind: Bind, site: SyncSite, shape: str) -> None:  # noqa: F811
    leaf, chain = le_shaped_chain(site["host"], "ye2.pem")
    d = site["tmp"] / "renewal"
    key = pki.write(d / "privkey.pem", leaf.key_pem)
    if shape == "issuer-first":  # CA certificates before the leaf
        cert = pki.write(d / "fullchain.pem", chain, leaf.pem)
    elif shape == "der-key":
        cert = pki.write(d / "fullchain.pem", leaf.pem, chain)
        key = d / "privkey.der"
        key.write_bytes(_der_key(d / "privkey.pem"))
    else:  # one combined file (key, leaf, chain), as Postfix or HAProxy keep it
        cert = key = pki.write(d / "combined.pem", leaf.key_pem, leaf.pem, chain)
    args: list[str | Path] = ["--cert", cert, "--host", site["host"]]
    if shape != "key-only-in-fullchain":
        args += ["--key", key]
    result = cli("--config", site["config"], "hook", "generic", *args)
    assert result.code == 0, result.err
    assert_postfix_loadable(site["staged"] / "ecdsa.pem", leaf)


def test_public_key_as_key_file_is_refused(cli: CliRunner, site: SyncSite) -> None:  # noqa: F811
    leaf, chain = le_shaped_chain(site["host"], "ye2.pem")
    d = site["tmp"] / "renewal"
    cert = pki.write(d / "fullchain.pem", leaf.pem, chain)
    pki.write(d / "privkey.pem", leaf.key_pem)
    public = d / "pubkey.pem"
    public.write_text(_openssl("pkey", "-in", d / "privkey.pem", "-pubout"))
    result = cli("--config", site["config"], "hook", "generic", "--cert", cert, "--key", public, "--host", site["host"])
    assert result.code == 2 and "private key" in result.err and "Traceback" not in result.err, result.err
    assert not (site["staged"] / "ecdsa.pem").exists()


def _der_key(pem: Path) -> bytes:
    return subprocess.run(["openssl", "pkey", "-in", str(pem), "-outform", "DER"], check=True,
                          capture_output=True).stdout


@pytest.mark.parametrize("how", ["same-folder", "trailing-slash", "link-to-folder"])
def test_staged_dir_that_is_the_live_folder_is_refused(cli: CliRunner, site: SyncSite, how: str) -> None:  # noqa: F811
    """A staged_dir that is the live file's own folder made the hook write a renewal with a
    new key straight over the live file: live at the MTA's next reload, before its record
    was served anywhere, and every DANE sender would defer mail."""
    staged = {"same-folder": str(site["live"]), "trailing-slash": f"{site['live']}/",
              "link-to-folder": str(site["tmp"] / "staged-link")}[how]
    if how == "link-to-folder":
        (site["tmp"] / "staged-link").symlink_to(site["live"])
    config = site["config"].read_text().replace(f'staged_dir = "{site["staged"]}"', f'staged_dir = "{staged}"')
    assert staged in config
    site["config"].write_text(config)
    before = (site["live"] / "ecdsa.pem").read_bytes()
    leaf, chain = le_shaped_chain(site["host"], "ye2.pem")
    renewal = pki.write(site["tmp"] / "renewal" / "combined.pem", leaf.key_pem, leaf.pem, chain)
    hooked = cli("--config", site["config"], "hook", "generic", "--cert", renewal, "--host", site["host"])
    assert hooked.code == 2, hooked.out + hooked.err
    assert "staged_dir" in hooked.err and "live" in hooked.err and "Traceback" not in hooked.err, hooked.err
    assert (site["live"] / "ecdsa.pem").read_bytes() == before


def test_live_file_that_is_a_link_is_not_replaced(cli: CliRunner, site: SyncSite) -> None:  # noqa: F811
    """cert = certbot's /etc/letsencrypt/live/NAME/fullchain.pem (a link into archive/):
    a deploy renames the staged file over the link, and certbot then refuses the lineage
    ("expected ... to be a symlink") at every later renewal.  The hook says so at once
    and stages nothing; the link stays a link."""
    archive = site["tmp"] / "archive" / "fullchain1.pem"
    archive.parent.mkdir()
    (site["live"] / "ecdsa.pem").rename(archive)
    (site["live"] / "ecdsa.pem").symlink_to(archive)
    leaf, chain = le_shaped_chain(site["host"], "ye2.pem")
    renewal = pki.write(site["tmp"] / "renewal" / "combined.pem", leaf.key_pem, leaf.pem, chain)
    hooked = cli("--config", site["config"], "hook", "generic", "--cert", renewal, "--host", site["host"])
    assert hooked.code == 2 and "is a symbolic link" in hooked.err and "Traceback" not in hooked.err, hooked.err
    assert (site["live"] / "ecdsa.pem").is_symlink() and not (site["staged"] / "ecdsa.pem").exists()


def test_deploy_over_a_live_link_is_refused(cli: CliRunner, bind: Bind, site: SyncSite) -> None:  # noqa: F811
    """The same for a file staged by hand (no hook): the sync whose gate has passed does
    not rename it over the live link; it says so, and no deploy is left half-recorded."""
    archive = site["tmp"] / "archive" / "fullchain1.pem"
    archive.parent.mkdir()
    (site["live"] / "ecdsa.pem").rename(archive)
    (site["live"] / "ecdsa.pem").symlink_to(archive)
    cfg: list[str | Path] = ["--config", site["config"]]
    assert cli(*cfg, "sync", site["host"]).code == 0
    time.sleep(2 * 2 + 1 + 0.5)
    leaf, chain = le_shaped_chain(site["host"], "ye1.pem", key=site["leaf"].key)  # same key and issuer
    pki.write(site["staged"] / "ecdsa.pem", leaf.key_pem, leaf.pem, chain)
    result = cli(*cfg, "sync", site["host"])
    assert "staged ecdsa.pem: not deployed" in result.out and "is a symbolic link" in result.out, result.out
    assert (site["live"] / "ecdsa.pem").is_symlink() and archive.read_bytes() != (site["staged"] / "ecdsa.pem").read_bytes()
    status = cli(*cfg, "status", site["host"])
    assert "not confirmed" not in status.out, status.out


def test_expired_certificate_is_not_staged(cli: CliRunner, bind: Bind, site: SyncSite) -> None:  # noqa: F811
    """An expired certificate with the live key (an old file handed to the hook again, a
    stale client file) went live at once over a valid one: DANE-EE still matched, but every
    PKIX or MTA-STS sender then failed.  It is refused (exit 2), the live file untouched."""
    import datetime as dt

    from cryptography import x509

    cfg: list[str | Path] = ["--config", site["config"]]
    issuer = pki.Issued(x509.load_pem_x509_certificate(chain := le_shaped_chain(site["host"], "ye1.pem")[1]),
                        pki.make_key("p384"))
    now = dt.datetime.now(dt.UTC)
    valid = pki.make_leaf([site["host"]], issuer, key=site["leaf"].key, not_before=now - dt.timedelta(days=10))
    pki.write(site["live"] / "ecdsa.pem", valid.key_pem, valid.pem, chain)
    assert cli(*cfg, "sync", site["host"]).code == 0
    time.sleep(2 * 2 + 1 + 0.5)  # the live key and YE1 are served: a renewal like this goes live at once
    old = pki.make_leaf([site["host"]], issuer, key=site["leaf"].key, not_before=now - dt.timedelta(days=200))
    renewal = pki.write(site["tmp"] / "renewal" / "combined.pem", old.key_pem, old.pem, chain)
    before = (site["live"] / "ecdsa.pem").read_bytes()
    hooked = cli(*cfg, "hook", "generic", "--cert", renewal, "--host", site["host"])
    assert hooked.code == 2 and "expired" in hooked.err and "Traceback" not in hooked.err, hooked.out + hooked.err
    assert (site["live"] / "ecdsa.pem").read_bytes() == before and not (site["staged"] / "ecdsa.pem").exists()


def test_hosts_sharing_a_staged_file_are_refused(cli: CliRunner, tmp_path: Path) -> None:
    """staged_dir in [defaults] with live files of the same name (mx2/ecdsa.pem,
    mx3/ecdsa.pem): each host took the other's renewal as its own staged chain, published
    its key and deployed it, whichever host came first; the other never got its renewal.
    Refused when the configuration is loaded (exit 2), naming both hosts."""
    config = tmp_path / "config.toml"
    config.write_text(f"""
[defaults]
staged_dir = "{tmp_path / 'staged'}"
[providers.z]
type = "zonefile"
zone_file = "{tmp_path / 'db.example.test'}"
[hosts."mx2.example.test"]
cert = "{tmp_path / 'mx2' / 'ecdsa.pem'}"
[hosts."mx3.example.test"]
cert = "{tmp_path / 'mx3' / 'ecdsa.pem'}"
""")
    for command in (["plan"], ["status"], ["export"]):
        result = cli("--config", config, "--state-dir", tmp_path / "state", *command)
        assert result.code == 2, result.out + result.err
        assert "mx2.example.test" in result.err and "mx3.example.test" in result.err and "staged" in result.err


def _separate_key(site: SyncSite) -> Path:  # noqa: F811
    """The site's live chain as fullchain.pem + privkey.pem (Postfix smtpd_tls_cert_file and
    smtpd_tls_key_file), with ``key = ...`` in the host's configuration."""
    live = site["live"] / "ecdsa.pem"
    text = live.read_text()
    start = text.index("-----BEGIN CERTIFICATE-----")
    (site["live"] / "privkey.pem").write_text(text[:start])
    live.write_text(text[start:])
    with open(site["config"], "a") as handle:
        handle.write(f'key = "{site["live"] / "privkey.pem"}"\n')
    return site["live"] / "privkey.pem"


def test_new_key_for_a_host_with_a_separate_key_file_is_not_staged(cli: CliRunner, site: SyncSite) -> None:  # noqa: F811
    """A deploy swaps one file.  With ``key = privkey.pem`` beside the live chain, a renewal
    with a new key went live as key+chain in the chain file while privkey.pem kept the old
    key: an MTA reading both (smtpd_tls_key_file) pairs the new certificate with the old
    key and disables TLS, and every later run stopped with "the key does not match"."""
    key = _separate_key(site)
    before = key.read_bytes()
    leaf, chain = le_shaped_chain(site["host"], "ye2.pem")
    renewal = pki.write(site["tmp"] / "renewal" / "combined.pem", leaf.key_pem, leaf.pem, chain)
    hooked = cli("--config", site["config"], "hook", "generic", "--cert", renewal, "--host", site["host"])
    assert hooked.code == 2 and "privkey.pem" in hooked.err and "Traceback" not in hooked.err, hooked.err
    assert not (site["staged"] / "ecdsa.pem").exists() and key.read_bytes() == before


def test_hand_staged_new_key_is_not_deployed_beside_a_separate_key_file(cli: CliRunner, bind: Bind, site: SyncSite) -> None:  # noqa: F811
    _separate_key(site)
    cfg: list[str | Path] = ["--config", site["config"]]
    assert cli(*cfg, "sync", site["host"]).code == 0
    leaf, chain = le_shaped_chain(site["host"], "ye1.pem")
    pki.write(site["staged"] / "ecdsa.pem", leaf.key_pem, leaf.pem, chain)
    assert cli(*cfg, "sync", site["host"]).code == 0  # its record goes out, its gate starts
    time.sleep(2 * 2 + 1 + 0.5)
    result = cli(*cfg, "sync", site["host"])
    assert "staged ecdsa.pem: not deployed" in result.out and "privkey.pem" in result.out, result.out + result.err
    assert leaf.pem not in (site["live"] / "ecdsa.pem").read_bytes()
    assert cli(*cfg, "plan", site["host"]).code == 0  # the host is not left broken


def test_reused_key_still_deploys_beside_a_separate_key_file(cli: CliRunner, bind: Bind, site: SyncSite) -> None:  # noqa: F811
    _separate_key(site)
    cfg: list[str | Path] = ["--config", site["config"]]
    assert cli(*cfg, "sync", site["host"]).code == 0
    time.sleep(2 * 2 + 1 + 0.5)
    leaf, chain = le_shaped_chain(site["host"], "ye1.pem", key=site["leaf"].key)
    renewal = pki.write(site["tmp"] / "renewal" / "combined.pem", leaf.key_pem, leaf.pem, chain)
    hooked = cli(*cfg, "hook", "generic", "--cert", renewal, "--host", site["host"])
    assert hooked.code == 0 and "deployed staged ecdsa.pem" in hooked.out, hooked.out + hooked.err
    assert cli(*cfg, "plan", site["host"]).code == 0


def test_hosts_sharing_one_live_file_may_share_a_staged_dir(tmp_path: Path) -> None:
    """One MTA under two MX names serves one file: with staged_dir in [defaults] both hosts
    stage the same renewal to the same file.  That configuration loaded before the
    shared-staged-file refusal and must still load (it was refused, exit 2 on every
    command); two different live files of one name are still refused."""
    from tlsa_manager.config import config_from_dict
    from tlsa_manager.errors import ConfigError

    shared = str(tmp_path / "live" / "ecdsa.pem")
    doc = {
        "defaults": {"staged_dir": str(tmp_path / "staged"), "cert": shared},
        "providers": {"z": {"type": "zonefile", "zone_file": str(tmp_path / "db.example.test")}},
        "hosts": {"mx1.example.test": {}, "mx2.example.test": {}},
    }
    config = config_from_dict(doc, tmp_path, "test")
    assert sorted(config.hosts) == ["mx1.example.test", "mx2.example.test"]
    assert {str(c) for s in config.hosts.values() for c in s.certs} == {shared}
    doc["hosts"] = {"mx1.example.test": {}, "mx2.example.test": {"cert": str(tmp_path / "mx2" / "ecdsa.pem")}}
    with pytest.raises(ConfigError, match="both stage"):
        config_from_dict(doc, tmp_path, "test")


def test_new_key_for_a_host_whose_key_is_its_chain_file_is_staged(cli: CliRunner, site: SyncSite) -> None:  # noqa: F811
    """``key = `` naming the live chain file itself (key + chain in one file, as Postfix's
    smtpd_tls_key_file = $smtpd_tls_cert_file): a deploy replaces key and chain together,
    so a renewal with a new key is staged as before (it was refused, exit 2, as if the
    key were a file of its own)."""
    live = site["live"] / "ecdsa.pem"
    with open(site["config"], "a") as handle:
        handle.write(f'key = "{live}"\n')
    leaf, chain = le_shaped_chain(site["host"], "ye2.pem")
    renewal = pki.write(site["tmp"] / "renewal" / "combined.pem", leaf.key_pem, leaf.pem, chain)
    hooked = cli("--config", site["config"], "hook", "generic", "--cert", renewal, "--host", site["host"])
    assert hooked.code == 0 and "Traceback" not in hooked.err, hooked.out + hooked.err
    assert leaf.pem in (site["staged"] / "ecdsa.pem").read_bytes()


def test_hook_pointed_at_a_live_link_that_already_holds_it_is_done(cli: CliRunner, site: SyncSite) -> None:  # noqa: F811
    """cert = certbot's live/ link, and certbot's deploy hook hands over that very file
    (RENEWED_LINEAGE/fullchain.pem, already the new certificate): nothing is to be staged
    nor deployed, so the link is never replaced; the hook says it is already live
    (exit 0), as for a regular live file, instead of refusing the link (exit 2)."""
    archive = site["tmp"] / "archive" / "fullchain1.pem"
    archive.parent.mkdir()
    live = site["live"] / "ecdsa.pem"
    live.rename(archive)
    live.symlink_to(archive)
    hooked = cli("--config", site["config"], "hook", "generic", "--cert", live, "--host", site["host"])
    assert hooked.code == 0 and "already live" in hooked.out, hooked.out + hooked.err
    assert live.is_symlink() and not (site["staged"] / "ecdsa.pem").exists()
