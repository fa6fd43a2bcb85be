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
