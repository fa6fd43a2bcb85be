"""A first sync and a new-key rollover through the CLI, against a cloud provider's fake.

Each cloud provider's test module calls :func:`sync_and_rollover` with its provider
section and a read-back of what the fake holds; the CLI runs in-process (the ``cli``
fixture) with the provider's copy as the only view (no authoritative servers).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tlsa_manager.records import Tlsa, owner_name

import pki
from test_sync_cli import le_shaped_chain

TTL = 2


def one_host(tmp_path: Path, provider_toml: str, zone: str = "example.test",
             ttl: int = TTL) -> tuple[Path, str, Any, Path, Path]:
    """A config with one host served from ``live/ecdsa.pem`` (a chain shaped like Let's
    Encrypt's YE1) and a ``staged`` folder: (config, host, owner, live, staged)."""
    host = f"mx-{secrets.token_hex(3)}.{zone}"
    live, staged = tmp_path / "live", tmp_path / "staged"
    live.mkdir()
    staged.mkdir()
    leaf, chain = le_shaped_chain(host, "ye1.pem")
    pki.write(live / "ecdsa.pem", leaf.key_pem, leaf.pem, chain)
    config = tmp_path / "tlsa-manager.toml"
    config.write_text(f"""
state_dir = "{tmp_path / 'state'}"
[providers.cloud]
{provider_toml.strip()}
[hosts."{host}"]
provider = "cloud"
cert = "{live / 'ecdsa.pem'}"
staged_dir = "{staged}"
ttl = {ttl}
slack = "1s"
negative_ttl = 1
""")
    config.chmod(0o600)
    return config, host, owner_name(host), live, staged


def sync_and_rollover(cli: Callable[..., Any], tmp_path: Path, provider_toml: str,
                      published: Callable[[Any], frozenset[Tlsa]], zone: str = "example.test") -> None:
    config, host, owner, live, staged = one_host(tmp_path, provider_toml, zone)
    cfg = ["--config", config]
    first = cli(*cfg, "sync", host)
    assert first.code == 0, first.err
    assert "4 added" in first.out, first.out  # 3 1 1 + the three issuer pins
    live_311 = Tlsa.from_text(cli("records", live / "ecdsa.pem", "--usage", "3").out)
    assert live_311 in published(owner) and len(published(owner)) == 4

    again = cli(*cfg, "sync", host)
    assert again.code == 0 and "added" not in again.out, again.out

    new_leaf, chain = le_shaped_chain(host, "ye2.pem")  # a renewal with a new key
    pki.write(staged / "ecdsa.pem", new_leaf.key_pem, new_leaf.pem, chain)
    sync = cli(*cfg, "sync", host)
    assert sync.code == 0 and "1 added" in sync.out and "may go live not before" in sync.out, sync.out
    time.sleep(2 * TTL + 1 + 0.5)
    deploy = cli(*cfg, "sync", host)
    assert deploy.code == 0 and "deployed staged ecdsa.pem" in deploy.out, deploy.out
    assert new_leaf.pem in (live / "ecdsa.pem").read_bytes()
    new_311 = Tlsa.from_text(cli("records", live / "ecdsa.pem", "--usage", "3").out)
    final = cli(*cfg, "sync", host)
    assert final.code == 0, final.err
    assert new_311 in published(owner) and live_311 not in published(owner), published(owner)


def documented_settings(doc: str, secrets: dict[str, Path]) -> dict[str, Any]:
    """The provider table of the first TOML example in docs/``doc``, its secret files
    pointed at test files (the documented paths do not exist here)."""
    import re
    import tomllib

    text = (Path(__file__).resolve().parent.parent / "docs" / doc).read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S)
    assert block is not None, doc
    (table,) = tomllib.loads(block.group(1))["providers"].values()
    for key, path in secrets.items():
        assert key in table, (doc, key)
        table[key] = str(path)
    return dict(table)


def inline_secret_needs_0600(cli: Callable[..., Any], tmp_path: Path, provider_toml: str, secret: str) -> None:
    """An inline secret in a config others may read is refused (exit 2, one line, the secret
    not shown); the same file at mode 0600 passes that check."""
    config = tmp_path / "inline.toml"
    config.write_text(f'[providers.cloud]\n{provider_toml.strip()}\n[hosts."mx.example.test"]\n'
                      'provider = "cloud"\ncert = "/nonexistent.pem"\n')
    config.chmod(0o644)
    result = cli("--config", config, "plan")
    assert result.code == 2 and "chmod 600" in result.err and result.err.count("\n") == 1, result.err
    assert secret not in result.err + result.out
    config.chmod(0o600)
    result = cli("--config", config, "plan")
    assert "chmod 600" not in result.err and secret not in result.err + result.out
