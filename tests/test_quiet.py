"""`-q` (docs/cli.md): the timers and the cron file run with it, and cron mails any
output.  Under -q a run prints no per-host progress, notes or warnings; what still goes
to stderr is an error and each hazard or failure that sets the exit code.  Checked with
`plan`, `sync`, `status` and `hook` on a zone file (no servers), as subprocesses."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

import pki
from test_sync_cli import le_shaped_chain

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "mail.example.com"
HOST = "mail.example.com"
CLI = [sys.executable, "-m", "tlsa_manager"]


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A configuration: one host, its zone file, a staged folder; returns the config."""
    zone = tmp_path / "db.example.com"
    shutil.copy(REPO / "examples" / "db.example.com", zone)
    live = tmp_path / "live"
    live.mkdir()
    # key and chain in one file: a staged renewal with a new key replaces both at once
    (live / "fullchain.pem").write_bytes((EXAMPLE / "privkey.pem").read_bytes() + (EXAMPLE / "fullchain.pem").read_bytes())
    (tmp_path / "staged").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f"""state_dir = "{tmp_path / 'state'}"
[providers.zone]
type = "zonefile"
zone_file = "{zone}"
[hosts."{HOST}"]
provider = "zone"
cert = "{live / 'fullchain.pem'}"
staged_dir = "{tmp_path / 'staged'}"
""")
    return config


def plant_3_0_1(config: Path) -> None:
    """Someone else's "3 0 1" record: fatal/risk hazards H2, H3 (exit 4)."""
    zone = config.parent / "db.example.com"
    zone.write_text(zone.read_text() + f"_25._tcp.{HOST}. 3600 IN TLSA 3 0 1 {'ab' * 32}\n")


def test_quiet_runs_print_nothing_when_all_is_well(site: Path) -> None:
    loud = run("--config", site, "sync", HOST)
    assert loud.returncode == 0 and f"{HOST}: " in loud.stdout and "warning:" in loud.stderr, loud
    for command in (["sync", HOST], ["plan", HOST], ["status"], ["sync", "--all"]):
        result = run("-q", "--config", site, *command)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), (command, result)
    # -q after the command counts the same
    result = run("--config", site, "plan", HOST, "-q")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_quiet_hook_prints_nothing_for_a_staged_chain(site: Path, tmp_path: Path) -> None:
    assert run("--config", site, "sync", HOST).returncode == 0
    _, chain = le_shaped_chain(HOST, "ye1.pem")
    issuer = pki.Issued(x509.load_pem_x509_certificate(chain), pki.make_key("p384"))
    leaf = pki.make_leaf([HOST], issuer, not_before=dt.datetime.now(dt.UTC))  # valid now: a real renewal
    pki.write(tmp_path / "new" / "privkey.pem", leaf.key_pem)
    pki.write(tmp_path / "new" / "fullchain.pem", leaf.pem, chain)
    renewal: list[str | Path] = ["--cert", tmp_path / "new" / "fullchain.pem", "--key", tmp_path / "new" / "privkey.pem",
               "--host", HOST]
    result = run("-q", "--config", site, "hook", "generic", *renewal)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), result
    assert list((tmp_path / "staged").iterdir())
    loud = run("--config", site, "hook", "generic", *renewal)
    assert loud.returncode == 0 and "staged" in loud.stdout, loud
    # a fatal hazard sets the hook's exit code: its line is kept, a risk one is not
    plant_3_0_1(site)
    loud = run("--config", site, "hook", "generic", *renewal)
    quiet = run("-q", "--config", site, "hook", "generic", *renewal)
    assert loud.returncode == quiet.returncode == 4 and quiet.stdout == "", (loud, quiet)
    reasons = quiet.stderr.splitlines()
    assert reasons and all(line.startswith(f"tlsa-manager: {HOST}: [H") and " fatal]" in line for line in reasons)
    assert "risk]" in loud.stdout, loud.stdout


def test_quiet_keeps_the_hazards_that_set_the_exit_code(site: Path) -> None:
    plant_3_0_1(site)
    for command in (["plan", HOST], ["sync", HOST], ["status"], ["sync", "--dry-run", HOST]):
        loud = run("--config", site, *command)
        quiet = run("-q", "--config", site, *command)
        assert loud.returncode == quiet.returncode == 4, (command, loud, quiet)
        assert quiet.stdout == "" and "warning:" not in quiet.stderr and "note:" not in quiet.stderr
        reasons = quiet.stderr.splitlines()
        # one line per failing hazard, named by host, the same words as the full report
        assert reasons and all(line.startswith(f"tlsa-manager: {HOST}: [H") for line in reasons), quiet.stderr
        assert any("[H3 " in line for line in reasons)
        for line in reasons:
            assert line.split(": ", 2)[2] in loud.stdout
        assert not any(" info]" in line for line in reasons)


def test_quiet_with_json_prints_the_document(site: Path) -> None:
    result = run("-q", "--json", "--config", site, "plan", HOST)
    assert result.returncode == 0 and result.stdout.startswith("{") and result.stderr == "", result
