"""Bad input to `key`, `metrics`, `exporter`, `install-units` and `check`: one line on
stderr that says what is wrong, the documented exit code (docs/cli.md), no traceback,
nothing written.  The CLI runs as a process, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
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


def test_the_process_of_a_one_pass_command_ends_without_walking_its_heap(tmp_path: Path) -> None:
    """The interpreter runs one last full collection as it exits, even with the collector
    paused: the process of `plan` or `sync` freezes its heap when the command is done, so
    that collection does not walk every object of a fleet; its output and exit code are
    those of the command (a caller of ``main`` is left as it was: the test above)."""
    site = EXAMPLES / "mail.example.com"
    zone = tmp_path / "db.example.com"
    zone.write_bytes((EXAMPLES / "db.example.com").read_bytes())
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen:', gc.get_freeze_count() > 0, file=sys.stderr))\n"
        "from tlsa_manager.cli.main import run\n"
        "run()\n"
    )
    args = ["mail.example.com", "--cert", str(site / "fullchain.pem"), "--zone-file", str(zone)]
    state = ["--state-dir", str(tmp_path / "state")]
    for command, frozen in ((["plan", *args], True), (["sync", *args], True), (["--version"], False)):
        done = subprocess.run(
            [sys.executable, "-c", code, *state, *command], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines()[-1] == f"frozen: {frozen}"
        assert done.stdout.strip(), command  # the plan, the sync's report, the version


def test_check_records_file_that_is_not_one(tmp_path: Path) -> None:
    """Before: `check --records /dev/zero` said "point at the certificate or key file
    itself", and an empty records file was "the file is empty; point at the certificate
    or key file"; a file of comments only checked against no records at all."""
    assert_one_line(run_cli(tmp_path, "check", "example.com", "--records", "/dev/zero"), 2,
                    "point at the file of TLSA records itself")
    for name, text in (("empty.txt", ""), ("comments.txt", "; nothing yet\n")):
        (tmp_path / name).write_text(text)
        assert_one_line(run_cli(tmp_path, "check", "example.com", "--records", str(tmp_path / name)), 2,
                        "holds no TLSA record")
