"""`--json` (docs/cli.md, "JSON"): every command of `tlsa-manager --help` either prints
one JSON document on stdout or refuses the flag with exit 2; none ignores it.  `key next`
and `key csr` give the documented shapes (the CSR checked with openssl)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_quiet import EXAMPLE, HOST, REPO, run
from test_quiet import site as unsynced_site  # noqa: F401  (a fixture)

from tlsa_manager.cli.main import COMMANDS, NO_JSON


@pytest.fixture
def site(unsynced_site: Path) -> Path:  # noqa: F811
    """The configuration of test_quiet (one host on a zone file), synced once."""
    assert run("--config", unsynced_site, "sync", HOST).returncode == 0
    return unsynced_site


def test_key_next_and_csr_give_json(site: Path, tmp_path: Path) -> None:
    made = run("--json", "--config", site, "key", "next", HOST)
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert doc["host"] == HOST and [k["type"] for k in doc["keys"]] == ["ecdsa"]
    key = doc["keys"][0]
    assert key["state"] == "new" and Path(key["file"]).is_file() and key["record"].startswith("3 1 1 ")
    assert any("made the next ECDSA key" in note for note in doc["notes"])
    again = json.loads(run("--json", "--config", site, "key", "next", HOST).stdout)
    assert again["keys"][0]["state"] == "kept" and again["notes"] == []
    # the record is the key's: openssl computes the same SHA-256 of the SPKI
    spki = subprocess.run(["openssl", "pkey", "-in", key["file"], "-pubout", "-outform", "DER"],
                          capture_output=True, check=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-r"], input=spki, capture_output=True,
                            check=True).stdout.split()[0].decode()
    assert key["record"] == f"3 1 1 {digest}"

    result = run("--json", "--config", site, "key", "csr", HOST, "--name", "mx.example.com")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    doc = json.loads(result.stdout)
    assert doc["host"] == HOST and doc["type"] == "ecdsa" and doc["key_file"] == key["file"]
    assert doc["names"] == [HOST, "mx.example.com"]
    request = tmp_path / "req.pem"
    request.write_text(doc["csr"])
    shown = subprocess.run(["openssl", "req", "-in", request, "-verify", "-noout", "-text"],
                           capture_output=True, text=True, check=True)
    assert "DNS:mail.example.com" in shown.stdout and "DNS:mx.example.com" in shown.stdout
    # without --json: the PEM itself on stdout, as before
    plain = run("--config", site, "key", "csr", HOST)
    assert plain.stdout.startswith("-----BEGIN CERTIFICATE REQUEST-----")


def test_commands_without_json_refuse_it(site: Path, tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir(mode=0o755)
    cases: dict[str, list[str | Path]] = {
        "metrics": ["metrics", "--output", "-", "--no-check"],
        "exporter": ["exporter", "--no-check", "--listen", "127.0.0.1:1"],
        "install-units": ["install-units", "--dir", units],
        "install-units --cron": ["install-units", "--cron"],
        "check --nagios": ["check", "nosuch.invalid", "--nagios", "--resolver", "127.0.0.1:1"],
    }
    for name, command in cases.items():
        result = run("--json", "--config", site, *command)
        assert result.returncode == 2, (name, result)
        assert result.stdout == "" and len(result.stderr.splitlines()) == 1 and "not JSON" in result.stderr
    assert not list(units.iterdir())


def test_every_command_gives_json_or_refuses_it(site: Path, tmp_path: Path) -> None:
    """The list of `--help`, each run once with --json: a JSON document, or exit 2."""
    scenario = REPO / "examples" / "scenarios" / "new-key.toml"
    one_off: list[str | Path] = ["--cert", EXAMPLE / "fullchain.pem"]
    runs: dict[str, list[str | Path]] = {
        "records": ["records", EXAMPLE / "fullchain.pem"],
        "catalog": ["catalog", "list"],
        "plan": ["--config", site, "plan", HOST],
        "sync": ["--config", site, "sync", HOST],
        "status": ["--config", site, "status"],
        "export": ["export", HOST, *one_off],
        "hook": ["--config", site, "hook", "generic", "--cert", EXAMPLE / "fullchain.pem",
                 "--key", EXAMPLE / "privkey.pem", "--host", HOST],
        "key": ["--config", site, "key", "next", HOST],
        "check": ["check", "nosuch.invalid", "--resolver", "127.0.0.1:1", "--timeout", "1"],
        "simulate": ["simulate", scenario],
        "metrics": ["--config", site, "metrics", "--output", "-", "--no-check"],
        "exporter": ["exporter"],
        "install-units": ["install-units", "--cron"],
    }
    assert set(runs) == set(COMMANDS), "a new command: say here what its --json does"
    for name, command in runs.items():
        result = run("--json", *command, cwd=tmp_path)
        if name in NO_JSON:
            assert result.returncode == 2 and "not JSON" in result.stderr, (name, result)
            continue
        assert result.returncode in (0, 1, 4), (name, result.stderr)
        assert isinstance(json.loads(result.stdout), dict), (name, result.stdout)
