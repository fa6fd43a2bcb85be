"""Bad input to `key`, `metrics`, `exporter`, `install-units` and `check`: one line on
stderr that says what is wrong, the documented exit code (docs/cli.md), no traceback,
nothing written.  The CLI runs as a process, as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import EXAMPLES, CliRunner

CLI = [sys.executable, "-m", "tlsa_manager"]


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TLSA_MANAGER_STATE_DIR": str(tmp_path / "state")}
    # A bad number once made `sync --wait-lock nan` wait forever: the timeout catches that.
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tlsa-manager: error: "), result.stderr
    assert words in lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture
def config(tmp_path: Path) -> Path:
    site = EXAMPLES / "mail.example.com"
    zone = tmp_path / "db.example.com"
    zone.write_bytes((EXAMPLES / "db.example.com").read_bytes())
    path = tmp_path / "config.toml"
    path.write_text(
        f'[providers.zf]\ntype = "zonefile"\nzone_file = "{zone}"\n\n'
        f'[hosts."mail.example.com"]\ncerts = ["{site / "fullchain.pem"}"]\nkey = "{site / "privkey.pem"}"\n'
        'provider = "zf"\nnameservers = ["127.0.0.1:1"]\n'
    )
    return path


BAD_VALUES = {
    "check timeout not a number": (["check", "example.com", "--timeout", "nan"], "--timeout"),
    "check timeout infinite": (["check", "example.com", "--timeout", "inf"], "--timeout"),
    "check timeout negative": (["check", "example.com", "--timeout", "-1"], "greater than 0"),
    "check margin too far": (["check", "example.com", "--rrsig-margin", "1e30"], "--rrsig-margin"),
    "check margin nan": (["check", "example.com", "--rrsig-margin", "nan"], "--rrsig-margin"),
    # finite but past what sockets and datetimes take: once an internal OverflowError
    "check timeout 1e308": (["check", "example.com", "--timeout", "1e308"], "--timeout"),
    "check timeout 1e10": (["check", "example.com", "--timeout", "1e10"], "--timeout"),
    "metrics timeout 1e18": (["metrics", "--timeout", "1e18", "--output", "m.prom"], "--timeout"),
    "check no workers": (["check", "example.com", "--workers", "0"], "--workers"),
    "check port too high": (["check", "example.com", "--port", "70000"], "outside 1-65535"),
    "check port zero": (["check", "example.com", "--port", "0"], "outside 1-65535"),
    "check protocol unknown": (["check", "example.com", "--protocol", "ftp"], "invalid choice: 'ftp'"),
    "check protocol missing": (["check", "example.com", "--protocol"], "expected one argument"),
    "metrics timeout infinite": (["metrics", "--output", "-", "--timeout", "inf"], "--timeout"),
    "metrics without output": (["metrics"], "--output"),
    "exporter interval nan": (["exporter", "--interval", "nan"], "--interval"),
    "exporter interval negative": (["exporter", "--interval", "-1"], "at least 0"),
    "sync wait-lock nan": (["sync", "--wait-lock", "nan"], "--wait-lock"),
    "sync propagation negative": (["sync", "--propagation-timeout", "-1"], "--propagation-timeout"),
    "catalog update timeout zero": (["catalog", "update", "--timeout", "0"], "greater than 0"),
    "key without host": (["key", "next"], "required: host"),
    "key unknown action": (["key", "rotate", "mail.example.com"], "invalid choice: 'rotate'"),
    "key unknown type": (["key", "next", "mail.example.com", "--type", "dsa"], "invalid choice: 'dsa'"),
    "install-units extra word": (["install-units", "now"], "unrecognized arguments: now"),
}


@pytest.mark.parametrize("argv,words", BAD_VALUES.values(), ids=list(BAD_VALUES))
def test_bad_values_are_usage_errors(tmp_path: Path, argv: list[str], words: str) -> None:
    assert_one_line(run_cli(tmp_path, *argv), 2, words)


def test_check_records_file_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_text("3 1 1 zz\n")
    for records, words in (
        ("missing.txt", "no such file"),
        (str(tmp_path), "is a directory"),
        ("bad.txt", "not a TLSA record: '3 1 1 zz'"),
    ):
        assert_one_line(run_cli(tmp_path, "check", "example.com", "--records", records), 2, words)


def test_key_bad_configuration_host_and_state(tmp_path: Path, config: Path) -> None:
    assert_one_line(
        run_cli(tmp_path, "--config", str(tmp_path), "key", "next", "mail.example.com"), 2, "is a directory"
    )
    assert_one_line(
        run_cli(tmp_path, "--config", "nope.toml", "key", "next", "mail.example.com"), 2, "no such"
    )
    assert_one_line(
        run_cli(tmp_path, "--config", str(config), "key", "next", "mx.example.com"), 2, "not configured"
    )
    csr = run_cli(
        tmp_path,
        "--config",
        str(config),
        "key",
        "csr",
        "mail.example.com",
        "--type",
        "rsa",
        "--type",
        "ecdsa",
    )
    assert_one_line(csr, 2, "give one --type")
    # A state directory another user may write could hand us their key to certify: refused.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    for action in ("next", "csr"):
        result = run_cli(
            tmp_path, "--config", str(config), "--state-dir", str(shared), "key", action, "mail.example.com"
        )
        assert_one_line(result, 3, "writable by others")
    assert list(shared.iterdir()) == []


def test_metrics_output_errors(tmp_path: Path, config: Path) -> None:
    base = ["--config", str(config), "metrics", "--no-check", "--output"]
    assert_one_line(run_cli(tmp_path, *base, ""), 2, "--output is empty")
    assert_one_line(run_cli(tmp_path, *base, str(tmp_path)), 2, "not a regular file")
    assert_one_line(run_cli(tmp_path, *base, str(tmp_path / "no" / "m.prom")), 2, "no such file or directory")


def test_install_units_folder_errors(tmp_path: Path) -> None:
    assert_one_line(run_cli(tmp_path, "install-units", "--dir", ""), 2, "--dir is empty")
    assert not list(tmp_path.glob("tlsa-manager-*"))  # not written into the current folder
    assert_one_line(
        run_cli(tmp_path, "install-units", "--dir", str(tmp_path / "none")), 2, "no such directory"
    )
    (tmp_path / "file").write_text("")
    assert_one_line(run_cli(tmp_path, "install-units", "--dir", str(tmp_path / "file")), 2, "not a directory")
    # systemd runs the units as root: a folder others may write is refused, nothing written
    shared = tmp_path / "units"
    shared.mkdir()
    shared.chmod(0o777)
    assert_one_line(run_cli(tmp_path, "install-units", "--dir", str(shared)), 3, "writable by others")
    assert list(shared.iterdir()) == []


def test_a_command_run_in_process_leaves_the_garbage_collector_as_it_found_it(
    cli: CliRunner, tmp_path: Path
) -> None:
    """`sync`, `plan` and the other one-pass commands pause the cyclic collector while
    they run (a fleet's heap is big and holds no cycles worth finding); a program that
    calls ``main`` (these tests, an operator's script) gets it back, on success and on
    error alike."""
    import gc

    site = EXAMPLES / "mail.example.com"
    zone = tmp_path / "db.example.com"
    zone.write_bytes((EXAMPLES / "db.example.com").read_bytes())
    assert gc.isenabled()
    done = cli("sync", "mail.example.com", "--cert", site / "fullchain.pem", "--zone-file", zone)
    assert done.code == 0, done.err
    assert gc.isenabled()
    failed = cli("plan", "mail.example.com", "--cert", tmp_path / "missing.pem", "--zone-file", zone)
    assert failed.code != 0 and "missing.pem" in failed.err
    assert gc.isenabled()
    gc.disable()
    try:
        assert (
            cli("plan", "mail.example.com", "--cert", site / "fullchain.pem", "--zone-file", zone).code == 0
        )
        assert not gc.isenabled()  # paused by the caller: left paused
    finally:
        gc.enable()


def fleet_site(root: Path, hosts: int, missing: int | None = None) -> Path:
    """A zone-file fleet of ``hosts`` hosts sharing the example's certificate; host
    ``missing`` (if any) names a certificate file that does not exist."""
    site = EXAMPLES / "mail.example.com"
    root.mkdir()
    zone = root / "db.example.com"
    zone.write_bytes((EXAMPLES / "db.example.com").read_bytes())
    lines = [f'state_dir = "{root / "state"}"', f'[providers.zf]\ntype = "zonefile"\nzone_file = "{zone}"\n']
    for i in range(hosts):
        cert = root / "missing.pem" if i == missing else site / "fullchain.pem"
        lines.append(f'[hosts."mx{i}.example.com"]\ncert = "{cert}"\nprovider = "zf"\n')
    (root / "config.toml").write_text("\n".join(lines))
    return root / "config.toml"


def test_a_one_pass_command_process_ends_with_all_its_output_and_its_exit_code(
    cli: CliRunner, tmp_path: Path
) -> None:
    """The process of `sync` or `plan` ends without the interpreter freeing the run's heap
    object by object (cli.main.exit_without_teardown): what it prints reaches the pipe in
    full (more than a pipe's buffer), the log lines of -v are written and the exit code
    is the command's, the same as the command run in process on a twin of the fleet; a
    host that fails (exit 2: its certificate file is missing) too."""
    for missing in (None, 7):
        process_config = fleet_site(tmp_path / f"process-{missing}", 250, missing)
        inproc_config = fleet_site(tmp_path / f"inproc-{missing}", 250, missing)
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))  # plans show their time
        for command in (["sync"], ["sync"], ["plan", "--at", at], ["plan", "--json", "--at", at]):
            done = subprocess.run(
                [*CLI, "-v", "--config", str(process_config), *command], capture_output=True, timeout=120
            )
            twin = cli("-v", "--config", inproc_config, *command)
            assert done.returncode == twin.code == (0 if missing is None else 2), done.stderr[-2000:]
            out, err = done.stdout.decode(), done.stderr.decode()
            assert out.replace(str(process_config.parent), "X") == twin.out.replace(str(inproc_config.parent), "X")
            # the -v log of the run's phases (in process, logging writes past the capture)
            logged = [line for line in err.splitlines() if re.match(r" *[0-9.]+ s  [a-z-]+ \(250 hosts\)$", line)]
            assert logged or command[0] == "plan"
            said = "".join(f"{line}\n" for line in err.splitlines() if line not in logged)
            assert said.replace(str(process_config.parent), "X") == twin.err.replace(str(inproc_config.parent), "X")
            assert len(out) > 65536 or "--json" not in command  # more than a pipe holds
