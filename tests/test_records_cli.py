"""`records`: golden outputs, and one clear line + exit code for every bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pki
from conftest import EXAMPLES, REPO, CliRunner, Result, openssl_tlsa_data

GOLDEN = REPO / "tests" / "golden"
EXAMPLE = EXAMPLES / "mail.example.com"


@pytest.fixture
def in_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES)


def test_golden_text(cli: CliRunner, in_examples: None) -> None:
    result = cli("records", "mail.example.com/fullchain.pem")
    assert result.code == 0
    assert result.out == (GOLDEN / "records_fullchain.txt").read_text()
    assert result.err == (GOLDEN / "records_fullchain.stderr").read_text()


def test_golden_zone_lines(cli: CliRunner, in_examples: None) -> None:
    result = cli("records", "mail.example.com/fullchain.pem", "--host", "mail.example.com.", "--ttl", "300")
    assert result.code == 0
    assert result.out == (GOLDEN / "records_fullchain_host.txt").read_text()


def test_golden_json(cli: CliRunner, in_examples: None) -> None:
    result = cli("--json", "records", "mail.example.com/fullchain.pem", "--host", "mail.example.com", "--ttl", "300")
    assert result.code == 0
    assert result.out == (GOLDEN / "records_fullchain_host.json").read_text()


def test_golden_values_are_what_openssl_says() -> None:
    """The golden files themselves are checked against the oracle, not just against us."""
    lines = (GOLDEN / "records_fullchain.txt").read_text().splitlines()
    assert lines[0] == f"3 1 1 {openssl_tlsa_data(EXAMPLE / 'cert.pem', 1, 1)}"
    ye1 = REPO / "tlsa_manager" / "data" / "letsencrypt" / "ye1.pem"
    assert lines[1] == f"2 1 1 {openssl_tlsa_data(ye1, 1, 1)}"


def test_key_and_cert_together(cli: CliRunner) -> None:
    result = cli("records", EXAMPLE / "cert.pem", "--key", EXAMPLE / "privkey.pem")
    assert result.code == 0
    assert result.out == f"3 1 1 {openssl_tlsa_data(EXAMPLE / 'cert.pem', 1, 1)}\n"


def test_port_in_owner(cli: CliRunner) -> None:
    result = cli("records", EXAMPLE / "next-key.pem", "--host", "mx.example.net", "--port", "587")
    assert result.out.startswith("_587._tcp.mx.example.net. 3600 IN TLSA 3 1 1 ")


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--usage", "3", "--selector", "0"], "changes at every renewal"),
        (["--usage", "2", "--selector", "0"], "cross-signs and reissues"),
        (["--usage", "1"], "unusable for SMTP"),
        (["--usage", "3", "--mtype", "0"], "fragment"),
    ],
)
def test_fragile_kinds_are_computed_with_a_reason(cli: CliRunner, flags: list[str], fragment: str) -> None:
    result = cli("records", EXAMPLE / "fullchain.pem", *flags)
    assert result.code == 0
    assert result.out.strip()
    assert fragment in result.err
    assert all(line.startswith("warning: ") for line in result.err.splitlines())


def _encrypted_key(tmp_path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization

    key = pki.make_key("p256")
    return pki.write(tmp_path / "enc.pem", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret-pass")))


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    full = (EXAMPLE / "fullchain.pem").read_bytes()
    unreadable = pki.write(tmp_path / "unreadable.pem", full)
    os.chmod(unreadable, 0)
    other_key = pki.write(tmp_path / "other.pem", pki.key_pem(pki.make_key("p256")))
    return {
        "missing": ([str(tmp_path / "nope.pem")], "no such file"),
        "directory": ([str(tmp_path)], "is a directory"),
        "unreadable": ([str(unreadable)], "permission denied"),
        "empty": ([str(pki.write(tmp_path / "empty.pem", b"\n"))], "the file is empty"),
        "garbage": ([str(pki.write(tmp_path / "garbage.bin", os.urandom(300)))], "not a certificate or key"),
        "text": ([str(pki.write(tmp_path / "notes.txt", b"hello world\n"))], "not a certificate or key"),
        "truncated": ([str(pki.write(tmp_path / "trunc.pem", full[:900]))], "truncated"),
        "damaged": ([str(pki.write(tmp_path / "damaged.pem", full.replace(b"MII", b"MIA", 1)))], "damaged"),
        "csr": ([str(pki.write(tmp_path / "csr.pem", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))], "not a certificate or key"),
        "encrypted": ([str(_encrypted_key(tmp_path))], "encrypted and no passphrase"),
        "mismatch": ([str(EXAMPLE / "cert.pem"), "--key", str(other_key)], "does not match the certificate"),
        "bad usage": ([str(EXAMPLE / "cert.pem"), "--usage", "9"], "usage 9"),
        "bad selector": ([str(EXAMPLE / "cert.pem"), "--selector", "2"], "selector 2"),
        "bad mtype": ([str(EXAMPLE / "cert.pem"), "--mtype", "3"], "matching type 3"),
        "not a number": ([str(EXAMPLE / "cert.pem"), "--usage", "three"], "invalid int value"),
        "bad host": ([str(EXAMPLE / "cert.pem"), "--host", "mail..example.com"], "not a valid DNS host name"),
        "bad host chars": ([str(EXAMPLE / "cert.pem"), "--host", "mail_server.example.com"], "not a valid DNS host name"),
        "bad port": ([str(EXAMPLE / "cert.pem"), "--host", "mail.example.com", "--port", "70000"], "outside 1-65535"),
        "port without host": ([str(EXAMPLE / "cert.pem"), "--port", "25"], "need --host"),
        "selector 0 on key": ([str(EXAMPLE / "next-key.pem"), "--usage", "3", "--selector", "0"], "needs a certificate"),
        "unknown flag": ([str(EXAMPLE / "cert.pem"), "--frobnicate"], "unrecognized arguments"),
    }


BAD = [
    "missing", "directory", "unreadable", "empty", "garbage", "text", "truncated", "damaged", "csr",
    "encrypted", "mismatch", "bad usage", "bad selector", "bad mtype", "not a number", "bad host",
    "bad host chars", "bad port", "port without host", "selector 0 on key", "unknown flag",
]


def _as_nobody(*args: str) -> Result:
    """Run the CLI in a forked child that dropped root, so file modes apply."""
    import io
    import sys

    import tlsa_manager.certs
    import tlsa_manager.derive  # noqa: F401  (imported before the privilege drop)
    from tlsa_manager.cli import main

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_end)
        os.setgid(65534)
        os.setuid(65534)
        sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
        code = main(list(args))
        os.write(write_end, f"{code}\x00{sys.stdout.getvalue()}\x00{sys.stderr.getvalue()}".encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read().decode()
    os.waitpid(pid, 0)
    status, out, err = data.split("\x00")
    return Result(int(status), out, err)


@pytest.mark.parametrize("case", BAD)
def test_bad_input_one_line_exit_2(cli: CliRunner, tmp_path: Path, case: str) -> None:
    args, fragment = _bad_inputs(tmp_path)[case]
    if case == "unreadable" and os.geteuid() == 0:
        os.chmod(tmp_path, 0o755)
        result = _as_nobody("records", *args)
    else:
        result = cli("records", *args)
    assert result.code == 2, result
    assert result.out == ""
    assert result.err.count("\n") == 1, result.err
    assert result.err.startswith("tlsa-manager: error: ")
    assert fragment in result.err
    assert "Traceback" not in result.err


def test_passphrase_file_and_env(cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    enc = _encrypted_key(tmp_path)
    from conftest import openssl

    der = openssl("pkey", "-in", str(enc), "-passin", "pass:s3cret-pass", "-pubout", "-outform", "DER")
    expected = "3 1 1 " + openssl("dgst", "-sha256", "-r", stdin=der).decode().split()[0]
    pw = pki.write(tmp_path / "pw", b"s3cret-pass\n")
    by_file = cli("records", enc, "--passphrase-file", pw)
    assert by_file.code == 0 and by_file.out == expected + "\n"
    monkeypatch.setenv("KEYPASS", "s3cret-pass")
    by_env = cli("records", enc, "--passphrase-env", "KEYPASS")
    assert by_env.out == by_file.out
    wrong = pki.write(tmp_path / "wrong", b"nope\n")
    bad = cli("records", enc, "--passphrase-file", wrong)
    assert bad.code == 2 and "does not decrypt" in bad.err and "s3cret" not in bad.err


def test_debug_shows_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    plain = subprocess.run([sys.executable, "-m", "tlsa_manager", "records", str(tmp_path / "x")],
                           capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    debug = subprocess.run([sys.executable, "-m", "tlsa_manager", "--debug", "records", str(tmp_path / "x")],
                           capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "InputError" in debug.stderr
