"""``hook dehydrated`` called for every dehydrated event, as a hook script that passes
``"$@"`` on does: only ``deploy_cert`` acts; every other event exits 0 with nothing on
stdout (dehydrated reads a CSR from it for ``generate_csr``).  Before, every other event
exited 2 ("expected deploy_cert ...", or "unrecognized arguments" for an ACME token that
starts with "-"), and dehydrated stopped at its first call of the hook."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from acme_servers import Dehydrated, Pebble, tlsa_manager
from conftest import EXAMPLES, CliRunner
from servers import require

HOST = "mail.example.com"
CERTDIR = "/var/lib/dehydrated/certs/mail.example.com"
TOKEN = "-Xq3mV_wo8b0LAWJ4f4GxKkbC-0e2vPIgTk9r8w7fjE"  # base64url: may start with "-"
#: each event with the arguments dehydrated 0.7.0 (Debian) and its current source give it
EVENTS: dict[str, list[str]] = {
    "unknown-hook check at start": [
        "this_hookscript_is_broken__dehydrated_is_working_fine__please_ignore_unknown_hooks_in_your_script"],
    "startup_hook": ["startup_hook"],
    "generate_csr": ["generate_csr", HOST, CERTDIR, f"{HOST} mx.example.com"],
    "deploy_challenge": ["deploy_challenge", HOST, TOKEN, f"{TOKEN}.nEv-thumbprint"],
    "deploy_challenge (HOOK_CHAIN)": ["deploy_challenge", HOST, TOKEN, f"{TOKEN}.x", "mx.example.com",
                                      "--" + TOKEN[2:], "--x.y"],
    "clean_challenge": ["clean_challenge", HOST, TOKEN, f"{TOKEN}.nEv-thumbprint"],
    "invalid_challenge": ["invalid_challenge", HOST, '{"type":"http-01","status":"invalid"}'],
    "request_failure": ["request_failure", "400", "Bad Request", "https://acme.test/new-order",
                        "HTTP/2 400\r\nreplay-nonce: -abc\r\n"],
    "sync_cert": ["sync_cert", *(f"{CERTDIR}/{n}-1700000000.{e}" for n, e in
                                 (("privkey", "pem"), ("cert", "pem"), ("fullchain", "pem"), ("chain", "pem"),
                                  ("cert", "csr")))],
    "deploy_ocsp": ["deploy_ocsp", HOST, f"{CERTDIR}/ocsp.der", "1700000000"],
    "unchanged_cert": ["unchanged_cert", HOST, *(f"{CERTDIR}/{n}.pem" for n in
                                                 ("privkey", "cert", "fullchain", "chain"))],
    "exit_hook": ["exit_hook"],
    "exit_hook after an error": ["exit_hook", "-ERROR: Challenge is invalid!"],
    "an event of a later dehydrated": ["renew_something", "-x"],
}


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_every_event_but_deploy_cert_exits_0_and_prints_nothing(cli: CliRunner, tmp_path: Path, event: str) -> None:
    missing = tmp_path / "missing.toml"  # not even read: the event is not ours
    result = cli("--config", missing, "hook", "dehydrated", *EVENTS[event])
    assert (result.code, result.out, result.err) == (0, "", "")
    noted = cli("--config", missing, "-v", "hook", "dehydrated", *EVENTS[event])
    assert noted.code == 0 and noted.out == ""
    assert noted.err == f"tlsa-manager: hook dehydrated: {EVENTS[event][0]}: nothing to do (it acts on deploy_cert)\n"


@pytest.mark.parametrize("event", ["deploy_challenge", "request_failure", "exit_hook after an error"])
def test_options_after_hook_dehydrated_still_skip_the_event(cli: CliRunner, tmp_path: Path, event: str) -> None:
    """A hook script written ``tlsa-manager hook dehydrated --config FILE "$@"`` (global
    options may follow the command): an event's "-" arguments were parsed as options,
    exit 2, and dehydrated stopped."""
    missing = tmp_path / "missing.toml"
    result = cli("hook", "dehydrated", "--config", missing, "-q", *EVENTS[event])
    assert (result.code, result.out, result.err) == (0, "", "")
    files = [f"{CERTDIR}/{n}.pem" for n in ("privkey", "cert", "fullchain", "chain")]
    deploy = cli("hook", "dehydrated", "--config", missing, "deploy_cert", HOST, *files, "1700000000")
    assert deploy.code == 2 and "no such configuration file" in deploy.err  # read, not "unrecognized"


def test_deploy_cert_still_acts(cli: CliRunner, tmp_path: Path) -> None:
    """deploy_cert is not skipped: with a missing configuration it fails as before (exit 2)."""
    files = [f"{CERTDIR}/{n}.pem" for n in ("privkey", "cert", "fullchain", "chain")]
    result = cli("--config", tmp_path / "missing.toml", "hook", "dehydrated", "deploy_cert", HOST, *files, "1700000000")
    assert result.code == 2 and "no such configuration file" in result.err


def zone_site(root: Path, certs: list[Path], staged: Path) -> Path:
    """A configuration for HOST, published in a copy of examples/db.example.com (no DNS
    server needed), with these live files and staged_dir; its path."""
    shutil.copy(EXAMPLES / "db.example.com", root / "db.example.com")
    config = root / "tlsa-manager.toml"
    config.write_text(f"""state_dir = "{root / 'state'}"
[providers.zone]
type = "zonefile"
zone_file = "{root / 'db.example.com'}"
[hosts."{HOST}"]
provider = "zone"
certs = {json.dumps([str(c) for c in certs])}
staged_dir = "{staged}"
""")
    return config


@pytest.fixture
def pebble() -> Iterator[Pebble]:
    require("pebble", "dehydrated", "openssl")
    root = Path(tempfile.mkdtemp(prefix="tlsa-dehydrated-"))
    server = Pebble(root / "pebble")
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_real_dehydrated_with_every_event_passed_to_the_hook(pebble: Pebble) -> None:
    """dehydrated (Debian's) against Pebble, its HOOK a script that runs
    ``tlsa-manager hook dehydrated "$@"``: the renewal is staged, and a run with
    nothing to renew (unchanged_cert) succeeds too."""
    root = pebble.root.parent
    dehydrated = Dehydrated(root / "dehydrated", pebble, HOST, hook=["true"])
    first = dehydrated.issue_all()
    assert first.code == 0, first.output
    live, staged = root / "live", root / "staged"
    live.mkdir()
    for kind in ("ecdsa", "rsa"):  # the operator's first install
        key, chain = dehydrated.files(kind)
        (live / f"{kind}.pem").write_bytes(key.read_bytes() + chain.read_bytes())
    config = zone_site(root, [live / "ecdsa.pem", live / "rsa.pem"], staged)
    synced = subprocess.run(tlsa_manager("--config", config, "sync", HOST), capture_output=True, text=True)
    assert synced.returncode == 0, synced.stderr
    dehydrated.hook = tlsa_manager("--config", config, "hook", "dehydrated")
    renewed = dehydrated.renew("ecdsa", reuse_key=True)  # --cron --force: every event, deploy_cert too
    assert renewed.code == 0, renewed.output
    assert f"{HOST}: staged {staged / 'ecdsa.pem'}" in renewed.output, renewed.output
    unchanged = subprocess.run(["dehydrated", "-f", str(dehydrated.config), "--cron"], capture_output=True,
                               text=True, timeout=180)
    assert unchanged.returncode == 0 and "Skipping renew" in unchanged.stdout, unchanged.stdout + unchanged.stderr
