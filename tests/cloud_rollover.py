"""A first sync and a new-key rollover through the CLI, against a provider's backend.

Each provider's test module calls :func:`sync_and_rollover` with its provider section
and a read-back of what the backend holds; the CLI runs in-process (the ``cli``
fixture).  For a cloud fake the provider's copy is the only view (no authoritative
servers), so the host vouches for a ``propagation_delay`` (without one a new key would
stay staged); a real server (PowerDNS) is watched through its ``nameservers`` instead.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.name

from tlsa_manager.records import Tlsa, owner_name

import pki
from conftest import CliRunner
from test_sync_cli import le_shaped_chain

TTL = 2
#: what the test vouches every (fake) server takes to serve a change: the fakes have none
PROPAGATION = 1


def one_host(tmp_path: Path, provider_toml: str, zone: str = "example.test", ttl: int = TTL,
             nameservers: list[str] | None = None) -> tuple[Path, str, dns.name.Name, Path, Path]:
    """A config with one host served from ``live/ecdsa.pem`` (a chain shaped like Let's
    Encrypt's YE1) and a ``staged`` folder: (config, host, owner, live, staged).  Without
    ``nameservers`` the host vouches for a propagation delay of ``PROPAGATION``."""
    watch = (f"nameservers = [{', '.join(repr(n) for n in nameservers)}]" if nameservers is not None
             else f'propagation_delay = "{PROPAGATION}s"')
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
{watch}
""")
    config.chmod(0o600)
    return config, host, owner_name(host), live, staged


def sync_and_rollover(cli: CliRunner, tmp_path: Path, provider_toml: str,
                      published: Callable[[dns.name.Name], frozenset[Tlsa]], zone: str = "example.test", *,
                      nameservers: list[str] | None = None, secret: str | None = None,
                      removal_wait: float = 0.0) -> tuple[dns.name.Name, frozenset[Tlsa]]:
    """Sync, sync again (nothing to do), stage a new key, deploy it after its gate, and see
    the old key's record go: by the next sync, or within ``removal_wait`` seconds of syncs.
    With ``secret`` the first sync runs as a user runs it (a subprocess) and the secret
    must not show.  Returns the owner and what the backend holds at the end."""
    config, host, owner, live, staged = one_host(tmp_path, provider_toml, zone, nameservers=nameservers)
    cfg: list[str | Path] = ["--config", config]
    if secret is None:
        first = cli(*cfg, "sync", host)
        assert first.code == 0, first.err
        out = first.out
    else:
        run = subprocess.run([sys.executable, "-m", "tlsa_manager", *map(str, cfg), "sync", host],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert secret not in run.stdout + run.stderr
        out = run.stdout
    assert "4 added" in out, out  # 3 1 1 + the three issuer pins
    live_311 = Tlsa.from_text(cli("records", live / "ecdsa.pem", "--usage", "3").out)
    assert live_311 in published(owner) and len(published(owner)) == 4

    again = cli(*cfg, "sync", host)
    assert again.code == 0 and "added" not in again.out, again.out

    new_leaf, chain = le_shaped_chain(host, "ye2.pem")  # a renewal with a new key
    pki.write(staged / "ecdsa.pem", new_leaf.key_pem, new_leaf.pem, chain)
    sync = cli(*cfg, "sync", host)
    assert sync.code == 0 and "1 added" in sync.out and "may go live not before" in sync.out, sync.out
    time.sleep((PROPAGATION if nameservers is None else 0) + 2 * TTL + 1 + 0.5)
    deploy = cli(*cfg, "sync", host)
    assert deploy.code == 0 and "deployed staged ecdsa.pem" in deploy.out, deploy.out
    assert new_leaf.pem in (live / "ecdsa.pem").read_bytes()
    new_311 = Tlsa.from_text(cli("records", live / "ecdsa.pem", "--usage", "3").out)
    deadline = time.monotonic() + removal_wait
    final = cli(*cfg, "sync", host)
    assert final.code == 0, final.err
    while time.monotonic() < deadline and live_311 in published(owner):
        time.sleep(0.2)
        cli(*cfg, "sync", host)
    held = published(owner)
    assert new_311 in held and live_311 not in held, held
    return owner, held


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


def inline_secret_needs_0600(cli: CliRunner, tmp_path: Path, provider_toml: str, secret: str) -> None:
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
