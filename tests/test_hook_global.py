"""Global deploy hooks and certificates of other services.

certbot runs renewal-hooks/deploy/ (or cli.ini's deploy_hook) for every lineage it
renews, and dehydrated calls deploy_cert for every line of domains.txt: a web server's
www.example.com renewal reached ``tlsa-manager hook`` too, which exited 2, so every
unrelated renewal was logged as a failed hook.  For those two clients such a certificate
now exits 0 with one line on stderr and nothing done; acme.sh, lego and ``generic`` are
hooked per certificate, so there it stays a mistake (exit 2), and so does a certificate
that covers a configured host but cannot be staged (docs/hooks.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TypedDict

import pytest
from test_hook_dehydrated import HOST, pebble, zone_site  # noqa: F401  (pebble: a fixture)

import pki
from acme_servers import Certbot, Dehydrated, Pebble, tlsa_manager
from conftest import EXAMPLES, CliRunner
from servers import require
from test_sync_cli import le_shaped_chain

MX = HOST
WWW = "www.example.com"
NOT_OURS = f"no configured host among the renewed names {WWW}: another service's certificate; nothing done\n"


class Site(TypedDict):
    config: Path
    zone: Path
    live: Path
    staged: Path
    tmp: Path


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """The MX of examples/ published in a zone file; no server is asked for an unrelated renewal."""
    live, staged = tmp_path / "live" / "ecdsa.pem", tmp_path / "staged"
    pki.write(live, (EXAMPLES / MX / "privkey.pem").read_bytes(), (EXAMPLES / MX / "fullchain.pem").read_bytes())
    config = zone_site(tmp_path, [live], staged)
    return {"config": config, "zone": tmp_path / "db.example.com", "live": live, "staged": staged, "tmp": tmp_path}


def _files(site: Site, name: str, *, matching_key: bool = True) -> tuple[Path, Path]:
    leaf, chain = le_shaped_chain(name, "ye1.pem")
    folder = site["tmp"] / name
    key = pki.write(folder / "privkey.pem", leaf.key_pem if matching_key else pki.key_pem(pki.make_key("p256")))
    return key, pki.write(folder / "fullchain.pem", leaf.pem, chain)


def _unchanged(site: Site, zone_before: str, live_before: bytes) -> None:
    assert site["zone"].read_text() == zone_before and site["live"].read_bytes() == live_before
    assert not site["staged"].exists() and not (site["tmp"] / "state").exists()


def test_certbot_and_dehydrated_skip_another_services_certificate(cli: CliRunner, site: Site,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    zone_before, live_before = site["zone"].read_text(), site["live"].read_bytes()
    key, fullchain = _files(site, WWW)
    monkeypatch.setenv("RENEWED_LINEAGE", str(key.parent))
    monkeypatch.setenv("RENEWED_DOMAINS", WWW)
    certbot = cli("--config", site["config"], "hook", "certbot")
    assert (certbot.code, certbot.out, certbot.err) == (0, "", f"tlsa-manager: hook certbot: {NOT_OURS}")
    dehydrated = cli("--config", site["config"], "hook", "dehydrated", "deploy_cert", WWW, key,
                     key.with_name("cert.pem"), fullchain, key.with_name("chain.pem"), "1700000000")
    assert (dehydrated.code, dehydrated.out, dehydrated.err) == (0, "", f"tlsa-manager: hook dehydrated: {NOT_OURS}")
    quiet = cli("--config", site["config"], "-q", "hook", "certbot")
    assert (quiet.code, quiet.out, quiet.err) == (0, "", "")
    as_json = cli("--config", site["config"], "--json", "hook", "certbot")
    assert as_json.code == 0 and as_json.json() == {"hosts": []}
    _unchanged(site, zone_before, live_before)


def test_per_certificate_hooks_still_refuse_a_certificate_for_no_host(cli: CliRunner, site: Site,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """acme.sh's --reloadcmd, lego's --renew-hook and ``generic --host`` name this one
    certificate: one that covers no configured host is a mistake, said with exit 2."""
    zone_before, live_before = site["zone"].read_text(), site["live"].read_bytes()
    key, fullchain = _files(site, WWW)
    for name, value in {"Le_Domain": WWW, "CERT_KEY_PATH": str(key), "CERT_PATH": str(fullchain),
                        "CERT_FULLCHAIN_PATH": str(fullchain), "LEGO_CERT_DOMAIN": WWW,
                        "LEGO_CERT_PATH": str(fullchain), "LEGO_CERT_KEY_PATH": str(key)}.items():
        monkeypatch.setenv(name, value)
    for client in (["acme.sh"], ["lego"], ["generic", "--cert", fullchain, "--key", key, "--host", WWW]):
        result = cli("--config", site["config"], "hook", *client)
        assert result.code == 2 and f"error: no configured host among the renewed names {WWW}" in result.err, client
    _unchanged(site, zone_before, live_before)


def test_certbot_certificate_of_a_configured_host_that_cannot_be_staged_is_still_exit_2(
        cli: CliRunner, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    zone_before, live_before = site["zone"].read_text(), site["live"].read_bytes()
    key, _fullchain = _files(site, MX, matching_key=False)
    monkeypatch.setenv("RENEWED_LINEAGE", str(key.parent))
    monkeypatch.setenv("RENEWED_DOMAINS", MX)
    result = cli("--config", site["config"], "hook", "certbot")
    assert result.code == 2 and "does not match the certificate" in result.err, result.err
    assert site["zone"].read_text() == zone_before and site["live"].read_bytes() == live_before
    assert not (site["staged"] / "ecdsa.pem").exists()


def test_real_certbot_global_deploy_hook_and_dehydrated_domains_txt(pebble: Pebble, site: Site) -> None:  # noqa: F811
    """Real certbot renews a web server's lineage with a hook in renewal-hooks/deploy/, and
    real dehydrated issues www.example.com from domains.txt with its HOOK: neither logs a
    failed hook, and the MX's zone and live file are untouched."""
    require("certbot")
    zone_before, live_before = site["zone"].read_text(), site["live"].read_bytes()
    hook = tlsa_manager("--config", site["config"], "hook")
    root = pebble.root.parent
    certbot = Certbot(root / "certbot", pebble, WWW)
    certbot.issue("ecdsa")  # lineage mx-ecdsa, for www.example.com: another service's certificate
    deploy_hooks = root / "certbot" / "conf" / "renewal-hooks" / "deploy"
    deploy_hooks.mkdir(parents=True, exist_ok=True)
    script = deploy_hooks / "tlsa-manager"
    script.write_text(f'#!/bin/sh\nexec {" ".join(hook)} certbot\n')
    script.chmod(0o755)
    renewed = subprocess.run([*certbot._base(), "renew", "--force-renewal", "--no-random-sleep-on-renew"],
                             capture_output=True, text=True, env=certbot.env, timeout=180)
    output = renewed.stdout + renewed.stderr
    assert renewed.returncode == 0 and "reported error code" not in output, output
    assert f"tlsa-manager: hook certbot: {NOT_OURS}" in output, output

    # domains.txt: two lines for www.example.com (aliases mx-ecdsa, mx-rsa); deploy_cert for each
    ran = Dehydrated(root / "dehydrated", pebble, WWW, hook=[*hook, "dehydrated"]).issue_all()
    output = ran.output
    assert ran.code == 0 and "non-zero exit code" not in output, output
    assert output.count(f"tlsa-manager: hook dehydrated: {NOT_OURS}") == 2, output
    _unchanged(site, zone_before, live_before)
