"""Post-renewal hooks: each ACME client's convention, staging, and deploy-at-once only when safe."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from tlsa_manager.errors import UsageError
from tlsa_manager.hooks import renewal_from

import pki
from conftest import LE_DATA, CliRunner
from servers import Bind
from test_sync_cli import SyncSite, le_shaped_chain, site  # noqa: F401  (fixture)


def test_each_client_convention() -> None:
    certbot = renewal_from("certbot", {"RENEWED_LINEAGE": "/etc/le/live/mx", "RENEWED_DOMAINS": "mx.a.b mail.a.b"}, [])
    assert certbot.domains == ("mx.a.b", "mail.a.b") and certbot.fullchain == Path("/etc/le/live/mx/fullchain.pem")
    acme = renewal_from("acme.sh", {"Le_Domain": "mx.a.b", "CERT_KEY_PATH": "/k", "CERT_PATH": "/c",
                                    "CERT_FULLCHAIN_PATH": "/fc", "CA_CERT_PATH": "/ca"}, [])
    assert (acme.key, acme.fullchain) == (Path("/k"), Path("/fc"))
    lego = renewal_from("lego", {"LEGO_CERT_DOMAIN": "mx.a.b", "LEGO_CERT_PATH": "/c.crt",
                                 "LEGO_CERT_KEY_PATH": "/c.key"}, [])
    assert (lego.key, lego.fullchain) == (Path("/c.key"), Path("/c.crt"))
    dehydrated = renewal_from("dehydrated", {}, ["deploy_cert", "mx.a.b", "/k", "/c", "/fc", "/ch", "123"])
    assert (dehydrated.domains, dehydrated.key, dehydrated.fullchain) == (("mx.a.b",), Path("/k"), Path("/fc"))
    generic = renewal_from("generic", {}, [], cert="/fc", key="/k", host="mx.a.b")
    assert generic.fullchain == Path("/fc")
    with pytest.raises(UsageError, match="RENEWED_LINEAGE is not set"):
        renewal_from("certbot", {}, [])
    with pytest.raises(UsageError, match="generic needs --cert"):
        renewal_from("generic", {}, [])


def _lineage(tmp: Path, host: str, issuer: str,
             key: CertificateIssuerPrivateKeyTypes | None = None) -> tuple[Path, pki.Issued]:
    leaf, chain = le_shaped_chain(host, issuer, key=key)
    lineage = tmp / f"lineage-{issuer}-{os.urandom(2).hex()}"
    pki.write(lineage / "privkey.pem", leaf.key_pem)
    pki.write(lineage / "fullchain.pem", leaf.pem, chain)
    return lineage, leaf


def test_certbot_reuse_key_sibling_goes_live_at_once(cli: CliRunner, bind: Bind, site: SyncSite, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    cfg: list[str | Path] = ["--config", site["config"]]
    assert cli(*cfg, "sync", site["host"]).code == 0
    time.sleep(2 * 2 + 1 + 0.5)  # the records have now been served for 2 TTLs + slack
    # --reuse-key renewal, and Let's Encrypt picked the sibling YE2: everything is published already
    lineage, leaf = _lineage(site["tmp"], site["host"], "ye2.pem", key=site["leaf"].key)
    monkeypatch.setenv("RENEWED_LINEAGE", str(lineage))
    monkeypatch.setenv("RENEWED_DOMAINS", f"{site['host']} other.example.test")
    result = cli(*cfg, "hook", "certbot")
    assert result.code == 0, result.err
    # this site has no reload command and no probe: the line says neither happened
    assert "deployed staged ecdsa.pem (not reloaded (no reload command" in result.out
    assert "not verified (no probe configured)" in result.out
    live = (site["live"] / "ecdsa.pem").read_bytes()
    assert leaf.pem in live and live.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert oct(os.stat(site["live"] / "ecdsa.pem").st_mode & 0o777) == "0o640"


def test_certbot_new_key_stays_staged(cli: CliRunner, bind: Bind, site: SyncSite, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    cfg: list[str | Path] = ["--config", site["config"]]
    assert cli(*cfg, "sync", site["host"]).code == 0
    before = (site["live"] / "ecdsa.pem").read_bytes()
    lineage, _leaf = _lineage(site["tmp"], site["host"], "ye1.pem")
    monkeypatch.setenv("RENEWED_LINEAGE", str(lineage))
    monkeypatch.setenv("RENEWED_DOMAINS", site["host"])
    result = cli(*cfg, "hook", "certbot")
    assert result.code == 0 and "may go live not before" in result.out and "stays staged" in result.out, result.out + result.err
    assert (site["live"] / "ecdsa.pem").read_bytes() == before
    assert (site["staged"] / "ecdsa.pem").exists()


def test_mismatched_key_is_not_staged(cli: CliRunner, site: SyncSite, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    lineage, _leaf = _lineage(site["tmp"], site["host"], "ye1.pem")
    pki.write(lineage / "privkey.pem", pki.key_pem(pki.make_key("p256")))
    result = cli("--config", site["config"], "hook", "generic", "--cert", lineage / "fullchain.pem",
                 "--key", lineage / "privkey.pem", "--host", site["host"])
    assert result.code == 2 and "does not match the certificate" in result.err
    assert not (site["staged"] / "ecdsa.pem").exists()


def test_unknown_domain(cli: CliRunner, site: SyncSite, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    lineage, _leaf = _lineage(site["tmp"], site["host"], "ye1.pem")
    monkeypatch.setenv("RENEWED_LINEAGE", str(lineage))
    monkeypatch.setenv("RENEWED_DOMAINS", "www.example.test")
    result = cli("--config", site["config"], "hook", "certbot")
    # certbot runs deploy hooks for every lineage: another service's certificate is not a
    # failed hook (exit 0, one line, nothing done); lego's --renew-hook is per certificate
    assert result.code == 0 and "no configured host among the renewed names" in result.err
    assert "another service's certificate; nothing done" in result.err
    assert not (site["staged"] / "ecdsa.pem").exists()
    www, _leaf = _lineage(site["tmp"], "www.example.test", "ye1.pem")
    monkeypatch.setenv("LEGO_CERT_DOMAIN", "www.example.test")
    monkeypatch.setenv("LEGO_CERT_PATH", str(www / "fullchain.pem"))
    monkeypatch.setenv("LEGO_CERT_KEY_PATH", str(www / "privkey.pem"))
    lego = cli("--config", site["config"], "hook", "lego")
    assert lego.code == 2 and "no configured host among the renewed names" in lego.err, lego.err


def test_hooks_doc_says_the_exit_code_the_hook_gives() -> None:
    """docs/hooks.md promised exit 4 for a lagging secondary (H18 risk); the hook exits 0
    for risk hazards (cli.md, tests/test_truth.py), so a script keyed on the doc would
    misread every renewal made while a secondary lags."""
    text = " ".join((Path(__file__).parent.parent / "docs" / "hooks.md").read_text().split())
    assert "4 when a risk such as a lagging secondary" not in text
    assert "0 staged or deployed, also when a risk such as a lagging secondary (H18) is seen" in text


def test_first_install_recipe_keeps_the_key_private(tmp_path: Path) -> None:
    """docs/hooks.md's first-install command, run as written with umask 022, made the
    live key+chain file 0644: the private key readable by every user on the machine."""
    import re
    import subprocess

    text = (Path(__file__).parent.parent / "docs" / "hooks.md").read_text()
    recipe = " ".join(re.search(r"First install:.*?\(`(.*?)`", text, re.S).group(1).split())  # type: ignore[union-attr]
    (tmp_path / "privkey.pem").write_text("key\n")
    (tmp_path / "fullchain.pem").write_text("chain\n")
    live = tmp_path / "live.pem"
    script = recipe.replace("/etc/tlsa-manager/live/HOST/ecdsa.pem", str(live)).replace("chgrp postfix", "true")
    subprocess.run(["sh", "-c", f"umask 022; {script}"], cwd=tmp_path, check=True)
    assert live.read_text() == "key\nchain\n" and live.stat().st_mode & 0o007 == 0


def _wildcard_lineage(tmp: Path, parent: str, key: CertificateIssuerPrivateKeyTypes | None = None) -> tuple[Path, bytes]:
    """A certbot lineage for "parent, *.parent" (its key and full chain), and that file's bytes."""
    from cryptography import x509

    issuer_pem = (LE_DATA / "ye1.pem").read_bytes()
    issuer = pki.Issued(x509.load_pem_x509_certificate(issuer_pem), pki.make_key("p384"))
    leaf = pki.make_leaf([parent, f"*.{parent}"], issuer, key=key)
    lineage = tmp / f"lineage-wild-{os.urandom(2).hex()}"
    pki.write(lineage / "privkey.pem", leaf.key_pem)
    pki.write(lineage / "fullchain.pem", leaf.pem, issuer_pem)
    return lineage, leaf.key_pem + leaf.pem + issuer_pem


