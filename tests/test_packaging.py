"""Packaging and layering: entry points, lazy imports, `python -m`, discovery of third-party providers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tlsa_manager import registry
from tlsa_manager.errors import ConfigError
from tlsa_manager.provider import Provider

from conftest import CONSOLE_SCRIPT, stray_cli


def test_help_does_not_import_heavy_modules() -> None:
    """`tlsa-manager --help` must stay fast: no provider SDK, no requests."""
    code = textwrap.dedent("""
        import sys
        from tlsa_manager.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        heavy = [m for m in ("cloudflare", "requests", "httpx", "tlsa_manager_providers.cloudflare") if m in sys.modules]
        print("HEAVY=" + ",".join(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY="


def test_start_up_imports_only_what_the_command_uses() -> None:
    """`--help` loads no certificate or DNS library; `records FILE` prints without dnspython
    (its import alone costs more than the rest of the command: docs/performance.md)."""
    code = textwrap.dedent("""
        import sys
        from tlsa_manager.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        print("HELP=" + ",".join(m for m in ("cryptography.x509", "dns.name", "logging") if m in sys.modules))
        main(["records", sys.argv[1]])
        print("RECORDS=" + ",".join(m for m in ("dns.name", "dns.rdata") if m in sys.modules))
    """)
    example = Path(__file__).resolve().parent.parent / "examples" / "mail.example.com" / "fullchain.pem"
    out = subprocess.run([sys.executable, "-c", code, str(example)], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert "HELP=" in lines and "RECORDS=" in lines, out.stdout


def test_core_modules_do_not_import_provider_sdks() -> None:
    code = textwrap.dedent("""
        import importlib, pkgutil, sys, tlsa_manager
        for m in pkgutil.iter_modules(tlsa_manager.__path__):
            if m.name not in ("__main__",):
                importlib.import_module("tlsa_manager." + m.name)
        print(",".join(m for m in ("cloudflare", "httpx") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_only_the_contract_module_imports_pytest() -> None:
    """tlsa_manager.testing is for plugin tests; nothing the tool runs may pull pytest in."""
    code = textwrap.dedent("""
        import importlib, pkgutil, sys, tlsa_manager, tlsa_manager_providers
        for pkg in (tlsa_manager, tlsa_manager_providers):
            for m in pkgutil.iter_modules(pkg.__path__):
                if m.name not in ("__main__", "testing"):
                    importlib.import_module(pkg.__name__ + "." + m.name)
        print("PYTEST=" + str("pytest" in sys.modules or "_pytest" in sys.modules))
        import tlsa_manager.testing
        print("PYTEST=" + str("pytest" in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["PYTEST=False", "PYTEST=True"]


def test_python_dash_m_and_console_script() -> None:
    """Both entry points of the environment under test work (not one found on the PATH)."""
    for cmd in ([sys.executable, "-m", "tlsa_manager", "--version"], [str(CONSOLE_SCRIPT), "--version"]):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        assert out.startswith("tlsa-manager ")


def test_no_other_tlsa_manager_on_the_path() -> None:
    """A `tlsa-manager` installed by hand elsewhere could answer for a broken install:
    the suite runs with only this environment's `bin` and the system directories."""
    stray = stray_cli()
    assert stray is None, (
        f"{stray} is on the PATH but is not this environment's {CONSOLE_SCRIPT}: "
        "run the suite as scripts/test does (PATH of .venv/bin and the system directories), "
        "or remove the stray install"
    )


def test_third_party_provider_is_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package that only declares the entry point is found, like keyring backends."""
    (tmp_path / "acme_dns_provider.py").write_text(textwrap.dedent("""
        from tlsa_manager.provider import Capabilities, Provider
        class AcmeDns(Provider):
            name = "acmedns"
            capabilities = Capabilities(atomic=False, compare_and_swap=False, eventual_propagation=True)
            def read(self, owners): return {}
            def apply(self, changeset): pass
    """))
    dist = tmp_path / "acme_dns_provider-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-dns-provider\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[tlsa_manager.providers]\nacmedns = acme_dns_provider:AcmeDns\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "acmedns" in registry.available()
    cls = registry.provider_class("acmedns")
    assert issubclass(cls, Provider) and cls.name == "acmedns"
    with pytest.raises(ConfigError, match="unknown setting"):
        cls({"token": "x"})


def test_unknown_provider_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown provider type 'nope'"):
        registry.provider_class("nope")


def test_a_plugin_declares_its_own_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The core lists no provider keys: a third-party provider's ``secret_settings`` decide
    which inline values need a 0600 config, and what ``redacted`` hides."""
    from tlsa_manager.config import load_config

    (tmp_path / "vault_dns_provider.py").write_text(textwrap.dedent("""
        from tlsa_manager.provider import Capabilities, Provider
        class VaultDns(Provider):
            name = "vaultdns"
            capabilities = Capabilities(atomic=True, compare_and_swap=True, eventual_propagation=True)
            settings = {"passphrase": "x", "passphrase_file": "x", "url": "x"}
            secret_settings = {"passphrase": "the vault passphrase"}
            def read(self, owners): return {}
            def apply(self, changeset): pass
    """))
    dist = tmp_path / "vault_dns_provider-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vault-dns-provider\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[tlsa_manager.providers]\nvaultdns = vault_dns_provider:VaultDns\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "c.toml"
    config.write_text('[providers.v]\ntype = "vaultdns"\npassphrase = "open-sesame-42"\nurl = "https://v"\n')
    config.chmod(0o644)
    with pytest.raises(ConfigError, match=r"providers\.v\.passphrase is inline") as exc:
        load_config(config)
    assert "open-sesame-42" not in str(exc.value)
    config.chmod(0o600)
    load_config(config)
    cls = registry.provider_class("vaultdns")
    assert cls.secret_keys() == {"passphrase", "passphrase_file", "passphrase_env"}
    assert cls.redacted({"passphrase": "open-sesame-42", "url": "https://v"}) == {
        "passphrase": "<redacted>", "url": "https://v"}
    # "url" is no secret of this provider: a 0644 file without the passphrase is fine
    config.write_text('[providers.v]\ntype = "vaultdns"\nurl = "https://v"\n')
    config.chmod(0o644)
    load_config(config)


def test_built_in_providers_declare_their_secrets() -> None:
    assert set(registry.provider_class("cloudflare").secret_settings) == {"api_token"}
    assert set(registry.provider_class("powerdns").secret_settings) == {"api_key"}
    assert set(registry.provider_class("rfc2136").secret_settings) == {"tsig_secret"}
    assert not registry.provider_class("zonefile").secret_settings


def test_cloud_provider_modules_import_their_sdks_only_when_used() -> None:
    """route53, desec, hetzner load (for `secret_settings`, config checks) without boto3,
    hcloud or requests; the SDK comes with the first request."""
    code = textwrap.dedent("""
        import sys
        import tlsa_manager_providers.route53, tlsa_manager_providers.desec, tlsa_manager_providers.hetzner
        print("SDKS=" + ",".join(m for m in ("boto3", "botocore", "hcloud", "requests") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "SDKS="


def test_the_wheel_lists_every_python_package() -> None:
    """setuptools ships only the packages pyproject.toml names: a new subpackage left out
    (tlsa_manager/simulation was) works in the editable install and is missing from
    `pip install .`."""
    import tomllib

    repo = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(repo).parts) for p in repo.glob("tlsa_manager/**/__init__.py")}
    found |= {"tlsa_manager_providers"} if (repo / "providers/tlsa_manager_providers/__init__.py").exists() else set()
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"


def test_no_module_is_over_400_lines() -> None:
    """Small modules with one job each (docs/architecture.md): a module that grows past
    400 lines is doing the work of two, and the next change to it costs more."""
    root = Path(__file__).resolve().parent.parent
    sizes = {
        str(path.relative_to(root)): len(path.read_text(encoding="utf-8").splitlines())
        for folder in ("tlsa_manager", "providers")
        for path in (root / folder).rglob("*.py")
    }
    assert sizes and not {path: n for path, n in sizes.items() if n > 400}
