"""Tool-managed next keys: `key next`, `key csr`, `auto_next_keys`, and the hook finding a
CSR-issued certificate's key among them (openssl is the oracle for keys and CSRs)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tlsa_manager.errors import StateError
from tlsa_manager.nextkey import create, existing, generate, key_dir, refresh
from tlsa_manager.records import Tlsa

import pki
from conftest import CliRunner, bind_read, openssl, openssl_tlsa_data
from servers import Bind
from test_sync_cli import SyncSite, le_shaped_chain, site  # noqa: F401  (fixture)


def _auto(site: SyncSite) -> None:  # noqa: F811
    with open(site["config"], "a") as handle:
        handle.write("auto_next_keys = true\n")


def test_create_never_overwrites_and_refuses_planted_links(tmp_path: Path) -> None:
    directory = key_dir(tmp_path / "state", "MX.Example.test.")
    assert directory == tmp_path / "state" / "next-keys" / "mx.example.test"
    first = generate("ecdsa")
    assert create(directory / "ecdsa.key", first) is True
    assert create(directory / "ecdsa.key", generate("ecdsa")) is False  # O_EXCL: the first key stays
    assert (directory / "ecdsa.key").read_bytes() == first
    assert stat.S_IMODE((directory / "ecdsa.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert [p.name for p in directory.iterdir()] == ["ecdsa.key"]  # no temp file left behind
    os.symlink("/etc/passwd", directory / "rsa.key")
    with pytest.raises(StateError, match="not a regular file"):
        existing(directory)
    (tmp_path / "blocked").write_text("a file where the key folder should be")
    with pytest.raises(StateError, match="cannot create the next-key folder"):
        create(tmp_path / "blocked" / "ecdsa.key", first)


def test_refresh_retires_a_used_key_and_makes_the_missing_ones(tmp_path: Path) -> None:
    directory = tmp_path / "next"
    made = refresh(directory, ["ecdsa", "rsa", "ed25519"], [])
    assert sorted(p.name for p in made.created) == ["ecdsa.key", "rsa.key"] and not made.retired
    assert "RSA 2048" in openssl("pkey", "-in", str(directory / "rsa.key"), "-text", "-noout").decode().replace(
        "Private-Key: (2048 bit", "RSA 2048")
    used = openssl("pkey", "-in", str(directory / "ecdsa.key"), "-pubout", "-outform", "DER")
    old = (directory / "ecdsa.key").read_bytes()
    again = refresh(directory, ["ecdsa", "rsa"], [used])
    assert [p.name for p in again.retired] == ["ecdsa.key"] and [p.name for p in again.created] == ["ecdsa.key"]
    assert (directory / "ecdsa.key").read_bytes() != old
    assert refresh(directory, ["ecdsa", "rsa"], [used]).notes() == []  # nothing to do twice


def test_key_next_and_csr(cli: CliRunner, site: SyncSite) -> None:  # noqa: F811
    cfg: list[str | Path] = ["--config", site["config"]]
    made = cli(*cfg, "key", "next", site["host"])
    assert made.code == 0, made.err
    path = site["tmp"] / "state" / "next-keys" / site["host"] / "ecdsa.key"
    expected = openssl_tlsa_data(path, 1, 1, key=True)
    assert f"next ECDSA key {path} (new): 3 1 1 {expected}" in made.out
    assert not (path.parent / "rsa.key").exists()  # the host serves ECDSA only
    assert f"{path} (kept)" in cli(*cfg, "key", "next", site["host"]).out
    csr = cli(*cfg, "key", "csr", site["host"], "--name", "mail.example.test")
    assert csr.code == 0 and f"CSR for the next ECDSA key {path}" in csr.err
    request = site["tmp"] / "next.csr"
    request.write_text(csr.out)
    verified = subprocess.run(["openssl", "req", "-in", str(request), "-verify", "-noout", "-text"],
                              capture_output=True, text=True, check=True)
    assert f"DNS:{site['host']}, DNS:mail.example.test" in verified.stdout
    assert openssl("req", "-in", str(request), "-pubkey", "-noout") == openssl("pkey", "-in", str(path), "-pubout")
    missing = cli(*cfg, "key", "csr", site["host"], "--type", "rsa")
    assert missing.code == 2 and "has no next RSA key; make it first: key next" in missing.err


def test_auto_next_keys_pre_publishes_and_the_hook_finds_the_key(cli: CliRunner, bind: Bind, site: SyncSite) -> None:  # noqa: F811
    _auto(site)
    cfg: list[str | Path] = ["--config", site["config"]]
    first = cli(*cfg, "sync", site["host"])
    assert first.code == 0, first.err
    next_key = site["tmp"] / "state" / "next-keys" / site["host"] / "ecdsa.key"
    assert f"made the next ECDSA key {next_key}" in first.out
    record = Tlsa.from_text(f"3 1 1 {openssl_tlsa_data(next_key, 1, 1, key=True)}")
    assert record in bind_read(bind.secondary.port, site["owner"])[0]
    # A certificate issued from the next key's CSR: the client hands over no key file.
    used = next_key.read_bytes()
    key = serialization.load_pem_private_key(used, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    leaf, chain = le_shaped_chain(site["host"], "ye1.pem", key=key)
    fullchain = pki.write(site["tmp"] / "issued" / "fullchain.pem", leaf.pem, chain)
    hooked = cli(*cfg, "hook", "generic", "--cert", fullchain, "--host", site["host"])
    assert hooked.code == 0, hooked.err
    # used before its record was served for 2 TTLs: still safe, it waits for its gate
    assert "stays staged" in hooked.out, hooked.out  # "not before T", or a lagging server named
    assert used in (site["staged"] / "ecdsa.pem").read_bytes() and next_key.read_bytes() != used
    assert "the next ECDSA key is in use now" in hooked.out and "made the next ECDSA key" in hooked.out
    fresh = Tlsa.from_text(f"3 1 1 {openssl_tlsa_data(next_key, 1, 1, key=True)}")
    assert fresh != record and {fresh, record} <= bind_read(bind.secondary.port, site["owner"])[0]


def test_hook_without_a_key_that_no_next_key_matches(cli: CliRunner, site: SyncSite) -> None:  # noqa: F811
    leaf, chain = le_shaped_chain(site["host"], "ye1.pem")
    fullchain = pki.write(site["tmp"] / "issued" / "fullchain.pem", leaf.pem, chain)
    # A configured next key given as its public key only: pre-published, but never staged
    # as the key Postfix would serve with.
    public = pki.write(site["tmp"] / "next-public.pem", leaf.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with open(site["config"], "a") as handle:
        handle.write(f'next_keys = ["{public}"]\n')
    result = cli("--config", site["config"], "hook", "generic", "--cert", fullchain, "--host", site["host"])
    assert result.code == 2 and "its private key is neither (none given) nor a next key" in result.err
    assert not (site["staged"] / "ecdsa.pem").exists()


def test_hook_run_again_for_a_next_key_certificate(cli: CliRunner, bind: Bind, site: SyncSite) -> None:  # noqa: F811
    """docs/hooks.md: after a failed hook, "run the hook again by hand (the same command)".
    The first run staged the certificate with its next key and retired that key's file (a
    fresh next key took its place); the key now lives in the staged file, and a second run
    finds it there instead of stopping with "neither (none given) nor a next key"."""
    _auto(site)
    cfg: list[str | Path] = ["--config", site["config"]]
    assert cli(*cfg, "sync", site["host"]).code == 0
    next_key = site["tmp"] / "state" / "next-keys" / site["host"] / "ecdsa.key"
    used = next_key.read_bytes()
    key = serialization.load_pem_private_key(used, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    leaf, chain = le_shaped_chain(site["host"], "ye1.pem", key=key)
    fullchain = pki.write(site["tmp"] / "issued" / "fullchain.pem", leaf.pem, chain)
    hook = [*cfg, "hook", "generic", "--cert", fullchain, "--host", site["host"]]
    assert cli(*hook).code == 0
    again = cli(*hook)
    assert again.code == 0, again.err
    assert used in (site["staged"] / "ecdsa.pem").read_bytes()
    assert leaf.pem in (site["staged"] / "ecdsa.pem").read_bytes()