def test_wildcard_certificate_covers_its_mx_host(cli: CliRunner, site: SyncSite, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """docs/hooks.md: the hook "finds the configured hosts the certificate covers". An MX
    that serves the "*.example.test" certificate gets its renewal (RFC 6125 §6.4.3); the
    hook stopped with "no configured host among the renewed names" at every renewal."""
    parent = site["host"].split(".", 1)[1]
    _first, live = _wildcard_lineage(site["tmp"], parent)
    (site["live"] / "ecdsa.pem").write_bytes(live)  # the MX serves the wildcard certificate
    lineage, _ = _wildcard_lineage(site["tmp"], parent)
    monkeypatch.setenv("RENEWED_LINEAGE", str(lineage))
    monkeypatch.setenv("RENEWED_DOMAINS", f"{parent} *.{parent}")
    result = cli("--config", site["config"], "hook", "certbot")
    assert result.code == 0, result.err
    assert (site["staged"] / "ecdsa.pem").exists()
    # a wildcard covers one label only: a deeper name is not covered
    monkeypatch.setenv("RENEWED_DOMAINS", f"*.sub.{parent}")
    assert "no configured host among the renewed names" in cli("--config", site["config"], "hook", "certbot").err


def test_a_web_wildcard_lineage_does_not_replace_the_mx_own_certificate(cli: CliRunner, site: SyncSite, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """certbot runs renewal-hooks/deploy for every lineage: the web server's
    "*.example.test" renewal covers the MX's name too, but the MX serves a certificate of
    its own.  Staging the wildcard would swap the MX's certificate and key for the web
    server's at every renewal: nothing staged.  certbot (and dehydrated, which stops its
    whole run on a failing hook) run the hook for every certificate, so this is another
    service's certificate: exit 0 with the reason on stderr; a hook wired to this one
    certificate (lego) is a mistake: exit 2."""
    parent = site["host"].split(".", 1)[1]
    lineage, _ = _wildcard_lineage(site["tmp"], parent)
    monkeypatch.setenv("RENEWED_LINEAGE", str(lineage))
    monkeypatch.setenv("RENEWED_DOMAINS", f"{parent} *.{parent}")
    result = cli("--config", site["config"], "hook", "certbot")
    assert result.code == 0 and "covered by the renewed wildcard only" in result.err, result.err
    assert "another service's certificate; nothing done" in result.err
    assert not (site["staged"] / "ecdsa.pem").exists()
    for name, value in {"LEGO_CERT_DOMAIN": f"*.{parent}", "LEGO_CERT_PATH": str(lineage / "fullchain.pem"),
                        "LEGO_CERT_KEY_PATH": str(lineage / "privkey.pem")}.items():
        monkeypatch.setenv(name, value)
    result = cli("--config", site["config"], "hook", "lego")
    assert result.code == 2 and "covered by the renewed wildcard only" in result.err, result.err
    assert not (site["staged"] / "ecdsa.pem").exists()


def test_main_domain_client_finds_the_mx_host_among_the_certificates_names(cli: CliRunner, site: SyncSite, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """acme.sh (Le_Domain), lego (LEGO_CERT_DOMAIN) and dehydrated (DOMAIN) name only the
    certificate's main domain.  One certificate for "example.test, mx.example.test" (a
    common shape) made the hook stop with "no configured host among the renewed names
    example.test" at every renewal; the host is found among the certificate's own names."""
    from cryptography import x509

    parent = site["host"].split(".", 1)[1]
    chain = le_shaped_chain(site["host"], "ye1.pem")[1]
    issuer = pki.Issued(x509.load_pem_x509_certificate(chain), pki.make_key("p384"))
    leaf = pki.make_leaf([parent, site["host"]], issuer)
    d = site["tmp"] / "acme"
    key = pki.write(d / "mx.key", leaf.key_pem)
    fullchain = pki.write(d / "fullchain.cer", leaf.pem, chain)
    for name, value in {"Le_Domain": parent, "CERT_KEY_PATH": str(key), "CERT_PATH": str(d / "mx.cer"),
                        "CERT_FULLCHAIN_PATH": str(fullchain)}.items():
        monkeypatch.setenv(name, value)
    result = cli("--config", site["config"], "hook", "acme.sh")
    assert result.code == 0, result.err
    assert leaf.pem in (site["staged"] / "ecdsa.pem").read_bytes()
